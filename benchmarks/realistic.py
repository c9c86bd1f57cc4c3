"""The realistic profile: what users really send, through every door, beside bitmapist.

    python benchmarks/realistic.py                       # 200,000 events, private server
    python benchmarks/realistic.py --quick               # 20,000 events, < 60 s (smoke run)
    python benchmarks/realistic.py --only live bm-pipeline --events 50000
    python benchmarks/realistic.py --json --markdown out.md   # JSON in benchmarks/results/

Events (realistic_data.py): UUID actor ids (`ids="map"`), ISO-8601 text times with a UTC
offset and milliseconds, zone Europe/Amsterdam, periods hour..year, counts, a sum, top items,
distinct sessions and segments; 5 event names, 40,000 users, skewed. Every door records the
same generated events into a fresh namespace (bitmapist: fresh event names) and is checked
against the truth computed from the events. Each door reports events/s, client CPU and server
CPU per event; the live `track_many` run and bitmapist's pipeline also report Redis bytes per
event per key family. See benchmarks/README.md, "Realistic profile".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bitstat
import harness
import realistic_data as rd
from realistic_report import (
    DOORS,
    Result,
    bitmapist_memory,
    bitstat_memory,
    markdown_table,
    memory_table,
    notes_text,
)

RESULTS = Path(__file__).resolve().parent / "results"

ALIASES = {
    "bitstat": [
        *("track", "track-ahead", "tracker", "live", "live-large", "backfill", "backfill-large"),
        *("ingest", "ingest-backfill", "http"),
    ],
    "bitmapist": ["bm-one", "bm-pipeline", "bm-backfill"],
    "one": ["track", "track-ahead", "tracker", "bm-one"],
    "batch": ["live", "live-large", "backfill", "backfill-large", "bm-pipeline", "bm-backfill"],
    "doors": ["ingest", "ingest-backfill", "http"],
}


@dataclass
class Sizes:
    events: int
    sample: int  # calls timed by the one-per-call doors
    warmup: int  # untimed calls before them
    batch: int  # events per track_many call / per execute() of bitmapist's pipeline
    http_batch: int
    http_threads: int
    workers: int = 1  # processes of `bitstat ingest --workers` and `bitstat serve --workers`
    sort_window: int = 200_000  # `bitstat ingest --sort-window` of the backfill file
    large_batch: int = 200_000  # events per track_many call of the backfill-large door
    live_large_batch: int = 50_000  # events per track_many call of the live-large door


# --------------------------------------------------------------------------------------------
# The server: a private Valkey on a free loopback port, no persistence, so that nothing but
# the doors' own work shows in its CPU time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server(harness.Server):
    """`harness.Server` (SCAN clean-up, MEMORY USAGE, settle), but the private server is
    started here with `--save "" --appendonly no` (and `embedded.tuning`): the embedded
    default's append-only file would add fsyncs and rewrites (forks) to the server's CPU time."""

    process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        if not self.private:
            super().__enter__()
            return self
        from bitstat import embedded

        self.data_dir = tempfile.mkdtemp(prefix="bitstat-realistic-")
        port = free_port()
        binary = embedded.find_server_binary()
        cmd = [binary, "--port", str(port), "--bind", "127.0.0.1"]
        cmd += ["--save", "", "--appendonly", "no", "--dir", self.data_dir]
        for name, value in embedded.tuning(binary):  # as bitstat runs its own server
            cmd += [f"--{name}", value]
        cmd += ["--logfile", str(Path(self.data_dir) / "server.log")]
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=embedded.environment()
        )
        self.url = f"redis://127.0.0.1:{port}/0"
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the private server did not start: {' '.join(cmd)}") from None
                time.sleep(0.05)
        self.waited, self.waits = 0.0, 0
        harness._active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            super().__exit__(*exc)
            return
        if self in harness._active:
            harness._active.remove(self)
        if self.client is not None:
            self.client.close()
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def cpu_seconds(self) -> float:
        """The server's own CPU time so far: INFO cpu, used_cpu_sys + used_cpu_user."""
        info = self.redis.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class Meter:
    """Wall, client-process CPU, finished-children CPU and server CPU of one timed region."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> Meter:
        harness.settle()
        self.heap = harness.quiet_heap()
        self.heap.__enter__()
        self.server_before = self.server.cpu_seconds()
        self.children_before = children_cpu()
        self.cpu_before = time.process_time()
        self.began = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.began
        self.cpu = time.process_time() - self.cpu_before
        self.children = children_cpu() - self.children_before
        self.server_cpu = self.server.cpu_seconds() - self.server_before
        self.heap.__exit__(None, None, None)

    def fill(self, result: Result, events: int, *, client: str = "process") -> None:
        result.events = events
        result.seconds = self.seconds
        result.server_cpu = self.server_cpu
        result.client_cpu = self.children if client == "children" else self.cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds of a running process (and its waited-for children), from /proc."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields[11:15]) / ticks


def tree_cpu(pid: int) -> float:
    """CPU seconds of a running process and of its running children (`serve --workers`)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return process_cpu(pid) + sum(process_cpu(int(c)) for c in children)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


