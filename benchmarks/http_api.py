"""The HTTP API's speed: `bitstat serve` in its own process, one client on loopback.

    python benchmarks/http_api.py                 # private embedded server, full size
    python benchmarks/http_api.py --quick         # a smoke run of a few seconds
    python benchmarks/http_api.py --url redis://127.0.0.1:6379/0

Figures (printed, never asserted; targets from issue #4):
  ingest   events/s through POST /v1/track in batches of 1,000, one client, one connection,
           a time-ordered stream (target >= 50,000), for the default schema (bitmaps only,
           integer ids) and for a full schema (counts, sums, top values, distinct values,
           segments; string ids mapped); bodies are encoded before the clock starts
  single   latency of POST /v1/track with one event, one at a time (target median <= 2 ms)
  read     latency of GET /v1/unique over one day, for comparison
The same streams also go through `track_many` in-process, to show what HTTP adds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import bitstat
import harness

FULL_SCHEMA = bitstat.Schema(
    ids="map",
    count=["country", "country~platform"],
    sum=["amount", "amount by country"],
    top=["item"],
    unique=["ip"],
    segment=["country"],
)
COUNTRIES = ["NL", "DE", "FR", "BE", "GB", "US", "ES", "IT"]
PLATFORMS = ["ios", "android", "web"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def events(n: int, start: float, full: bool) -> list[dict[str, Any]]:
    """A time-ordered stream: n events over the hour after `start`, 100,000 distinct actors."""
    out = []
    for i in range(n):
        actor = (i * 7919) % 100_000
        event: dict[str, Any] = {
            "event": "purchase" if i % 10 == 0 else "view",
            "user": f"user-{actor}" if full else actor,
            "time": start + i * 3600 / n,
        }
        if full:
            event.update(
                country=COUNTRIES[actor % len(COUNTRIES)],
                platform=PLATFORMS[actor % len(PLATFORMS)],
                item=f"sku-{i % 500}",
                amount=round(1 + (i % 97) * 0.5, 2),
                ip=f"10.{actor % 256}.{i % 256}.1",
            )
        out.append(event)
    return out


class Serving:
    """`bitstat serve` as a subprocess, as a user runs it."""

    def __init__(self, url: str, namespace: str, workers: int = 1) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "bitstat", "--url", url, "--namespace", namespace]
        cmd += ["serve", "--port", str(self.port), "--workers", str(workers)]
        env = {**os.environ, "BITSTAT_READ_TOKEN": "", "BITSTAT_WRITE_TOKEN": ""}
        self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                Client(self.port).request("GET", "/openapi.json")
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bitstat serve did not start") from None
                time.sleep(0.1)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Client:
    """One keep-alive connection (the standard library's client: little overhead of its own)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        self.connection.request(method, path, body=body, headers=headers or {})
        answer = self.connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise SystemExit(f"{method} {path}: {answer.status} {data[:300]!r}")
        return json.loads(data)


JSON = {"content-type": "application/json"}


def ingest(client: Client, namespace: str, batches: int, full: bool) -> float:
    start = time.time() - 86400
    bodies = [json.dumps(events(1000, start + b * 3600, full)).encode() for b in range(batches)]
    url = f"/v1/track?namespace={namespace}"
    client.request("POST", url, bodies[0], JSON)  # warm-up: scripts loaded, ids mapped
    began = time.perf_counter()
    for i, body in enumerate(bodies[1:], 1):
        answer = client.request("POST", url, body, {**JSON, "Idempotency-Key": f"b{i}"})
        assert answer["recorded"] == 1000, answer
    return (batches - 1) * 1000 / (time.perf_counter() - began)


def direct(st: bitstat.Stats, batches: int, full: bool) -> float:
    """The same stream through `track_many` in this process: what HTTP adds to."""
    start = time.time() - 86400
    streams = [events(1000, start + b * 3600, full) for b in range(batches)]
    st.track_many(streams[0])
    began = time.perf_counter()
    for i, stream in enumerate(streams[1:], 1):
        assert st.track_many(stream, batch_id=f"d{i}").recorded == 1000
    return (batches - 1) * 1000 / (time.perf_counter() - began)


def latencies(call: Any, n: int) -> list[float]:
    for _ in range(min(50, n)):
        call()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[int(len(ms) * 0.99) - 1]
    return f"median {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms ({len(ms)} requests)"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks/http_api.py", description=__doc__.split("\n")[0])
    p.add_argument("--url", help="Redis URL (default: a private embedded server)")
    p.add_argument("--quick", action="store_true", help="a few seconds: a smoke run")
    args = p.parse_args(argv)
    batches, singles = (5, 200) if args.quick else (100, 3000)
    with harness.Server(args.url) as server:
        print(f"machine: {harness.machine_info(server)}")
        run = uuid.uuid4().hex[:6]
        plain, full = f"bench-http-{run}", f"bench-http-full-{run}"
        stores = [
            bitstat.connect(server.url, namespace=plain),
            bitstat.connect(server.url, namespace=full, schema=FULL_SCHEMA),
            bitstat.connect(server.url, namespace=f"{plain}-direct"),
            bitstat.connect(server.url, namespace=f"{full}-direct", schema=FULL_SCHEMA),
        ]
        serving = Serving(server.url, plain)
        try:
            client = Client(serving.port)
            rate = ingest(client, plain, batches, full=False)
            print(f"ingest, default schema:  {rate:,.0f} events/s (target >= 50,000)")
            rate = ingest(client, full, batches, full=True)
            print(f"ingest, full schema:     {rate:,.0f} events/s")
            for st, is_full in ((stores[2], False), (stores[3], True)):
                rate = direct(st, batches, is_full)
                name = "full" if is_full else "default"
                print(f"  same stream, track_many in-process, {name} schema: {rate:,.0f} events/s")
            one = json.dumps({"event": "login", "user": 42}).encode()
            posts = latencies(lambda: client.request("POST", "/v1/track", one, JSON), singles)
            print(f"single-event POST:       {summary(posts)} (target median <= 2 ms)")
            day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
            path = "/v1/unique?" + urlencode({"event": "view", "start": day})
            gets = latencies(lambda: client.request("GET", path), singles)
            print(f"GET /v1/unique, one day: {summary(gets)}")
            print(f"load average at the end: {os.getloadavg()}")
        finally:
            serving.close()
            for st in stores:
                st.drop()
                st.close()


if __name__ == "__main__":
    main()
