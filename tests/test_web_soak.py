"""`bitstat serve` under 50 concurrent clients posting batches, with its Redis server SIGKILLed
and restarted once in the middle (AOF, appendfsync always: what was acknowledged is on disk).

Each client sends its batches one after another, each under an Idempotency-Key of its own; an
answer 5xx, or none (the connection refused or reset, or no answer within the client's
timeout, shorter than the time the server is down), is retried with the same key and body
until one answers 2xx. Every event of a batch answered 2xx is then counted exactly once: the
answers equal those of the reference model fed exactly the acknowledged batches.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import bitstat
from exactly import batches, model, same_answers, schema
from faultservers import Server

pytestmark = pytest.mark.slow
CLIENTS = 50
BATCH = 20
# how long the clients post (the minute; BITSTAT_SOAK_SECONDS=10 for a quick run)
SECONDS = float(os.environ.get("BITSTAT_SOAK_SECONDS", "60"))
DOWN = 5.0  # seconds the Redis server stays down
# seconds a client waits for an answer (under load, 99% come within ~2 s on 2 cores): less
# than DOWN, so the requests in flight at the kill go unanswered and are retried
TIMEOUT = 4.0
GIVE_UP = 120.0  # seconds a client keeps retrying one batch before the test fails
NO_TOKENS = {"BITSTAT_READ_TOKEN": "", "BITSTAT_WRITE_TOKEN": ""}


@dataclass
class Tally:
    acknowledged: list[list[dict[str, Any]]] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)  # "200", "503", "ReadTimeout", ...
    retried: int = 0  # batches acknowledged after an error
    already_in: int = 0  # retried batches answered `recorded: 0`: an earlier try had landed
    after_restart: int = 0  # batches first sent after the server came back

    def count(self, what: str) -> None:
        self.answers[what] = self.answers.get(what, 0) + 1


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "always").start()
    yield server
    server.stop()


@pytest.fixture
def served(redis_server: Server) -> Iterator[tuple[str, str]]:
    """(base URL, namespace) of `bitstat serve --workers 2` on the server, its schema stored."""
    ns = f"t-soak-{uuid.uuid4().hex[:8]}"
    bitstat.connect(redis_server.url, namespace=ns, schema=schema()).close()
    command = [sys.executable, "-m", "bitstat", "--url", redis_server.url, "--namespace", ns]
    process = subprocess.Popen(
        [*command, "serve", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **NO_TOKENS},
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
            output.append(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        banner = lines.get(timeout=60)
        match = re.search(r"dashboard http://127\.0\.0\.1:([0-9]+)/", banner)
        assert match is not None, banner
        deadline = time.monotonic() + 60
        while len(children(process.pid)) < 2:  # both processes up before the clients start
            assert time.monotonic() < deadline and process.poll() is None, "".join(output)
            time.sleep(0.05)
        yield f"http://127.0.0.1:{match.group(1)}", ns
    finally:
        process.terminate()
        process.wait(timeout=60)
    tracebacks = [line for line in output if "Traceback" in line]
    assert not tracebacks, "".join(output[-200:])


async def client(
    base: str, n: int, stop: asyncio.Event, restarted: asyncio.Event, tally: Tally
) -> None:
    """Post batches until `stop`, each until it is answered 2xx."""
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        sent = 0
        while not stop.is_set():
            batch = batches(1, BATCH, seed=n * 1_000_000 + sent)[0]
            key = f"c{n}-{sent}"
            sent += 1
            fresh = restarted.is_set()
            tries = 0
            give_up = time.monotonic() + GIVE_UP
            while True:
                tries += 1
                try:
                    answer = await http.post(
                        "/v1/track", json=batch, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError as exc:  # refused, reset, or no answer in time
                    tally.count(type(exc).__name__)
                else:
                    tally.count(str(answer.status_code))
                    assert answer.status_code < 400 or answer.status_code >= 500, answer.text
                    if answer.is_success:
                        said = answer.json()
                        assert said["rejected"] == [], said
                        # only a retry may find its batch recorded by an earlier try
                        assert said["recorded"] == BATCH or (tries > 1 and said["recorded"] == 0)
                        tally.acknowledged.append(batch)
                        tally.retried += tries > 1
                        tally.already_in += said["recorded"] == 0
                        tally.after_restart += fresh
                        break
                assert time.monotonic() < give_up, f"batch {key} never acknowledged"
                await asyncio.sleep(0.1)


def test_fifty_clients_and_a_redis_restart_count_every_acknowledged_event_once(
    redis_server: Server, served: tuple[str, str]
) -> None:
    base, ns = served
    tally = Tally()

    async def soak() -> None:
        stop, restarted = asyncio.Event(), asyncio.Event()
        clients = [
            asyncio.create_task(client(base, n, stop, restarted, tally)) for n in range(CLIENTS)
        ]
        await asyncio.sleep(SECONDS / 2)
        # SIGKILL: nothing is shut down or written last; the AOF holds every acknowledged write
        await asyncio.to_thread(redis_server.kill)
        await asyncio.sleep(DOWN)
        await asyncio.to_thread(redis_server.start)
        restarted.set()
        await asyncio.sleep(SECONDS / 2)
        stop.set()
        await asyncio.gather(*clients)

    asyncio.run(soak())
    errors = {k: v for k, v in tally.answers.items() if not k.startswith("2")}
    assert "500" not in errors, tally.answers  # refusals (503) only, never an internal error
    assert errors and tally.retried, tally.answers  # the restart was felt, and retried through
    assert tally.after_restart >= CLIENTS, tally.answers  # and the clients went on after it
    want = model()
    for batch in tally.acknowledged:
        want.track_many(batch)
    with bitstat.connect(redis_server.url, namespace=ns) as st:
        same_answers(st, want)
    print(
        f"\n{len(tally.acknowledged)} batches of {BATCH} acknowledged, {tally.retried} after a"
        f" retry ({tally.already_in} found in), answers: {tally.answers}"
    )