# --------------------------------------------------------------------------------------------
# The run: the events, the server, fresh namespaces, the checks


class Run:
    def __init__(self, server: Server, sizes: Sizes, seed: int, log: Callable[[str], None]):
        self.server = server
        self.sizes = sizes
        self.seed = seed
        self.log = log
        self.token = harness.token()
        self.results: dict[str, Result] = {}
        self.memory: dict[str, Any] = {}
        self._events: dict[str, rd.Events] = {}
        self._dicts: dict[str, list[dict[str, Any]]] = {}
        self._users = rd.population(seed)
        self._bitmapist: Any = None
        self.repeat = 0  # which repetition of the door is running (memory is taken in the first)
        self.tmp = Path(tempfile.mkdtemp(prefix="bitstat-realistic-files-"))

    def events(self, kind: str) -> rd.Events:
        if kind not in self._events:
            self._events[kind] = rd.events(self.sizes.events, kind, self.seed, self._users)
        return self._events[kind]

    def dicts(self, kind: str) -> list[dict[str, Any]]:
        if kind not in self._dicts:
            self._dicts[kind] = self.events(kind).dicts()
        return self._dicts[kind]

    @contextmanager
    def namespace(self, door: str, **options: Any) -> Iterator[bitstat.Stats]:
        """A fresh namespace with the realistic schema, deleted (SCAN) when the block ends;
        `options`: connect()'s."""
        ns = f"real-{door}-{self.token}-{self.repeat}"
        st = bitstat.connect(self.server.url, namespace=ns, schema=rd.SCHEMA, **options)
        try:
            yield st
        finally:
            st.close()
            self.server.delete_matching(*harness.namespace_patterns(ns))

    # bitmapist ------------------------------------------------------------------------------
    def bitmapist(self) -> Any:
        if self._bitmapist is None:
            import bitmapist

            host, port, kw = self.server.bitmapist_kwargs()
            bitmapist.setup_redis("default", host, port, **kw)
            bitmapist.TRACK_HOURLY = True
            bitmapist.TRACK_UNIQUE = False
            self._bitmapist = bitmapist
        return self._bitmapist

    @contextmanager
    def bitmapist_prefix(self, door: str) -> Iterator[str]:
        prefix = f"real_{door.replace('-', '_')}_{self.token}_{self.repeat}_"
        try:
            yield prefix
        finally:
            if self._bitmapist is not None:
                self._bitmapist.delete_runtime_bitop_keys()
            self.server.delete_matching(f"trackist_{prefix}*", f"trackist_bitop_*{prefix}*")

    def warm_up(self, doors: list[str]) -> None:
        """Untimed: the first 1,000 events through each library once (imports, scripts loaded,
        connections open, caches of time zones), so the first door timed is not the one to
        pay for it."""
        part = self.dicts("live")[:1000]
        if any(not d.startswith("bm-") for d in doors):
            with self.namespace("warmup") as st:
                st.track_many(part)
        if any(d.startswith("bm-") for d in doors):
            bm = self.bitmapist()
            with self.bitmapist_prefix("warmup") as prefix:
                pipe = bm.get_redis("default").pipeline(transaction=False)
                for e in part:
                    when = rd.local_datetime(e["time"])
                    bm.mark_event(prefix + e["event"], 1, system=pipe, now=when, use_pipeline=False)
                pipe.execute()

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def check(result: Result, what: str, expected: Any, got: Any, ok: bool | None = None) -> None:
    passed = expected == got if ok is None else ok
    result.checks.append(
        {"what": what, "expected": harness_plain(expected), "got": harness_plain(got), "ok": passed}
    )


