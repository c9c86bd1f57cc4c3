"""Two senders of one batch id at the same time: the batch is recorded once, and the two
reports say so between them. A sender pauses in the middle of its write (after its first
apply.lua call) while the other sends the whole batch, then goes on: on a single server the
batch goes in parts (an event name each), and each sender reports the events of the parts it
wrote; on a cluster, the sender that wrote the namespace's group (the batch's own marker, last)
reports the batch. Before, both reported every event. Answers are compared with the model."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

import bitstat
from bitstat import record
from bitstat.transport import Transport
from exactly import SETTINGS, batches, same_answers
from model import Model
from proxy import Proxy

NAMES = ("purchase", "refund", "visit", "signup")


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "PART_MIN", 8)


def paused_after_first_write(
    monkeypatch: pytest.MonkeyPatch, step: str
) -> tuple[threading.Event, threading.Event]:
    """The thread named "paused" stops before its second apply.lua call through `step` (a
    Transport step: `send_apply` sends only those, `script` any script) until the returned
    event is set; other threads pass. The first event is set when it stops there."""
    real = getattr(Transport, step)
    stopped, go_on = threading.Event(), threading.Event()
    calls = {"n": 0}

    def paused(self: Transport, *args: Any, **kwargs: Any) -> Any:
        applying = step == "send_apply" or args[0] is self.apply_script
        if threading.current_thread().name == "paused" and applying:
            calls["n"] += 1
            if calls["n"] == 2:
                stopped.set()
                assert go_on.wait(60), "the other sender never finished"
        return (yield from real(self, *args, **kwargs))

    monkeypatch.setattr(Transport, step, paused)
    # (a try that sent it may have written: the retry of its call counts what it finds so)
    monkeypatch.setattr(record, "WRITES", (*record.WRITES, paused))
    return stopped, go_on


def two_senders(
    url: str, batch: list[dict[str, Any]], pause: tuple[threading.Event, threading.Event]
) -> tuple[int, int]:
    """What each sender of `batch` under one id reports: the paused one, then the other, which
    sends the whole batch while the first is stopped."""
    stopped, go_on = pause
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    schema = bitstat.Schema(**SETTINGS)
    first, second = (bitstat.connect(url, namespace=namespace, schema=schema) for _ in "ab")
    with bitstat.connect(url, namespace=f"{namespace}-warm", schema=schema) as warm:
        warm.track_many(batches(1, 50, seed=1, names=NAMES)[0])  # the server loads the scripts
        warm.drop()  # (else a write by SHA fails once, and is made again the slow way)
    got: dict[str, Any] = {}

    def send() -> None:
        try:
            got["paused"] = first.track_many(batch, batch_id="one-id").recorded
        except BaseException as exc:  # (reported by the test's thread)
            got["error"] = exc

    thread = threading.Thread(target=send, name="paused")
    try:
        thread.start()
        assert stopped.wait(60), "the first sender never wrote"
        got["other"] = second.track_many(batch, batch_id="one-id").recorded
        go_on.set()
        thread.join(60)
        if "error" in got:
            raise got["error"]
        want = Model(**SETTINGS)
        want.track_many(batch, batch_id="one-id")
        for name in NAMES:
            same_answers(second, want, event=name)
        return got["paused"], got["other"]
    finally:
        go_on.set()
        thread.join(60)
        second.drop()
        first.close()
        second.close()


def test_parts_are_reported_by_the_sender_that_wrote_them(
    embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = batches(1, 400, seed=5, names=NAMES)[0]
    pause = paused_after_first_write(monkeypatch, "send_apply")
    paused, other = two_senders(embedded_url, batch, pause)
    assert paused + other == len(batch)
    assert 0 < paused < len(batch)  # its first part, written before it paused


def test_a_batch_on_a_cluster_is_reported_by_the_sender_that_completed_it(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = batches(1, 400, seed=6, names=NAMES)[0]
    pause = paused_after_first_write(monkeypatch, "script")
    paused, other = two_senders(cluster_url, batch, pause)
    assert (paused, other) == (0, len(batch))


def test_a_sender_whose_try_wrote_nothing_reports_nothing_of_the_others_batch(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry storm: one sender's first try loses the reply of its look at the batch's marker
    (a read: nothing of the batch written), and while it waits to try again the other sender
    records the whole batch. Its retry finds the marker, which no try of its own wrote: it
    reports 0, not the batch a second time."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    schema = bitstat.Schema(**SETTINGS)
    batch = batches(1, 100, seed=8)[0]
    batch_id = "storm-7f3a"
    with (
        bitstat.connect(proxy.url(), namespace=namespace, schema=schema) as first,
        bitstat.connect(proxy.url(), namespace=namespace, schema=schema) as second,
    ):
        real = Transport.sleep
        others: list[int] = []

        def backed_off(self: Transport, seconds: float) -> Any:
            if not others:  # the first sender's wait before its retry
                others.append(second.track_many(batch, batch_id=batch_id).recorded)
            return (yield from real(self, seconds))

        monkeypatch.setattr(Transport, "sleep", backed_off)
        proxy.cut_replies(1, batch_id.encode())  # the first sender's GET of the marker
        mine = first.track_many(batch, batch_id=batch_id).recorded
        assert proxy.cut == 1
        assert (mine, others) == (0, [len(batch)])
        want = Model(**SETTINGS)
        want.track_many(batch)
        same_answers(first, want)
        first.drop()
