"""`forget` while another process's flush of track()'s queue holds the actor's event in its
claim (taken, not yet written): the erasure waits for that claim's batch, so the actor does not
come back once `forget` has answered. Answers are compared with the events sent."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import bitstat
import servers
from bitstat import queued
from bitstat.transport import Transport


def test_forget_waits_for_the_claims_other_flushes_hold(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = bitstat.Schema(ids="map")
    options: dict[str, Any] = {"schema": schema, "flush_at": 1000, "flush_interval": 100}
    with (
        bitstat.connect(server_url, namespace=namespace, **options) as writer,
        bitstat.connect(server_url, namespace=namespace, schema=schema) as eraser,
    ):
        for user in ("u-1", "u-2"):
            writer.track("login", user=user, time="2026-11-20T10:00:00")
        claimed, go_on, erasing = threading.Event(), threading.Event(), threading.Event()
        read, sleep = queued.records_of, Transport.sleep

        def stalled(events: bytes) -> list[dict[str, Any]]:  # the writer's flush, claim taken
            if threading.current_thread().name == "writer":
                claimed.set()
                assert go_on.wait(60), "the test never let the writer go on"
            return read(events)

        def waiting(self: Transport, seconds: float) -> Any:  # forget, waiting for the claim
            if threading.current_thread().name == "eraser":
                erasing.set()
            return (yield from sleep(self, seconds))

        monkeypatch.setattr(queued, "records_of", stalled)
        monkeypatch.setattr(Transport, "sleep", waiting)
        got: dict[str, Any] = {}

        def run(name: str, job: Any) -> threading.Thread:
            def target() -> None:
                try:
                    got[name] = job()
                except BaseException as exc:  # (raised below, in the test's thread)
                    got[name] = exc
                finally:
                    erasing.set()

            thread = threading.Thread(target=target, name=name)
            thread.start()
            return thread

        flushing = run("writer", writer.flush)
        try:
            assert claimed.wait(60), "the writer never claimed its events"
            forgetting = run("eraser", lambda: eraser.forget("u-1"))
            assert erasing.wait(60)  # forget waits for the claim (before: it had answered)
        finally:
            go_on.set()
        flushing.join(60)
        forgetting.join(60)
        assert got["writer"] == 2
        assert not isinstance(got["eraser"], BaseException) and got["eraser"].ids == ["u-1"]
        assert eraser.unique("login", "2026-11-20") == 1
        assert list(eraser.actors("login").day(2026, 11, 20).ids()) == ["u-2"]
        eraser.drop()


def test_forget_waiting_for_a_claim_reads_its_id_not_its_events(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While forget waited for another flush's claim (up to its lease: a minute and a half
    after its process died) it read the claims every 50 ms with HGETALL, events and all: up
    to 10,000 events a claim, megabytes a look. It reads the claims' ids alone."""
    schema = bitstat.Schema(ids="map", count=["note"])
    options: dict[str, Any] = {"schema": schema, "flush_at": 5000, "flush_interval": 100}
    note = "n" * 150
    server = servers.client_for(embedded_url)
    with (
        bitstat.connect(embedded_url, namespace=namespace, **options) as writer,
        bitstat.connect(embedded_url, namespace=namespace, schema=schema) as eraser,
    ):
        for i in range(2000):
            writer.track("login", user=f"u-{i}", note=note, time="2026-11-20T10:00:00")
        claimed, go_on = threading.Event(), threading.Event()
        read, sleep = queued.records_of, Transport.sleep
        looks: list[int] = []

        def stalled(events: bytes) -> list[dict[str, Any]]:  # the writer's flush, claim taken
            if threading.current_thread().name == "writer":
                claimed.set()
                assert go_on.wait(60), "the test never let the writer go on"
            return read(events)

        def waiting(self: Transport, seconds: float) -> Any:  # forget, waiting for the claim
            if threading.current_thread().name == "eraser":
                looks.append(int(server.info("stats")["total_net_output_bytes"]))
                if len(looks) == 6:
                    go_on.set()
            return (yield from sleep(self, seconds))

        monkeypatch.setattr(queued, "records_of", stalled)
        monkeypatch.setattr(Transport, "sleep", waiting)
        flushing = threading.Thread(target=writer.flush, name="writer")
        flushing.start()
        try:
            assert claimed.wait(60), "the writer never claimed its events"
            claim_bytes = sum(len(v) for v in server.hvals(eraser._ns.keys.queue_claims))
            forgetting = threading.Thread(target=lambda: eraser.forget("u-1"), name="eraser")
            forgetting.start()
            forgetting.join(60)
        finally:
            go_on.set()
            flushing.join(60)
        assert len(looks) >= 6 and claim_bytes > 300_000
        # five looks at the claims (and INFO's own answers): before, each read the claim whole
        assert looks[5] - looks[0] < claim_bytes, (looks, claim_bytes)
        assert eraser.unique("login", "2026-11-20") == 1999
        eraser.drop()
    server.close()
