"""Defects of the fire-and-forget trackers found by a review on 2026-12-06, a test each (each
failed before its fix).

Each test makes its race or fault happen at one chosen place (a wrapped Stats, a patched clock,
a queue that lets another thread run at the worst moment), never by timing luck.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

import bitstat
import bitstat.aio as aio
from bitstat import events as events_module

SCHEMA = bitstat.Schema(ids="map", count=["country"])


@pytest.fixture
def stats(embedded_url: str, namespace: str) -> Iterator[bitstat.Stats]:
    st = bitstat.connect(embedded_url, namespace=namespace, schema=SCHEMA)
    yield st
    st.drop()
    st.close()


def event(n: int, when: float | str = "2026-11-03T10:00:00+00:00", name: str = "login") -> dict:
    return {"event": name, "user": f"u-{n}", "country": "NL", "time": when}


# 1. a retry after a lost reply parses the batch again at a later clock: an event rejected by
#    the try that was recorded (more than the horizon ahead) is no longer rejected, so the
#    tracker counts it as sent and never reports it, though nothing of it was recorded


class LosesFirstReplyThenTimePasses:
    """A Stats whose first `track_many` is applied, then its reply is lost; the clock moves on
    by `later` seconds before the tracker's retry (its backoff)."""

    def __init__(self, st: bitstat.Stats, clock: list[float], later: float) -> None:
        self.st, self.clock, self.later = st, clock, later
        self.calls: list[str | None] = []

    def track_many(
        self,
        events: Any,
        batch_id: str | None = None,
        deadline: float | None = None,
        now: float | None = None,
    ) -> bitstat.TrackResult:
        self.calls.append(batch_id)
        result = self.st.track_many(events, batch_id=batch_id, now=now, deadline=deadline)
        if len(self.calls) == 1:
            self.clock[0] += self.later
            raise bitstat.ConnectionError("the reply was lost")
        return result


