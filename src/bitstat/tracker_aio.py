"""`AsyncTracker`: the fire-and-forget tracker of tracker.py on the event loop, for asyncio code.

The queue and its policy are `tracker.EventQueue`'s; only waiting and sending are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from .errors import BatchError
from .record import TrackResult
from .tracker import Event, EventQueue, check_options


class AsyncRecorder(Protocol):
    """What an asyncio tracker sends its batches to: an `AsyncStats`."""

    def track_many(
        self,
        events: list[Event],
        batch_id: str | None = None,
        *,
        now: float | None = None,
        deadline: float | None = None,
    ) -> Awaitable[TrackResult]: ...


class AsyncTracker(EventQueue):
    """`Tracker` on the event loop, made by `AsyncStats.tracker()` inside a running loop:
    `track()` is a plain call (made on the loop's thread), `await flush()`, `await close()`.

    A full queue always drops (a plain call cannot wait). When the loop ends with the tracker
    open (asyncio.run cancels the sender task), the queue is sent for at most `exit_timeout`.
    A batch is planned on the loop's thread, holding up its other tasks meanwhile (~6 µs an
    event), so `max_batch` defaults to `batch_size` here: batches do not grow unless asked to.
    """

    default_max_batch = 0

    def __init__(self, stats: AsyncRecorder, **options: Any) -> None:
        check_options("AsyncStats.tracker", options)
        super().__init__(**options)
        self._stats = stats
        self._wakeup = asyncio.Event()
        self._wake = self._wakeup.set
        self._progress = asyncio.Condition()
        self._current: tuple[list[Event], str] | None = None  # the batch being sent
        self._tries = 0  # sends of the current batch so far
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bitstat-tracker")

    async def _run(self) -> None:
        try:
            while True:
                stopping = self._stopping
                if not stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), self._interval)
                self._wakeup.clear()
                self._woken = False
                while (taken := self._take())[0]:
                    await self._send(*taken)
                if stopping:
                    return
        except asyncio.CancelledError:
            # the loop is ending (asyncio.run cancels every task): send the rest, for a while
            self._task.uncancel()  # so that the timeout below can tell its own expiry
            self._closing()
            try:
                async with asyncio.timeout(self._exit_timeout):
                    if self._current is not None:  # cut short: sent again under its id
                        await self._send(*self._current)
                    while (taken := self._take())[0]:
                        await self._send(*taken)
            except TimeoutError:
                self._abandon()
            self._closed_report(self._exit_timeout)
            raise
        finally:
            async with self._progress:
                self._progress.notify_all()

    def _abandon(self) -> None:
        """Account for what the loop's end left unsent: the batch cut short is failed (it may
        be recorded: its id says how to send it again once) and the queue dropped."""
        if self._current is not None:
            batch, batch_id = self._current
            self._current = None
            error = BatchError(
                f"the event loop ended while batch {batch_id} of {len(batch)} event(s) was"
                " being sent; send the same events with this batch_id to record them once",
                batch_id=batch_id,
                may_have_landed=True,
                attempts=self._tries,
            )
            self._report(error, batch)
            self._finish(batch_id, len(batch), failed=len(batch))
        self._drop_queue()

    async def _send(self, batch: list[Event], batch_id: str) -> None:
        self._current = (batch, batch_id)
        attempt = 0
        now = time.time()  # (every try judges the events by the same clock, as Tracker's)
        while True:
            self._tries = attempt + 1
            try:
                # one try a send: the retries are the tracker's own (max_retries, backoff)
                result = await self._stats.track_many(batch, batch_id=batch_id, now=now, deadline=0)
            except Exception as exc:
                delay = self._retry_delay(exc, attempt, batch, batch_id)
                if delay is None:
                    break
                attempt += 1
                await asyncio.sleep(delay)
            else:
                self._recorded(batch, result, batch_id)
                break
        self._current = None
        async with self._progress:
            self._progress.notify_all()

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far; True when all of it was sent (or rejected or failed)
        within `timeout` seconds."""
        target = self._flush_target()
        self._wake()
        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(
                    lambda: self._done_before(target) or self._task.done()
                )
        except TimeoutError:
            pass
        return self._done_before(target)

    async def close(self, timeout: float | None = None) -> bool:
        """Stop taking events, send the queue and end the task; True when all was sent within
        `timeout` seconds. When it gives up, the task goes on sending in the background (as
        `Tracker.close` leaves its threads), until the queue is sent or the loop ends."""
        self._closing()
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self._closed_report(timeout)

    async def __aenter__(self) -> AsyncTracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
