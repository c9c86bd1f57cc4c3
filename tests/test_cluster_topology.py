"""A cluster whose topology changed after bitstat connected: slots moved by other hands to a
master the client never heard of, or a slot caught mid-move. forget, alias and drop find every
key (SCAN on every master there is now, not the ones known at connect), and their answers equal
the reference model's: nothing missed, nothing left behind."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions as rex

import bitstat
import bitstat.aio
import servers
from bitstat.errors import ServerError
from bitstat.keys import Keys, set_bitmap
from bitstat.store import wrapped_errors
from exactly import batches, model, same_answers, schema
from faultservers import ReplicatedCluster
from model import Model
from test_identity import SHARD, assert_same, schema_args, stream
from test_resharding import Nodes, cluster_laid_out, text

pytestmark = pytest.mark.slow
Laid = tuple[Any, Nodes, str, list[int]]


@pytest.fixture
def laid_out(tmp_path: Path) -> Iterator[Laid]:
    """test_resharding's: node 1 serves the namespace's slots, node 0 the rest, node 2 none."""
    yield from cluster_laid_out(tmp_path)


def slot_of(tag: str) -> int:
    return int(redis.crc.key_slot(tag.encode()))


def move(nodes: Nodes, slot: int, source: int, target: int) -> None:
    """The whole slot moved by a hand other than bitstat's (a client connected before knows
    nothing of it)."""
    nodes.begin(slot, source, target, share=1.0)
    nodes.finish(slot, source, target)


def namespace_keys(nodes: Nodes, ns: str) -> int:
    """How many keys of the namespace every master holds, counted on each node itself."""
    found = set()
    for client in nodes.clients:
        for pattern in Keys(ns).patterns:
            found.update(client.scan_iter(match=pattern, count=1000))
    return len(found)


def actor_sets_of_shard(nodes: Nodes, ns: str) -> int:
    """The actor sets of shard 0 (its all-actors key and every `:a:` key), counted on the
    nodes themselves."""
    keys = Keys(ns)
    found = {k for c in nodes.clients for k in c.scan_iter(match=keys.actors_pattern(0))}
    return len(found) + 1


def test_forget_alias_and_drop_reach_a_master_the_client_never_knew(laid_out: Laid) -> None:
    """Shard 0's slot moves to the master that had no slot when the clients connected: each
    call, by a client that has not met the move yet, finds that master's keys."""
    cluster, nodes, ns, _ = laid_out
    args = schema_args("int")
    forgetter, aliaser, dropper = (
        bitstat.connect(cluster.url, namespace=ns, schema=bitstat.Schema(**args)) for _ in range(3)
    )
    model = Model(**args)
    rnd = random.Random(11)
    events = stream(rnd, "int", 300, people=20)
    try:
        assert forgetter.track_many(events).recorded == model.track_many(events)[0]
        move(nodes, slot_of(Keys(ns).shard_tag(0)), source=1, target=2)

        sets = actor_sets_of_shard(nodes, ns)  # (a set left empty by forget is deleted)
        done = forgetter.forget(4)
        model.forget(4)
        assert done.scanned == sets
        assert_same(forgetter, model, [4, 5])

        aliaser.alias(5, 7)
        model.alias(5, 7)
        assert_same(aliaser, model, [4, 5, 7])

        held = namespace_keys(nodes, ns)
        assert dropper.drop() == held
        assert namespace_keys(nodes, ns) == 0
    finally:
        for st in (forgetter, aliaser, dropper):
            st.close()