def harness_plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


def verify_bitstat(result: Result, st: bitstat.Stats, evs: rd.Events) -> None:
    """Every metric of every event name, over the days the events cover, against the truth."""
    first, last = (d.isoformat() for d in evs.days())
    for name in evs.names_present():
        check(result, f"{name}: unique", evs.unique(name), st.unique(name, first, last))
        check(result, f"{name}: total", evs.total(name), st.total(name, first, last))
        for prop in ("country", "platform", "country~plan"):
            check(
                result,
                f"{name}: counts {prop}",
                evs.counts(name, prop),
                st.counts(name, prop, first, last),
            )
        check(
            result,
            f"{name}: distinct session",
            evs.distinct_sessions(name),
            st.distinct(name, "session", first, last),
        )
        check(
            result,
            f"{name}: unique plan=pro (segment)",
            evs.unique(name, plan="pro"),
            st.unique(name, first, last, plan="pro"),
        )
    if "purchase" in evs.names_present():
        truth = evs.sum_amount("purchase")
        got = st.sums("purchase", "amount", first, last)
        close = isinstance(got, float) and abs(got - truth) <= 1e-6 * max(1.0, abs(truth))
        check(result, "purchase: sums amount (within 1e-6)", round(truth, 2), got, ok=close)
        check(
            result,
            "purchase: top 5 items",
            evs.top_items("purchase", 5),
            [tuple(x) for x in st.top("purchase", "item", first, last, limit=5)],
        )


def verify_bitmapist(result: Result, bm: Any, prefix: str, evs: rd.Events) -> None:
    """Distinct actors of every event name over its months (an OR of the month keys)."""
    first, last = evs.days()
    months = rd.month_span(first, last)
    for name in evs.names_present():
        keys = [bm.MonthEvents(prefix + name, y, m) for y, m in months]
        got = len(keys[0]) if len(keys) == 1 else len(bm.BitOpOr(*keys))
        check(result, f"{name}: unique (months {months[0]}..{months[-1]})", evs.unique(name), got)


# --------------------------------------------------------------------------------------------
# The doors


TRACK_AHEAD = 100  # connect(track_ahead=) of the track-ahead door


def door_track(run: Run, r: Result, **options: Any) -> None:
    s = run.sizes
    n = min(s.events, s.warmup + s.sample)
    events = run.dicts("live")[:n]
    warm, timed_part = events[: s.warmup], events[s.warmup : n]
    with run.namespace(r.door, **options) as st:
        for e in warm:
            st.track(e)
        # the warm-up's events are applied before the clock: the timed calls pay for their
        # own events' batches (queued ones are applied by a later call), not for these
        st.flush()
        lat = r.latencies_ns
        clock = time.perf_counter_ns
        with Meter(run.server) as m:
            for e in timed_part:
                t0 = clock()
                st.track(e)
                lat.append(clock() - t0)
            # the events still queued are applied within the timing: the last call pays them
            t0 = clock()
            st.flush()
            lat[-1] += clock() - t0
        m.fill(r, len(timed_part))
        r.notes.append(
            f"{len(timed_part):,} calls timed after {len(warm):,} untimed and a flush(), then"
            f" flush() (added to the last call); checks over all {n:,}; {round_trip(run)}"
        )
        verify_bitstat(r, st, run.events("live").head(n))


