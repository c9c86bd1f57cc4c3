"""The fire-and-forget trackers (`Stats.tracker()`, `AsyncStats.tracker()`) on real servers.

Answers are compared with what was tracked, so every event must arrive exactly once; sends are
made to fail, hang or lose their reply by wrapping the Stats. No test asserts a speed: waits
for the background sender poll a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import bitstat
import bitstat.aio as aio
from bitstat import embedded
from bitstat.tracker import SENDERS

SCHEMA = bitstat.Schema(ids="map", count=["country"])
MONTH = "2026-11"
ROOT = Path(__file__).resolve().parent.parent


def make_events(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` events of two names, 37 users and three countries, all in November 2026."""
    return [
        {
            "event": ("login", "purchase")[(i + seed) % 2],
            "user": f"u-{(i * 7 + seed) % 37}",
            "country": ("NL", "DE", "FR")[(i + seed) % 3],
            "time": f"2026-11-{1 + (i + seed) % 28:02d}T10:{i % 60:02d}:00+00:00",
        }
        for i in range(n)
    ]


def assert_recorded_once(st: bitstat.Stats, events: list[dict[str, Any]]) -> None:
    """Totals, distinct users and counts per country are those of `events`, each taken once."""
    for name in {e["event"] for e in events}:
        mine = [e for e in events if e["event"] == name]
        assert st.total(name, MONTH) == len(mine)
        assert st.unique(name, MONTH) == len({e["user"] for e in mine})
        assert st.counts(name, "country", MONTH) == Counter(e["country"] for e in mine)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the tracker did not get there in time"
        time.sleep(0.005)


@pytest.fixture
def open_stats(namespace: str) -> Iterator[Callable[[str], bitstat.Stats]]:
    """connect(url) in the test's namespace with SCHEMA; dropped and closed after the test."""
    opened: list[bitstat.Stats] = []

    def make(url: str) -> bitstat.Stats:
        opened.append(bitstat.connect(url, namespace=namespace, schema=SCHEMA))
        return opened[-1]

    yield make
    for st in opened[:1]:
        st.drop()
    for st in opened:
        st.close()


@pytest.fixture
def stats(embedded_url: str, open_stats: Callable[[str], bitstat.Stats]) -> bitstat.Stats:
    return open_stats(embedded_url)


class Wrapped:
    """A Stats whose `track_many` is observed (and made to fail or wait) by the test."""

    def __init__(self, st: bitstat.Stats) -> None:
        self.st = st
        self.calls: list[tuple[list[dict[str, Any]], str | None]] = []
        self.lose_replies = 0  # the next sends are applied, then raise: a reply lost
        self.fail: Exception | None = None  # every send raises this, nothing applied
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def track_many(
        self,
        events: Any,
        batch_id: str | None = None,
        deadline: float | None = None,
        now: float | None = None,
    ) -> bitstat.TrackResult:
        self.calls.append((list(events), batch_id))
        self.entered.set()
        self.gate.wait()
        if self.fail is not None:
            raise self.fail
        result = self.st.track_many(events, batch_id=batch_id, deadline=deadline)
        if self.lose_replies:
            self.lose_replies -= 1
            raise bitstat.ConnectionError("the reply was lost")
        return result


def occupy_senders(t: bitstat.Tracker, wrapped: Wrapped, events: list[dict[str, Any]]) -> int:
    """Track a full batch for each sender thread of `t` and wait until each hangs in its send
    (`wrapped.gate` closed): what is tracked next stays queued. Returns the events used."""
    size = t._batch_size
    for k in range(SENDERS):
        for e in events[k * size : (k + 1) * size]:
            t.track(e)
        wait_until(lambda k=k: len(wrapped.calls) == k + 1)  # type: ignore[misc]
    return SENDERS * size


# the blocking tracker


