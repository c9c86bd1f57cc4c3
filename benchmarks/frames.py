"""`st.track_frame(df)` beside `st.track_many(dicts)` on the realistic profile's events.

    python benchmarks/frames.py                       # 200,000 events, live and backfill
    python benchmarks/frames.py --quick               # 20,000 events: a smoke run
    python benchmarks/frames.py --modes backfill --libraries polars --repeats 3
    python benchmarks/frames.py --json                # JSON in benchmarks/results/

The events are those of benchmarks/realistic.py (realistic_data.py): UUID actor ids, ISO-8601
text times with an offset and milliseconds, zone Europe/Amsterdam, five periods, counts, a sum,
top items, distinct sessions and segments. `live` is time-ordered over 14 days, `backfill` in
random order over 8 weeks. The dicts and the frames are built before the clock starts (they
are what the caller holds). Each door records every event into a fresh namespace of a private
server without persistence, and is checked against the truth computed from the events:

  dicts        `st.track_many(dicts[i:i + 5000])`: the realistic profile's live/backfill door
  dicts-big    `st.track_many` by the frame door's batch size (50,000): the same batch size
  frame-LIB    `st.track_frame(frame)` with its defaults: batches of 50,000, rows in time order
  frame-LIB-unsorted   the same with `sort=False`: the frame's own order (pyarrow only)

Reported per door: events/s, client CPU and server CPU per event, and events/s as a multiple
of `dicts` (the goal: >= 3x) and of `dicts-big`. Also the client CPU a frame's owner would
spend making the dicts for `track_many` (`to_pylist`, `to_dicts`, `to_dict("records")`).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
import pyarrow as pa

import bitstat
import harness
import realistic_data as rd
from bitstat.frames import DEFAULT_BATCH_SIZE
from realistic import Meter, Server, check, verify_bitstat
from realistic_report import Result

RESULTS = Path(__file__).resolve().parent / "results"
LIBRARIES = ("pyarrow", "polars", "pandas")
COLUMNS = pa.schema(
    [(name, pa.string()) for name in ("event", "user", "time", "country", "platform", "plan")]
    + [("session", pa.string()), ("item", pa.string()), ("amount", pa.float64())]
)


def frame_of(dicts: list[dict[str, Any]], library: str) -> Any:
    table = pa.Table.from_pylist(dicts, schema=COLUMNS)  # a missing item or amount is null
    if library == "polars":
        return pl.from_arrow(table)
    if library == "pandas":
        return table.to_pandas()
    return table


def dicts_of(frame: Any, library: str) -> list[dict[str, Any]]:
    """What a frame's owner runs to use track_many (null cells are still there: track_many
    takes them as absent; pandas' NaN in a float column would be rejected, so it goes)."""
    if library == "polars":
        return list(frame.to_dicts())
    if library == "pandas":
        rows = frame.to_dict("records")
        return [{k: v for k, v in r.items() if v == v} for r in rows]
    return list(frame.to_pylist())


class Bench:
    def __init__(self, server: Server, n: int, batch: int, seed: int) -> None:
        self.server = server
        self.n = n
        self.batch = batch
        self.seed = seed
        self.token = harness.token()
        self.users = rd.population(seed)
        self.repeat = 0

    @contextmanager
    def namespace(self, door: str) -> Any:
        ns = f"frames-{door}-{self.token}-{self.repeat}"
        st = bitstat.connect(self.server.url, namespace=ns, schema=rd.SCHEMA)
        try:
            yield st
        finally:
            st.close()
            self.server.delete_matching(*harness.namespace_patterns(ns))

    def run(self, door: str, evs: rd.Events, record: Any) -> Result:
        r = Result(door)
        with self.namespace(door) as st:
            with Meter(self.server) as m:
                recorded, rejected = record(st)
            m.fill(r, len(evs))
            check(r, "events recorded", len(evs), recorded)
            if rejected:
                r.notes.append(f"rejected: {rejected[:3]}")
            verify_bitstat(r, st, evs)
        return r


def track_batches(dicts: list[dict[str, Any]], size: int) -> Any:
    def record(st: bitstat.Stats) -> tuple[int, list[Any]]:
        recorded, rejected = 0, []
        for i in range(0, len(dicts), size):
            result = st.track_many(dicts[i : i + size])
            recorded += result.recorded
            rejected += result.rejected
        return recorded, rejected

    return record


def track_frame(frame: Any, sort: bool = True) -> Any:
    def record(st: bitstat.Stats) -> tuple[int, list[Any]]:
        result = st.track_frame(frame, sort=sort)
        return result.recorded, result.rejected

    return record


def conversion_cpu(frame: Any, library: str, n: int) -> float:
    """Client CPU µs per event of making the dicts from the frame (best of three)."""
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        dicts_of(frame, library)
        best = min(best, time.process_time() - began)
    return best * 1e6 / n