def round_trip(run: Run) -> str:
    """The floor of a call that waits for its reply: redis-py's PING, median of 3,000."""
    client = redis.Redis.from_url(run.server.url)
    try:
        times = []
        for _ in range(3000):
            t0 = time.perf_counter_ns()
            client.ping()
            times.append(time.perf_counter_ns() - t0)
    finally:
        client.close()
    times.sort()
    return f"a PING round trip alone (redis-py): median {times[1500] / 1000:.0f} µs"


def door_tracker(run: Run, r: Result) -> None:
    if not hasattr(bitstat.Stats, "tracker"):
        r.text = "n/a (not built)"
        return
    events = run.dicts("live")
    queue = max(100_000, len(events))
    with run.namespace("tracker") as st:
        lat = r.latencies_ns
        clock = time.perf_counter_ns
        with Meter(run.server) as m:
            t = st.tracker(max_queue=queue)
            for e in events:
                t0 = clock()
                t.track(e)
                lat.append(clock() - t0)
            before_flush = time.perf_counter() - m.began
            t.flush()
        m.fill(r, len(events))
        t.close()
        r.extra["seconds_until_flush_called"] = before_flush
        counters = getattr(t, "counters", None)
        if callable(counters):
            r.extra["tracker_counters"] = harness_plain(counters())
        r.notes.append(
            "events/s from st.tracker() to the return of t.flush(); latency = one t.track()"
            " call on the caller's thread, all calls in a tight loop; default batch size and"
            f" interval; max_queue={queue:,} (default 100,000: when full, the newest event is"
            " dropped and counted), so that a loop faster than the sender drops nothing"
        )
        verify_bitstat(r, st, run.events("live"))


def track_many_door(run: Run, r: Result, kind: str, memory: bool, batch: int | None = None) -> None:
    size = batch or run.sizes.batch
    events = run.dicts(kind)
    chunks = [events[i : i + size] for i in range(0, len(events), size)]
    with run.namespace(r.door) as st:
        recorded, rejected = 0, []
        run.server.redis.slowlog_reset()
        with Meter(run.server) as m:
            for chunk in chunks:
                result = st.track_many(chunk)
                recorded += result.recorded
                rejected.extend(result.rejected[:3])
        m.fill(r, len(events))
        # how long one script call held the server (nothing else ran meanwhile): what a
        # larger batch costs the other clients of the server
        r.extra["longest_call_ms"] = longest_call_ms(run.server)
        check(r, "events recorded", len(events), recorded)
        if rejected:
            r.notes.append(f"rejected: {rejected[:3]}")
        r.notes.append(
            f"batches of {min(size, len(events)):,}; the longest server call took"
            f" {r.extra['longest_call_ms']:,.0f} ms (SLOWLOG)"
        )
        verify_bitstat(r, st, run.events(kind))
        if memory:
            run.memory["bitstat"] = bitstat_memory(run.server, st.namespace, len(events))


def longest_call_ms(server: Server) -> float:
    """The longest command of the server's slow log (all of them over 10 ms by default)."""
    log = server.redis.slowlog_get(100_000)
    return max((entry["duration"] for entry in log), default=0) / 1000


def door_live(run: Run, r: Result) -> None:
    track_many_door(run, r, "live", memory=run.repeat == 0)


def door_live_large(run: Run, r: Result) -> None:
    """The live stream in the batches a loaded tracker sends (its max_batch): each key written
    once per 50,000 events, not per 5,000."""
    track_many_door(run, r, "live", memory=False, batch=run.sizes.live_large_batch)


def door_backfill(run: Run, r: Result) -> None:
    track_many_door(run, r, "backfill", memory=False)


def door_backfill_large(run: Run, r: Result) -> None:
    """The backfill as a bulk load sends it: large batches, each key written once a batch."""
    track_many_door(run, r, "backfill", memory=False, batch=run.sizes.large_batch)


