"""`bitstat serve --workers N`: N processes answer on one port, POST /v1/track records every event
once (a retried Idempotency-Key too, whichever process gets it), and what a process keeps for
itself (schemas, the namespaces it met) does not make the answers depend on which one answers.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import bitstat
from bitstat.aio import AsyncStore
from bitstat.transport import Transport
from bitstat.web.namespaces import Namespaces

NO_TOKENS = {"BITSTAT_READ_TOKEN": "", "BITSTAT_WRITE_TOKEN": ""}
SCHEMA = bitstat.Schema(ids="map", count=["country"], segment=["country"])


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture
def served(embedded_url: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """(process, base URL, namespace) of `bitstat serve --workers 2 --port 0`."""
    namespace = f"t-workers-{uuid.uuid4().hex[:8]}"
    bitstat.connect(embedded_url, namespace=namespace, schema=SCHEMA).close()
    command = [sys.executable, "-m", "bitstat", "--url", embedded_url, "--namespace", namespace]
    process = subprocess.Popen(
        [*command, "serve", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **NO_TOKENS},
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        banner = lines.get(timeout=60)
        match = re.search(r"dashboard http://127\.0\.0\.1:([0-9]+)/", banner)
        assert match is not None, banner
        base = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 60
        while len(children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield process, base, namespace
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        with bitstat.connect(embedded_url, namespace=namespace) as st:
            st.drop()


def test_two_processes_record_every_post_once(
    served: tuple[subprocess.Popen[str], str, str], embedded_url: str
) -> None:
    process, base, namespace = served
    events = [
        {"event": "visit", "user": f"u-{i % 70}", "time": "2026-11-02T10:00:00", "country": c}
        for i, c in enumerate(["NL", "DE", "FR"] * 100)
    ]
    batches = [events[i : i + 20] for i in range(0, len(events), 20)]

    def send(part: list[list[dict[str, object]]]) -> int:
        done = 0
        for batch in part:
            with httpx.Client(timeout=60) as client:  # a connection a request: any process
                answer = client.post(f"{base}/v1/track", json=batch)
                assert answer.status_code == 200, answer.text
                done += answer.json()["recorded"]
        return done

    async def all_at_once() -> list[int]:
        return await asyncio.gather(*(asyncio.to_thread(send, batches[k::4]) for k in range(4)))

    assert sum(asyncio.run(all_at_once())) == len(events)
    # a retried request records nothing, whichever process answers it
    key = {"Idempotency-Key": "retry-1"}
    said = [
        httpx.post(f"{base}/v1/track", json=batches[0], headers=key, timeout=60).json()
        for _ in range(6)
    ]
    assert [s["recorded"] for s in said] == [20, 0, 0, 0, 0, 0]

    for _ in range(6):
        query = {"event": "visit", "start": "2026-11-02"}
        assert httpx.get(f"{base}/v1/unique", params=query, timeout=60).json() == {"unique": 70}
        assert httpx.get(f"{base}/v1/total", params=query, timeout=60).json() == {"total": 320}
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        assert st.counts("visit", "country", "2026-11-02") == {"NL": 107, "DE": 107, "FR": 106}

    workers = children(process.pid)
    assert len(workers) >= 2  # the server processes (and multiprocessing's resource tracker)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0

    def running(pid: int) -> bool:
        stat = Path(f"/proc/{pid}/stat")
        try:
            return " Z " not in stat.read_text()
        except FileNotFoundError:
            return False

    # every child ends with the server; multiprocessing's resource tracker may take a moment
    # after its parent to notice (seen under load): a few seconds, not for good
    deadline = time.monotonic() + 15
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if running(pid)]


def test_every_process_lists_the_namespaces_any_of_them_met(
    served: tuple[subprocess.Popen[str], str, str], embedded_url: str
) -> None:
    _, base, namespace = served
    other = f"{namespace}-other"  # no stored schema: known only from the events sent to it
    answer = httpx.post(
        f"{base}/v1/track",
        params={"namespace": other},
        json={"event": "a", "user": 1},
        timeout=60,  # (httpx's 5 s default: a loaded CI machine's first write took longer)
    )
    assert answer.status_code == 200, answer.text
    try:
        for _ in range(8):  # a connection each: both processes answer some
            listed = httpx.get(f"{base}/v1/namespaces", timeout=60).json()["namespaces"]
            assert listed == sorted([namespace, other])
    finally:
        with bitstat.connect(embedded_url, namespace=other) as st:
            st.drop()
    for _ in range(4):  # dropped: no longer listed
        assert httpx.get(f"{base}/v1/namespaces", timeout=60).json()["namespaces"] == [namespace]


def test_namespaces_noted_by_one_process_are_listed_by_another(embedded_url: str) -> None:
    async def run() -> None:
        stores = [await AsyncStore.from_url(embedded_url) for _ in range(2)]
        default = f"t-ns-{uuid.uuid4().hex[:8]}"
        first, second = (Namespaces(s, default) for s in stores)
        try:
            other = await first.get(f"{default}-x")
            await other.track_many([{"event": "a", "user": 1}])
            await first.note(other.namespace)
            assert await second.listed() == [default, other.namespace]
            await other.drop()
            assert await second.listed() == [default]
        finally:
            await stores[0].call(Transport.delete, first.noted)
            for store in stores:
                await store.close()

    asyncio.run(run())


def test_metrics_count_every_process_and_never_go_down(
    served: tuple[subprocess.Popen[str], str, str],
) -> None:
    # the processes share the port, so a scrape reaches any one: each answered for itself,
    # and successive scrapes went up and down (a counter 'reset' at each, to Prometheus)
    _, base, _ = served
    posts, recorded, rejected = 12, 0, 0
    for n in range(posts):  # a connection each: both processes answer some
        events = [{"event": "visit", "user": f"m-{n}-{i}"} for i in range(n + 1)]
        events.append({"event": "visit"})  # no actor: rejected
        answer = httpx.post(f"{base}/v1/track", json=events, timeout=60).json()
        recorded += answer["recorded"]
        rejected += len(answer["rejected"])
    assert (recorded, rejected) == (78, 12)

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{base}/metrics", timeout=60).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def events(outcome: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("bitstat_events_total", (("outcome", outcome),))

    posted = (("method", "POST"), ("route", "/v1/track"), ("status", "200"))
    tracks = ("bitstat_http_requests_total", posted)
    deadline = time.monotonic() + 60  # each process publishes its figures within a second
    while scrape().get(events("recorded")) != recorded and time.monotonic() < deadline:
        time.sleep(0.2)
    started = {scrape()[("bitstat_process_start_time_seconds", ())] for _ in range(4)}
    assert len(started) == 1
    for _ in range(8):
        got = scrape()
        assert (got[events("recorded")], got[events("rejected")]) == (recorded, rejected)
        assert got[tracks] == posts