def test_asyncio_forget_and_drop_reach_a_master_the_client_never_knew(laid_out: Laid) -> None:
    cluster, nodes, ns, _ = laid_out
    args = schema_args("int")
    model = Model(**args)
    events = stream(random.Random(12), "int", 300, people=20)

    async def main() -> None:
        schema = bitstat.Schema(**args)
        forgetter = await bitstat.aio.connect(cluster.url, namespace=ns, schema=schema)
        dropper = await bitstat.aio.connect(cluster.url, namespace=ns)
        try:
            recorded = (await forgetter.track_many(events)).recorded
            assert recorded == model.track_many(events)[0]
            move(nodes, slot_of(Keys(ns).shard_tag(0)), source=1, target=2)
            sets = actor_sets_of_shard(nodes, ns)
            done = await forgetter.forget(4)
            model.forget(4)
            assert done.scanned == sets
            for event in ("visit", "signup", "purchase"):
                got = forgetter.actors(event).between("2026-09-01", "2026-11-14")
                want = model.actors(event).between("2026-09-01", "2026-11-14")
                assert sorted([a async for a in got.ids()]) == sorted(want.ids())
            held = namespace_keys(nodes, ns)
            assert await dropper.drop() == held
            assert namespace_keys(nodes, ns) == 0
        finally:
            await forgetter.close()
            await dropper.close()

    asyncio.run(main())


@pytest.mark.parametrize("ids", ["int", "map"])
def test_forget_and_alias_wait_for_a_slot_caught_half_moved(laid_out: Laid, ids: str) -> None:
    """Shard 0's slot stops half moved (half its actor sets on each node): a script over the
    shard's sets is refused (TRYAGAIN) until the move ends a moment later, longer than
    redis-py's own tries; forget and alias wait for it, then do their whole work once. The
    first move goes to the master that had no slot at connect (found by SCAN mid-move)."""
    cluster, nodes, ns, _ = laid_out
    args = schema_args(ids)
    st = bitstat.connect(cluster.url, namespace=ns, schema=bitstat.Schema(**args), deadline=30)
    model = Model(**args)
    rnd = random.Random(13)
    events = stream(rnd, ids, 300, people=20)
    slot = slot_of(Keys(ns).shard_tag(0))
    in_shard_0 = (e["user"] for e in events if not isinstance(e["user"], int) or e["user"] < SHARD)
    probes = list(dict.fromkeys(in_shard_0))[:8]
    try:
        assert st.track_many(events).recorded == model.track_many(events)[0]
        for source, target, step in ((1, 2, "forget"), (2, 0, "alias")):
            nodes.begin(slot, source, target, share=0.5)
            assert nodes.keys(source, slot) and nodes.keys(target, slot), "not half way"
            ender = threading.Timer(0.8, nodes.finish, (slot, source, target))
            ender.start()
            try:
                if step == "forget":
                    st.forget(probes[0])
                    model.forget(probes[0])
                else:
                    st.alias(probes[1], probes[2])
                    model.alias(probes[1], probes[2])
            finally:
                ender.join()
            assert nodes.owner(slot) == target
        assert_same(st, model, probes)
    finally:
        st.close()


class Masters:
    """A ReplicatedCluster's masters, as test_resharding's `Nodes` takes a cluster."""

    def __init__(self, cluster: ReplicatedCluster) -> None:
        self.masters = cluster.masters
        self.ports = [node.port for node in cluster.nodes]
        self.servers = cluster.nodes

    def node(self, index: int) -> redis.Redis:
        return self.servers[index].client()


def tracked_around(
    url: str, ns: str, api: str, events: list[list[dict[str, Any]]], between: Callable[[], None]
) -> None:
    """Each event by track(), on one client of `api` connected with durability="replicated":
    the first list, then `between()`, then the second."""
    options: dict[str, Any] = {"namespace": ns, "durability": "replicated", "deadline": 3}
    before, after = events
    if api == "sync":
        with bitstat.connect(url, **options) as st:
            for event in before:
                st.track(event)
            between()
            for event in after:
                st.track(event)
        return

    async def main() -> None:
        async with await bitstat.aio.connect(url, **options) as st:
            for event in before:
                await st.track(event)
            between()
            for event in after:
                await st.track(event)

    asyncio.run(main())


