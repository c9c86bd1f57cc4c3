"""Exactly-once by default: replies lost after the server applied a batch (a proxy drops the
connection right after the server answered the write) never lose or double count events, for
callers with and without batch ids, sync and asyncio, `bitstat ingest` and HTTP, and for callers
who call again after a BatchError. Every answer is compared with the reference model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import bitstat
import bitstat.aio
from bitstat.transport import Script
from bitstat.web import ServerConfig, create_app
from exactly import batches, model, same_answers, schema
from proxy import Proxy

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

APPLY = Script("apply.lua").sha.encode()
QUEUE = Script("queue.lua").sha.encode()


@pytest.fixture
def stats(proxy: Proxy) -> Iterator[bitstat.Stats]:
    st = bitstat.connect(proxy.url(), namespace=f"t-{uuid.uuid4().hex[:8]}", schema=schema())
    st.track_many(batches(1, 1, seed=99)[0])  # loads the scripts: later writes go by SHA
    st.drop()
    yield st
    st.drop()
    st.close()


@pytest.mark.parametrize("given_ids", [False, True])
def test_lost_replies_are_retried_under_the_same_id(
    stats: bitstat.Stats, proxy: Proxy, given_ids: bool
) -> None:
    want = model()
    for n, batch in enumerate(batches(12, 300)):
        if n % 2:
            proxy.cut_replies(1 + n % 3, APPLY)  # 1 to 3 lost replies in a row
        batch_id = f"b-{n}" if given_ids else None
        result = stats.track_many(batch, batch_id=batch_id)
        assert result.recorded == len(batch) and not result.rejected  # as if nothing failed
        want.track_many(batch)
    assert proxy.cut >= 6
    same_answers(stats, want)


def test_one_event_calls_are_retried_too(stats: bitstat.Stats, proxy: Proxy) -> None:
    """track()'s push whose reply is lost is pushed again under its token: queued once."""
    want = model()
    for n, event in enumerate(batches(1, 40)[0]):
        if n % 3 == 0:
            proxy.cut_replies(1, QUEUE)
        stats.track(event)
        want.track(event)
    assert proxy.cut >= 13
    same_answers(stats, want)


def test_a_flush_whose_replies_are_lost_applies_the_queue_once(
    stats: bitstat.Stats, proxy: Proxy
) -> None:
    want = model()
    for n, event in enumerate(batches(1, 60, seed=5)[0]):
        stats.track(event)
        want.track(event)
        if n % 20 == 19:
            proxy.cut_replies(1, APPLY)  # the flush's write lands, its reply is lost
            stats.flush()
    assert proxy.cut == 3
    same_answers(stats, want)


def test_a_flush_whose_claim_reply_is_lost_takes_its_claim_up_at_once(
    stats: bitstat.Stats, proxy: Proxy
) -> None:
    """The flush asks again under the same claim id and gets the events it claimed: a read
    right after holds them (they do not wait in the claim for its lease to run out)."""
    want = model()
    for n, event in enumerate(batches(1, 60, seed=12)[0]):
        stats.track(event)
        want.track(event)
        if n % 20 == 19:
            proxy.cut_replies(1, b"claim")  # the read's flush claims, its reply is lost
            assert stats.total("purchase", "2026") == n + 1
    assert proxy.cut == 3
    same_answers(stats, want)


def test_calling_track_again_after_a_batch_error_never_double_counts(proxy: Proxy) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    st = bitstat.connect(proxy.url(), namespace=ns, schema=schema(), deadline=0.3)
    want = model()
    try:
        first, second = batches(1, 2, seed=8)[0]
        st.track(first)
        want.track(first)
        proxy.cut_replies(1, QUEUE, then_all=True)  # the push lands, no reply comes back
        with pytest.raises(bitstat.BatchError) as raised:
            st.track(second)
        assert raised.value.may_have_landed and "call track() again" in str(raised.value)
        want.track(second)
        proxy.cut_replies(0, b"")
        st.track(dict(second))  # the caller's retry, the same event: queued once
        same_answers(st, want)
    finally:
        proxy.cut_replies(0, b"")
        st.drop()
        st.close()