def door_ingest(run: Run, r: Result) -> None:
    ingest_door(run, r, "live", [])


def door_ingest_backfill(run: Run, r: Result) -> None:
    ingest_door(run, r, "backfill", ["--sort-window", str(run.sizes.sort_window)])


def ingest_door(run: Run, r: Result, kind: str, options: list[str]) -> None:
    events = run.dicts(kind)
    path = run.tmp / f"{kind}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for e in events:
            out.write(json.dumps(e, separators=(",", ":")) + "\n")
    r.extra["file_bytes"] = path.stat().st_size
    with run.namespace(f"ingest-{kind}") as st:  # stores the schema; ingest reads it from Redis
        env = {k: v for k, v in os.environ.items() if not k.startswith("BITSTAT_")}
        cmd = [sys.executable, "-m", "bitstat", "--url", run.server.url]
        cmd += ["--namespace", st.namespace, "ingest", str(path), "--no-progress", "-f", "json"]
        cmd += ["--workers", str(run.sizes.workers), *options]
        with Meter(run.server) as m:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        m.fill(r, len(events), client="children")
        check(r, "exit status", 0, done.returncode)
        if done.returncode != 0:
            r.notes.append(f"stderr: {done.stderr.strip()[-300:]}")
        try:
            r.extra["report"] = json.loads(done.stdout)
        except json.JSONDecodeError:
            r.extra["stdout"] = done.stdout[-500:]
        r.notes.append(
            f"{r.extra['file_bytes'] / 1e6:.1f} MB file written before the clock; the whole"
            " process timed (start-up, imports included); default --batch-size;"
            f" --workers {run.sizes.workers} {' '.join(options)}".rstrip()
        )
        verify_bitstat(r, st, run.events(kind))


def door_http(run: Run, r: Result) -> None:
    from http_api import JSON, Client, Serving

    s = run.sizes
    events = run.dicts("live")
    bodies = [
        json.dumps(events[i : i + s.http_batch], separators=(",", ":")).encode()
        for i in range(0, len(events), s.http_batch)
    ]
    with run.namespace("http") as st:
        serving = Serving(run.server.url, st.namespace, workers=s.workers)
        try:
            path = f"/v1/track?namespace={st.namespace}"
            first = Client(serving.port).request("POST", path, bodies[0], JSON)
            check(r, "warm-up batch recorded", min(s.http_batch, len(events)), first["recorded"])
            rest = bodies[1:]
            recorded = [0] * s.http_threads
            errors: list[str] = []

            def send(k: int) -> None:
                client = Client(serving.port)
                try:
                    for body in rest[k :: s.http_threads]:
                        recorded[k] += int(client.request("POST", path, body, JSON)["recorded"])
                except BaseException as exc:  # SystemExit from Client on a non-200 answer
                    errors.append(f"{type(exc).__name__}: {exc}")

            threads = [threading.Thread(target=send, args=(k,)) for k in range(s.http_threads)]
            serve_before = tree_cpu(serving.process.pid)
            with Meter(run.server) as m:
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
            serve_cpu = tree_cpu(serving.process.pid) - serve_before
            timed_events = len(events) - min(s.http_batch, len(events))
            m.fill(r, timed_events)
            r.client_cpu = serve_cpu
            r.extra["sender_cpu_us_per_event"] = m.cpu * 1e6 / max(1, timed_events)
            check(r, "events recorded (timed batches)", timed_events, sum(recorded))
            for e in errors[:3]:
                r.notes.append(e[:200])
        finally:
            serving.close()
        r.notes.append(
            f"`bitstat serve --workers {s.workers}`; batches of {s.http_batch:,},"
            f" {s.http_threads} client threads on keep-alive"
            " connections, bodies encoded before the clock, first batch untimed (warm-up);"
            f" client CPU = the `bitstat serve` process; the senders took"
            f" {r.extra['sender_cpu_us_per_event']:.1f} µs/event more"
        )
        verify_bitstat(r, st, run.events("live"))