@pytest.mark.parametrize("api", ["sync", "asyncio"])
def test_replicated_track_follows_a_slot_moved_after_connect(tmp_path: Path, api: str) -> None:
    """durability="replicated": track() pushes on a pipeline to the queue's master (WAIT counts
    that connection's writes). Its slot moves to another master by other hands: the master
    answers MOVED, and the push goes to the new one (it failed every try, until a restart);
    the events queued before and after are each recorded once."""
    cluster = ReplicatedCluster(tmp_path / "cluster").start()
    nodes = Nodes(Masters(cluster))  # type: ignore[arg-type]
    ns = f"t-{uuid.uuid4().hex[:8]}"
    slot = slot_of(Keys(ns).meta_tag)
    source = nodes.owner(slot)
    st = bitstat.connect(cluster.url(0), namespace=ns, schema=schema())
    want = model()
    events = batches(2, 20, seed=21)
    try:
        moving = partial(move, nodes, slot, source, (source + 1) % cluster.masters)
        tracked_around(cluster.url(0), ns, api, events, moving)
        for batch in events:
            want.track_many(batch)
        same_answers(st, want)
    finally:
        st.close()
        nodes.close()
        cluster.stop()


def test_a_redirect_keeps_its_word_in_the_error() -> None:
    """redis-py's cluster parser takes "MOVED" off the reply it makes a MovedError of: the
    error a caller sees says what the server answered."""
    with pytest.raises(ServerError) as raised, wrapped_errors("queueing an event"):
        raise rex.MovedError("6918 127.0.0.1:7002")
    assert str(raised.value) == (
        "queueing an event: the server answered with an error: MOVED 6918 127.0.0.1:7002"
    )
    assert raised.value.transient and raised.value.refused


def id_map(client: Any, ns: str) -> tuple[dict[str, int], dict[int, str], int]:
    """(id -> offset of the forward buckets, offset -> id of the reverse ones, the next-offset
    counter) of a namespace's id map, read by `client` (the master that holds it, or a cluster
    client)."""
    keys = Keys(ns)
    forward, reverse = {}, {}
    for key in client.scan_iter(match=f"{keys.ids_tag}:f:*"):
        forward.update({k.decode(): int(v) for k, v in client.hgetall(key).items()})
    for key in client.scan_iter(match=f"{keys.id_reverse_prefix}*"):
        bucket = int(key.decode().rpartition(":")[2])
        reverse.update({(bucket << 7) + int(k): v.decode() for k, v in client.hgetall(key).items()})
    return forward, reverse, int(client.get(keys.ids_next) or 0)


def sharing_forward_buckets(ns: str, taken: list[str], count: int) -> list[str]:
    """`count` new ids whose forward buckets hold ids already (keys that exist: a script that
    names only them runs on the slot's old master while the slot moves)."""
    keys = Keys(ns)
    buckets = {keys.id_forward(t) for t in taken}
    names = (f"n-{i}" for i in itertools.count())
    return list(itertools.islice((n for n in names if keys.id_forward(n) in buckets), count))


def test_new_ids_wait_for_an_id_map_slot_half_moved(laid_out: Laid) -> None:
    """The id map's slot stops half moved: its reverse buckets (offset -> id) on the new master,
    the counter and forward buckets (id -> offset) still on the old. A batch of new ids is
    refused until the move ends, then maps each id once: no forward entry without its reverse
    one (ids() lists every actor), no offset handed out and lost. (ids.lua named the reverse
    buckets itself, undeclared: it wrote the forward entries, then failed on a reverse bucket
    that was not local, and the ids it had mapped never had a name.)"""
    cluster, nodes, ns, _ = laid_out
    args = {"ids": "map", "segment": ["country"]}
    st = bitstat.connect(cluster.url, namespace=ns, schema=bitstat.Schema(**args), deadline=30)
    model = Model(**args)

    def visits(users: list[str], day: int) -> list[dict[str, Any]]:
        return [
            {"event": "visit", "user": u, "time": f"2026-10-{day:02d}", "country": "NL"}
            for u in users
        ]

    taken = [f"u-{i}" for i in range(300)]
    new = sharing_forward_buckets(ns, taken, 60)
    slot = slot_of(Keys(ns).ids_tag)
    try:
        assert st.track_many(visits(taken, 1)).recorded == model.track_many(visits(taken, 1))[0]
        nodes.begin(slot, source=1, target=0, share=0.0)
        reverse = [k for k in nodes.keys(1, slot) if ":r:" in text(k)]
        nodes.migrate(1, 0, reverse)
        ender = threading.Timer(0.8, nodes.finish, (slot, 1, 0))
        ender.start()
        try:
            recorded = st.track_many(visits(new + taken[:5], 2)).recorded
        finally:
            ender.join()
        assert recorded == model.track_many(visits(new + taken[:5], 2))[0]
        for day in ("2026-10-01", "2026-10-02", "2026-10"):
            got = sorted(st.actors("visit").between(day, day).ids())
            assert got == sorted(model.actors("visit").between(day, day).ids()), day
            assert st.unique("visit", day) == model.unique("visit", day)
        forward, reverse_map, counter = id_map(nodes.clients[0], ns)
        assert sorted(forward) == sorted(taken + new)
        assert reverse_map == {o: i for i, o in forward.items()}
        assert counter == len(forward)  # (every offset handed out names an actor)
    finally:
        st.close()


