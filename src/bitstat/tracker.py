"""The fire-and-forget tracker: `track()` queues an event in the process and returns at once;
two background threads (`Tracker`) or a task (`AsyncTracker`, in tracker_aio.py) send the
queue in batches with `track_many`, each under its own id, kept across retries: a batch is
recorded once.

The policy is written once in `EventQueue` (call forms, overflow, batch ids, retries, counters,
reports); the two trackers only wait and send, one on threads, one on the event loop.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import random
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import ConnectionError, InvalidEvent, ServerError
from .integers import whole
from .record import TrackResult

log = logging.getLogger("bitstat.tracker")
Event = dict[str, Any]
ErrorCallback = Callable[[Exception, list[Event]], None]


class Recorder(Protocol):
    """What a tracker sends its batches to: a `Stats`."""

    def track_many(
        self,
        events: list[Event],
        batch_id: str | None = None,
        *,
        now: float | None = None,
        deadline: float | None = None,
    ) -> TrackResult: ...


WARN_EVERY = 10.0  # seconds between two warnings about dropped events
# the most events one batch takes by default. Under load more than batch_size wait by the time
# a send is done, and a batch takes them all: a key is written once a batch, so Redis spends
# about half as much an event on batches of 50,000 as on batches of 5,000 (docs/performance.md)
MAX_BATCH = 50_000
# threads that send a Tracker's batches: while Redis applies one batch (its thread waits, the
# interpreter lock released), the other plans the next. Two sent the realistic live stream
# 11-14% faster than one (docs/performance.md); the second only ever takes a full batch
SENDERS = 2
_now = time.time


@dataclass(frozen=True)
class TrackerCounters:
    """A tracker's counters at one moment; all count events, except `retried` (sends tried
    again). `queued`: waiting or being sent; `sent`: recorded; `rejected`: refused by
    `track_many`, with a reason; `failed`: in batches given up after the retries; `dropped`:
    never queued (the queue was full, or the tracker closed)."""

    queued: int
    sent: int
    rejected: int
    retried: int
    failed: int
    dropped: int


def _whole(name: str, value: Any) -> int:
    """An option that counts (events, tries) as an int: an integer of any kind (numpy's
    too), never a bool or a float."""
    count = whole(value)
    if count is None:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return count


def check_options(maker: str, options: Mapping[str, Any], more: tuple[str, ...] = ()) -> None:
    """TypeError naming the caller (`maker`) for an option no tracker takes (not the
    internal EventQueue, which the trackers pass their options to)."""
    known = (*inspect.signature(EventQueue.__init__).parameters, *more)
    unknown = [name for name in options if name not in known or name == "self"]
    if unknown:
        if unknown == ["block"]:
            raise TypeError(
                f"{maker}() takes no block: the asyncio tracker's track() never waits (a full"
                " queue drops the new event); use the blocking Stats.tracker(block=True)"
            )
        takes = ", ".join(name for name in known if name != "self")
        raise TypeError(f"{maker}() got an unknown option {unknown[0]!r} (it takes: {takes})")


class EventQueue:
    """The queue, its counters and the sending policy shared by both trackers (internal)."""

    default_max_batch = MAX_BATCH  # max_batch when not given (never below batch_size)

    def __init__(
        self,
        *,
        batch_size: int = 5000,
        max_batch: int | None = None,
        interval: float = 0.5,
        max_queue: int = 100_000,
        max_retries: int = 8,
        backoff: float = 0.1,
        max_backoff: float = 10.0,
        on_error: ErrorCallback | None = None,
        exit_timeout: float = 5.0,
    ) -> None:
        batch_size = _whole("batch_size", batch_size)
        max_queue = _whole("max_queue", max_queue)
        max_retries = _whole("max_retries", max_retries)
        if max_batch is not None:
            max_batch = _whole("max_batch", max_batch)
        if batch_size < 1 or max_queue < 1 or max_retries < 0:
            raise ValueError("batch_size and max_queue must be >= 1, max_retries >= 0")
        if max_batch is None:
            max_batch = max(batch_size, self.default_max_batch)
        if max_batch < batch_size:
            raise ValueError(
                f"max_batch ({max_batch}) must be >= batch_size ({batch_size}): a batch takes"
                " every event waiting up to max_batch once batch_size wait"
            )
        if interval <= 0 or backoff < 0 or max_backoff < 0 or exit_timeout < 0:
            raise ValueError("interval must be > 0; backoff and exit_timeout >= 0")
        self._batch_size = batch_size
        self._max_batch = max_batch
        self._interval = interval
        self._max_queue = max_queue
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._on_error = on_error
        self._exit_timeout = exit_timeout
        self._closed = False
        self._stopping = False  # the sender ends once the queue is sent
        self._wake: Callable[[], None] = lambda: None
        self._reset()

    def _reset(self) -> None:
        """The state of one process (a forked child starts its own)."""
        self._queue: deque[Event] = deque()
        self._limit = 0 if self._closed else self._max_queue  # 0: every track() overflows
        self._woken = False  # the sender has been woken for a full batch, not yet drained
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a batch taken or finished
        self._reporting = threading.Lock()  # on_error is called by one sender at a time
        # a batch id is the tracker's random prefix and a serial: unique across processes
        self._prefix = f"trk-{uuid.uuid4().hex[:16]}"
        self._serial = self._taken = self._in_flight = 0
        # batches being sent: id -> the number (in queue order) of its first event. Batches
        # finish in any order (two senders), so flush() waits for the lowest of these
        self._flying: dict[str, int] = {}
        self._sent = self._rejected = self._retried = self._failed = self._dropped = 0
        self._unwarned: dict[str, int] = {}  # dropped since the last warning, by reason
        self._warn_at = 0.0

    def track(self, event: str | Mapping[str, Any], /, **props: Any) -> None:
        """Queue one event and return: `track("login", user=42)` or `track({"event": ...})`.

        Nothing is checked here but the call form; a bad event is rejected when its batch is
        sent (see `on_error`). An event without a `time` gets the time of this call. A mapping
        is copied (shallowly), so the caller may reuse it.
        """
        if props:
            if not isinstance(event, str) and isinstance(event, Mapping):
                raise InvalidEvent("pass either a mapping or keyword properties, not both")
            if "event" in props:
                raise InvalidEvent("the event name is given twice", field="event")
            props["event"] = event  # **props is a new dict of this call: ours to keep
            record = props
        elif type(event) is dict:
            record = event.copy()
        elif isinstance(event, Mapping):
            record = dict(event)
        else:
            record = {"event": event}
        if record.get("time") is None:
            record["time"] = _now()
        queue = self._queue
        if len(queue) >= self._limit:
            self._overflow(record)
            return
        queue.append(record)
        if self._closed:  # (closed between the look at the limit and the append)
            self._left_after_close()
        if len(queue) >= self._batch_size and not self._woken:
            self._woken = True
            self._wake()

    def counters(self) -> TrackerCounters:
        """A snapshot of the counters (safe from any thread, at any time)."""
        with self._lock:
            return TrackerCounters(
                len(self._queue) + self._in_flight,
                self._sent,
                self._rejected,
                self._retried,
                self._failed,
                self._dropped,
            )

    def _room_for(self, record: Event) -> bool:
        """Whether a full queue took `record` after all (a blocking tracker waits for room)."""
        return False

    def _left_after_close(self) -> None:
        """Events queued once no sender is left (a `track()` that raced `close()`): counted
        dropped, not left in the queue for good. The asyncio tracker's sender takes them."""

    def _drop_queue(self) -> None:
        """Count what is left in the queue of a closed tracker as dropped, and empty it."""
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
            self._dropped += left
            if left:
                why = "the tracker is closed"
                self._unwarned[why] = self._unwarned.get(why, 0) + left

    def _overflow(self, record: Event) -> None:
        if not self._closed and self._room_for(record):
            return
        why = "the tracker is closed" if self._closed else f"max_queue={self._max_queue} full"
        now = time.monotonic()
        with self._lock:
            self._dropped += 1
            self._unwarned[why] = self._unwarned.get(why, 0) + 1
            if now < self._warn_at:
                return
            self._warn_at = now + WARN_EVERY
        self._warn_dropped()

    def _warn_dropped(self) -> None:
        with self._lock:
            unwarned, self._unwarned = self._unwarned, {}
            total = self._dropped
        for why, count in unwarned.items():
            log.warning("dropped %d event(s): %s (%d dropped in all)", count, why, total)

    def _take(self) -> tuple[list[Event], str]:
        """The next batch (empty when the queue is) and its id. While another batch is being
        sent, only a full one is taken (the sender of that one takes the rest when done)."""
        queue = self._queue
        with self._lock:
            n = len(queue)
            if self._in_flight and n < self._batch_size and not self._stopping:
                n = 0
            n = min(n, self._max_batch)
            batch = [queue.popleft() for _ in range(n)]
            batch_id = ""
            if n:
                self._serial += 1
                batch_id = f"{self._prefix}-{self._serial}"  # under the lock: one id a batch
                self._flying[batch_id] = self._taken
                self._taken += n
                self._in_flight += n
                self._changed.notify_all()
        return batch, batch_id

    def _recorded(self, batch: list[Event], result: TrackResult, batch_id: str) -> None:
        rejected = result.rejected
        if rejected:
            index, reason = rejected[0]
            log.warning(  # the event's name only: its properties may be personal data
                "batch %s: %d of %d event(s) rejected; the first, of event %r: %s",
                *(batch_id, len(rejected), len(batch), batch[index].get("event"), reason),
            )
            for index, reason in rejected:
                self._report(InvalidEvent(reason), [batch[index]])
        # every event not rejected is recorded, now or by an earlier try whose reply was lost
        # (a batch id seen before answers recorded=0)
        self._finish(batch_id, len(batch), sent=len(batch) - len(rejected), rejected=len(rejected))

    def _retry_delay(
        self, exc: Exception, attempt: int, batch: list[Event], batch_id: str
    ) -> float | None:
        """After a failed send: the wait before trying again, or None when given up."""
        if isinstance(exc, (ConnectionError, ServerError)) and attempt < self._max_retries:
            delay = min(self._max_backoff, self._backoff * 2.0**attempt) * random.uniform(0.5, 1)
            with self._lock:
                self._retried += 1
            log.warning(
                "batch %s of %d event(s): %s; try %d of %d in %.2f s",
                *(batch_id, len(batch), exc, attempt + 2, self._max_retries + 1, delay),
            )
            return delay
        log.error(
            "batch %s of %d event(s) not recorded after %d tries (send it again with this id to"
            " record it once): %s",
            *(batch_id, len(batch), attempt + 1, exc),
            exc_info=exc,
        )
        self._report(exc, batch)
        self._finish(batch_id, len(batch), failed=len(batch))
        return None

    def _report(self, error: Exception, events: list[Event]) -> None:
        if self._on_error is not None:
            with self._reporting:
                try:
                    self._on_error(error, events)
                except Exception:
                    log.exception("the tracker's on_error callback raised")

    def _finish(
        self, batch_id: str, n: int, *, sent: int = 0, rejected: int = 0, failed: int = 0
    ) -> None:
        with self._lock:
            self._sent += sent
            self._rejected += rejected
            self._failed += failed
            self._in_flight -= n
            del self._flying[batch_id]
            self._changed.notify_all()

    def _flush_target(self) -> int:
        """The number (in queue order) of the first event queued after this call: flush() is
        done once every event before it is (`_done_before`)."""
        with self._lock:  # _take holds it too: no event is counted twice or missed
            return self._taken + len(self._queue)

    def _done_before(self, target: int) -> bool:
        """Whether every event numbered below `target` is finished: taken, and in no batch
        still being sent (a batch taken later may finish first)."""
        return min(self._flying.values(), default=self._taken) >= target

    def _closing(self) -> None:
        with self._lock:
            self._closed = True
            self._limit = 0
            self._changed.notify_all()  # a blocked track() gives up
        self._stopping = True  # after the limit: an event queued before it is still sent
        self._wake()

    def _closed_report(self, timeout: float | None) -> bool:
        self._warn_dropped()
        left = self.counters().queued
        if left:
            log.warning("tracker closed with %d event(s) not sent after %s s", left, timeout)
        return not left


