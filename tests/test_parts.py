"""A large batch of several event names goes to a single server in parts (`record.parts_of`):
each part, all the events of some names, planned while the server writes the one before and
kept under a marker of its own; the batch's marker set once every part is in. Every answer is
compared with the reference model: through lost replies, a foreign key in one part, sums
refused in one part, the same batch id sent again, and asyncio.

The tests lower PART_MIN, so that batches of a few hundred events go in parts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitstat
import bitstat.aio
import servers
from bitstat import record
from bitstat.events import parse_batch
from bitstat.keys import Keys
from bitstat.transport import Script
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


@pytest.fixture
def fresh(embedded_url: str) -> Iterator[bitstat.Stats]:
    st = bitstat.connect(
        embedded_url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=bitstat.Schema(**SETTINGS)
    )
    yield st
    st.drop()
    st.close()


def test_parts_split_a_batch_by_name_evenly_and_alike_each_time() -> None:
    cols = parse_batch(events(400, seed=3), bitstat.Schema(**SETTINGS))
    parts = record.parts_of(cols)
    assert parts is not None and len(parts) == record.PARTS
    rows = np.concatenate([r for _, r in parts])
    assert sorted(rows.tolist()) == list(range(len(cols)))  # every row once
    for name, part in parts:
        assert (np.diff(part) > 0).all()  # in batch order: sums are checked in order
        assert name in {cols.names[c] for c in cols.codes[part].tolist()}
        names = {cols.names[c] for c in cols.codes[part].tolist()}
        assert not any(
            names & {cols.names[c] for c in cols.codes[p].tolist()} for n, p in parts if n != name
        )  # a name in one part only
    sizes = [len(p) for _, p in parts]
    assert sizes == sorted(sizes, reverse=True)  # the largest first
    again = record.parts_of(cols)
    assert again is not None
    assert [(n, p.tolist()) for n, p in again] == [(n, p.tolist()) for n, p in parts]
    one_name = parse_batch(events(400, seed=3, names=("visit",)), bitstat.Schema(**SETTINGS))
    assert record.parts_of(one_name) is None
    assert record.parts_of(cols.take(np.arange(7))) is None  # below PART_MIN


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4),
    seed=st.integers(0, 10_000),
    given_id=st.booleans(),
)
def test_batches_in_parts_answer_as_the_model(
    embedded_url: str, sizes: list[int], seed: int, given_id: bool
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
    finally:
        st_.drop()
        st_.close()


def test_a_batch_in_parts_leaves_what_the_whole_batch_leaves(
    fresh: bitstat.Stats, embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same events in parts and in one call: the same data under every key."""
    batch = events(600, seed=11)
    fresh.track_many(batch, batch_id="x")
    monkeypatch.setattr(record, "PART_MIN", 10**9)
    whole = bitstat.connect(
        embedded_url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=bitstat.Schema(**SETTINGS)
    )
    try:
        whole.track_many(batch, batch_id="x")
        client = servers.client_for(embedded_url)
        try:
            assert contents(client, fresh.namespace) == contents(client, whole.namespace)
        finally:
            client.close()
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
            if ":batch:" in key:
                continue  # markers: by part, or one for the batch
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


def test_lost_replies_of_parts_count_each_event_once(proxy: Proxy) -> None:
    st_ = bitstat.connect(
        proxy.url(), namespace=f"t-{uuid.uuid4().hex[:8]}", schema=bitstat.Schema(**SETTINGS)
    )
    want = Model(**SETTINGS)
    try:
        st_.track_many(events(20, seed=1))  # loads the scripts: later writes go by SHA
        want.track_many(events(20, seed=1))
        for n in range(8):
            batch = events(300, seed=100 + n)
            proxy.cut_replies(1 + n % 4, APPLY)  # the replies of one to four parts lost
            got = st_.track_many(batch, batch_id=f"b-{n}" if n % 2 else None)
            assert (got.recorded, got.rejected) == (len(batch), [])
            want.track_many(batch)
        assert proxy.cut >= 16
        same_for_every_name(st_, want)
    finally:
        st_.drop()
        st_.close()


def test_a_foreign_key_in_one_part_keeps_the_others_and_the_same_id_completes_the_batch(
    fresh: bitstat.Stats, embedded_url: str
) -> None:
    want = Model(**SETTINGS)
    batch = events(300, seed=5)
    client = servers.client_for(embedded_url)
    try:
        # a key of the least frequent name holds a list where bitstat keeps a sorted set
        foreign = Keys(fresh.namespace).counts("search", "2026-11", "country")
        client.rpush(foreign, "x")
        with pytest.raises(bitstat.ServerError) as caught:
            fresh.track_many(batch, batch_id="b")
        assert foreign in str(caught.value)
        searches = sum(e["event"] == "search" for e in batch)
        purchases = sum(e["event"] == "purchase" for e in batch)
        with pytest.raises(bitstat.UnknownEvent):  # its part: nothing written, not its name
            fresh.total("search", "2026-11")
        assert fresh.total("purchase", "2026-11") == purchases  # another part: all of it
        assert searches and purchases
        client.delete(foreign)
        got = fresh.track_many(batch, batch_id="b")
        assert got.recorded == len(batch)
        want.track_many(batch, batch_id="b")
        assert fresh.track_many(batch, batch_id="b").recorded == 0
        same_for_every_name(fresh, want)
    finally:
        client.close()


def test_a_batch_whose_own_sums_could_pass_the_limit_rejects_those_events_alone(
    fresh: bitstat.Stats,
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
    same_for_every_name(fresh, want)


def test_stored_totals_refuse_a_part_which_is_then_checked_in_order(
    fresh: bitstat.Stats,
) -> None:
    """A part whose sums could pass the limit with what is stored is refused by the server,
    checked against the stored totals event by event, and sent again without the events that
    would carry a total past it."""
    want = Model(**SETTINGS)
    first = [{**events(1, seed=2, names=("refund",))[0], "amount": 9e307}]
    fresh.track_many(first)
    want.track_many(first)
    batch = events(300, seed=12)
    refunds = [i for i, e in enumerate(batch) if e["event"] == "refund"]
    batch[refunds[0]]["amount"] = 2e307  # 9e307 + 2e307 > 1e308
    got = fresh.track_many(batch)
    recorded, rejected = want.track_many(batch)
    assert [i for i, _ in got.rejected] == rejected == [refunds[0]]
    assert got.recorded == recorded
    same_for_every_name(fresh, want)


def test_parts_sent_while_the_server_lost_its_scripts_are_written_again(
    fresh: bitstat.Stats, embedded_url: str
) -> None:
    want = Model(**SETTINGS)
    client = servers.client_for(embedded_url)
    try:
        for n in range(3):
            client.script_flush()  # (a restarted server, or SCRIPT FLUSH by someone)
            batch = events(200, seed=70 + n)
            assert fresh.track_many(batch).recorded == len(batch)
            want.track_many(batch)
    finally:
        client.close()
    same_for_every_name(fresh, want)


def test_asyncio_records_batches_in_parts(embedded_url: str) -> None:
    async def main() -> None:
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
            for name in NAMES:
                for label in LABELS:
                    assert await st_.total(name, label) == want.total(name, label)
                    assert await st_.unique(name, label) == want.unique(name, label)
                    assert await st_.distinct(name, "ip", label) == want.distinct(name, "ip", label)
        finally:
            await st_.drop()
            await st_.close()

    asyncio.run(main())