def bitmapist_pairs(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["event"], e["user"], e["time"]) for e in events]


def door_bm_one(run: Run, r: Result) -> None:
    s = run.sizes
    bm = run.bitmapist()
    n = min(s.events, s.warmup + s.sample)
    pairs = bitmapist_pairs(run.dicts("live")[:n])
    with run.bitmapist_prefix(r.door) as prefix:
        ids: dict[str, int] = {}
        mark, parse = bm.mark_event, rd.local_datetime
        lat = r.latencies_ns
        clock = time.perf_counter_ns

        def one(name: str, user: str, when: str) -> None:
            uid = ids.get(user)
            if uid is None:
                uid = ids[user] = len(ids)
            mark(prefix + name, uid, now=parse(when), track_hourly=True)

        for p in pairs[: s.warmup]:
            one(*p)
        with Meter(run.server) as m:
            for p in pairs[s.warmup :]:
                t0 = clock()
                one(*p)
                lat.append(clock() - t0)
        m.fill(r, n - s.warmup)
        r.notes.append(
            f"{n - s.warmup:,} calls timed after {s.warmup:,} untimed; each call: UUID -> int"
            " (a dict), ISO text -> datetime in Europe/Amsterdam, mark_event (its own MULTI/EXEC"
            " of 4 SETBITs: month, week, day, hour)"
        )
        verify_bitmapist(r, bm, prefix, run.events("live").head(n))


def bitmapist_pipeline(run: Run, r: Result, kind: str, memory: bool) -> None:
    s = run.sizes
    bm = run.bitmapist()
    pairs = bitmapist_pairs(run.dicts(kind))
    with run.bitmapist_prefix(r.door) as prefix:
        mark, parse = bm.mark_event, rd.local_datetime
        with Meter(run.server) as m:
            ids: dict[str, int] = {}
            pipe = bm.get_redis("default").pipeline(transaction=False)
            for i, (name, user, when) in enumerate(pairs, 1):
                uid = ids.get(user)
                if uid is None:
                    uid = ids[user] = len(ids)
                mark(prefix + name, uid, system=pipe, now=parse(when), use_pipeline=False)
                if i % s.batch == 0:
                    pipe.execute()
            pipe.execute()
        m.fill(r, len(pairs))
        r.extra["distinct_ids_in_caller_dict"] = len(ids)
        r.notes.append(
            f"mark_event(..., system=pipe, use_pipeline=False) into pipeline(transaction=False),"
            f" executed every {s.batch:,} events; TRACK_HOURLY=True; UUID -> int by a dict in the"
            " caller; ISO text -> datetime in Europe/Amsterdam; no counters, sums, top,"
            " distinct values or segments (bitmapist has none)"
        )
        verify_bitmapist(r, bm, prefix, run.events(kind))
        if memory:
            run.memory["bitmapist"] = bitmapist_memory(run.server, prefix, len(pairs))


def door_bm_pipeline(run: Run, r: Result) -> None:
    bitmapist_pipeline(run, r, "live", memory=run.repeat == 0)


def door_bm_backfill(run: Run, r: Result) -> None:
    bitmapist_pipeline(run, r, "backfill", memory=False)


RUNNERS: dict[str, Callable[[Run, Result], None]] = {
    "bm-pipeline": door_bm_pipeline,
    "bm-backfill": door_bm_backfill,
    "bm-one": door_bm_one,
    "track": door_track,
    "track-ahead": partial(door_track, track_ahead=TRACK_AHEAD),
    "tracker": door_tracker,
    "live": door_live,
    "live-large": door_live_large,
    "backfill": door_backfill,
    "backfill-large": door_backfill_large,
    "ingest": door_ingest,
    "ingest-backfill": door_ingest_backfill,
    "http": door_http,
}

# --------------------------------------------------------------------------------------------