def test_every_event_arrives_once_from_many_threads(
    server_url: str, open_stats: Callable[[str], bitstat.Stats]
) -> None:
    st = open_stats(server_url)
    events = make_events(1200)
    with st.tracker(batch_size=64, interval=0.02) as t:
        parts = [events[i::4] for i in range(4)]

        def send(part: list[dict[str, Any]]) -> None:
            for i, e in enumerate(part):
                if i % 2:  # both call forms
                    t.track(e)
                else:
                    t.track(e["event"], **{k: v for k, v in e.items() if k != "event"})

        threads = [threading.Thread(target=send, args=(p,)) for p in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert t.counters() == bitstat.TrackerCounters(0, 1200, 0, 0, 0, 0)
    assert_recorded_once(st, events)


def test_track_takes_the_call_forms_of_stats_track_and_stamps_the_call_time(
    stats: bitstat.Stats,
) -> None:
    wrapped = Wrapped(stats)
    t = bitstat.Tracker(wrapped, interval=60)  # type: ignore[arg-type]
    mine = {"event": "login", "user": "u-1"}
    before = time.time()
    t.track(mine)
    t.track("purchase", user="u-2", country="NL")
    t.track({"event": "login", "user": "u-3", "time": None})
    after = time.time()
    t.track("login", user="u-4", time="2026-11-03T10:00:00+00:00")
    assert mine == {"event": "login", "user": "u-1"}  # the caller's mapping is not touched
    with pytest.raises(bitstat.InvalidEvent):
        t.track({"event": "login"}, user="u-1")
    with pytest.raises(bitstat.InvalidEvent):
        t.track("login", event="purchase")
    assert wrapped.calls == []  # nothing sent before the interval, a full batch or a flush
    assert t.close()
    (batch, batch_id), *more = wrapped.calls
    assert not more and batch_id
    assert [e["event"] for e in batch] == ["login", "purchase", "login", "login"]
    assert batch[1] == {
        "event": "purchase",
        "user": "u-2",
        "country": "NL",
        "time": batch[1]["time"],
    }
    assert all(before <= e["time"] <= after for e in batch[:3])  # the time of track(), not send
    assert batch[3]["time"] == "2026-11-03T10:00:00+00:00"


def test_a_full_batch_is_sent_without_waiting_for_the_interval(stats: bitstat.Stats) -> None:
    t = stats.tracker(batch_size=5, interval=3600)
    for e in make_events(5):
        t.track(e)
    wait_until(lambda: t.counters().sent == 5)
    assert t.close()


def test_a_partial_batch_is_sent_after_the_interval(stats: bitstat.Stats) -> None:
    t = stats.tracker(batch_size=1000, interval=0.05)
    for e in make_events(3):
        t.track(e)
    wait_until(lambda: t.counters().sent == 3)
    assert t.close()


def test_close_sends_the_queue_and_later_events_are_dropped(
    stats: bitstat.Stats, caplog: pytest.LogCaptureFixture
) -> None:
    events = make_events(250)
    t = stats.tracker(batch_size=100, interval=3600)
    for e in events:
        t.track(e)
    assert t.close()
    assert t.counters().sent == 250
    assert_recorded_once(stats, events)
    with caplog.at_level(logging.WARNING, logger="bitstat.tracker"):
        t.track(events[0])
        assert t.close()  # closing twice is harmless
    assert t.counters().dropped == 1
    assert "tracker is closed" in caplog.text


def test_a_full_queue_drops_the_newest_and_counts_them(
    stats: bitstat.Stats, caplog: pytest.LogCaptureFixture
) -> None:
    wrapped = Wrapped(stats)
    wrapped.gate.clear()
    t = bitstat.Tracker(wrapped, batch_size=2, max_queue=5, interval=3600)  # type: ignore[arg-type]
    events = make_events(20)
    with caplog.at_level(logging.WARNING, logger="bitstat.tracker"):
        busy = occupy_senders(t, wrapped, events)  # every sender hangs in track_many
        for e in events[busy : busy + 8]:
            t.track(e)
    assert t.counters() == bitstat.TrackerCounters(busy + 5, 0, 0, 0, 0, 3)
    assert "dropped 1 event(s): max_queue=5 full" in caplog.text
    assert len(caplog.records) == 1  # one warning until WARN_EVERY has passed
    wrapped.gate.set()
    with caplog.at_level(logging.WARNING, logger="bitstat.tracker"):
        assert t.close()
    assert "dropped 2 event(s): max_queue=5 full (3 dropped in all)" in caplog.text
    assert t.counters() == bitstat.TrackerCounters(0, busy + 5, 0, 0, 0, 3)
    assert_recorded_once(stats, events[: busy + 5])  # the newest were dropped, the oldest kept


def test_block_waits_for_room_instead_of_dropping(stats: bitstat.Stats) -> None:
    wrapped = Wrapped(stats)
    wrapped.gate.clear()
    t = bitstat.Tracker(  # type: ignore[arg-type]
        wrapped, batch_size=2, max_queue=2, interval=3600, block=True
    )
    events = make_events(20)
    busy = occupy_senders(t, wrapped, events)
    for e in events[busy : busy + 2]:
        t.track(e)
    events = events[: busy + 3]
    waiter = threading.Thread(target=t.track, args=(events[-1],))
    waiter.start()
    waiter.join(0.05)
    assert waiter.is_alive()  # the queue is full: track() waits
    wrapped.gate.set()
    waiter.join(10)
    assert not waiter.is_alive()
    assert t.close()
    assert t.counters() == bitstat.TrackerCounters(0, len(events), 0, 0, 0, 0)
    assert_recorded_once(stats, events)


def test_a_lost_reply_is_retried_under_the_same_batch_id_and_counts_once(
    server_url: str, open_stats: Callable[[str], bitstat.Stats]
) -> None:
    st = open_stats(server_url)
    wrapped = Wrapped(st)
    wrapped.lose_replies = 1  # the first send is applied, then its reply is lost
    t = bitstat.Tracker(wrapped, interval=3600, backoff=0.001)  # type: ignore[arg-type]
    events = make_events(40)
    for e in events:
        t.track(e)
    assert t.flush()
    (first, first_id), (again, again_id) = wrapped.calls
    assert first_id == again_id and first == again
    assert t.counters() == bitstat.TrackerCounters(0, 40, 0, 1, 0, 0)
    assert_recorded_once(st, events)
    t.close()


@pytest.mark.parametrize("max_batch", [None, 10])
def test_events_that_wait_behind_the_sends_go_in_one_batch_up_to_max_batch(
    stats: bitstat.Stats, max_batch: int | None
) -> None:
    """Events queued faster than they are sent make larger batches (a key is written once a
    batch), never larger than max_batch, each under its own id."""
    wrapped = Wrapped(stats)
    wrapped.gate.clear()
    t = bitstat.Tracker(  # type: ignore[arg-type]
        wrapped, batch_size=4, max_batch=max_batch, interval=3600
    )
    events = make_events(4 * SENDERS + 36)
    busy = occupy_senders(t, wrapped, events)  # every sender hangs in its send
    for e in events[busy:]:
        t.track(e)
    wrapped.gate.set()
    assert t.flush()
    sizes = [len(batch) for batch, _ in wrapped.calls]
    assert sizes[:SENDERS] == [4] * SENDERS
    assert sorted(sizes[SENDERS:]) == ([36] if max_batch is None else [6, 10, 10, 10])
    sent = sorted(e["time"] for batch, _ in wrapped.calls for e in batch)
    assert sent == sorted(e["time"] for e in events)  # each once
    assert len({batch_id for _, batch_id in wrapped.calls}) == len(sizes)
    assert t.counters() == bitstat.TrackerCounters(0, len(events), 0, 0, 0, 0)
    assert_recorded_once(stats, events)
    t.close()


def test_a_second_sender_plans_a_full_batch_while_the_first_waits(stats: bitstat.Stats) -> None:
    """While one batch is being sent, another sender takes the next full batch (so Redis
    applies one while the client plans the other), but never a short one: that waits for the
    first sender, so that batches stay large."""
    wrapped = Wrapped(stats)
    wrapped.gate.clear()
    t = bitstat.Tracker(wrapped, batch_size=4, interval=3600)  # type: ignore[arg-type]
    events = make_events(11)
    for e in events[:4]:
        t.track(e)
    wait_until(lambda: len(wrapped.calls) == 1)
    for e in events[4:7]:  # short of a batch: left queued, though the senders are woken
        t.track(e)
    assert not t.flush(timeout=0.1)
    assert len(wrapped.calls) == 1
    t.track(events[7])  # a full batch: the second sender takes it
    wait_until(lambda: len(wrapped.calls) == 2)
    assert wrapped.calls[1][0] == events[4:8]
    for e in events[8:]:
        t.track(e)
    wrapped.gate.set()
    assert t.flush()
    assert [len(batch) for batch, _ in wrapped.calls] == [4, 4, 3]
    assert_recorded_once(stats, events)
    t.close()


class FirstHangs(Wrapped):
    """A Stats whose first `track_many` waits for `gate`; the others go through."""

    def track_many(
        self,
        events: Any,
        batch_id: str | None = None,
        deadline: float | None = None,
        now: float | None = None,
    ) -> bitstat.TrackResult:
        if self.calls:
            self.calls.append((list(events), batch_id))
            return self.st.track_many(events, batch_id=batch_id, deadline=deadline)
        return super().track_many(events, batch_id, deadline)


def test_flush_waits_for_a_batch_that_finishes_after_a_later_one(stats: bitstat.Stats) -> None:
    """Two senders finish batches in any order: flush() is done only once every event queued
    before it is, not once as many events as that have finished."""
    wrapped = FirstHangs(stats)
    wrapped.gate.clear()
    t = bitstat.Tracker(wrapped, batch_size=2, interval=3600)  # type: ignore[arg-type]
    events = make_events(10)
    for e in events[:2]:
        t.track(e)
    wait_until(lambda: len(wrapped.calls) == 1)  # the first batch hangs
    t.track(events[2])
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(t.flush()))
    flusher.start()  # waits for events 0-2
    for e in events[3:]:
        t.track(e)  # the second sender takes events 2-9 and records them
    wait_until(lambda: t.counters().sent == 8)
    flusher.join(0.2)
    assert flusher.is_alive() and not flushed  # 8 finished, but not events 0 and 1
    wrapped.gate.set()
    flusher.join(10)
    assert flushed == [True]
    assert t.counters() == bitstat.TrackerCounters(0, 10, 0, 0, 0, 0)
    assert_recorded_once(stats, events)
    t.close()