def test_ids_mapped_by_two_writers_name_every_offset(cluster_url: str, namespace: str) -> None:
    """On a cluster ids.lua is told which reverse buckets it may write, from the next offset as
    its client last saw it. A client that has not seen another's 3,000 offsets names the wrong
    ones: the script writes nothing and says the next offset, and the client calls again."""
    schema = bitstat.Schema(ids="map")
    first, second = (
        bitstat.connect(cluster_url, namespace=namespace, schema=schema) for _ in range(2)
    )
    users = [f"u-{i}" for i in range(3010)]
    client = servers.client_for(cluster_url)
    try:
        assert second.track_many([{"event": "e", "user": "u-0"}]).recorded == 1
        events = [{"event": "e", "user": u, "time": "2026-10-01"} for u in users]
        assert first.track_many(events[:3000]).recorded == 3000
        assert second.track_many(events[3000:]).recorded == 10  # (its guess: offset 1)
        assert sorted(second.actors("e").day(2026, 10, 1).ids()) == sorted(users)
        forward, reverse, counter = id_map(client, namespace)
        assert sorted(forward) == sorted(users)
        assert reverse == {o: i for i, o in forward.items()}
        assert counter == len(users)
    finally:
        client.close()
        first.drop()
        first.close()
        second.close()


def test_alias_and_forget_wait_for_an_id_map_slot_half_moved(laid_out: Laid) -> None:
    """The id map's slot stops half moved (its reverse buckets on the new master): alias links
    a new id to a user, forget then erases the user, each refused until the move ends and then
    done whole. (identity.lua named the reverse buckets and alias sets itself, undeclared: the
    link wrote the new id's forward entry, then failed on the user's alias set, which was not
    local; forget never found that id, and its forward entry outlived the user.)"""
    cluster, nodes, ns, _ = laid_out
    st = bitstat.connect(cluster.url, namespace=ns, schema=bitstat.Schema(ids="map"), deadline=30)
    users = [f"u-{i}" for i in range(50)]
    anon = sharing_forward_buckets(ns, users, 1)[0]
    slot = slot_of(Keys(ns).ids_tag)
    try:
        st.track_many([{"event": "e", "user": u, "time": "2026-10-01"} for u in users])
        nodes.begin(slot, source=1, target=0, share=0.0)
        nodes.migrate(1, 0, [k for k in nodes.keys(1, slot) if ":r:" in text(k)])
        ender = threading.Timer(0.8, nodes.finish, (slot, 1, 0))
        ender.start()
        try:
            assert st.alias(anon, "u-3").outcome == "linked"
        finally:
            ender.join()
        assert sorted(st.forget(anon).ids) == sorted([anon, "u-3"])
        assert sorted(st.actors("e").day(2026, 10, 1).ids()) == sorted(set(users) - {"u-3"})
        forward, reverse, counter = id_map(nodes.clients[0], ns)
        assert sorted(forward) == sorted(set(users) - {"u-3"})
        assert reverse == {o: i for i, o in forward.items()}
        assert counter == len(users)
        assert not list(nodes.clients[0].scan_iter(match=f"{Keys(ns).id_alias_prefix}*"))
    finally:
        st.close()