def test_an_event_rejected_by_the_recorded_try_stays_rejected_on_the_retry(
    stats: bitstat.Stats, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [time.time()]
    monkeypatch.setattr(events_module, "_time", SimpleNamespace(time=lambda: clock[0]))
    ahead = clock[0] + SCHEMA.horizon + 30  # rejected now; within the horizon 60 s later
    day = datetime.fromtimestamp(ahead, UTC).strftime("%Y-%m-%d")
    wrapped = LosesFirstReplyThenTimePasses(stats, clock, later=60)
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    t = bitstat.Tracker(  # type: ignore[arg-type]
        wrapped, batch_size=2, interval=3600, backoff=0, on_error=lambda e, b: errors.append((e, b))
    )
    t.track(event(1))
    t.track(event(2, ahead, name="future"))
    assert t.flush(10)
    t.close(10)
    assert len(wrapped.calls) == 2 and wrapped.calls[0] == wrapped.calls[1]
    assert stats.total("login", "2026-11") == 1
    with pytest.raises(bitstat.UnknownEvent):  # never recorded, by either try
        stats.total("future", day)
    # what was recorded: one event sent, one rejected and reported
    assert t.counters() == bitstat.TrackerCounters(0, 1, 1, 1, 0, 0)
    assert [b[0]["event"] for _, b in errors] == ["future"]


# 2. close() racing track(): track() checks the limit, then appends. An event that passed the
#    check before close() set the limit to 0, and is appended after the senders made their last
#    pass, stays in the queue for ever: neither sent nor dropped, and close() said True


class SwitchBeforeAppend(deque):  # type: ignore[type-arg]
    """The tracker's queue: its first append lets another thread run `action` (to its end)
    first, as a switch of threads between track()'s check of the limit and its append would."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__()
        self.action: Callable[[], None] | None = action

    def append(self, item: Any) -> None:
        if self.action is not None:
            action, self.action = self.action, None
            other = threading.Thread(target=action)
            other.start()
            other.join(30)
        super().append(item)


def test_an_event_tracked_while_close_runs_is_sent_or_counted_dropped() -> None:
    calls: list[int] = []

    class Recorder:
        def track_many(
            self,
            events: Any,
            batch_id: str | None = None,
            deadline: float | None = None,
            now: float | None = None,
        ) -> bitstat.TrackResult:
            calls.append(len(events))
            return bitstat.TrackResult(len(events), [], {})

    t = bitstat.Tracker(Recorder(), interval=3600)  # type: ignore[arg-type]
    closed: list[bool] = []
    t._queue = SwitchBeforeAppend(lambda: closed.append(t.close(10)))  # type: ignore[assignment]
    t.track(event(1))  # passes the check of the limit; close() runs before its append
    assert closed == [True]
    counters = t.counters()
    # the event is either sent or dropped (counted), never left queued with no sender
    assert counters.queued == 0, counters
    assert counters.sent + counters.dropped == 1, counters


# 3. AsyncTracker.close(timeout) that times out cancels the sender task: the batch being sent
#    (maybe recorded) and the queue behind it are never sent, never counted sent, failed or
#    dropped, never reported; `queued` keeps them for ever. Tracker.close(timeout) leaves its
#    threads to finish, and its counters then say what was recorded: now the task does too,
#    and when the loop ends before it is done, what it could not send is failed or dropped


class AsyncReplyWaits:
    """An AsyncStats whose `track_many` is applied, then its reply waits for `gate`."""

    def __init__(self, st: aio.AsyncStats) -> None:
        self.st = st
        self.applied = 0
        self.gate = asyncio.Event()

    async def track_many(
        self,
        events: Any,
        batch_id: str | None = None,
        deadline: float | None = None,
        now: float | None = None,
    ) -> bitstat.TrackResult:
        result = await self.st.track_many(events, batch_id=batch_id, deadline=deadline)
        self.applied += len(events)
        await self.gate.wait()
        return result


def test_async_close_that_times_out_leaves_no_event_unaccounted(
    embedded_url: str, stats: bitstat.Stats
) -> None:
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []

    async def go() -> tuple[bool, bitstat.TrackerCounters, int]:
        ast = await aio.connect(embedded_url, namespace=stats.namespace)
        wrapped = AsyncReplyWaits(ast)
        t = bitstat.AsyncTracker(  # type: ignore[arg-type]
            wrapped, batch_size=2, interval=3600, on_error=lambda e, b: errors.append((e, b))
        )
        for n in range(3):
            t.track(event(n))
        while wrapped.applied < 2:  # the first batch is recorded, its reply held back
            await asyncio.sleep(0.001)
        done = await t.close(0.05)  # gives up waiting
        wrapped.gate.set()  # the reply comes
        for _ in range(200):  # let a sender (if any is left) finish
            await asyncio.sleep(0.005)
            if t.counters().queued == 0:
                break
        counters = t.counters()
        await ast.close()
        return done, counters, wrapped.applied

    done, counters, applied = asyncio.run(go())
    assert done is False
    assert stats.total("login", "2026-11") == applied
    # every event tracked is accounted for: sent, failed (and reported) or dropped
    assert counters.queued == 0, counters
    assert counters.sent + counters.failed + counters.dropped == 3, counters
    assert counters.sent >= applied or errors, (counters, errors)


def test_async_loop_ending_mid_send_fails_the_batch_and_drops_the_queue(
    embedded_url: str, stats: bitstat.Stats
) -> None:
    """The loop ends (asyncio.run cancels the task) while a batch's reply is held past
    exit_timeout: the batch is counted failed and reported with its id (it was recorded, and a
    send under that id records nothing twice), the events behind it dropped."""
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    held: dict[str, Any] = {}

    async def go() -> None:
        ast = await aio.connect(embedded_url, namespace=stats.namespace)
        wrapped = AsyncReplyWaits(ast)
        t = bitstat.AsyncTracker(  # type: ignore[arg-type]
            wrapped,
            batch_size=2,
            interval=3600,
            exit_timeout=0.05,
            on_error=lambda e, b: errors.append((e, b)),
        )
        held["tracker"], held["wrapped"], held["ast"] = t, wrapped, ast
        for n in range(3):
            t.track(event(n))
        while wrapped.applied < 2:
            await asyncio.sleep(0.001)
        # return with the tracker open: asyncio.run cancels its task

    asyncio.run(go())
    counters = held["tracker"].counters()
    assert held["wrapped"].applied == 4  # sent again at exit under its id: recorded once
    assert stats.total("login", "2026-11") == 2
    assert counters.queued == 0, counters
    assert (counters.sent, counters.failed, counters.dropped) == (0, 2, 1), counters
    [(error, batch)] = errors
    assert isinstance(error, bitstat.BatchError) and error.may_have_landed
    assert [e["user"] for e in batch] == ["u-0", "u-1"]
    again = stats.track_many(batch, batch_id=error.batch_id)  # sent again: recorded once
    assert again.recorded == 0
    assert stats.total("login", "2026-11") == 2


def test_threaded_close_that_times_out_still_accounts_for_every_event(
    stats: bitstat.Stats,
) -> None:
    """The reference behaviour of the threaded twin (passes on HEAD)."""
    gate = threading.Event()
    applied: list[int] = []

    class ReplyWaits:
        def track_many(
            self,
            events: Any,
            batch_id: str | None = None,
            deadline: float | None = None,
            now: float | None = None,
        ) -> bitstat.TrackResult:
            result = stats.track_many(events, batch_id=batch_id, deadline=deadline)
            applied.append(len(events))
            gate.wait(30)
            return result

    t = bitstat.Tracker(ReplyWaits(), batch_size=2, interval=3600)  # type: ignore[arg-type]
    for n in range(3):
        t.track(event(n))
    deadline = time.monotonic() + 10
    while not applied:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert t.close(0.05) is False
    gate.set()
    for thread in t._threads:
        thread.join(10)
    assert t.counters() == bitstat.TrackerCounters(0, 3, 0, 0, 0, 0)
    assert stats.total("login", "2026-11") == 3