def measure(bench: Bench, door: str, evs: rd.Events, record: Any, repeats: int) -> Result:
    """The run of median rate among `repeats` runs, each into a fresh namespace."""
    runs = []
    for k in range(repeats):
        bench.repeat = k
        runs.append(bench.run(door, evs, record))
    runs.sort(key=lambda r: r.rate or 0)
    chosen = runs[len(runs) // 2]
    if repeats > 1:
        chosen.notes.append("rates: " + ", ".join(f"{r.rate:,.0f}" for r in runs if r.rate))
        chosen.checks = [c for r in runs for c in r.checks]
    return chosen


def table(rows: list[tuple[str, Result, Result, Result]]) -> str:
    out = [
        "| mode | door | events | ev/s | client CPU µs/ev | server CPU µs/ev"
        " | vs dicts by 5,000 | vs same batches |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for mode, r, base, big in rows:

        def times(other: Result, r: Result = r) -> str:
            return f"{r.rate / other.rate:.2f}x" if r.rate and other.rate else "—"

        client, server = r.per_event_us(r.client_cpu), r.per_event_us(r.server_cpu)
        out.append(
            f"| {mode} | {r.door} | {r.events:,} | {r.rate or 0:,.0f} | {client or 0:.1f}"
            f" | {server or 0:.1f} | {times(base)} | {times(big)} |"
        )
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", help="a Redis/Valkey server; default: a private valkey-server")
    p.add_argument("--events", type=int, help="events per mode (default 200,000)")
    p.add_argument("--quick", action="store_true", help="20,000 events")
    p.add_argument("--modes", nargs="+", default=["live", "backfill"], choices=["live", "backfill"])
    p.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    p.add_argument("--batch", type=int, default=5000, help="events per track_many call (dicts)")
    p.add_argument("--repeats", type=int, default=1, help="runs per door; the median is shown")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--json", nargs="?", const="auto", help="write every figure as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.events or (20_000 if args.quick else 200_000)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    rows: list[tuple[str, Result, Result, Result]] = []
    conversions: dict[str, float] = {}
    with Server(args.url) as server:
        info = harness.machine_info(server)
        bench = Bench(server, n, args.batch, args.seed)
        with bench.namespace("warmup") as st:  # imports, scripts, connections, zone caches
            warm = rd.events(2000, "live", args.seed, bench.users).dicts()
            st.track_many(warm)
            st.track_frame(frame_of(warm, "pyarrow"))
        for mode in args.modes:
            evs = rd.events(n, mode, args.seed, bench.users)
            dicts = evs.dicts()
            frames = {lib: frame_of(dicts, lib) for lib in args.libraries}
            log(f"{mode}: {n:,} events generated")
            base = measure(bench, "dicts", evs, track_batches(dicts, args.batch), args.repeats)
            big = DEFAULT_BATCH_SIZE
            same = measure(bench, "dicts-big", evs, track_batches(dicts, big), args.repeats)
            rows += [(mode, base, base, same), (mode, same, base, same)]
            for lib, frame in frames.items():
                r = measure(bench, f"frame-{lib}", evs, track_frame(frame), args.repeats)
                rows.append((mode, r, base, same))
                if lib == "pyarrow":
                    unsorted = track_frame(frame, sort=False)
                    r = measure(bench, f"frame-{lib}-unsorted", evs, unsorted, args.repeats)
                    rows.append((mode, r, base, same))
                if mode == args.modes[0]:
                    conversions[lib] = conversion_cpu(frame, lib, n)
            for _, r, _, _ in rows[-len(frames) - 3 :]:
                log(f"{mode} {r.door}: {r.rate or 0:,.0f} ev/s, {len(r.failed())} failed checks")
    checks = [c for _, r, _, _ in rows for c in r.checks]
    failed = [c for c in checks if not c["ok"]]
    load_end = [round(x, 2) for x in os.getloadavg()]
    head = (
        f"track_frame vs track_many — {info['date']} — commit {info['bitstat']['git_commit']}"
        + (
            " (uncommitted changes in src/)"
            if info["bitstat"]["uncommitted_changes_in_src"]
            else ""
        )
        + f" — {n:,} events a mode — {info['cores']} cores {info['cpu_model']},"
        f" {info['server']['name']} {info['server']['version']}"
        f" — load {info['load_average_at_start']} → {load_end}"
        f" — frame batches of {DEFAULT_BATCH_SIZE:,}, dicts by {args.batch:,}"
    )
    making = ", ".join(f"{lib} {us:.2f}" for lib, us in conversions.items())
    body = (
        f"{head}\n\n{table(rows)}\n\nMaking the dicts from the frame (client CPU µs/event, not"
        f" in the figures above): {making}\n"
    )
    notes = [f"- {mode} {r.door}: {'; '.join(r.notes)}" for mode, r, _, _ in rows if r.notes]
    if notes:
        body += "\n" + "\n".join(notes) + "\n"
    body += f"\n{len(checks) - len(failed)} of {len(checks)} checks passed\n"
    print(body)
    if args.json:
        path = Path(args.json)
        if args.json == "auto":
            RESULTS.mkdir(exist_ok=True)
            path = RESULTS / f"frames-{datetime.now(UTC).strftime('%Y-%m-%d-%H%M')}.json"
        report = {
            "machine": info,
            "settings": {**vars(args), "events": n, "frame_batch": DEFAULT_BATCH_SIZE},
            "results": [
                {
                    "mode": mode,
                    "door": r.door,
                    "events": r.events,
                    "events_per_s": r.rate,
                    "client_cpu_us_per_event": r.per_event_us(r.client_cpu),
                    "server_cpu_us_per_event": r.per_event_us(r.server_cpu),
                    "vs_dicts": r.rate / base.rate if r.rate and base.rate else None,
                    "vs_same_batches": r.rate / same.rate if r.rate and same.rate else None,
                    "notes": r.notes,
                    "checks": r.checks,
                }
                for mode, r, base, same in rows
            ],
            "making_dicts_us_per_event": conversions,
            "load_average_at_end": load_end,
        }
        path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"JSON: {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