def value_map(client: Any, ns: str, event: str, prop: str) -> tuple[dict[str, int], int]:
    """(value -> id of the buckets and of the one hash before them, the next-id counter) of a
    property's value ids, read by `client` (the master that holds them)."""
    keys = Keys(ns)
    ids: dict[str, int] = {}
    old = keys.value_ids(event, prop)
    for key in [old, *client.scan_iter(match=f"{keys.value_buckets(event, prop)}*")]:
        for value, id_ in client.hgetall(key).items():
            assert value.decode() not in ids, f"{value!r} numbered twice"
            ids[value.decode()] = int(id_)
    return ids, int(client.get(keys.value_next(event, prop)) or 0)


@pytest.mark.parametrize("moved", ["half the buckets", "no bucket"])
def test_values_numbered_while_their_slot_is_half_moved(laid_out: Laid, moved: str) -> None:
    """The slot of an event's value ids stops half moved, in a namespace from before the
    buckets (some ids still in the one hash of then). A batch of values, new ones in buckets on
    the old master first, then every value of the one hash, numbers each value once: ids
    distinct and dense, the counter past them all. With half the buckets on the new master it
    is refused until the move ends; with none, it runs on the old master. (values.lua named the
    buckets itself, undeclared: it gave the first values ids in the buckets on the old master,
    then failed on a bucket that was not local, or on the one hash, emptied by the batch and so
    no longer local, before the counter moved on: the next batch's values got those ids too.)"""
    cluster, nodes, ns, _ = laid_out
    args: dict[str, Any] = {"unique": ["ip"], "periods": ("day", "month")}
    st = bitstat.connect(cluster.url, namespace=ns, schema=bitstat.Schema(**args), deadline=30)
    model = Model(**args)
    keys = Keys(ns)

    def tracked(ips: list[str], day: int) -> None:
        events = [
            {"event": "purchase", "user": i % 50, "time": f"2026-10-{day:02d}", "ip": ip}
            for i, ip in enumerate(ips)
        ]
        with bitstat.connect(cluster.url, namespace=ns, deadline=30) as fresh:  # (no ids kept)
            assert fresh.track_many(events).recorded == len(events)
        model.track_many(events)

    def bucket(ip: str) -> str:
        return keys.value_bucket("purchase", "ip", ip)

    old = [f"10.0.{i // 256}.{i % 256}" for i in range(2000)]
    by_bucket: dict[str, list[str]] = {}
    for ip in old:
        by_bucket.setdefault(bucket(ip), []).append(ip)
    # in the one hash: values whose buckets hold others too (the buckets stay)
    legacy = [ips[0] for ips in by_bucket.values() if len(ips) > 1][:50]
    slot = slot_of(keys.event_tag("purchase"))
    failed: ServerError | None = None
    try:
        tracked(old, 1)
        source = nodes.clients[1]
        for ip in legacy:  # as a bitstat before the buckets left them
            source.hset(keys.value_ids("purchase", "ip"), ip, source.hget(bucket(ip), ip))
            source.hdel(bucket(ip), ip)
        nodes.begin(slot, source=1, target=0, share=0.0)
        buckets = [text(k) for k in nodes.keys(1, slot) if ":v:ip:" in text(k)]
        if moved == "half the buckets":
            nodes.migrate(1, 0, [b.encode() for b in buckets[::2]])
            buckets = buckets[1::2]
        local = set(buckets)
        candidates = [f"10.1.{i // 256}.{i % 256}" for i in range(5000)]
        new = [ip for ip in candidates if bucket(ip) in local][:80]
        if moved == "half the buckets":
            new = new[:40] + [ip for ip in candidates if bucket(ip) not in local][:40]
        assert len(new) == 80
        ender = threading.Timer(0.8, nodes.finish, (slot, 1, 0))
        ender.start()
        try:
            tracked(new[:40] + legacy + old[1000:1010] + new[40:], 2)
        except ServerError as exc:
            failed = exc
        finally:
            ender.join()
        tracked([f"10.2.0.{i}" for i in range(100)], 3)
        ids, counter = value_map(nodes.clients[0], ns, "purchase", "ip")
        given = Counter(ids.values())
        assert sorted(i for i, n in given.items() if n > 1) == [], "ids given to two values"
        assert sorted(given) == list(range(len(ids)))
        assert counter == len(ids) == 2000 + 80 + 100
        assert failed is None, failed
        for day in ("2026-10-01", "2026-10-02", "2026-10-03", "2026-10"):
            assert st.distinct("purchase", "ip", day) == model.distinct("purchase", "ip", day)
    finally:
        st.close()


