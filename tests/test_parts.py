"""A large batch of several event names goes to a single server in parts (`record.parts_of`):
an event name each (a large name over three weeks or more cut into pieces of weeks), each
planned while the server writes the one before and kept under the markers of its weeks (and
of its name, when it holds the whole name); the batch's marker says "in parts" first (so no
write of the whole batch lands after it) and "in" once every part is. Every answer is compared
with the reference model: through lost replies, a process dying between parts, a retry whose
events differ, a write of the whole batch after its parts began, a foreign key in one part,
sums refused in one part, the same batch id sent again, and asyncio.

The tests lower PART_MIN, so that batches of a few hundred events go in parts, and check that
they did (the parts' markers are there)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitstat
import bitstat.aio
import servers
from bitstat import calls, record, store
from bitstat.events import parse_batch
from bitstat.keys import Keys
from bitstat.transport import Script, Transport
from exactly import LABELS, SETTINGS, batches, same_answers
from model import Model
from proxy import Proxy

NAMES = ("purchase", "refund", "visit", "signup", "search")
APPLY = Script("apply.lua").sha.encode()


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "PART_MIN", 8)


def events(size: int, seed: int, names: tuple[str, ...] = NAMES) -> list[dict[str, Any]]:
    """`size` events of `names`, the first name the most frequent, over two days."""
    return batches(1, size, seed, names)[0]


def same_for_every_name(st: bitstat.Stats, want: Model) -> None:
    for name in NAMES:
        if any(r.event == name for r in want.records):  # (else an unknown event)
            same_answers(st, want, event=name)


def test_parts_are_an_event_name_each_the_largest_first() -> None:
    cols = parse_batch(events(400, seed=3), bitstat.Schema(**SETTINGS))
    parts = record.parts_of(cols)
    assert parts is not None and len(parts) == len(NAMES)
    rows = np.concatenate([p.rows for p in parts])
    assert sorted(rows.tolist()) == list(range(len(cols)))  # every row once
    for part in parts:
        assert {cols.names[c] for c in cols.codes[part.rows].tolist()} == {part.name}
        assert (np.diff(part.rows) > 0).all()  # in batch order: sums are checked in order
        assert part.whole and part.weeks == (2968,)  # (small: not cut; 2026-11-20..21)
    sizes = [len(p.rows) for p in parts]
    assert sizes == sorted(sizes, reverse=True)
    one_name = parse_batch(events(400, seed=3, names=("visit",)), bitstat.Schema(**SETTINGS))
    assert record.parts_of(one_name) is None
    assert record.parts_of(cols.take(np.arange(7))) is None  # below PART_MIN
    forced = record.parts_of(one_name, forced=True)  # an earlier try went in parts
    assert forced is not None and [p.name for p in forced] == ["visit"]


def test_more_names_than_parts_go_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "PARTS", 3)
    cols = parse_batch(events(400, seed=3), bitstat.Schema(**SETTINGS))
    assert record.parts_of(cols) is None
    assert record.parts_of(cols, forced=True) is not None


def part_markers(client: Any, namespace: str) -> list[bytes]:
    """The markers of the event names of the namespace's batches written in parts (a part of a
    whole name sets its name's marker beside its weeks')."""
    found = client.scan_iter(match="{" + namespace + "}:batch:*:part:*", count=1000)
    return [k for k in found if not re.search(rb":part:[^:]+:-?[0-9]+$", k)]


def week_markers(client: Any, namespace: str) -> list[bytes]:
    """The markers of the weeks of the parts of the namespace's batches."""
    found = client.scan_iter(match="{" + namespace + "}:batch:*:part:*", count=1000)
    return [k for k in found if re.search(rb":part:[^:]+:-?[0-9]+$", k)]


@pytest.fixture
def client(embedded_url: str) -> Iterator[Any]:
    c = servers.client_for(embedded_url)
    yield c
    c.close()


@pytest.fixture
def fresh(embedded_url: str) -> Iterator[bitstat.Stats]:
    st = bitstat.connect(
        embedded_url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=bitstat.Schema(**SETTINGS)
    )
    yield st
    st.drop()
    st.close()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4),
    seed=st.integers(0, 10_000),
    given_id=st.booleans(),
)
def test_batches_in_parts_answer_as_the_model(
    embedded_url: str, client: Any, sizes: list[int], seed: int, given_id: bool
) -> None:
    st_ = bitstat.connect(
        embedded_url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=bitstat.Schema(**SETTINGS)
    )
    want = Model(**SETTINGS)
    try:
        for n, size in enumerate(sizes):
            batch = events(size, seed + n)
            batch_id = f"b-{n}" if given_id else None
            got = st_.track_many(batch, batch_id=batch_id)
            assert (got.recorded, got.rejected) == (len(batch), [])
            want.track_many(batch, batch_id=batch_id)
        if given_id:  # the same id again records nothing, in parts or not
            assert st_.track_many(events(sizes[0], seed), batch_id="b-0").recorded == 0
        same_for_every_name(st_, want)
        big = [events(size, seed + n) for n, size in enumerate(sizes) if size >= record.PART_MIN]
        if any(len({e["event"] for e in batch}) > 1 for batch in big):
            assert part_markers(client, st_.namespace)
    finally:
        st_.drop()
        st_.close()