@pytest.mark.parametrize("given_ids", [False, True])
def test_calling_again_after_a_batch_error_never_double_counts(
    proxy: Proxy, given_ids: bool
) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    st = bitstat.connect(proxy.url(), namespace=ns, schema=schema(), deadline=0.3)
    want = model()
    try:
        first, second, third = batches(3, 200, seed=3)
        st.track_many(first)
        want.track_many(first)
        # the write lands, its reply is lost, and no later reply comes back
        proxy.cut_replies(1, APPLY, then_all=True)
        batch_id = "given-1" if given_ids else None
        with pytest.raises(bitstat.BatchError) as raised:
            st.track_many(second, batch_id=batch_id)
        error = raised.value
        assert error.may_have_landed and error.attempts >= 2
        assert error.batch_id == batch_id or (not given_ids and error.batch_id.startswith("auto"))
        assert "may have been recorded" in str(error) and error.batch_id in str(error)
        assert isinstance(error, bitstat.ConnectionError)  # what callers already catch
        want.track_many(second)  # it did land
        proxy.cut_replies(0, b"")
        # the caller's naive retry: the same events, again (a new list, equal content)
        again = st.track_many([dict(e) for e in second], batch_id=batch_id)
        assert not again.rejected
        # recorded by the failed call; an id bitstat made reports them as this call's
        assert again.recorded == (0 if given_ids else len(second))
        # and a batch of other events is new, of course
        assert st.track_many(third).recorded == len(third)
        want.track_many(third)
        same_answers(st, want)
    finally:
        proxy.cut_replies(0, b"")
        st.drop()
        st.close()


def test_the_same_events_sent_twice_without_an_error_count_twice(stats: bitstat.Stats) -> None:
    """Only a batch whose call failed is taken for the retry of the next equal one: equal batches
    sent on purpose (the same event twice) are both recorded."""
    want = model()
    batch = batches(1, 50, seed=5)[0]
    for _ in range(2):
        assert stats.track_many(batch).recorded == 50
        want.track_many(batch)
    event = batch[0]
    stats.track(event)
    stats.track(event)
    want.track(event)
    want.track(event)
    same_answers(stats, want)


def test_asyncio_lost_replies_are_retried(proxy: Proxy) -> None:
    want = model()
    ns = f"t-{uuid.uuid4().hex[:8]}"

    async def go() -> None:
        st = await bitstat.aio.connect(proxy.url(), namespace=ns, schema=schema())
        try:
            for n, batch in enumerate(batches(8, 200, seed=11)):
                if n % 2:
                    proxy.cut_replies(2, APPLY)
                assert (await st.track_many(batch)).recorded == len(batch)
                want.track_many(batch)
        finally:
            await st.close()

    asyncio.run(go())
    assert proxy.cut >= 4
    with bitstat.connect(proxy.url(), namespace=ns) as st:
        same_answers(st, want)
        st.drop()


@pytest.mark.parametrize("size", [200, 6000])  # a small body, and one recorded off the loop
def test_http_posts_whose_replies_are_lost_are_recorded_once(proxy: Proxy, size: int) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    with bitstat.connect(proxy.url(), namespace=ns, schema=schema()):
        pass  # stores the schema
    want = model()
    config = ServerConfig(url=proxy.url(), namespace=ns)
    with TestClient(create_app(config)) as client:
        for n, batch in enumerate(batches(4, size, seed=41)):
            proxy.cut_replies(1 + n % 2, APPLY)
            answer = client.post("/v1/track", json=batch)  # no Idempotency-Key
            assert answer.status_code == 200, answer.text
            assert answer.json()["recorded"] == len(batch)
            want.track_many(batch)
    assert proxy.cut >= 4
    with bitstat.connect(proxy.url(), namespace=ns) as st:
        same_answers(st, want)
        st.drop()


def test_bitstat_ingest_whose_replies_are_lost_records_every_line_once(
    proxy: Proxy, tmp_path: Path
) -> None:
    """The CLI as a user runs it: a process whose writes lose their replies retries them under
    the file's batch ids; a second run of the same file records nothing."""
    events = [e for batch in batches(6, 300, seed=17) for e in batch]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    ns = f"t-{uuid.uuid4().hex[:8]}"
    stats = bitstat.connect(proxy.url(), namespace=ns, schema=schema())  # stores the schema
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITSTAT_")}
    command = [sys.executable, "-m", "bitstat", "--url", proxy.url(), "--namespace"]
    command += [stats.namespace, "ingest", str(path), "--batch-size", "300", "--no-progress"]
    command += ["-f", "json"]

    def ingest() -> dict[str, int]:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        report: dict[str, int] = json.loads(done.stdout)
        return report

    proxy.cut_replies(3, APPLY)  # three batches land, and their replies are lost
    first = ingest()
    assert proxy.cut == 3
    assert first["recorded"] == len(events) and first["seen_before"] == 0
    want = model()
    want.track_many(events)
    same_answers(stats, want)
    again = ingest()
    assert again["recorded"] == 0 and again["seen_before"] == len(events)
    same_answers(stats, want)
    stats.drop()
    stats.close()
