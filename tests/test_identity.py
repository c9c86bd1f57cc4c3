"""alias and forget on every backend, every answer against the model (tests/model.py).

Random streams with aliases and erasures between their batches: unique actors, series,
actor sets and their ids, membership, retention, funnels and stickiness must be the model's
after each step, and the counters (totals, counts, sums) must not move. Plus what the model
cannot see: the id map freed, an alias or forget cut off midway and run again, merges across
id shards (and cluster slots), sets growing into bitmaps, the async API.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest

import bitstat
import bitstat.aio
from bitstat import record
from bitstat.errors import QueryError
from bitstat.identity import Identity
from bitstat.keys import Keys
from bitstat.transport import Transport
from model import Model

FIRST = datetime(2026, 9, 1)
DAYS = 75
EVENTS = ("visit", "signup", "purchase")
SHARD = 2**20
LATER = "2027-01-01"


def schema_args(ids: str) -> dict[str, Any]:
    return {
        "ids": ids,
        "periods": ("day", "week", "month", "year"),
        "count": ["country"],
        "sum": ["amount"],
        "segment": ["country"],
    }


@pytest.fixture
def pair(server_url: str, namespace: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    ids = getattr(request, "param", "map")
    args = schema_args(ids)
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(**args))
    yield st, Model(**args)
    st.drop()
    st.close()


def actor_of(rnd: random.Random, ids: str, people: int) -> Any:
    n = rnd.randrange(people)
    if ids == "int":  # some in a second id shard: merges cross shards (and cluster slots)
        return n if n % 3 else 3 * SHARD + n
    return rnd.choice([f"anon-{n}", f"user-{n}", n])


def stream(rnd: random.Random, ids: str, n: int, people: int = 40) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        when = FIRST + timedelta(days=rnd.randrange(DAYS), hours=rnd.randrange(24))
        ev: dict[str, Any] = {
            "event": rnd.choice(EVENTS),
            "user": actor_of(rnd, ids, people),
            "time": when.isoformat(),
            "country": rnd.choice(["NL", "DE", "FR"]),
        }
        if ev["event"] == "purchase":
            ev["amount"] = rnd.randrange(1, 100)
        out.append(ev)
    return out


def ids_key(values: Any) -> list[str]:
    return sorted(map(str, values))


def assert_same(st: bitstat.Stats, model: Model, probes: list[Any]) -> None:
    ranges = [("2026-09-01", "2026-11-14"), ("2026-09", None), ("2026-10-05", "2026-10-20")]
    for event in EVENTS:
        for start, end in ranges:
            assert st.unique(event, start, end) == model.unique(event, start, end), (event, start)
            assert st.total(event, start, end) == model.total(event, start, end)
            assert st.unique(event, start, end, country="NL") == model.unique(
                event, start, end, country="NL"
            )
        assert st.counts(event, "country", "2026-09-01", "2026-11-14") == model.counts(
            event, "country", "2026-09-01", "2026-11-14"
        )
        assert list(st.series(event, "2026-09-01", "2026-11-14", by="week")) == list(
            model.series(event, "2026-09-01", "2026-11-14", by="week")
        )
        got = st.actors(event).between("2026-09-01", "2026-11-14")
        want = model.actors(event).between("2026-09-01", "2026-11-14")
        assert ids_key(got.ids()) == ids_key(want.ids())
        assert len(~got) == len(~want)
        for actor in probes:
            assert (actor in got) == (actor in want), actor
    assert st.sums("purchase", "amount", "2026-09-01", "2026-11-14") == model.sums(
        "purchase", "amount", "2026-09-01", "2026-11-14"
    )
    for kind in ("first", "recurring"):
        got_r = st.retention("visit", "purchase", "2026-09-01", periods=6, kind=kind, now=LATER)
        want_r = model.retention("visit", "purchase", "2026-09-01", periods=6, kind=kind, now=LATER)
        assert [(r.cohort, r.size, list(r.counts)) for r in got_r.rows] == want_r
    steps = ["visit", "signup", "purchase"]
    for within in ("3d", "14d"):
        assert list(st.funnel(steps, "2026-09-01", "2026-10-31", within=within)) == list(
            model.funnel(steps, "2026-09-01", "2026-10-31", within=within)
        )
    assert dict(st.stickiness("visit", "2026-10-01", "2026-10-31")) == model.stickiness(
        "visit", "2026-10-01", "2026-10-31"
    )


@pytest.mark.parametrize("pair", ["map", "int"], indirect=True)
@pytest.mark.parametrize("seed", [1, 2])
def test_aliases_and_erasures_between_batches_agree_with_the_model(pair: Any, seed: int) -> None:
    st, model = pair
    ids = st.schema.ids
    rnd = random.Random(seed)
    probes: list[Any] = []
    for round_ in range(4):
        events = stream(rnd, ids, 120)
        assert st.track_many(events).recorded == model.track_many(events)[0]
        for _ in range(6):
            anon, user = actor_of(rnd, ids, 40), actor_of(rnd, ids, 40)
            st.alias(anon, user)
            model.alias(anon, user)
            probes += [anon, user]
        gone = actor_of(rnd, ids, 40)
        st.forget(gone)
        model.forget(gone)
        probes.append(gone)
        if round_ % 2:
            assert_same(st, model, probes[-10:])
    assert_same(st, model, probes)


def test_a_merged_person_counts_once_in_uniques_retention_and_funnels(
    server_url: str, namespace: str
) -> None:
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    try:
        st.track_many(
            [
                {"event": "visit", "user": "anon-7", "time": "2026-10-05T09:00"},
                {"event": "visit", "user": "anon-7", "time": "2026-10-12T09:00"},
                {"event": "signup", "user": "u-7", "time": "2026-10-12T10:00"},
                {"event": "visit", "user": "u-7", "time": "2026-10-20T10:00"},
            ]
        )
        assert st.unique("visit", "2026-10") == 2
        assert list(st.funnel(["visit", "signup"], "2026-10-05", None, within="2d")) == [
            ("visit", 1),
            ("signup", 0),
        ]
        done = st.alias("anon-7", "u-7")
        assert (done.outcome, done.moved > 0) == ("merged", True)
        assert st.unique("visit", "2026-10") == 1
        assert list(st.actors("visit").month(2026, 10).ids()) == ["u-7"]
        assert "anon-7" in st.actors("visit").month(2026, 10)
        assert list(st.funnel(["visit", "signup"], "2026-10-05", None, within="14d")) == [
            ("visit", 1),
            ("signup", 1),
        ]
        rows = st.retention("visit", "visit", "2026-10-05", periods=3, now="2027-01-01").rows
        assert [list(r.counts) for r in rows] == [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
        assert st.total("visit", "2026-10") == 3  # counted per event, unchanged
        # the anonymous id stands for the user from now on
        st.track("visit", user="anon-7", time="2026-10-25T10:00")
        assert list(st.actors("visit").day(2026, 10, 25).ids()) == ["u-7"]
        assert st.alias("anon-7", "u-7").outcome == "same"
        assert st.unique("visit", "2026-10") == 1
    finally:
        st.drop()


def test_alias_of_unknown_ids_links_or_renames(server_url: str, namespace: str) -> None:
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    try:
        assert st.alias("anon-1", "u-1").outcome == "linked"  # neither known yet
        st.track("visit", user="anon-1", time="2026-10-01")
        assert list(st.actors("visit").day(2026, 10, 1).ids()) == ["u-1"]
        st.track("visit", user="anon-2", time="2026-10-01")
        assert st.alias("anon-2", "u-2").outcome == "renamed"  # u-2 names anon-2's actor
        assert sorted(st.actors("visit").day(2026, 10, 1).ids()) == ["u-1", "u-2"]
        assert st.alias("anon-3", "u-2").outcome == "linked"
        # a chain: u-2's ids (anon-2, anon-3) follow it into u-1
        assert st.alias("u-2", "u-1").outcome == "merged"
        assert st.unique("visit", "2026-10-01") == 1
        for alias in ("anon-2", "anon-3", "u-2"):
            st.track("visit", user=alias, time="2026-10-02")
        assert list(st.actors("visit").day(2026, 10, 2).ids()) == ["u-1"]
        with pytest.raises(QueryError) as refused:
            st.alias("", "u-1")
        assert str(refused.value).startswith("anon: ") and "field" not in str(refused.value)
    finally:
        st.drop()


def test_forget_frees_the_id_map_and_keeps_the_counters(
    server_url: str, namespace: str, redis_client: Any
) -> None:
    schema = bitstat.Schema(ids="map", count=["country"], top=["item"], segment=["country"])
    st = bitstat.connect(server_url, namespace=namespace, schema=schema)
    try:
        for user in ("anon-9", "u-9", "u-10"):
            st.track("buy", user=user, time="2026-10-03", country="NL", item="sku")
        st.alias("anon-9", "u-9")
        done = st.forget("anon-9")  # any id of the person erases the person
        assert sorted(done.ids) == ["anon-9", "u-9"]
        assert done.removed > 0 and done.scanned >= done.removed
        assert done.kept == ["event totals", "counts per value", "top values"]
        assert list(st.actors("buy").month(2026, 10).ids()) == ["u-10"]
        assert list(st.actors("buy", country="NL").month(2026, 10).ids()) == ["u-10"]
        assert st.unique("buy", "2026-10") == 1
        assert "u-9" not in st.actors("buy").month(2026, 10)
        assert st.total("buy", "2026-10") == 3
        assert st.counts("buy", "country", "2026-10") == {"NL": 3}
        for id_ in ("anon-9", "u-9"):
            assert redis_client.hget(st._ns.keys.id_forward(id_), id_) is None
        assert st.forget("u-9").found is False  # again: nothing left to do
        # the id comes back as a new actor when it is tracked again
        st.track("buy", user="u-9", time="2026-10-04")
        assert sorted(st.actors("buy").month(2026, 10).ids()) == ["u-10", "u-9"]
    finally:
        st.drop()


def test_forget_with_integer_ids(server_url: str, namespace: str) -> None:
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(ids="int"))
    try:
        st.track_many(
            [{"event": "e", "user": u, "time": "2026-10-01"} for u in (1, 2, 5 * SHARD + 3)]
        )
        assert st.forget(5 * SHARD + 3).ids == [5 * SHARD + 3]
        assert st.forget(7).found is False
        assert sorted(st.actors("e").day(2026, 10, 1).ids()) == [1, 2]
        with pytest.raises(QueryError) as refused:
            st.forget("not-a-number")
        # (it said "actor: field 'user': ...": the id is no event's field here)
        assert str(refused.value).startswith("actor: actor id must be")
    finally:
        st.drop()


def steps_then_stop(st: bitstat.Stats, op: Any, calls: int) -> None:
    """Run the first `calls` server calls of an operation, then drop it (a process killed)."""
    reply = None
    for _ in range(calls):
        try:
            call = op.send(reply)
        except StopIteration:  # done in fewer calls
            return
        reply = st._store.perform(call)
    op.close()


@pytest.mark.parametrize("ids", ["map", "int"])
def test_an_alias_or_forget_cut_off_midway_is_exact_when_run_again(
    server_url: str, namespace: str, ids: str
) -> None:
    args = schema_args(ids)
    rnd = random.Random(5)
    events = stream(rnd, ids, 300, people=12)
    pairs = [(actor_of(rnd, ids, 12), actor_of(rnd, ids, 12)) for _ in range(6)]
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(**args))
    model = Model(**args)
    try:
        st.track_many(events)
        model.track_many(events)
        for k, (anon, user) in enumerate(pairs):
            steps_then_stop(st, Identity(st._ns).alias(anon, user), 1 + k % 4)
            st.alias(anon, user)
            st.alias(anon, user)  # and once more, done: changes nothing
            model.alias(anon, user)
        gone = pairs[0][1]
        steps_then_stop(st, Identity(st._ns).forget(gone), 2)
        st.forget(gone)
        model.forget(gone)
        assert_same(st, model, [a for p in pairs for a in p])
    finally:
        st.drop()


def test_sets_grow_into_bitmaps_as_aliases_add_to_them(
    server_url: str, namespace: str, redis_client: Any
) -> None:
    """Sparse day sets (Redis sets of offsets) take merged offsets past 512 members and past
    the density rule: they become bitmaps, as apply.lua would make them."""
    args: dict[str, Any] = {"ids": "int"}
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(**args))
    model = Model(**args)
    try:
        spread = [SHARD - 1 - 1000 * k for k in range(510)]  # a sparse set of 510 members
        events = [{"event": "e", "user": u, "time": "2026-10-01"} for u in spread]
        others = [{"event": "e", "user": 40 + k, "time": "2026-10-02"} for k in range(8)]
        for batch in (events, others):
            st.track_many(batch)
            model.track_many(batch)
        key = st._ns.keys.actors(0, "e", "2026-10-01")
        assert redis_client.type(key) in ("set", b"set")
        for k in range(8):  # moved into the day of 2026-10-01 past 512 members
            extra = {"event": "e", "user": 10 + k, "time": "2026-10-01"}
            st.track(extra)
            model.track(extra)
            st.alias(10 + k, 40 + k)
            model.alias(10 + k, 40 + k)
        assert redis_client.type(key) in ("string", b"string")
        for day in (1, 2):
            got = st.actors("e").day(2026, 10, day)
            want = model.actors("e").day(2026, 10, day)
            assert sorted(got.ids()) == sorted(want.ids())
            assert len(got) == len(want)
    finally:
        st.drop()


def test_the_async_api(embedded_url: str, namespace: str) -> None:
    async def main() -> None:
        st = await bitstat.aio.connect(
            embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map")
        )
        try:
            await st.track_many(
                [
                    {"event": "e", "user": "a", "time": "2026-10-01"},
                    {"event": "e", "user": "b", "time": "2026-10-02"},
                ]
            )
            assert (await st.alias("a", "b")).outcome == "merged"
            assert await st.unique("e", "2026-10") == 1
            assert (await st.forget("b")).ids == ["b", "a"]
            assert await st.unique("e", "2026-10") == 0
        finally:
            await st.drop()
            await st.close()

    asyncio.run(main())


def steps_with_a_write_after(st: bitstat.Stats, op: Any, mode: str, write: Any) -> Any:
    """Run an operation, calling `write()` once right after its first actors.lua call of
    `mode` (an event recorded while the sweep runs, to a key it has passed): its answer."""
    reply, written = None, False
    try:
        while True:
            call = op.send(reply)
            reply = st._store.perform(call)
            if not written and call.args[:1] == ("actors.lua",) and call.args[2][0] == mode:
                write()
                written = True
    except StopIteration as done:
        return done.value


def test_an_event_recorded_while_forget_sweeps_is_erased_too(
    server_url: str, namespace: str
) -> None:
    """The same process records the actor (its id cached: the old offset) after forget's sweep
    passed the keys: the call sweeps again, so no query counts the erased actor (the old offset
    is named by no id afterwards: a second forget could not reach it)."""
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    try:
        st.track_many([{"event": "e", "user": u, "time": "2026-10-01"} for u in ("x", "y")])

        def write() -> None:
            st.track_many([{"event": "e", "user": "x", "time": "2026-10-02"}])

        done = steps_with_a_write_after(st, Identity(st._ns).forget("x"), "remove", write)
        assert done.ids == ["x"]
        assert st.unique("e", "2026-10-01", "2026-10-02") == 1
        assert list(st.actors("e").between("2026-10-01", "2026-10-02").ids()) == ["y"]
        assert len(~st.actors("e").day(2026, 10, 1)) == 0
    finally:
        st.drop()


def test_an_event_recorded_while_alias_moves_is_merged_too(server_url: str, namespace: str) -> None:
    """The anonymous id recorded (cached: its old offset) after the move passed the keys: the
    call moves again, so the person counts once (alias again would answer 'same', moving
    nothing)."""
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    try:
        st.track_many([{"event": "e", "user": u, "time": "2026-10-01"} for u in ("a", "u")])

        def write() -> None:
            st.track_many([{"event": "e", "user": "a", "time": "2026-10-02"}])

        done = steps_with_a_write_after(st, Identity(st._ns).alias("a", "u"), "move", write)
        assert done.outcome == "merged"
        assert st.unique("e", "2026-10-01", "2026-10-02") == 1
        assert list(st.actors("e").day(2026, 10, 2).ids()) == ["u"]
        assert st.alias("a", "u").outcome == "same"
    finally:
        st.drop()


def test_ids_numbered_in_a_dropped_namespace_are_forgotten_when_it_is_dropped_again(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that dropped the namespace (twice: the second found no token to note) numbered
    an id in it by an alias (a -> 0) without storing the schema or the namespace's token;
    another client's drop then changed no token, so the first went on with a -> 0, and the
    next id numbered (b) got 0 too: one actor where two came (found by
    tests/test_stateful_clients.py). No token at all now means look again."""
    monkeypatch.setattr(record, "SCHEMA_TTL", 0.0)
    schema = bitstat.Schema(ids="map")
    writer = bitstat.connect(server_url, namespace=namespace, schema=schema)
    admin = bitstat.connect(server_url, namespace=namespace, schema=schema)
    try:
        writer.track_many([{"event": "e", "user": "u", "time": "2026-10-01"}])
        writer.drop()
        writer.drop()
        assert writer.alias("p", "a").outcome == "linked"
        admin.drop()
        writer.track_many([{"event": "e", "user": u, "time": "2026-10-02"} for u in "ab"])
        assert admin.unique("e", "2026-10-02") == 2
        assert sorted(admin.actors("e").day(2026, 10, 2).ids()) == ["a", "b"]
    finally:
        writer.close()
        admin.drop()
        admin.close()