def test_a_batch_in_parts_leaves_what_the_whole_batch_leaves(
    fresh: bitstat.Stats, embedded_url: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same events in parts and in one call: the same data under every key."""
    batch = events(600, seed=11)
    fresh.track_many(batch, batch_id="x")
    assert len(part_markers(client, fresh.namespace)) == len(NAMES)
    monkeypatch.setattr(record, "PART_MIN", 10**9)
    whole = bitstat.connect(
        embedded_url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=bitstat.Schema(**SETTINGS)
    )
    try:
        whole.track_many(batch, batch_id="x")
        assert not part_markers(client, whole.namespace)
        assert contents(client, fresh.namespace) == contents(client, whole.namespace)
    finally:
        whole.drop()
        whole.close()


def contents(client: Any, namespace: str) -> dict[str, Any]:
    """Every data key of a namespace (its name without the namespace) and what it holds: a set
    or a bitmap as its members alike (which one a set is depends on how it grew)."""
    out: dict[str, Any] = {}
    for pattern in ("{" + namespace + "}*", "{" + namespace + ":*"):
        for raw in client.scan_iter(match=pattern, count=1000):
            key = raw.decode()
            if ":batch:" in key or key == Keys(namespace).made:
                continue  # markers: by part, or one for the batch; a token each namespace has
            kind = client.type(key).decode()
            if kind == "string":
                value: Any = bitmap_members(client.get(key))
            elif kind == "set":
                value = {int(m) if m.isdigit() else m for m in client.smembers(key)}
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            else:
                value = kind
            out[key.replace(namespace, "NS", 1)] = value
    return out


def bitmap_members(data: bytes) -> set[int]:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    return set(np.flatnonzero(bits).tolist())


@contextmanager
def through(proxy: Proxy) -> Iterator[tuple[bitstat.Stats, Model]]:
    """A Stats writing through `proxy` whose scripts are loaded (later writes go by SHA, which
    `cut_replies` looks for), and the model of what it recorded; dropped after."""
    st_ = bitstat.connect(
        proxy.url(), namespace=f"t-{uuid.uuid4().hex[:8]}", schema=bitstat.Schema(**SETTINGS)
    )
    want = Model(**SETTINGS)
    try:
        st_.track_many(events(20, seed=1))
        want.track_many(events(20, seed=1))
        yield st_, want
    finally:
        st_.drop()
        st_.close()


def test_lost_replies_of_parts_count_each_event_once(proxy: Proxy) -> None:
    with through(proxy) as (st_, want):
        for n in range(8):
            batch = events(300, seed=100 + n)
            proxy.cut_replies(1 + n % 4, APPLY)  # the replies of one to four parts lost
            got = st_.track_many(batch, batch_id=f"b-{n}" if n % 2 else None)
            assert (got.recorded, got.rejected) == (len(batch), [])
            want.track_many(batch)
        assert proxy.cut >= 8  # (a cut drops the tickets read after it: how many, timing says)
        client = redis.Redis.from_url(proxy.url())
        try:
            assert len(part_markers(client, st_.namespace)) >= 8 * 2
        finally:
            client.close()
        same_for_every_name(st_, want)


class Died(Exception):
    """The process dies here (nothing of bitstat catches it)."""


def test_the_first_part_is_planned_while_the_server_numbers_the_values(
    fresh: bitstat.Stats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is marked as going in parts before its new values are sent to be numbered, so
    the mark's answer does not wait for them: the first part is planned meanwhile, and their
    ids read after (the mark sent after the values waited for them, and planning began once
    they were numbered). Its new actor ids go to be mapped first, and the values are made
    ready and sent while the server maps them (the client waited for the ids before)."""
    steps: list[str] = []

    def spied(method: str) -> None:
        real = getattr(Transport, method)

        def step(self: Transport, *args: Any, **kwargs: Any) -> Any:
            steps.append(method)
            return (yield from real(self, *args, **kwargs))

        monkeypatch.setattr(Transport, method, step)

    for method in ("mark_parts", "send_ids", "send_values", "ids_sent", "values_sent"):
        spied(method)
    real_planning = record.planning

    def planning(*args: Any, **kwargs: Any) -> Any:
        steps.append("planning")
        return real_planning(*args, **kwargs)

    monkeypatch.setattr(record, "planning", planning)
    batch = events(300, seed=11)
    assert fresh.track_many(batch).recorded == len(batch)
    assert steps[:6] == [
        "mark_parts",
        "send_ids",
        "send_values",
        "ids_sent",
        "planning",
        "values_sent",
    ]
    want = Model(**SETTINGS)
    want.track_many(batch)
    same_for_every_name(fresh, want)


def test_a_batch_the_mark_finds_in_sends_no_values_to_number(
    fresh: bitstat.Stats, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another sender of the batch id completes the batch between the look at its marker and
    the mark: the mark answers with it, and neither its actor ids nor its values are sent to
    be numbered (their replies, never read, closed their connections: the next call made them
    again, and the client forgot every id it had learnt, as after a server's restart)."""
    steps: list[str] = []
    real_mark = Transport.mark_parts

    def mark(self: Transport, key: str, ttl: int) -> Any:
        client.set(key, b"1")  # the other sender's batch went in meanwhile
        steps.append("mark_parts")
        return (yield from real_mark(self, key, ttl))

    def spied(method: str) -> None:
        real = getattr(Transport, method)

        def step(self: Transport, *args: Any) -> Any:
            steps.append(method)
            return (yield from real(self, *args))

        monkeypatch.setattr(Transport, method, step)

    spied("send_ids")
    spied("send_values")
    batch = events(300, seed=11)
    with monkeypatch.context() as m:
        m.setattr(Transport, "mark_parts", mark)
        assert fresh.track_many(batch, batch_id="b").recorded == 0
    assert steps == ["mark_parts"]
    made = fresh._store.links.made
    fresh.track_many(events(5, seed=3))
    assert fresh._store.links.made == made  # (no connection made again)


@pytest.mark.parametrize("lost", [1, 2], ids=["the-actor-ids", "the-values"])
def test_a_reply_lost_while_the_batch_was_numbered_counts_it_once(
    fresh: bitstat.Stats, monkeypatch: pytest.MonkeyPatch, lost: int
) -> None:
    """A batch in parts sends its new actor ids, then its new values, without waiting, and
    reads their numbers after: the connection of either breaks once the server has numbered
    them. The try fails before any part is written; the next numbers them again (get or
    create: the same numbers) and the batch counts once, every actor where it belongs."""
    reads = {"n": 0}
    read = store.Unread.read

    def breaking(self: store.Unread) -> list[Any]:
        replies = read(self)  # the server did number them
        reads["n"] += 1
        if reads["n"] == lost:
            raise redis.ConnectionError("connection lost reading the numbers")
        return replies

    monkeypatch.setattr(store.Unread, "read", breaking)
    want = Model(**SETTINGS)
    for n, batch in enumerate(batches(2, 300, seed=91)):
        assert fresh.track_many(batch, batch_id=f"b{n}").recorded == len(batch)
        want.track_many(batch, batch_id=f"b{n}")
    assert reads["n"] > lost
    same_for_every_name(fresh, want)
    for name in {r.event for r in want.records}:
        got = fresh.actors(name).month(2026, 11).ids()
        assert sorted(got) == sorted(want.actors(name).month(2026, 11).ids())


def dying_at(monkeypatch: pytest.MonkeyPatch, method: str, nth: int) -> None:
    """The `nth` call of a Transport step raises Died before it does anything, once."""
    real = getattr(Transport, method)
    seen = {"n": 0}

    def step(self: Transport, *args: Any, **kwargs: Any) -> Any:
        seen["n"] += 1
        if seen["n"] == nth:
            raise Died(method)
        return (yield from real(self, *args, **kwargs))

    monkeypatch.setattr(Transport, method, step)


@pytest.mark.parametrize(
    "where",
    [("send_apply", 3), ("apply_answers", 2), ("mark", 1)],
    ids=["sending-the-third-part", "reading-the-second-answer", "before-the-last-mark"],
)
@pytest.mark.parametrize("retry", ["in-parts", "whole"])
def test_a_process_dying_between_parts_leaves_a_batch_its_id_completes_once(
    fresh: bitstat.Stats,
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    where: tuple[str, int],
    retry: str,
) -> None:
    """Its retry, in parts or by a caller whose batch would go whole (a queue claim's, another
    PART_MIN), goes on in parts: the parts already in count once."""
    want = Model(**SETTINGS)
    batch = events(300, seed=21)
    with monkeypatch.context() as m:
        dying_at(m, *where)
        with pytest.raises(Died):
            fresh.track_many(batch, batch_id="b")
    marker = Keys(fresh.namespace).batch(Keys(fresh.namespace).meta_tag, "b")
    assert client.get(marker) == record.IN_PARTS
    if retry == "whole":
        monkeypatch.setattr(record, "PART_MIN", 10**9)
    fresh.track_many(batch, batch_id="b")
    want.track_many(batch, batch_id="b")
    assert client.get(marker) == b"1"
    assert fresh.track_many(batch, batch_id="b").recorded == 0
    same_for_every_name(fresh, want)


def test_a_retry_that_accepts_more_events_keeps_what_each_name_recorded(
    fresh: bitstat.Stats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events too far ahead of the clock are rejected; by a retry a day later they are not.
    A name whose part went in keeps what it recorded (its events accepted only now are not
    added); a name with no part in yet is recorded whole."""
    batch = events(300, seed=31)
    t0 = 1_795_600_000.0  # 2026-11-25: the batch's days (20-21) are behind it
    visits = [i for i, e in enumerate(batch) if e["event"] == "visit"]
    refunds = [i for i, e in enumerate(batch) if e["event"] == "refund"]
    late = set(visits + refunds[::2])  # every visit, every other refund: past the horizon
    for i in late:
        batch[i]["time"] = "2026-11-28T12:00:00"
    assert fresh.track_many(batch[:1], batch_id="warm").recorded == 1  # (its names known)
    schema = bitstat.Schema(**SETTINGS)
    assert {i for i, _ in parse_batch(batch, schema, t0 + 86400 * 2).rejected} == late
    assert not parse_batch(batch, schema, t0 + 86400 * 3).rejected
    with monkeypatch.context() as m:
        dying_at(m, "apply_answers", 2)  # the parts are all sent; then the process dies
        with pytest.raises(Died):
            fresh.track_many(batch, batch_id="b", now=t0 + 86400 * 2)
    later = fresh.track_many(batch, batch_id="b", now=t0 + 86400 * 3)
    assert later.rejected == []
    want = Model(**SETTINGS)
    want.track_many(batch[:1])
    # what went in: the first try's events, and the visits (no part of theirs was in)
    want.track_many([e for i, e in enumerate(batch) if i not in late or i in visits])
    same_for_every_name(fresh, want)
    assert fresh.total("refund", "2026-11") == want.total("refund", "2026-11") < len(refunds)


def test_a_whole_write_answered_in_parts_goes_on_in_parts(
    fresh: bitstat.Stats, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of the whole batch that reaches the server after another try of it began in
    parts (no marker asked for first: a new id's try, or a queue claim's sent ahead) finds the
    batch's marker saying so: apply.lua writes nothing, and the call goes on in parts."""
    want = Model(**SETTINGS)
    batch = events(300, seed=51)
    keys = Keys(fresh.namespace)
    monkeypatch.setattr(record.AUTO_IDS, "next", lambda: "auto:test:1")
    marker = keys.batch(keys.meta_tag, "auto:test:1")
    client.set(marker, record.IN_PARTS)
    client.set(keys.batch_part("auto:test:1", "purchase"), b"1")  # that part went in
    monkeypatch.setattr(record, "PART_MIN", 10**9)  # this try's batch goes whole
    got = fresh.track_many(batch)
    others = [e for e in batch if e["event"] != "purchase"]
    want.track_many(others)
    assert client.get(marker) == b"1"
    assert len(part_markers(client, fresh.namespace)) == len(NAMES)
    # the purchases' part was in before this call: reported by the try that wrote it
    assert got.recorded == len(others)
    for name in NAMES[1:]:
        same_answers(fresh, want, event=name)
    with pytest.raises(bitstat.UnknownEvent):
        fresh.total("purchase", "2026-11")


def test_a_try_that_finds_the_parts_mark_renews_it(
    fresh: bitstat.Stats, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark must outlive the parts' markers a try writes: else a later try of the batch
    that would go whole, finding no mark, would write those parts again."""
    keys = Keys(fresh.namespace)
    marker = keys.batch(keys.meta_tag, "b")
    client.set(marker, record.IN_PARTS, ex=2)
    with monkeypatch.context() as m:
        dying_at(m, "send_apply", 1)
        with pytest.raises(Died):
            fresh.track_many(events(300, seed=61), batch_id="b")
    assert client.get(marker) == record.IN_PARTS
    assert client.ttl(marker) > record.DEFAULT_BATCH_TTL  # (and past the try's deadline)


def test_a_whole_write_after_its_parts_began_writes_nothing_and_goes_on_in_parts(
    fresh: bitstat.Stats, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of the whole batch late on the wire (its caller gave up, or a takeover of a
    queue claim) finds the batch's marker saying "in parts": apply.lua writes nothing, and
    the call records the batch in parts."""
    want = Model(**SETTINGS)
    batch = events(300, seed=41)
    keys = Keys(fresh.namespace)
    client.set(keys.batch(keys.meta_tag, "b"), record.IN_PARTS)
    client.set(keys.batch_part("b", "purchase"), b"1")  # that part went in (it wrote nothing)
    monkeypatch.setattr(record, "PART_MIN", 10**9)  # this caller's batch goes whole
    fresh.track_many(batch, batch_id="b")
    want.track_many([e for e in batch if e["event"] != "purchase"], batch_id="b")
    assert client.get(keys.batch(keys.meta_tag, "b")) == b"1"
    for name in NAMES:
        if name != "purchase":
            same_answers(fresh, want, event=name)
    with pytest.raises(bitstat.UnknownEvent):
        fresh.total("purchase", "2026-11")  # its part's marker said it was in


def test_a_foreign_key_in_one_part_keeps_the_others_and_the_same_id_completes_the_batch(
    fresh: bitstat.Stats, client: Any
) -> None:
    want = Model(**SETTINGS)
    batch = events(300, seed=5)
    # a key of the least frequent name holds a list where bitstat keeps a sorted set
    foreign = Keys(fresh.namespace).counts("search", "2026-11", "country")
    client.rpush(foreign, "x")
    with pytest.raises(bitstat.ServerError) as caught:
        fresh.track_many(batch, batch_id="b")
    assert foreign in str(caught.value)
    purchases = sum(e["event"] == "purchase" for e in batch)
    with pytest.raises(bitstat.UnknownEvent):  # its part: nothing written, not its name
        fresh.total("search", "2026-11")
    assert fresh.total("purchase", "2026-11") == purchases  # another part: all of it
    client.delete(foreign)
    got = fresh.track_many(batch, batch_id="b")
    # the caller's call again reports what it wrote: the part the foreign key had refused
    assert got.recorded == sum(e["event"] == "search" for e in batch)
    want.track_many(batch, batch_id="b")
    assert fresh.track_many(batch, batch_id="b").recorded == 0
    same_for_every_name(fresh, want)


def test_a_batch_whose_own_sums_could_pass_the_limit_rejects_those_events_alone(
    fresh: bitstat.Stats, client: Any
) -> None:
    """(Such a batch is checked in order before anything is sent, and goes whole.)"""
    want = Model(**SETTINGS)
    batch = events(300, seed=9)
    huge = [i for i, e in enumerate(batch) if e["event"] == "refund"][:3]
    for i in huge:  # the second and third carry the total past 1e308
        batch[i]["amount"] = 9e307
    got = fresh.track_many(batch, batch_id="b")
    recorded, rejected = want.track_many(batch, batch_id="b")
    assert [i for i, _ in got.rejected] == rejected == huge[1:]
    assert got.recorded == recorded == len(batch) - 2
    again = fresh.track_many(batch, batch_id="b")  # the marker answers with the same events
    assert again.recorded == 0 and [i for i, _ in again.rejected] == huge[1:]
    assert not part_markers(client, fresh.namespace)
    same_for_every_name(fresh, want)


@pytest.mark.parametrize("dies", [False, True])
def test_stored_totals_refuse_a_part_which_is_then_checked_in_order(
    fresh: bitstat.Stats, client: Any, monkeypatch: pytest.MonkeyPatch, dies: bool
) -> None:
    """A part whose sums could pass the limit with what is stored is refused by the server,
    checked against the stored totals event by event, and sent again without the events that
    would carry a total past it; a retry after a death before the batch's last mark reports
    the same events rejected, and counts the others once."""
    want = Model(**SETTINGS)
    first = [{**events(1, seed=2, names=("refund",))[0], "amount": 9e307}]
    fresh.track_many(first)
    want.track_many(first)
    batch = events(300, seed=12)
    refunds = [i for i, e in enumerate(batch) if e["event"] == "refund"]
    batch[refunds[0]]["amount"] = 2e307  # 9e307 + 2e307 > 1e308
    if dies:
        with monkeypatch.context() as m:
            dying_at(m, "mark", 1)
            with pytest.raises(Died):
                fresh.track_many(batch, batch_id="b")
    got = fresh.track_many(batch, batch_id="b")
    recorded, rejected = want.track_many(batch, batch_id="b")
    assert [i for i, _ in got.rejected] == rejected == [refunds[0]]
    if not dies:
        assert got.recorded == recorded
    assert part_markers(client, fresh.namespace)
    same_for_every_name(fresh, want)


def test_parts_sent_while_the_server_lost_its_scripts_are_written_again(
    fresh: bitstat.Stats, client: Any
) -> None:
    want = Model(**SETTINGS)
    for n in range(3):
        client.script_flush()  # (a restarted server, or SCRIPT FLUSH by someone)
        batch = events(200, seed=70 + n)
        assert fresh.track_many(batch).recorded == len(batch)
        want.track_many(batch)
    assert part_markers(client, fresh.namespace)
    same_for_every_name(fresh, want)


def test_asyncio_records_batches_in_parts(embedded_url: str, client: Any) -> None:
    async def main() -> str:
        st_ = await bitstat.aio.connect(
            embedded_url,
            namespace=f"t-{uuid.uuid4().hex[:8]}",
            schema=bitstat.Schema(**SETTINGS),
        )
        want = Model(**SETTINGS)
        try:
            for n in range(3):
                batch = events(250, seed=40 + n)
                assert (await st_.track_many(batch)).recorded == len(batch)
                want.track_many(batch)
            assert part_markers(client, st_.namespace)
            for name in NAMES:
                for label in LABELS:
                    assert await st_.total(name, label) == want.total(name, label)
                    assert await st_.unique(name, label) == want.unique(name, label)
                    assert await st_.distinct(name, "ip", label) == want.distinct(name, "ip", label)
        finally:
            await st_.drop()
            await st_.close()
        return "done"

    assert asyncio.run(main()) == "done"


def test_a_batch_all_rejected_for_its_sums_leaves_a_concurrent_parts_mark_alone(
    fresh: bitstat.Stats, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole write whose every event a stored total refuses writes only the batch's marker,
    and only where none is: a writer of the same batch id that marked it "in parts" since
    keeps its mark, so a retry goes on with its parts (and counts what they wrote)."""
    first = [{**events(1, seed=2, names=("refund",))[0], "amount": 9e307}]
    fresh.track_many(first)
    batch = [{**e, "amount": 2e307} for e in events(8, seed=3, names=("refund",))]
    batch = [{**e, "time": first[0]["time"]} for e in batch]  # the same month's total
    keys = Keys(fresh.namespace)
    marker = keys.batch(keys.meta_tag, "b")
    checking = record.Recording.overflowing

    def concurrently(self: Any, *args: Any) -> Any:
        client.set(marker, record.IN_PARTS)  # another writer of "b" began its parts
        return (yield from checking(self, *args))

    monkeypatch.setattr(record.Recording, "overflowing", concurrently)
    got = fresh.track_many(batch, batch_id="b")
    assert got.recorded == 0 and [i for i, _ in got.rejected] == list(range(len(batch)))
    assert client.get(marker) == record.IN_PARTS
    monkeypatch.setattr(record.Recording, "overflowing", checking)
    client.delete(marker)  # (no concurrent writer) the same call marks the batch rejected
    assert fresh.track_many(batch, batch_id="b").recorded == 0
    assert client.get(marker) not in (None, record.IN_PARTS)
    assert fresh.total("refund", first[0]["time"][:7]) == 1


def test_a_lost_reply_costs_a_batch_in_parts_one_connection_refused(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a part's reply was lost, every later try was refused a connection made again
    (`calls.Links.check`): the try's other connections, closed with it, were made again one
    by one as its parts took them, so a lost reply cost a batch eight to twelve tries and
    their backoff (the eight batches here took 120 s). The idle connections are made again at
    the first refusal, so the next try's look counts them all."""
    refused = []
    check = calls.Links.check

    def counted(connection: Any) -> None:
        try:
            check(connection)
        except calls.MadeAgain:
            refused.append(connection)
            raise

    monkeypatch.setattr(calls.Links, "check", staticmethod(counted))
    with through(proxy) as (st_, want):
        for n in range(4):
            batch = events(300, seed=200 + n)
            refused.clear()
            proxy.cut_replies(1, APPLY)
            got = st_.track_many(batch)
            assert (got.recorded, got.rejected) == (len(batch), [])
            want.track_many(batch)
            assert len(refused) <= 1, n
        same_for_every_name(st_, want)


# A large name's part is cut by weeks (record.PIECES): below, batches of a few hundred events
# over eight weeks, with PIECE_MIN lowered so that they are cut.
WEEK_LABELS = [f"2026-W{w}" for w in range(40, 48)] + ["2026-10-07", "2026-11", "2026"]


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "PIECE_MIN", 10)


def over_weeks(size: int, seed: int) -> list[dict[str, Any]]:
    """`events`, their days spread over the eight weeks of 2026-09-28 to 2026-11-22."""
    out = events(size, seed)
    for i, e in enumerate(out):
        e["time"] = f"2026-{10 + (i * 7) % 2}-{1 + (i * 13) % 22:02d}" + e["time"][10:]
    return out


def same_over_weeks(st_: bitstat.Stats, want: Model) -> None:
    for name in NAMES:
        if not any(r.event == name for r in want.records):
            continue
        for label in WEEK_LABELS:
            assert st_.total(name, label) == want.total(name, label), (name, label)
            assert st_.unique(name, label) == want.unique(name, label), (name, label)
            assert st_.counts(name, "country", label) == want.counts(name, "country", label)
            got, expected = st_.sums(name, "amount", label), want.sums(name, "amount", label)
            assert got == pytest.approx(expected), (name, label)
            assert st_.distinct(name, "ip", label) == want.distinct(name, "ip", label)


def test_a_large_name_is_cut_into_pieces_of_consecutive_weeks(small_pieces: None) -> None:
    cols = parse_batch(over_weeks(600, seed=5), bitstat.Schema(**SETTINGS))
    parts = record.parts_of(cols)
    assert parts is not None
    rows = np.concatenate([p.rows for p in parts])
    assert sorted(rows.tolist()) == list(range(len(cols)))  # every row once
    weeks = record.week_numbers(cols.wall)
    target = max(record.PIECE_MIN, -(-len(cols) // record.PIECES))
    for p in parts:
        assert {cols.names[c] for c in cols.codes[p.rows].tolist()} == {p.name}
        assert (np.diff(p.rows) > 0).all()  # in batch order
        assert set(weeks[p.rows].tolist()) == set(p.weeks)  # its weeks, each with events
        of_name = sorted(set(weeks[cols.codes == cols.names.index(p.name)].tolist()))
        first = of_name.index(p.weeks[0])  # consecutive, of the weeks the name has
        assert list(p.weeks) == of_name[first : first + len(p.weeks)]
    counts = {name: int((cols.codes == c).sum()) for c, name in enumerate(cols.names)}
    large = {name for name, n in counts.items() if n >= 2 * target}  # 2/PIECES and more
    assert "purchase" in large and len(large) < len(NAMES)  # (both ways tried)
    assert {p.name for p in parts if not p.whole} == large
    mine = [p for p in parts if p.name == "purchase"]
    assert len(mine) > 1 and sum(len(p.rows) >= target for p in mine) >= len(mine) - 1
    assert len({w for p in mine for w in p.weeks}) == sum(len(p.weeks) for p in mine)
    sizes = [len(p.rows) for p in parts]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_pieces_of_weeks_answer_as_the_model(
    fresh: bitstat.Stats, client: Any, small_pieces: None, seed: int
) -> None:
    want = Model(**SETTINGS)
    for n in range(2):
        batch = over_weeks(500, seed=10 * seed + n)
        got = fresh.track_many(batch, batch_id=f"b-{n}" if n else None)
        assert (got.recorded, got.rejected) == (len(batch), [])
        want.track_many(batch)
    assert len(week_markers(client, fresh.namespace)) > 2 * 5 * len(NAMES)
    same_over_weeks(fresh, want)


@pytest.mark.parametrize("where", [("apply_answers", 2), ("apply_answers", 4)])
def test_a_retry_whose_pieces_fall_otherwise_counts_each_week_once(
    fresh: bitstat.Stats,
    client: Any,
    small_pieces: None,
    monkeypatch: pytest.MonkeyPatch,
    where: tuple[str, int],
) -> None:
    """Its first try dies with some pieces in; the retry cuts the names otherwise (another
    PIECES: a later batch size, another version): a piece one of whose weeks is in writes
    nothing, and its weeks go one by one, those in answering as they did."""
    warm = events(20, seed=1)  # (its scripts loaded: the parts sent at once are written)
    fresh.track_many(warm)
    batch = over_weeks(600, seed=41)
    with monkeypatch.context() as m:
        dying_at(m, *where)
        with pytest.raises(Died):
            fresh.track_many(batch, batch_id="b")
    # some pieces went in (sent before the process died: the server may still be on them)
    assert servers.eventually(lambda: bool(week_markers(client, fresh.namespace)))
    monkeypatch.setattr(record, "PIECES", 2)
    got = fresh.track_many(batch, batch_id="b")
    assert got.rejected == []
    assert fresh.track_many(batch, batch_id="b").recorded == 0
    want = Model(**SETTINGS)
    want.track_many(warm)
    want.track_many(batch)
    same_over_weeks(fresh, want)


def test_a_name_an_earlier_version_wrote_whole_is_not_written_again_in_pieces(
    fresh: bitstat.Stats, client: Any, small_pieces: None
) -> None:
    """Before weeks, a part was a name, under the name's marker alone: a try of the batch by
    this version, whose part of the name is cut into weeks, finds it in."""
    batch = over_weeks(600, seed=43)
    keys = Keys(fresh.namespace)
    client.set(keys.batch(keys.meta_tag, "b"), record.IN_PARTS)  # that try went in parts
    client.set(keys.batch_part("b", "purchase"), b"1")  # and wrote the purchases' part
    got = fresh.track_many(batch, batch_id="b")
    others = [e for e in batch if e["event"] != "purchase"]
    assert got.recorded == len(others)
    want = Model(**SETTINGS)
    want.track_many(others)
    same_over_weeks(fresh, want)
    with pytest.raises(bitstat.UnknownEvent):
        fresh.total("purchase", "2026")


def test_a_batch_over_fewer_weeks_is_not_cut(small_pieces: None) -> None:
    """A live stream's batch spans a week, or two: cut there, it cost more than it gained."""
    batch = over_weeks(600, seed=5)
    for e in batch:  # the weekend of 2026-11-22 and the Monday after
        e["time"] = f"2026-11-{21 + int(e['time'][9]) % 3}" + e["time"][10:]
    cols = parse_batch(batch, bitstat.Schema(**SETTINGS))
    parts = record.parts_of(cols)
    assert parts is not None and len(parts) == len(NAMES)
    assert {len(p.weeks) for p in parts} == {2} and all(p.whole for p in parts)


def test_lost_replies_of_pieces_count_each_event_once(proxy: Proxy, small_pieces: None) -> None:
    with through(proxy) as (st_, want):
        for n in range(4):
            batch = over_weeks(400, seed=300 + n)
            proxy.cut_replies(1 + n % 3, APPLY)
            got = st_.track_many(batch, batch_id=f"b-{n}" if n % 2 else None)
            assert (got.recorded, got.rejected) == (len(batch), [])
            want.track_many(batch)
        same_over_weeks(st_, want)


def purchases_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[dict[str, Any]], np.ndarray, record.Part]:
    """A batch over eight weeks, each row's week, and a piece of its purchases of three weeks
    or more (PIECES 4)."""
    monkeypatch.setattr(record, "PIECES", 4)
    batch = over_weeks(600, seed=5)
    cols = parse_batch(batch, bitstat.Schema(**SETTINGS))
    parts = record.parts_of(cols)
    assert parts is not None
    piece = next(p for p in parts if p.name == "purchase" and len(p.weeks) > 2)
    return batch, record.week_numbers(cols.wall), piece


def test_weeks_of_a_piece_cut_after_the_servers_scripts_were_lost_have_their_sums_checked(
    fresh: bitstat.Stats, client: Any, small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that lost its scripts (a restart) answers every part of the first pass "no
    script": no marker is looked at, and the parts go to the retry loop. There a piece one of
    whose weeks an earlier try wrote answers its marker and is cut into weeks, while another
    part is refused for its sums and checked in order. The weeks waited for the next round,
    which sent them with bound 0 ("checked in order": only final totals looked at) though no
    check had seen them: an event that carried a total past the limit on the way (+2e307 onto
    9e307, then -2e307) was recorded. A part's weeks now go in the round that cut it, before
    any check, under the batch's bound."""
    batch, weeks, piece = purchases_cut(monkeypatch)
    first, second = piece.weeks[:2]  # an earlier try wrote the first week of this piece
    up, down = [int(r) for r in piece.rows if weeks[r] == second][:2]
    for r, amount in ((up, 2e307), (down, -2e307)):  # the same keys, a net 0
        batch[r].update(amount=amount, country="NL", time=batch[up]["time"])
    refund = next(i for i, e in enumerate(batch) if e["event"] == "refund")
    batch[refund]["amount"] = 2e307  # refused with the stored 9e307: a check in order
    stored = [{**batch[up], "amount": 9e307}, {**batch[refund], "amount": 9e307}]
    want = Model(**SETTINGS)
    fresh.track_many(stored)
    want.track_many(stored)
    keys = Keys(fresh.namespace)
    client.set(keys.batch(keys.meta_tag, "b"), record.IN_PARTS)  # that try went in parts
    client.set(keys.batch_piece("b", "purchase", first), b"1")  # and wrote that week
    client.script_flush()  # (a restarted server)
    got = fresh.track_many(batch, batch_id="b")
    rest = [i for i, e in enumerate(batch) if e["event"] != "purchase" or weeks[i] != first]
    recorded, rejected = want.track_many([batch[i] for i in rest])
    assert sorted(rest[i] for i in rejected) == sorted([refund, up])  # (the model's)
    assert [i for i, _ in got.rejected] == sorted([refund, up])
    assert got.recorded == recorded
    same_over_weeks(fresh, want)


def test_weeks_cut_from_a_piece_after_its_sums_check_keep_its_rejected_events_in_their_notes(
    fresh: bitstat.Stats, client: Any, small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A piece refused for its sums is checked in order and loses the events rejected; sent
    again, it finds a week of it written meanwhile (another sender of the batch id) and is
    cut into weeks. Each week owned only the rows left, not its rejected events, so the note
    its marker kept left them out: a retry after a death before the batch's last mark read
    the week in, and reported the event rejected by the first try neither rejected nor
    recorded."""
    batch, weeks, piece = purchases_cut(monkeypatch)
    other, mine = piece.weeks[:2]  # written by another sender; holding the event rejected
    bad = next(int(r) for r in piece.rows if weeks[r] == mine)
    batch[bad]["amount"] = 2e307
    stored = [{**batch[bad], "amount": 9e307}]  # 9e307 + 2e307 > 1e308
    want = Model(**SETTINGS)
    fresh.track_many(stored)
    want.track_many(stored)
    keys = Keys(fresh.namespace)
    checking = record.Recording.overflowing

    def concurrently(self: Any, *args: Any) -> Any:
        client.set(keys.batch_piece("b", "purchase", other), b"1")  # that sender's week
        return (yield from checking(self, *args))

    with monkeypatch.context() as m:
        m.setattr(record.Recording, "overflowing", concurrently)
        dying_at(m, "mark", 1)
        with pytest.raises(Died):
            fresh.track_many(batch, batch_id="b")
    got = fresh.track_many(batch, batch_id="b")
    rest = [i for i, e in enumerate(batch) if e["event"] != "purchase" or weeks[i] != other]
    _, rejected = want.track_many([batch[i] for i in rest])
    assert [rest[i] for i in rejected] == [bad]
    assert [i for i, _ in got.rejected] == [bad]
    assert [i for i, _ in fresh.track_many(batch, batch_id="b").rejected] == [bad]
    same_over_weeks(fresh, want)
