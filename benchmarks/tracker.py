"""The fire-and-forget tracker as a web app uses it: one `t.track(e)` per event.

    python benchmarks/tracker.py                  # private embedded server, 200,000 events
    python benchmarks/tracker.py --quick          # 20,000 events: a smoke run
    python benchmarks/tracker.py --url redis://127.0.0.1:6379/0 --json out.json

Events look like what a product sends (issue 10's realistic profile): UUID users (ids="map",
40,000 of them), 5 event names, country, platform, plan, a session id, an item of 2,000 and an
amount on purchases, no `time` (the tracker stamps the call's); the namespace has the
realistic schema (Europe/Amsterdam, five periods, count, sum, top, unique, segment rules).
Each run is in a fresh namespace, deleted after it:

  burst   every event tracked back to back (a load spike), once in the mapping form
          `t.track(e)` and once as `t.track(name, **props)`: the latency of each call on the
          caller's thread while the sender works beside it, and events/s end to end (first
          track() to flush() done) and on the caller's side
  paced   events arriving at --rate a second, in 1 ms ticks (a busy web app): the latency
          of each call, and the most events ever waiting in the queue

Latencies are of single calls, timed with perf_counter_ns (the empty timing is reported: it is
inside every figure), garbage collection on, as in an application. A call that lands when the
interpreter switches to the sender thread waits for it (sys.getswitchinterval()): that is
what p99.9 and max show. Figures are printed, never asserted; the check is that every event
was recorded once (`st.total` per name).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

import bitstat
import harness
from realistic_data import SCHEMA, TIMEZONE  # the realistic profile's schema

TZ = TIMEZONE
NAMES = ("page_view", "login", "search", "add_to_cart", "purchase")


def make_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` events as a web app sends them: no time, mostly views, a few purchases."""
    rng = np.random.default_rng(seed)
    users = [str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**62, 40_000)]
    sessions = [uuid.UUID(int=int(x)).hex for x in rng.integers(0, 2**62, 300_000)]
    countries = ("NL", "DE", "FR", "BE", "GB", "US", "ES", "IT")
    platforms = ("web", "ios", "android")
    plans = ("free", "pro", "team")
    name_at = rng.choice(len(NAMES), n, p=[0.55, 0.15, 0.15, 0.1, 0.05])
    user_at = rng.integers(0, len(users), n)
    out: list[dict[str, Any]] = []
    for i in range(n):
        u = int(user_at[i])
        event: dict[str, Any] = {
            "event": NAMES[name_at[i]],
            "user": users[u],
            "country": countries[u % len(countries)],
            "platform": platforms[u % 3],
            "plan": plans[u % 7 % 3],
            "session": sessions[(u * 7 + i // 20) % len(sessions)],
        }
        if event["event"] in ("add_to_cart", "purchase"):
            event["item"] = f"sku-{(u * 31 + i) % 2000}"
        if event["event"] == "purchase":
            event["amount"] = round(5 + (u % 200) * 0.5, 2)
        out.append(event)
    return out


def timer_floor(samples: int = 200_000) -> float:
    """Median ns of an empty timed region (two perf_counter_ns calls)."""
    pc = time.perf_counter_ns
    spans = []
    for _ in range(samples):
        a = pc()
        spans.append(pc() - a)
    return statistics.median(spans)


def summary(spans_ns: list[int]) -> dict[str, float]:
    us = np.array(spans_ns, dtype=np.float64) / 1000
    q = np.percentile(us, [50, 99, 99.9])
    return {
        "median_us": round(float(q[0]), 3),
        "p99_us": round(float(q[1]), 3),
        "p999_us": round(float(q[2]), 3),
        "max_us": round(float(us.max()), 1),
        "mean_us": round(float(us.mean()), 3),
    }


def burst(st: bitstat.Stats, events: list[dict[str, Any]], form: str) -> dict[str, Any]:
    pc = time.perf_counter_ns
    spans = [0] * len(events)
    t = st.tracker(max_queue=len(events) + 1)  # a spike this size is kept whole
    track = t.track
    began = time.perf_counter()
    if form == "mapping":
        for i, e in enumerate(events):
            a = pc()
            track(e)
            spans[i] = pc() - a
    else:
        calls = [(e["event"], {k: v for k, v in e.items() if k != "event"}) for e in events]
        began = time.perf_counter()
        for i, (name, props) in enumerate(calls):
            a = pc()
            track(name, **props)
            spans[i] = pc() - a
    tracked = time.perf_counter()
    assert t.flush()
    done = time.perf_counter()
    t.close()
    counters = t.counters()
    assert counters.sent == len(events), counters
    return {
        "form": form,
        "events": len(events),
        "latency": summary(spans),
        "caller_events_per_s": round(len(events) / (tracked - began)),
        "end_to_end_events_per_s": round(len(events) / (done - began)),
        "counters": counters.__dict__,
    }


def paced(st: bitstat.Stats, events: list[dict[str, Any]], rate: int) -> dict[str, Any]:
    pc = time.perf_counter_ns
    spans = [0] * len(events)
    t = st.tracker()
    track = t.track
    per_tick = max(1, rate // 1000)
    most_waiting = 0
    began = time.perf_counter()
    for tick, start in enumerate(range(0, len(events), per_tick)):
        for i in range(start, min(start + per_tick, len(events))):
            a = pc()
            track(events[i])
            spans[i] = pc() - a
        most_waiting = max(most_waiting, t.counters().queued)
        pause = began + (tick + 1) / 1000 - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    arrived = time.perf_counter()
    assert t.flush()
    t.close()
    counters = t.counters()
    assert counters.sent == len(events), counters
    return {
        "rate_asked": rate,
        "rate_made": round(len(events) / (arrived - began)),
        "events": len(events),
        "latency": summary(spans),
        "most_waiting": most_waiting,
        "counters": counters.__dict__,
    }


def check(st: bitstat.Stats, events: list[dict[str, Any]]) -> None:
    """Every event recorded once: totals per name over the local days around now."""
    today = datetime.now(ZoneInfo(TZ)).date()
    first, last = today - timedelta(days=1), today + timedelta(days=1)
    for name in NAMES:
        want = sum(1 for e in events if e["event"] == name)
        got = st.total(name, first, last)
        assert got == want, f"{name}: {got} recorded, {want} tracked"


def run(server: harness.Server, events: list[dict[str, Any]], what: str, **kw: Any) -> Any:
    namespace = f"bench-tracker-{harness.token()}"
    st = bitstat.connect(server.url, namespace=namespace, schema=SCHEMA)
    try:
        server.settle()
        result = burst(st, events, **kw) if what == "burst" else paced(st, events, **kw)
        check(st, events)
        return result
    finally:
        server.delete_matching(*harness.namespace_patterns(namespace))
        st.close()


def show(label: str, result: dict[str, Any]) -> None:
    lat = result["latency"]
    rates = (
        f"end to end {result['end_to_end_events_per_s']:,} ev/s,"
        f" caller {result['caller_events_per_s']:,} ev/s"
        if "end_to_end_events_per_s" in result
        else f"at {result['rate_made']:,} ev/s, at most {result['most_waiting']:,} waiting"
    )
    print(
        f"{label:<26} median {lat['median_us']:6.2f} us  p99 {lat['p99_us']:6.2f} us"
        f"  p99.9 {lat['p999_us']:8.2f} us  max {lat['max_us']:9.1f} us  {rates}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a Redis/Valkey URL (default: a private embedded server)")
    parser.add_argument("--events", type=int, default=200_000, help="events per burst run")
    parser.add_argument("--rate", type=int, default=5_000, help="events/s of the paced run")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the paced run")
    parser.add_argument("--quick", action="store_true", help="20,000 events, a 2 s paced run")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    if args.quick:
        args.events, args.seconds = 20_000, 2.0
    events = make_events(args.events)
    with harness.Server(args.url) as server:
        floor = timer_floor()
        print(f"{len(events):,} events; empty timed region: {floor:.0f} ns (in every figure)")
        results: dict[str, Any] = {"machine": harness.machine_info(server), "timer_ns": floor}
        for form in ("mapping", "kwargs"):
            results[f"burst_{form}"] = run(server, events, "burst", form=form)
            show(
                f"burst, track({'e' if form == 'mapping' else 'name, **props'})",
                results[f"burst_{form}"],
            )
        count = min(len(events), int(args.rate * args.seconds))
        results["paced"] = run(server, events[:count], "paced", rate=args.rate)
        show(f"paced, {args.rate:,} ev/s", results["paced"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