@pytest.mark.parametrize("token", ["made", "none (before the token)"])
def test_a_namespace_with_a_schema_and_no_token_keeps_the_ids_learnt(
    server_url: str,
    namespace: str,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    token: str,
) -> None:
    """A namespace written before the namespace token (bitstat before 2026-12-07) holds its
    schema and no token, and nothing stores one there: every look at the schema (each 5 s of
    writing) made its writers forget every actor and value number learnt, as after a drop,
    and number them all again, for good. A schema without a token is no drop."""
    monkeypatch.setattr(record, "SCHEMA_TTL", 0.0)  # a look before every call
    schema = bitstat.Schema(ids="map", unique=["ip"])
    with bitstat.connect(server_url, namespace=namespace, schema=schema) as st:
        st.track_many([{"event": "e", "user": "u", "ip": "x", "time": "2026-10-01"}])
    if token != "made":
        redis_client.delete(Keys(namespace).made)
    numbered: list[int] = []
    real = Transport.map_ids

    def counted(self: Transport, *args: Any, **kwargs: Any) -> Any:
        numbered.append(1)
        return (yield from real(self, *args, **kwargs))

    with bitstat.connect(server_url, namespace=namespace) as st:
        st.track_many([{"event": "e", "user": "u", "ip": "x", "time": "2026-10-02"}])
        monkeypatch.setattr(Transport, "map_ids", counted)
        for day in ("2026-10-03", "2026-10-04"):
            st.track_many([{"event": "e", "user": "u", "ip": "x", "time": day}])
        assert numbered == []  # (u was learnt by the first batch)
        assert st.unique("e", "2026-10-01", "2026-10-04") == 1
        st.drop()


