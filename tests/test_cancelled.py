"""Calls cut short: an asyncio task cancelled (`asyncio.wait_for`'s timeout, a web client gone)
or a blocking call interrupted, in the middle of `track()`, `flush()` or a read. The next read
of the same Stats holds every event tracked before it (that of a `track()` cut short once its
push was made too). Answers are compared with a count of the events.

A call is cut short at a chosen request: the store's `perform` is wrapped to hang there (before
the request, or once the server has answered it) until the test cancels the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import bitstat
import bitstat.aio
from bitstat import queued
from bitstat.calls import Call
from bitstat.transport import Transport

SCHEMA = bitstat.Schema(ids="map")
MONTH = "2026-11"


def login(i: int) -> dict[str, Any]:
    return {"event": "login", "user": f"u-{i}", "time": f"2026-11-{1 + i % 28:02d}T10:00:00Z"}


def hang_at(st: bitstat.aio.AsyncStats, method: Callable[..., Any], answered: bool) -> Any:
    """Make `st`'s next request of `method` hang (once the server answered it, or before it is
    sent) until its task is cancelled; returns the event set when it hangs."""
    store = st._store
    perform = store.perform
    hanging = asyncio.Event()

    async def perform_or_hang(call: Call) -> Any:
        if call.method is not method:
            return await perform(call)
        store.perform = perform  # (once)
        if answered:
            await perform(call)
        hanging.set()
        await asyncio.Event().wait()

    store.perform = perform_or_hang
    return hanging


async def cut_short(
    st: bitstat.aio.AsyncStats, call: Any, at: Callable[..., Any], answered: bool
) -> None:
    """Run the coroutine `call` until it hangs at `at`, then cancel it."""
    hanging = hang_at(st, at, answered)
    task = asyncio.ensure_future(call)
    await hanging.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def read_ids(st: bitstat.aio.AsyncStats) -> list[Any]:
    return [a async for a in st.actors("login").month(2026, 11).ids()]


@pytest.mark.parametrize(
    ("cut", "at", "answered"),
    [
        ("flush", Transport.claim_queued, True),  # the claim made, its reply never read
        ("flush", Transport.map_ids, False),  # the claim read, its batch not written
        ("flush", Transport.apply, True),  # the batch written, its reply never read
        ("total", Transport.claim_queued, True),  # a read, which flushes first
        ("ids", Transport.map_ids, False),
    ],
)
def test_a_flush_cut_short_leaves_no_event_out_of_the_next_read(
    embedded_url: str, namespace: str, cut: str, at: Callable[..., Any], answered: bool
) -> None:
    async def go() -> tuple[int, int, int]:
        st = await bitstat.aio.connect(
            embedded_url, namespace=namespace, schema=SCHEMA, flush_at=10_000
        )
        try:
            for i in range(30):
                await st.track(login(i))
            calls = {"flush": st.flush, "total": lambda: st.total("login", MONTH)}
            call = read_ids(st) if cut == "ids" else calls[cut]()
            await cut_short(st, call, at, answered)
            # the same Stats at once, not after the claim's lease (deadline + 30 s)
            got = (await st.total("login", MONTH), await st.unique("login", MONTH))
            return (*got, len(await read_ids(st)))
        finally:
            await st.drop()
            await st.close()

    assert asyncio.run(go()) == (30, 30, 30)


@pytest.mark.parametrize(
    ("at", "answered", "queued"),
    [
        (Transport.queue_event, False, 0),  # the push not sent
        (Transport.queue_event, True, 1),  # the push queued, its reply never read
        (Transport.claim_queued, True, 1),  # the flush of its track() cut short: the claim made
        (Transport.map_ids, False, 1),  # the claim read, its batch not written
    ],
)
def test_a_track_cut_short_leaves_no_queued_event_out_of_the_next_read(
    embedded_url: str, namespace: str, at: Callable[..., Any], answered: bool, queued: int
) -> None:
    async def go() -> tuple[int, int]:
        st = await bitstat.aio.connect(embedded_url, namespace=namespace, schema=SCHEMA, flush_at=5)
        try:
            for i in range(4):
                await st.track(login(i))
            await cut_short(st, st.track(login(4)), at, answered)
            for i in range(5, 7):
                await st.track(login(i))
            return await st.total("login", MONTH), await st.unique("login", MONTH)
        finally:
            await st.drop()
            await st.close()

    assert asyncio.run(go()) == (6 + queued, 6 + queued)


def test_an_interrupted_blocking_flush_leaves_no_event_out_of_the_next_read(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bitstat.connect(embedded_url, namespace=namespace, schema=SCHEMA, flush_at=10_000) as st:
        for i in range(30):
            st.track(login(i))
        apply = Transport.apply

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            raise KeyboardInterrupt  # (or a gevent Timeout): not an error bitstat handles

        monkeypatch.setattr(Transport, "apply", interrupted)
        with pytest.raises(KeyboardInterrupt):
            st.flush()
        monkeypatch.setattr(Transport, "apply", apply)
        assert (st.total("login", MONTH), st.unique("login", MONTH)) == (30, 30)
        st.drop()


def test_a_claim_cut_short_and_taken_over_elsewhere_is_not_asked_again(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its lease, a claim whose reply never came may have been taken over, applied and
    forgotten by another process: asking its id again would make a new claim under an id whose
    batch is recorded, and its events would never be."""
    monkeypatch.setattr(queued, "LEASE_MARGIN", 0.0)
    options = {"namespace": namespace, "schema": SCHEMA, "flush_at": 10_000, "deadline": 0.2}

    async def go() -> tuple[int, int]:
        st = await bitstat.aio.connect(embedded_url, **options)
        try:
            for i in range(30):
                await st.track(login(i))
            await cut_short(st, st.flush(), Transport.claim_queued, True)
            await asyncio.sleep(0.25)  # the lease (the deadline, 0.2 s) is over
            with bitstat.connect(embedded_url, **options) as other:
                assert other.flush() == 30  # taken over, applied, forgotten
            for i in range(30, 50):
                await st.track(login(i))
            return await st.total("login", MONTH), await st.unique("login", MONTH)
        finally:
            await st.drop()
            await st.close()

    assert asyncio.run(go()) == (50, 50)


@pytest.mark.parametrize("answered", [True, False])
def test_a_batch_without_an_id_cut_short_and_sent_again_counts_once(
    embedded_url: str, namespace: str, answered: bool
) -> None:
    """`track_many` without a batch id, cancelled once its write was sent (answered or not),
    then called again with the same events, as a caller retries: the retry went under a new
    id, so a batch the server had written counted twice (runs over by 500 to 2,000 events).
    It now goes under the id of the call cut short, as after a BatchError."""
    batch = [login(i) for i in range(40)]

    async def run() -> tuple[int, int]:
        st = await bitstat.aio.connect(embedded_url, namespace=namespace, schema=SCHEMA)
        try:
            await cut_short(st, st.track_many(batch), Transport.apply, answered)
            await st.track_many(batch)
            return await st.total("login", MONTH), await st.unique("login", MONTH)
        finally:
            await st.close()

    assert asyncio.run(run()) == (40, 40)