def measure_once(run: Run, door: str, k: int) -> Result:
    """Run `k` of the door, into a fresh namespace."""
    run.repeat = k
    r = Result(door, load=[load1()])
    try:
        RUNNERS[door](run, r)
    except Exception as exc:
        r.text = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
        run.log(r.text)
        traceback.print_exc(limit=4)
    r.load.append(load1())
    return r


def median_run(results: list[Result]) -> Result:
    """The run of median rate, every run's rate in its `extra`, the checks of every run."""
    if len(results) == 1 or any(r.text for r in results):  # one run, or not built / an error
        return next((r for r in results if r.text), results[0])
    ranked = sorted(results, key=lambda x: x.rate or 0.0)
    kept = ranked[(len(ranked) - 1) // 2]
    kept.extra["runs_events_per_s"] = [x.rate for x in results]
    kept.notes.append(
        f"median of {len(results)} runs: "
        + ", ".join(f"{x.rate:,.0f}" for x in results if x.rate)
        + " ev/s"
    )
    kept.checks = [dict(c, run=i) for i, x in enumerate(results) for c in x.checks]
    return kept


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/realistic.py",
        description="The realistic profile: bitstat's every door beside bitmapist, one run.",
    )
    p.add_argument("--events", type=int, help="events per stream (default 200,000; quick 20,000)")
    p.add_argument("--quick", action="store_true", help="20,000 events, fewer calls: < 60 s")
    p.add_argument(
        "--url",
        help="a Redis/Valkey server (redis://, unix://); default: a private valkey-server on a"
        " free port with no persistence, stopped at the end. Only the run's keys are deleted.",
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="DOOR",
        help=f"doors to run: {' '.join(DOORS)}, or {' '.join(ALIASES)}",
    )
    p.add_argument(
        "--json",
        nargs="?",
        const="auto",
        metavar="PATH",
        help="write every figure as JSON (no PATH: benchmarks/results/realistic-<time>.json)",
    )
    p.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    p.add_argument("--sample", type=int, help="calls timed by one-per-call doors (default 3,000)")
    p.add_argument("--batch", type=int, default=5000, help="events per track_many call")
    p.add_argument(
        "--large-batch",
        type=int,
        default=200_000,
        help="events per track_many call of the backfill-large door",
    )
    p.add_argument(
        "--live-large-batch",
        type=int,
        default=50_000,
        help="events per track_many call of the live-large door (the tracker's max_batch)",
    )
    p.add_argument("--http-threads", type=int, default=4)
    p.add_argument(
        "--workers", type=int, default=1, help="--workers of `bitstat ingest` and `bitstat serve`"
    )
    p.add_argument("--http-batch", type=int, default=1000)
    p.add_argument(
        "--sort-window",
        type=int,
        default=200_000,
        help="--sort-window of the ingest-backfill door (0: the file's order)",
    )
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds, each running every door once into a fresh namespace (median per door)",
    )
    return p.parse_args(argv)


