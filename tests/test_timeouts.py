"""No call hangs: a server that accepts a connection and then never answers (a half-open TCP
connection, a dead load balancer) makes a call fail with ConnectionError within its timeout."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import bitstat
import bitstat.aio


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server takes connections and reads what is sent, answering nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)  # kept open, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_silent_server_fails_the_call_within_the_timeout(silent_server: str) -> None:
    started = time.monotonic()
    with pytest.raises(bitstat.ConnectionError, match="cannot reach the server"):
        bitstat.connect(silent_server, timeout=0.5)
    assert time.monotonic() - started < 20  # not forever: the timeout, give or take a retry


def test_the_timeout_can_be_given_in_the_url(silent_server: str) -> None:
    started = time.monotonic()
    with pytest.raises(bitstat.ConnectionError):
        bitstat.connect(silent_server + "?socket_timeout=0.5")
    assert time.monotonic() - started < 20


def test_the_asyncio_api_has_the_same_timeout(silent_server: str) -> None:
    async def go() -> None:
        await bitstat.aio.connect(silent_server, timeout=0.5)

    started = time.monotonic()
    with pytest.raises(bitstat.ConnectionError):
        asyncio.run(go())
    assert time.monotonic() - started < 20


def test_a_timeout_leaves_a_working_server_working(embedded_url: str) -> None:
    with bitstat.connect(embedded_url, namespace="timeouts", timeout=5) as st:
        st.track("visit", user=1, time=1_790_000_000)
        assert st.total("visit", "2026-09-21") == 1
        st.drop()