class ReleaseThenYield:
    """A lock that, when a sender thread releases it, sleeps a little: the other sender runs
    right then (a switch of threads at the worst place)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, *args: Any) -> bool:
        return self._lock.acquire(*args)

    def release(self) -> None:
        self._lock.release()
        if threading.current_thread().name.startswith("bitstat-tracker"):
            time.sleep(0.02)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_batches_taken_at_once_by_both_senders_have_their_own_ids() -> None:
    """A batch's id is made as it is taken, under the lock: two senders taking batches at the
    same moment never send two under one id (the second would be recorded as seen)."""
    calls: list[tuple[int, str | None]] = []

    class Recorder:
        def track_many(
            self,
            events: Any,
            batch_id: str | None = None,
            deadline: float | None = None,
            now: float | None = None,
        ) -> bitstat.TrackResult:
            calls.append((len(events), batch_id))
            return bitstat.TrackResult(len(events), [], {})

    t = bitstat.Tracker(Recorder(), batch_size=2, max_batch=2, interval=3600)  # type: ignore[arg-type]
    t._lock = ReleaseThenYield()  # type: ignore[assignment]
    t._changed = threading.Condition(t._lock)  # type: ignore[arg-type]
    for e in make_events(8):
        t.track(e)
    assert t.close(10)
    assert sorted(n for n, _ in calls) == [2, 2, 2, 2]
    assert len({batch_id for _, batch_id in calls}) == 4
    assert t.counters().sent == 8


def test_max_batch_below_batch_size_or_not_a_count_is_refused(stats: bitstat.Stats) -> None:
    with pytest.raises(ValueError, match=r"max_batch \(2\) must be >= batch_size \(5\)"):
        stats.tracker(batch_size=5, max_batch=2)
    with pytest.raises(ValueError, match=r"max_batch must be an integer, got 100000\.0"):
        stats.tracker(max_batch=1e5)
    with pytest.raises(ValueError, match=r"batch_size must be an integer, got True"):
        stats.tracker(batch_size=True)
    with pytest.raises(ValueError, match=r"max_retries must be an integer, got '3'"):
        stats.tracker(max_retries="3")
    numpy = pytest.importorskip("numpy")
    t = stats.tracker(batch_size=numpy.int64(5), max_batch=numpy.int32(10))
    assert (t._batch_size, t._max_batch) == (5, 10) and type(t._max_batch) is int
    t.close()


def test_every_batch_has_its_own_id(stats: bitstat.Stats) -> None:
    wrapped = Wrapped(stats)
    t = bitstat.Tracker(wrapped, batch_size=3, max_batch=3, interval=3600)  # type: ignore[arg-type]
    for e in make_events(10):
        t.track(e)
    assert t.close()
    ids = [batch_id for _, batch_id in wrapped.calls]
    assert len(ids) >= 4 and len(set(ids)) == len(ids)
    other = bitstat.Tracker(wrapped, interval=3600)  # type: ignore[arg-type]
    other.track(make_events(1)[0])
    assert other.close()
    assert wrapped.calls[-1][1] not in ids


def test_a_server_down_then_up_records_the_batch_once(namespace: str) -> None:
    data_dir = tempfile.mkdtemp(prefix="bt-", dir="/tmp")  # short: a unix socket, same URL
    url = embedded.ensure_server(data_dir)
    st = bitstat.connect(url, namespace=namespace, schema=SCHEMA)
    try:
        embedded.stop(data_dir)
        t = st.tracker(interval=3600, backoff=0.02, max_backoff=0.05, max_retries=1000)
        events = make_events(30)
        for e in events:
            t.track(e)
        assert not t.flush(timeout=0)  # send now, without waiting for the server
        wait_until(lambda: t.counters().retried >= 2)
        assert embedded.ensure_server(data_dir) == url
        assert t.flush(timeout=30)
        counters = t.counters()
        assert (counters.sent, counters.failed, counters.queued) == (30, 0, 0)
        assert_recorded_once(st, events)
        t.close()
        st.drop()
    finally:
        st.close()
        embedded.stop(data_dir)


def test_a_batch_given_up_after_the_retries_is_reported(
    stats: bitstat.Stats, caplog: pytest.LogCaptureFixture
) -> None:
    wrapped = Wrapped(stats)
    wrapped.fail = bitstat.ConnectionError("no server")
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    t = bitstat.Tracker(  # type: ignore[arg-type]
        wrapped,
        interval=3600,
        max_retries=2,
        backoff=0.001,
        on_error=lambda e, b: errors.append((e, b)),
    )
    events = make_events(4)
    with caplog.at_level(logging.WARNING, logger="bitstat.tracker"):
        for e in events:
            t.track(e)
        assert t.flush()  # finished: given up
        wrapped.fail = RuntimeError("a bug")  # not a server failure: never retried
        t.track(events[0])
        assert t.flush()
    assert len(wrapped.calls) == 3 + 1
    assert len({batch_id for _, batch_id in wrapped.calls[:3]}) == 1
    assert t.counters() == bitstat.TrackerCounters(0, 0, 0, 2, 5, 0)
    (first, batch), (second, _) = errors
    assert isinstance(first, bitstat.ConnectionError) and [e["user"] for e in batch] == [
        e["user"] for e in events
    ]
    assert isinstance(second, RuntimeError)
    assert "not recorded after 3 tries" in caplog.text and "a bug" in caplog.text
    t.close()


def test_rejected_events_reach_the_callback_with_their_reason(
    stats: bitstat.Stats, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []

    def on_error(error: Exception, events: list[dict[str, Any]]) -> None:
        errors.append((error, events))
        raise RuntimeError("a callback that fails is logged, not fatal")

    t = stats.tracker(interval=3600, on_error=on_error)
    good = make_events(3)
    with caplog.at_level(logging.WARNING, logger="bitstat.tracker"):
        t.track(good[0])
        t.track("login", country="NL", time="2026-11-02T10:00:00+00:00")  # no actor
        t.track(good[1])
        t.track("bad\nname", user="u-1", time="2026-11-02T10:00:00+00:00")
        t.track(good[2])
        assert t.flush()
    assert t.counters() == bitstat.TrackerCounters(0, 3, 2, 0, 0, 0)
    assert [type(e) for e, _ in errors] == [bitstat.InvalidEvent] * 2
    (no_actor, [e1]), (bad_name, [e2]) = errors
    assert "user" in str(no_actor) and e1["country"] == "NL"
    assert "name" in str(bad_name) and e2["event"] == "bad\nname"
    assert "2 of 5 event(s) rejected" in caplog.text
    assert "on_error callback raised" in caplog.text
    assert_recorded_once(stats, good)
    t.close()


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,  # a guard against a hang, not a speed figure
        env=env,
        check=False,
    )


def test_the_queue_is_sent_at_interpreter_exit(
    embedded_url: str, namespace: str, stats: bitstat.Stats
) -> None:
    done = run_python(
        f"""
        import bitstat, test_tracker
        st = bitstat.connect({embedded_url!r}, namespace={namespace!r})
        t = st.tracker(interval=3600)
        for e in test_tracker.make_events(250):
            t.track(e)
        """  # no close(): the atexit hook sends the queue
    )
    assert done.returncode == 0, done.stderr
    assert_recorded_once(stats, make_events(250))


def test_the_exit_flush_waits_at_most_exit_timeout(embedded_url: str, namespace: str) -> None:
    done = run_python(
        f"""
        import threading, bitstat, test_tracker
        st = bitstat.connect({embedded_url!r}, namespace={namespace!r})
        wrapped = test_tracker.Wrapped(st)
        wrapped.gate.clear()  # a send that never returns
        t = bitstat.Tracker(wrapped, interval=3600, exit_timeout=0.2)
        t.track(test_tracker.make_events(1)[0])
        """
    )
    assert done.returncode == 0, done.stderr
    assert "tracker closed with 1 event(s) not sent after 0.2 s" in done.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_sends_its_own_events_under_new_batch_ids(stats: bitstat.Stats) -> None:
    events = make_events(20)
    t = stats.tracker(interval=3600)
    for e in events[:10]:
        t.track(e)
    pid = os.fork()
    if pid == 0:  # the child: its own queue, its own thread
        code = 1
        try:
            for e in events[10:]:
                t.track(e)
            code = 0 if t.close(timeout=20) and t.counters().sent == 10 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert t.close()
    assert t.counters().sent == 10
    assert_recorded_once(stats, events)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_child_forked_while_a_thread_takes_a_connection_sends_its_events(
    stats: bitstat.Stats,
) -> None:
    """redis-py's pool holds a lock while a thread takes a connection from it or gives one
    back, and a child forked then inherited it taken, by a thread the child does not have: its
    first call waited for ever (a tracker busy sending in a pre-forked server: 2 children of
    80 hung). A fork now waits for that lock to be free."""
    events = make_events(20)
    t = stats.tracker(interval=3600)
    pool_lock = stats._store.client.connection_pool._lock
    taken = threading.Event()

    def take_a_connection() -> None:  # (as long as a thread in get_connection could)
        with pool_lock:
            taken.set()
            time.sleep(0.2)

    taker = threading.Thread(target=take_a_connection)
    taker.start()
    taken.wait()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for e in events:
                t.track(e)
            code = 0 if t.close(timeout=20) and t.counters().sent == 20 else 1
        finally:
            os._exit(code)
    taker.join()
    deadline = time.monotonic() + 30
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if ended[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child hung")
    assert os.waitstatus_to_exitcode(ended[1]) == 0
    assert t.close()
    assert_recorded_once(stats, events)


MP_TRACKER: list[bitstat.Tracker] = []  # the tracker of track_in_worker (a forked worker's)


def track_in_worker(events: list[dict[str, Any]]) -> int:
    for e in events:
        MP_TRACKER[0].track(e)
    return len(events)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_multiprocessing_child_sends_its_queue_when_its_work_ends(stats: bitstat.Stats) -> None:
    """A child forked by multiprocessing ends with os._exit, which runs no atexit hook: a
    Process, a Pool's worker and a ProcessPoolExecutor's send what they tracked as they end."""
    events = make_events(400)
    MP_TRACKER[:] = [stats.tracker(interval=3600)]
    forking = multiprocessing.get_context("fork")
    child = forking.Process(target=track_in_worker, args=(events[:100],))
    child.start()
    child.join()
    assert child.exitcode == 0
    pool = forking.Pool(2)
    assert sum(pool.map(track_in_worker, [events[100:200], events[200:300]])) == 200
    pool.close()
    pool.join()
    with ProcessPoolExecutor(2, mp_context=forking) as workers:
        assert sum(workers.map(track_in_worker, [events[300:350], events[350:]])) == 100
    t = MP_TRACKER.pop()
    assert t.close()
    assert t.counters().sent == 0  # (the parent tracked none)
    assert_recorded_once(stats, events)


# the asyncio tracker


class AsyncWrapped:
    """`Wrapped` for an AsyncStats."""

    def __init__(self, st: aio.AsyncStats) -> None:
        self.st = st
        self.calls: list[str | None] = []
        self.lose_replies = 0  # the next sends are applied, then raise
        self.hang_replies = 0  # the next sends are applied, then never answer
        self.applied = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def track_many(
        self,
        events: Any,
        batch_id: str | None = None,
        deadline: float | None = None,
        now: float | None = None,
    ) -> bitstat.TrackResult:
        self.calls.append(batch_id)
        await self.gate.wait()
        result = await self.st.track_many(events, batch_id=batch_id, deadline=deadline)
        self.applied += 1
        if self.lose_replies:
            self.lose_replies -= 1
            raise bitstat.ConnectionError("the reply was lost")
        if self.hang_replies:
            self.hang_replies -= 1
            await asyncio.Event().wait()
        return result


def test_async_every_event_arrives_once(
    server_url: str, namespace: str, open_stats: Callable[[str], bitstat.Stats]
) -> None:
    st = open_stats(server_url)  # the blocking reader; stores the schema
    events = make_events(700)

    async def go() -> bitstat.TrackerCounters:
        ast = await aio.connect(server_url, namespace=namespace)
        async with ast.tracker(batch_size=64, interval=0.02) as t:
            for i, e in enumerate(events):
                if i % 2:
                    t.track(e)
                else:
                    t.track(e["event"], **{k: v for k, v in e.items() if k != "event"})
                if i % 100 == 0:
                    await asyncio.sleep(0)  # let the sender run, as a web app would
        await ast.close()
        return t.counters()

    assert asyncio.run(go()) == bitstat.TrackerCounters(0, 700, 0, 0, 0, 0)
    assert_recorded_once(st, events)


def test_async_sends_by_size_and_by_interval(embedded_url: str, stats: bitstat.Stats) -> None:
    async def go() -> None:
        ast = await aio.connect(embedded_url, namespace=stats.namespace)
        by_size = ast.tracker(batch_size=5, interval=3600)
        by_time = ast.tracker(batch_size=1000, interval=0.05)
        events = make_events(8)
        for e in events[:5]:
            by_size.track(e)
        for e in events[5:]:
            by_time.track(e)
        for _ in range(2000):
            if by_size.counters().sent == 5 and by_time.counters().sent == 3:
                break
            await asyncio.sleep(0.005)
        assert by_size.counters().sent == 5 and by_time.counters().sent == 3
        assert await by_size.close() and await by_time.close()
        await ast.close()

    asyncio.run(go())
    assert_recorded_once(stats, make_events(8))


def test_async_lost_reply_counts_once_and_full_queue_drops(
    embedded_url: str, stats: bitstat.Stats
) -> None:
    events = make_events(12)
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []

    async def go() -> bitstat.TrackerCounters:
        ast = await aio.connect(embedded_url, namespace=stats.namespace)
        wrapped = AsyncWrapped(ast)
        wrapped.lose_replies = 1
        wrapped.gate.clear()
        t = bitstat.AsyncTracker(  # type: ignore[arg-type]
            wrapped,
            batch_size=4,
            max_queue=6,
            interval=3600,
            backoff=0.001,
            on_error=lambda e, b: errors.append((e, b)),
        )
        for e in events[:4]:
            t.track(e)
        while not wrapped.calls:  # the sender took the full batch and waits at the gate
            await asyncio.sleep(0.001)
        for e in events[4:]:
            t.track(e)  # 6 fit, 2 are dropped
        t.track("login", country="NL", time="2026-11-02T10:00:00+00:00")  # dropped too
        assert t.counters() == bitstat.TrackerCounters(10, 0, 0, 0, 0, 3)
        wrapped.gate.set()
        assert await t.flush()
        t.track("login", country="NL", time="2026-11-02T10:00:00+00:00")  # rejected: no actor
        assert await t.close()
        assert wrapped.calls[0] == wrapped.calls[1]  # the lost reply, sent again under its id
        await ast.close()
        return t.counters()

    assert asyncio.run(go()) == bitstat.TrackerCounters(0, 10, 1, 1, 0, 3)
    [(error, [event])] = errors
    assert isinstance(error, bitstat.InvalidEvent) and event["country"] == "NL"
    assert_recorded_once(stats, events[:10])


def test_async_queue_is_sent_when_the_loop_ends_without_close(
    embedded_url: str, stats: bitstat.Stats
) -> None:
    events = make_events(150)
    wrapped: list[AsyncWrapped] = []

    async def go() -> None:
        ast = await aio.connect(embedded_url, namespace=stats.namespace)
        wrapped.append(AsyncWrapped(ast))
        wrapped[0].hang_replies = 1
        t = bitstat.AsyncTracker(  # type: ignore[arg-type]
            wrapped[0], batch_size=100, max_batch=100, interval=3600
        )
        for e in events:
            t.track(e)
        while not wrapped[0].applied:  # the first batch is recorded, its reply never comes
            await asyncio.sleep(0.001)

    asyncio.run(go())  # cancels the sender: it sends the batch cut short again, then the rest
    first, again, rest = wrapped[0].calls
    assert first == again != rest
    assert_recorded_once(stats, events)


def test_async_tracker_cannot_block() -> None:
    async def go() -> None:
        with pytest.raises(TypeError):
            bitstat.AsyncTracker(None, block=True)  # type: ignore[arg-type, call-arg]

    asyncio.run(go())


def test_async_batches_do_not_grow_unless_asked_to() -> None:
    """The asyncio tracker plans a batch on the loop's thread: its max_batch defaults to
    batch_size (a batch of 50,000 would hold the loop ~0.3 s); the blocking one's grows."""

    async def go() -> None:
        t = bitstat.AsyncTracker(None, batch_size=200)  # type: ignore[arg-type]
        grown = bitstat.AsyncTracker(None, batch_size=200, max_batch=1000)  # type: ignore[arg-type]
        assert (t._max_batch, grown._max_batch) == (200, 1000)
        await t.close()
        await grown.close()

    asyncio.run(go())
    blocking = bitstat.Tracker(None, batch_size=200)  # type: ignore[arg-type]
    assert blocking._max_batch == 50_000
    assert blocking.close()