@pytest.mark.parametrize("change", ["alias", "forget"])
@pytest.mark.parametrize("api", ["track_many", "track"])
def test_another_client_drops_the_ids_it_cached_once_the_map_changed(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch, change: str, api: str
) -> None:
    """Another client (another process: caches of its own) recorded the anonymous id, or the
    id to forget, and so holds its offset. After the alias merged it, or forget erased it,
    that client went on writing to the old offset for the life of its process: the person
    counted twice, the forgotten id counted under an offset no id names (out of reach of a
    later forget). It now drops its cached ids at its next read of the schema."""
    schema = bitstat.Schema(ids="map")
    writer = bitstat.connect(server_url, namespace=namespace, schema=schema)
    admin = bitstat.connect(server_url, namespace=namespace)
    monkeypatch.setattr(record, "SCHEMA_TTL", 0.0)  # (the writer reads it again at each write)

    def write(day: int) -> None:
        event = {"event": "e", "user": "a", "time": f"2026-10-{day:02d}"}
        if api == "track":
            writer.track(event)
            writer.flush()
        else:
            writer.track_many([event])

    try:
        writer.track_many([{"event": "e", "user": "u", "time": "2026-10-01"}])
        write(1)
        if change == "alias":
            assert admin.alias("a", "u").outcome == "merged"
        else:
            assert admin.forget("a").ids == ["a"]
        write(2)
        days = admin.actors("e").between("2026-10-01", "2026-10-02")
        if change == "alias":  # one person, known as u
            assert admin.unique("e", "2026-10-01", "2026-10-02") == 1
            assert list(days.ids()) == ["u"]
        else:  # a came back after it was forgotten: a new actor, whom forget reaches again
            assert sorted(days.ids()) == ["a", "u"] and len(days) == 2
            assert admin.forget("a").found
            assert list(days.ids()) == ["u"] and len(days) == 1
    finally:
        writer.close()
        admin.drop()
        admin.close()


