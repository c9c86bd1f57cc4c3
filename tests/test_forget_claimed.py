"""`forget` while another process's flush of track()'s queue holds the actor's event in its
claim (taken, not yet written): the erasure waits for that claim's batch, so the actor does not
come back once `forget` has answered. Answers are compared with the events sent."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import bitstat
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