def _closed_when_multiprocessing_child_ends(tracker: Tracker) -> None:
    """In a child forked by multiprocessing (a Process, a worker of a Pool or of a
    ProcessPoolExecutor), which ends with os._exit and so runs no atexit hook: `tracker` is
    closed (its queue sent, for at most exit_timeout) by a multiprocessing finalizer, which
    the child runs once its work is done."""
    util = sys.modules.get("multiprocessing.util")
    if util is None:  # (its parent never imported multiprocessing: not its child)
        return
    # (added once the child starts its run, which first drops the finalizers it inherited)
    util.register_after_fork(tracker, _close_at_multiprocessing_exit)


def _close_at_multiprocessing_exit(tracker: Tracker) -> None:
    ref = weakref.ref(tracker)

    def close() -> None:
        if (alive := ref()) is not None:
            alive._close_at_exit()

    sys.modules["multiprocessing.util"].Finalize(None, close, exitpriority=0)


class Tracker(EventQueue):
    """Sends events queued by `track()` from background threads; made by `Stats.tracker()`.

    Batches go out when `batch_size` events are queued or every `interval` seconds; each takes
    every event waiting, up to `max_batch` (default 50,000, never below `batch_size`), so
    batches grow when events come faster than they are sent. When
    `max_queue` events wait, `track()` drops the new event, counts it and logs a warning (at
    most one per 10 s), or with `block=True` waits for room. A send that fails with
    ConnectionError or ServerError is tried again with the same batch id (recorded once),
    `max_retries` times with exponential backoff; then the batch is given up. Every failure and
    every rejected event goes to the log ("bitstat.tracker") and to `on_error(error, events)`.
    At interpreter exit the queue is flushed for at most `exit_timeout` seconds.
    """

    def __init__(self, stats: Recorder, *, block: bool = False, **options: Any) -> None:
        check_options("Stats.tracker", options, ("block",))
        super().__init__(**options)
        self._stats = stats
        self._block = block
        self._start()
        atexit.register(self._close_at_exit)
        ref = weakref.ref(self)

        def restart_in_child() -> None:
            if (tracker := ref()) is not None:
                tracker._start(forked=True)
                _closed_when_multiprocessing_child_ends(tracker)

        os.register_at_fork(after_in_child=restart_in_child)

    def _start(self, forked: bool = False) -> None:
        if forked:  # the parent sends what it queued; the child starts empty, with a new prefix
            self._reset()
        self._wakeup = threading.Event()
        self._wake = self._wakeup.set
        self._stopping = self._closed
        self._threads = [
            threading.Thread(target=self._run, name=f"bitstat-tracker-{k}", daemon=True)
            for k in range(SENDERS)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stopping  # read first: what was queued before close() is sent
                if not stopping:
                    self._wakeup.wait(self._interval)
                self._wakeup.clear()
                if self._stopping:  # close() woke us: the other sender must not miss it
                    self._wakeup.set()
                self._woken = False
                while (taken := self._take())[0]:
                    self._send(*taken)
                if stopping:
                    return
        finally:
            with self._changed:
                self._changed.notify_all()

    def _send(self, batch: list[Event], batch_id: str) -> None:
        attempt = 0
        now = time.time()  # (every try judges the events by the same clock: a retry answered
        # from the batch's marker lists what the recorded try rejected for their time)
        while True:
            try:
                # one try a send: the retries are the tracker's own (max_retries, backoff)
                result = self._stats.track_many(batch, batch_id=batch_id, now=now, deadline=0)
            except Exception as exc:
                delay = self._retry_delay(exc, attempt, batch, batch_id)
                if delay is None:
                    return
                attempt += 1
                time.sleep(delay)
            else:
                self._recorded(batch, result, batch_id)
                return

    def _room_for(self, record: Event) -> bool:
        if not self._block:
            return False
        self._wake()
        with self._changed:
            self._changed.wait_for(lambda: len(self._queue) < self._max_queue or self._closed)
            if self._closed:
                return False
            self._queue.append(record)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far; True when all of it was sent (or rejected or failed)
        within `timeout` seconds (None: however long the retries take)."""
        if threading.current_thread() in self._threads:
            raise RuntimeError("flush() in on_error would wait for its own thread")
        target = self._flush_target()
        self._wake()
        with self._changed:
            self._changed.wait_for(
                lambda: self._done_before(target) or not self._sending(), timeout
            )
            return self._done_before(target)

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking events (later ones are dropped), send the queue and stop the thread;
        True when everything was sent within `timeout`. The Stats stays open."""
        atexit.unregister(self._close_at_exit)
        self._closing()
        until = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if until is None else max(0.0, until - time.monotonic()))
        self._left_after_close()
        return self._closed_report(timeout)

    def _left_after_close(self) -> None:
        if not self._sending():  # (a sender still runs: it takes them)
            self._drop_queue()

    def _sending(self) -> bool:
        """Whether a sender thread still runs."""
        return any(thread.is_alive() for thread in self._threads)

    def _close_at_exit(self) -> None:
        self.close(self._exit_timeout)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