@pytest.mark.parametrize("own", ["alias", "forget"])
def test_a_client_that_moves_the_epoch_itself_still_drops_what_another_merged(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch, own: str
) -> None:
    """Another client merged `a` into `u` (a new identity epoch); this one, before its next
    read of the schema, merged or forgot an id of its own: it wrote its own epoch over the
    other's and noted it as read, so it never saw the other's change and went on writing `a`
    to its old offset (the person counted twice) for its whole life. Writing its epoch, it
    now finds the one it replaced and, if that is not the one it last read, drops its ids."""
    schema = bitstat.Schema(ids="map")
    writer = bitstat.connect(server_url, namespace=namespace, schema=schema)
    admin = bitstat.connect(server_url, namespace=namespace)
    try:
        writer.track_many([{"event": "e", "user": u, "time": "2026-10-01"} for u in "auxyz"])
        monkeypatch.setattr(record, "SCHEMA_TTL", 1e9)  # (no read of the schema meanwhile)
        assert admin.alias("a", "u").outcome == "merged"
        if own == "alias":
            assert writer.alias("x", "y").outcome == "merged"
        else:
            assert writer.forget("z").ids == ["z"]
        monkeypatch.setattr(record, "SCHEMA_TTL", 0.0)  # (read at the next write)
        writer.track_many([{"event": "e", "user": "a", "time": "2026-10-02"}])
        assert admin.unique("e", "2026-10-02") == 1
        assert list(admin.actors("e").day(2026, 10, 2).ids()) == ["u"]
    finally:
        writer.close()
        admin.drop()
        admin.close()