def test_a_small_batch_numbers_a_value_once_while_its_slot_is_half_moved(laid_out: Laid) -> None:
    """A value numbered before, new to a client, comes in a small batch: the write itself
    numbers it (apply.lua's V op, which names the value's bucket itself, undeclared) while the
    event's slot stops half moved, every key moved but that bucket. The new master would
    serve the script (ASKING) with the bucket still on the old one, and give the value a second
    id; it never runs it there: the batch's marker, always new, is among its declared keys, so
    a slot half moved answers TRYAGAIN until the move ends. The value keeps its id, the batch
    counts once, and the move ends (MIGRATE of the bucket finds no copy: no BUSYKEY)."""
    cluster, nodes, ns, _ = laid_out
    args: dict[str, Any] = {"unique": ["ip"], "periods": ("day", "month")}
    st = bitstat.connect(cluster.url, namespace=ns, schema=bitstat.Schema(**args), deadline=30)
    model = Model(**args)
    keys = Keys(ns)
    ip = "10.0.0.7"
    first = [{"event": "purchase", "user": u, "time": "2026-10-01", "ip": ip} for u in (1, 2)]
    later = [{"event": "purchase", "user": 3, "time": "2026-10-02", "ip": ip}]
    try:
        assert st.track_many(first).recorded == 2
        model.track_many(first)
        bucket = keys.value_bucket("purchase", "ip", ip)
        slot = slot_of(keys.event_tag("purchase"))
        nodes.begin(slot, source=1, target=0, share=0.0)
        nodes.migrate(1, 0, [k for k in nodes.keys(1, slot) if text(k) != bucket])
        ender = threading.Timer(0.8, nodes.finish, (slot, 1, 0))
        ender.start()
        try:
            with bitstat.connect(cluster.url, namespace=ns, deadline=30) as fresh:  # no ids
                assert fresh.track_many(later).recorded == 1
            model.track_many(later)
        finally:
            ender.join()
        assert nodes.owner(slot) == 0, "the move did not end"
        assert value_map(nodes.clients[0], ns, "purchase", "ip") == ({ip: 0}, 1)
        for day in ("2026-10-01", "2026-10-02", "2026-10"):
            assert st.distinct("purchase", "ip", day) == model.distinct("purchase", "ip", day)
            assert st.unique("purchase", day) == model.unique("purchase", day), day
    finally:
        st.close()


@pytest.mark.parametrize("bitmap", ["not built", "built by another reader"])
def test_actor_ids_read_while_their_slot_is_half_moved(laid_out: Laid, bitmap: str) -> None:
    """Shard 0's slot stops half moved, every key still on the old master: the ids of a day's
    actors (a small set, kept as a Redis set: the script builds a bitmap of it to be read) are
    read whole, the bitmap built by another reader a moment before or not. (sets.lua named
    that bitmap itself, undeclared: not there, it was not local on the old master; there, it
    was deleted before being built again, and so no longer local. The read failed.)"""
    cluster, nodes, ns, _ = laid_out
    st = bitstat.connect(cluster.url, namespace=ns, deadline=30)
    users = list(range(0, 200_000, 10_000))  # (sparse: a Redis set of offsets)
    events = [{"event": "visit", "user": u, "time": "2026-10-01"} for u in users]
    slot = slot_of(Keys(ns).shard_tag(0))
    try:
        assert st.track_many(events).recorded == 20
        if bitmap == "built by another reader":
            kept = set_bitmap(Keys(ns).actors(0, "visit", "2026-10-01"))
            nodes.clients[1].set(kept, b"\xff", px=30_000)
        nodes.begin(slot, source=1, target=0, share=0.0)
        ender = threading.Timer(0.8, nodes.finish, (slot, 1, 0))
        ender.start()
        try:
            got = sorted(st.actors("visit").day(2026, 10, 1).ids())
        finally:
            ender.join()
        assert got == users
        assert nodes.owner(slot) == 0
    finally:
        st.close()