def test_the_docs_example_runs(stats: bitstat.Stats) -> None:
    """The example of docs/library.md, "Fire-and-forget tracking"."""
    text = (ROOT / "docs" / "library.md").read_text("utf-8")
    section = text[text.index("\n## Fire-and-forget tracking\n") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    scope: dict[str, Any] = {"st": stats}
    exec(found.group(1), scope)
    assert scope["t"].counters() == bitstat.TrackerCounters(0, 2, 0, 0, 0, 0)


def test_a_child_forked_while_the_batches_in_doubt_are_locked_can_record(
    stats: bitstat.Stats,
) -> None:
    """The lock of the batches in doubt (record.IN_DOUBT, taken while a failed batch is looked
    up) held by a thread at the fork stayed held in the child: its first `track_many` after a
    failed batch hung. The child gets a lock of its own."""
    from bitstat import record

    record.IN_DOUBT.remember(stats.namespace, [{"x": 1}], "auto:x:1", 60)  # (one in doubt)
    try:
        with record.IN_DOUBT.lock:  # (held as another thread holds it, at the fork)
            pid = os.fork()
            if pid == 0:  # the child: exits 0 if it recorded, 3 if it waited in vain
                status = 3
                try:
                    done = threading.Thread(
                        target=stats.track_many,
                        args=([{"event": "child", "user": 1, "time": "2026-11-02"}],),
                        daemon=True,
                    )
                    done.start()
                    done.join(10)
                    status = 3 if done.is_alive() else 0
                finally:
                    os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert stats.total("child", "2026-11-02") == 1
    finally:
        record.IN_DOUBT.forget(stats.namespace, [{"x": 1}])


def test_the_pool_locks_taken_for_a_fork_are_freed_by_the_thread_that_took_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two threads forking at once: each takes the connection pools' locks before its fork and
    frees them after. With one list for all threads, the first to free them freed the locks
    the other had just taken for its own fork, which its child could then inherit taken."""
    from bitstat import store

    class Pool:
        def __init__(self) -> None:
            self._fork_lock, self._lock = threading.Lock(), threading.Lock()

    pool = Pool()
    monkeypatch.setattr(store, "_POOLS", [pool])
    took, done = threading.Event(), threading.Event()

    def forking() -> None:  # (as os.fork's hooks run in the forking thread)
        store._take_pool_locks()
        took.set()
        done.wait(10)
        store._free_pool_locks()

    other = threading.Thread(target=forking)
    other.start()
    try:
        assert took.wait(10)
        store._free_pool_locks()  # (this thread's after-fork step: it took nothing)
        assert pool._fork_lock.locked() and pool._lock.locked()  # (it freed the other's)
    finally:
        done.set()
        other.join(10)
    assert not pool._fork_lock.locked() and not pool._lock.locked()


def test_an_unknown_tracker_option_is_named_by_the_call_that_took_it(
    stats: bitstat.Stats, embedded_url: str, namespace: str
) -> None:
    """It said "EventQueue.__init__() got an unexpected keyword argument 'bath_size'", naming
    a class the user never called, and nothing of `block` on the asyncio tracker."""
    with pytest.raises(TypeError, match=r"^Stats\.tracker\(\) got an unknown option 'bath_size'"):
        stats.tracker(bath_size=5)

    async def asyncio_tracker(**options: Any) -> None:
        st = await aio.connect(embedded_url, namespace=namespace)
        try:
            st.tracker(**options)
        finally:
            await st.close()

    with pytest.raises(TypeError, match=r"^AsyncStats\.tracker\(\) takes no block"):
        asyncio.run(asyncio_tracker(block=True))
    with pytest.raises(TypeError, match=r"unknown option 'bath_size' \(it takes: batch_size"):
        asyncio.run(asyncio_tracker(bath_size=5))