def selected(names: list[str] | None) -> list[str]:
    if not names:
        return list(RUNNERS)
    wanted: list[str] = []
    for name in names:
        doors = ALIASES.get(name, [name])
        for d in doors:
            if d not in DOORS:
                raise SystemExit(f"unknown door {name!r}; choose from {', '.join(DOORS)}")
            wanted.append(d)
    # bitmapist first: its figures are the references of the ratios; the order is fixed
    return [d for d in RUNNERS if d in wanted]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.events or (20_000 if args.quick else 200_000)
    sample = args.sample or (500 if args.quick else 3000)
    sizes = Sizes(
        events=n,
        sample=min(sample, max(1, n - 100)),
        warmup=min(100 if args.quick else 300, max(0, n - 1)),
        batch=args.batch,
        http_batch=args.http_batch,
        http_threads=args.http_threads,
        workers=args.workers,
        sort_window=args.sort_window,
        large_batch=args.large_batch,
        live_large_batch=args.live_large_batch,
    )
    sized = (n, args.repeats, sizes.batch, sizes.large_batch, sizes.live_large_batch)
    if min(*sized, sizes.http_batch, sizes.http_threads) < 1:
        raise SystemExit(
            "--events, --repeats, --batch, --large-batch, --live-large-batch, --http-batch and"
            " --http-threads must be positive"
        )
    doors = selected(args.only)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    with Server(args.url) as server:
        info = harness.machine_info(server)
        info["server"]["persistence"] = (
            "none (--save '' --appendonly no)" if server.private else "as the given server has it"
        )
        log(
            f"{info['server']['name']} {info['server']['version']}"
            f" ({'private, no persistence' if server.private else 'given URL'});"
            f" {info['cores']} cores; load {info['load_average_at_start']}; {n:,} events"
        )
        run = Run(server, sizes, args.seed, log)
        try:
            t0 = time.perf_counter()
            run.events("live")
            run.dicts("live")
            if {"backfill", "backfill-large", "bm-backfill"} & set(doors):
                run.dicts("backfill")
            run.warm_up(doors)
            log(f"events generated, libraries warmed up in {time.perf_counter() - t0:.1f} s")
            # in rounds, each door once a round: a slow spell of a shared machine falls on
            # every door alike, so the ratios of doors hold up better than their rates
            runs: dict[str, list[Result]] = {door: [] for door in doors}
            for k in range(args.repeats):
                for door in doors:
                    if any(r.text for r in runs[door]):  # not built, or an error: once is enough
                        continue
                    t0 = time.perf_counter()
                    r = measure_once(run, door, k)
                    runs[door].append(r)
                    rate = f"{r.rate:,.0f} ev/s" if r.rate else r.text
                    took = time.perf_counter() - t0
                    round_ = f" (round {k + 1}/{args.repeats})" if args.repeats > 1 else ""
                    log(f"{door}{round_}: {rate}; {len(r.failed())} failed checks; {took:.1f} s")
            for door in doors:
                run.results[door] = median_run(runs[door])
        finally:
            run.cleanup()
    elapsed = time.perf_counter() - started
    load_end = [round(x, 2) for x in os.getloadavg()]
    head = (
        f"Realistic profile — {info['date']} — commit {info['bitstat']['git_commit']}"
        + (
            " (src/ had uncommitted changes)"
            if info["bitstat"]["uncommitted_changes_in_src"]
            else ""
        )
        + f" — {n:,} events — {info['cores']} cores {info['cpu_model']},"
        f" {info['server']['name']} {info['server']['version']}"
        f" ({'private, no persistence' if server.private else 'given URL'})"
        f" — load {info['load_average_at_start']} → {load_end}" + (" — quick" if args.quick else "")
    )
    body = f"{head}\n\n{markdown_table(run.results)}"
    mem = memory_table(run.memory)
    if mem:
        body += f"\nRedis memory after the live stream ({n:,} events), per key family:\n\n{mem}"
    body += "\n" + notes_text(run.results)
    checks = [c for r in run.results.values() for c in r.checks]
    failed = [c for c in checks if not c["ok"]]
    body += (
        f"\n{len(checks) - len(failed)} of {len(checks)} checks passed; run took {elapsed:.0f} s\n"
    )
    print(body)
    if args.markdown:
        Path(args.markdown).write_text(body, encoding="utf-8")
    if args.json:
        path = Path(args.json)
        if args.json == "auto":
            RESULTS.mkdir(exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
            path = RESULTS / f"realistic-{stamp}.json"
        report = {
            "machine": info,
            "settings": {
                "events": n,
                "quick": args.quick,
                "doors": doors,
                "sizes": vars(sizes),
                "seed": args.seed,
                "schema": rd.SCHEMA.to_dict(),
                "url": "private valkey-server" if server.private else "given URL",
            },
            "results": [r.to_json() for r in run.results.values()],
            "memory": run.memory,
            "elapsed_s": elapsed,
            "load_average_at_end": load_end,
        }
        path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"JSON: {path}", file=sys.stderr)
    return 1 if failed or any(r.text.startswith("error") for r in run.results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