def test_forget_says_so_when_events_keep_arriving_under_the_old_offset(
    embedded_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another client (its id cached, the schema not read again yet) records the forgotten id
    after every sweep: forget gave up after its sweeps without a word, the id counted under an
    offset no id names. It now logs a warning saying so."""
    st = bitstat.connect(embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    other = bitstat.connect(embedded_url, namespace=namespace)
    try:
        st.track_many([{"event": "e", "user": u, "time": "2026-10-01"} for u in ("x", "y")])
        other.track_many([{"event": "e", "user": "x", "time": "2026-10-01"}])  # (x cached)
        op, reply = Identity(st._ns).forget("x"), None
        with caplog.at_level(logging.WARNING, logger="bitstat"):
            try:
                while True:
                    call = op.send(reply)
                    reply = st._store.perform(call)
                    if call.args[:1] == ("actors.lua",) and call.args[2][0] == "remove":
                        other.track_many([{"event": "e", "user": "x", "time": "2026-10-02"}])
            except StopIteration:
                pass
        warned = [r.getMessage() for r in caplog.records if "kept arriving" in r.getMessage()]
        assert len(warned) == 1 and "stay counted under it" in warned[0]
    finally:
        other.close()
        st.drop()
        st.close()


def test_two_clients_aliasing_the_same_ids_at_once_answer_merged_once(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes ran alias("a", "u") at once: each found two actors to merge, each moved
    sets, and both answered 'merged' (the data was right). The id map's script decides which
    call merged them; the other now answers 'same', as a call after it does."""
    schema = bitstat.Schema(ids="map")
    one = bitstat.connect(server_url, namespace=namespace, schema=schema)
    other = bitstat.connect(server_url, namespace=namespace)
    try:
        events = [
            {"event": "e", "user": u, "time": f"2026-10-0{d}"} for u, d in (("a", 1), ("u", 2))
        ]
        one.track_many(events)
        both = threading.Barrier(2)
        move = Identity.move

        def moved_together(self: Identity, source: int, target: int) -> Any:
            both.wait(timeout=60)  # each call has read the id map: two actors, a merge due
            return (yield from move(self, source, target))

        monkeypatch.setattr(Identity, "move", moved_together)
        with ThreadPoolExecutor(2) as pool:
            done = list(pool.map(lambda st: st.alias("a", "u"), (one, other)))
        assert sorted(d.outcome for d in done) == ["merged", "same"]
        # a's sets (its day, week, month and year, and all actors), moved by one call or the other
        assert sum(d.moved for d in done) == 5
        assert one.unique("e", "2026-10-01", "2026-10-02") == 1
        assert list(other.actors("e").day(2026, 10, 1).ids()) == ["u"]
        assert one.alias("a", "u").outcome == other.alias("a", "u").outcome == "same"
    finally:
        other.close()
        one.drop()
        one.close()


def test_a_merge_sent_again_after_its_reply_was_lost_still_tells_other_clients(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge step whose reply is lost is sent again (redis-py's cluster client does so after
    a timeout): the second run finds anon pointing to the user and answers 'same'. alias() took
    that for another call's merge and left the identity epoch as it was, so a client that had
    cached the anonymous id's offset went on writing there: one person counted twice."""
    schema = bitstat.Schema(ids="map")
    admin = bitstat.connect(server_url, namespace=namespace, schema=schema)
    writer = bitstat.connect(server_url, namespace=namespace)
    monkeypatch.setattr(record, "SCHEMA_TTL", 0.0)  # (the writer reads it again at each write)
    run_lua = Transport.run_lua

    def sent_twice(self: Transport, name: str, keys: Any, args: Any) -> Any:
        if name == "identity.lua" and args[0] == "merged":
            yield from run_lua(self, name, keys, args)  # (its reply lost)
        return (yield from run_lua(self, name, keys, args))

    try:
        writer.track_many([{"event": "e", "user": u, "time": "2026-10-01"} for u in "au"])
        monkeypatch.setattr(Transport, "run_lua", sent_twice)
        admin.alias("a", "u")
        monkeypatch.setattr(Transport, "run_lua", run_lua)
        writer.track_many([{"event": "e", "user": "a", "time": "2026-10-02"}])
        assert admin.unique("e", "2026-10-01", "2026-10-02") == 1
        assert list(admin.actors("e").day(2026, 10, 2).ids()) == ["u"]
    finally:
        writer.close()
        admin.drop()
        admin.close()
