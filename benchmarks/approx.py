"""`approx` (HyperLogLog) against `unique` (exact) distinct values: memory, speed, error.

    python benchmarks/approx.py                 # private embedded server, 1,000,000 values
    python benchmarks/approx.py --quick         # 50,000 values: a smoke run
    python benchmarks/approx.py --url redis://127.0.0.1:6379/0

One namespace records a visitor id (a random 64-bit number, as text) of every `view` as an
`approx` property, another as a `unique` one; the same stream goes to both: `--values`
distinct visitors over 30 days, each seen on 3 random days (3 events per visitor), time-ordered,
in batches of 10,000. Figures (printed, never asserted):
  memory   Redis MEMORY USAGE of all the keys each namespace holds for the property
  record   events/s of track_many with only that property configured
  query    median latency of distinct() over the 30 days (31 calls after 2 warm-ups)
  error    the estimate against the exact count, over one day and over the 30 days
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np

import bitstat
import harness

DAYS = 30
START = datetime(2026, 10, 1, tzinfo=UTC)


def stream(values: int, seed: int) -> tuple[list[dict[str, Any]], list[set[str]]]:
    """3 visits per visitor on random days, sorted by time; and each day's distinct visitors."""
    rng = np.random.default_rng(seed)
    ids = [str(int(x)) for x in rng.integers(0, 2**63, values, dtype=np.int64)]
    days = rng.integers(0, DAYS, (values, 3))
    seconds = rng.integers(0, 86400, (values, 3))
    t0 = int(START.timestamp())
    times = t0 + days * 86400 + seconds
    order = np.argsort(times, axis=None, kind="stable")
    flat_times = times.reshape(-1)[order].tolist()
    who = np.repeat(np.arange(values), 3)[order].tolist()
    events = [
        {"event": "view", "visitor": ids[w], "time": t}
        for w, t in zip(who, flat_times, strict=True)
    ]
    daily: list[set[str]] = [set() for _ in range(DAYS)]
    visits = zip(np.repeat(np.arange(values), 3).tolist(), days.reshape(-1).tolist(), strict=True)
    for w, d in visits:
        daily[d].add(ids[w])
    return events, daily


def measure(
    server: harness.Server, kind: str, events: list[dict[str, Any]], runs: int
) -> dict[str, Any]:
    ns = f"bench-approx-{kind}-{uuid.uuid4().hex[:8]}"
    st = bitstat.connect(server.url, namespace=ns, schema=bitstat.Schema(**{kind: ["visitor"]}))
    try:
        batches = [events[i : i + 10_000] for i in range(0, len(events), 10_000)]
        began = time.perf_counter()
        for batch in batches:
            st.track_many(batch)
        rate = len(events) / (time.perf_counter() - began)
        end = datetime.fromordinal(START.date().toordinal() + DAYS - 1).date().isoformat()
        first = START.date().isoformat()
        times = harness.latencies_ms(lambda: st.distinct("view", "visitor", first, end), runs)
        tag = "{" + harness.glob_escape(ns) + ":e:view}"
        code = ":h:" if kind == "approx" else ":[uv]*"
        keys = server.keys_matching(tag + code + "*")
        return {
            "events_per_s": rate,
            "query_ms": statistics.median(times),
            "range": st.distinct("view", "visitor", first, end),
            "day": st.distinct("view", "visitor", first),
            "memory_bytes": server.memory_usage(keys),
            "keys": len(keys),
        }
    finally:
        st.close()
        server.delete_matching(*harness.namespace_patterns(ns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a Redis/Valkey server (default: a private embedded one)")
    parser.add_argument("--quick", action="store_true", help="50,000 values: a smoke run")
    parser.add_argument("--values", type=int, help="distinct visitors (default 1,000,000)")
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    args = parser.parse_args()
    values = args.values or (50_000 if args.quick else 1_000_000)
    events, daily = stream(values, seed=31)
    exact_range = len(set().union(*daily))
    exact_day = len(daily[0])
    with harness.Server(args.url) as server:
        info = harness.machine_info(server)
        print(f"{len(events):,} events, {values:,} distinct visitors over {DAYS} days")
        found = {kind: measure(server, kind, events, 31) for kind in ("approx", "unique")}
    for kind, f in found.items():
        err_range = (f["range"] - exact_range) / exact_range * 100
        err_day = (f["day"] - exact_day) / exact_day * 100
        print(
            f"{kind:7} record {f['events_per_s']:>10,.0f} events/s   distinct over 30 days"
            f" {f['query_ms']:6.2f} ms   memory {f['memory_bytes'] / 1e6:8.2f} MB in"
            f" {f['keys']} keys   30 days {f['range']:,} ({err_range:+.2f}%)"
            f"   one day {f['day']:,} ({err_day:+.2f}%)"
        )
    print(f"exact: 30 days {exact_range:,}, one day {exact_day:,}")
    if args.json:
        out = {"machine": info, "values": values, "events": len(events), "found": found}
        out["exact"] = {"range": exact_range, "day": exact_day}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
