"""Analysis benchmark: retention tables and a funnel over 1M actors, bitstat beside bitmapist.

    python benchmarks/analysis.py                 # full size, private embedded server
    python benchmarks/analysis.py --quick         # 20,000 actors (smoke test, < 1 minute)
    python benchmarks/analysis.py --url redis://127.0.0.1:6379/0 --json out.json

Data (seeded, int ids dense in [0, actors)): 24 weeks from Monday 2026-05-04; every day a
random 10% of the actors are `active` (100,000 a day at full size, as in bitmapist's figure);
for the funnel, from day 125 on, 20% of each day's active actors `cart` and 25% of each day's
carts `purchase` over the next six days. bitmapist gets the same `active` bitmaps, written
directly with SET (the bits `mark_event` would set), and answers with `cohort.get_dates_data`.
Each figure is the median of --runs calls after 2 warm-up calls; every answer is first checked
against numpy over the same boolean arrays (a wrong answer fails the run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bitstat
from harness import Server, latencies_ms, machine_info, median, namespace_patterns, token

FIRST_DAY = date(2026, 5, 4)  # a Monday: day i is FIRST_DAY + i, week w starts on day 7w
WEEKS = 24
DAILY_SHARE = 0.10
FUNNEL_FROM = 125  # cart/purchase events start here
FUNNEL_DAYS = (130, 159)  # the funnel's range: 30 days
WINDOW = 7
Bits = npt.NDArray[np.bool_]


def day_of(i: int) -> date:
    return FIRST_DAY + timedelta(days=i)


def epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


class Data:
    """Who did what on which day, as one boolean array per (event, day)."""

    def __init__(self, actors: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.actors = actors
        self.days = WEEKS * 7
        per_day = round(actors * DAILY_SHARE)
        self.ids: dict[str, list[npt.NDArray[np.int64]]] = {
            "active": [],
            "cart": [],
            "purchase": [],
        }
        for _ in range(self.days):
            self.ids["active"].append(np.sort(rng.choice(actors, per_day, replace=False)))
        pending: list[npt.NDArray[np.int64]] = []
        for i in range(self.days):
            if i < FUNNEL_FROM:
                self.ids["cart"].append(np.empty(0, np.int64))
                self.ids["purchase"].append(np.empty(0, np.int64))
                continue
            today = self.ids["active"][i]
            cart = np.sort(rng.choice(today, len(today) // 5, replace=False))
            self.ids["cart"].append(cart)
            pending.append(rng.choice(cart, len(cart) // 4, replace=False))
            due = [p[rng.integers(0, 6, len(p)) == 0] for p in pending[-6:]]
            self.ids["purchase"].append(np.unique(np.concatenate(due)))

    def bits(self, event: str, days: range) -> Bits:
        out = np.zeros(self.actors, dtype=bool)
        for i in days:
            out[self.ids[event][i]] = True
        return out

    def events(self, i: int) -> list[dict[str, Any]]:
        t = epoch(day_of(i)) + 43200
        return [
            {"event": name, "user": u, "time": t}
            for name in ("active", "cart", "purchase")
            for u in self.ids[name][i].tolist()
        ]


# truth, from the boolean arrays


def truth_retention(
    data: Data, period: int, first: int, rows: int, cols: int, kind: str
) -> list[tuple[int, list[int]]]:
    def span(i: int) -> range:
        return range(i * period, (i + 1) * period)

    out = []
    seen = data.bits("active", range(first * period))
    for i in range(first, first + rows):
        did = data.bits("active", span(i))
        cohort = did & ~seen if kind == "first" else did
        seen |= did
        counts = [int((cohort & data.bits("active", span(i + k))).sum()) for k in range(cols)]
        out.append((int(cohort.sum()), counts))
    return out


def truth_funnel(data: Data) -> list[int]:
    """Per start day d: step 1 on d, then steps 2.. as the union over the step-2 day y."""
    lo, hi = FUNNEL_DAYS
    reached = [np.zeros(data.actors, dtype=bool) for _ in range(3)]
    for d in range(lo, hi + 1):
        first = data.bits("active", range(d, d + 1))
        second = data.bits("cart", range(d, d + WINDOW))
        third = np.zeros(data.actors, dtype=bool)
        for y in range(d, d + WINDOW):
            third |= data.bits("cart", range(y, y + 1)) & data.bits(
                "purchase", range(y, d + WINDOW)
            )
        reached[0] |= first
        reached[1] |= first & second
        reached[2] |= first & third
    return [int(r.sum()) for r in reached]


def truth_lifecycle(data: Data, first: int, n: int) -> list[tuple[int, int, int, int]]:
    def week(w: int) -> Bits:
        return data.bits("active", range(7 * w, 7 * w + 7))

    out = []
    for w in range(first, first + n):
        now, prev, earlier = week(w), week(w - 1), data.bits("active", range(7 * (w - 1)))
        out.append(
            (
                int((now & ~prev & ~earlier).sum()),
                int((now & prev).sum()),
                int((now & ~prev & earlier).sum()),
                int((prev & ~now).sum()),
            )
        )
    return out


# bitmapist


def write_bitmapist(bm: Any, ev: str, data: Data, server: Server) -> None:
    """bitmapist's day and week keys of `active`, as mark_event would leave them."""
    pipe = server.redis.pipeline(transaction=False)
    weeks: dict[str, Bits] = {}
    for i in range(data.days):
        d = day_of(i)
        bits = data.bits("active", range(i, i + 1))
        pipe.set(bm.DayEvents(ev, d.year, d.month, d.day).redis_key, packed(bits))
        iso = d.isocalendar()
        key = bm.WeekEvents(ev, iso.year, iso.week).redis_key
        weeks[key] = bits if key not in weeks else weeks[key] | bits
    for key, bits in weeks.items():
        pipe.set(key, packed(bits))
    pipe.execute()


def packed(bits: Bits) -> bytes:
    return bytes(np.trim_zeros(np.packbits(bits), "b").tobytes())


def bitmapist_counts(bm: Any, ev: str, start: date, rows: int, cols: int, group: str) -> Any:
    # get_dates_data steps back (rows - 1) days, then (rows - 1) periods, from start_date
    back = timedelta(weeks=rows - 1) if group == "weeks" else timedelta(days=rows - 1)
    begin = start + back - timedelta(days=rows - 1)
    return bm.cohort.get_dates_data(
        select1=ev,
        select2=ev,
        time_group=group,
        as_percent=False,
        num_results=rows,
        num_of_rows=cols - 1,
        start_date=begin.isoformat(),
    )


# the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    actors = 20_000 if args.quick else args.actors
    print(f"generating {WEEKS} weeks of events for {actors:,} actors ...", flush=True)
    data = Data(actors)
    results: dict[str, Any] = {"actors": actors, "runs": args.runs, "figures": {}, "checks": []}
    with Server(args.url) as server:
        results["machine"] = machine_info(server)
        ns = f"bench-analysis-{token()}"
        ev = f"bench_analysis_{token()}"
        import bitmapist
        import bitmapist.cohort

        host, port, kw = server.bitmapist_kwargs()
        bitmapist.setup_redis("default", host, port, **kw)
        st = bitstat.connect(server.url, namespace=ns, schema=bitstat.Schema())
        try:
            print("loading bitstat (track_many) and bitmapist (SET) ...", flush=True)
            for i in range(data.days):
                batch = data.events(i)
                for s in range(0, len(batch), 50_000):
                    st.track_many(batch[s : s + 50_000])
            write_bitmapist(bitmapist, ev, data, server)
            measure(args, data, st, bitmapist, ev, results)
        finally:
            st.close()
            server.delete_matching(*namespace_patterns(ns))
            bitmapist.delete_runtime_bitop_keys()
            server.delete_matching(f"trackist_{ev}_*")
        results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def measure(
    args: argparse.Namespace,
    data: Data,
    st: bitstat.Stats,
    bm: Any,
    ev: str,
    results: dict[str, Any],
) -> None:
    now = day_of(data.days)
    figures: dict[str, Any] = results["figures"]

    def check(name: str, want: Any, got: Any) -> None:
        ok = want == got
        results["checks"].append({"figure": name, "ok": ok})
        if not ok:
            raise SystemExit(f"CHECK FAILED {name}: want {want!r}, got {got!r}")

    def timed(name: str, target: float | None, fn: Any) -> None:
        runs = latencies_ms(fn, args.runs)
        mid = median(runs)
        figures[name] = {"median_ms": round(mid, 2), "target_ms": target, "runs": runs}
        met = "" if target is None else "target met" if mid <= target else (
            f"target {target:g} ms missed by {mid / target - 1:.0%}")  # fmt: skip
        print(f"  {name:<50} {mid:8.2f} ms  (min {min(runs):6.2f}, max {max(runs):7.2f})  {met}",
              flush=True)  # fmt: skip

    tables = [
        ("weekly 12x12", "week", 7, 1, 12, 12, 30.0),
        ("daily 31x13", "day", 1, 100, 31, 13, 30.0),
    ]
    for title, period, length, first, rows, cols, target in tables:
        start = day_of(first * length)
        for kind in ("recurring", "first"):
            name = f"retention {title} {kind}"

            def ask(period: str = period, kind: str = kind, rows: int = rows, cols: int = cols,
                    start: date = start) -> bitstat.analysis.Retention:  # fmt: skip
                return st.retention(
                    "active", "active", start, rows, period, kind, columns=cols, now=now
                )

            got = [(r.size, r.counts) for r in ask().rows]
            check(name, truth_retention(data, length, first, rows, cols, kind), got)
            timed(f"bitstat {name}", target, ask)
        group = "weeks" if period == "week" else "days"
        theirs = bitmapist_counts(bm, ev, start, rows, cols, group)
        mine = truth_retention(data, length, first, rows, cols, "recurring")
        check(f"bitmapist {title}", mine, [(r[1], [int(c) for c in r[2:]]) for r in theirs])
        timed(
            f"bitmapist cohort.get_dates_data {title}",
            None,
            lambda s=start, r=rows, c=cols, g=group: bitmapist_counts(bm, ev, s, r, c, g),
        )
    lo, hi = FUNNEL_DAYS
    steps = ["active", "cart", "purchase"]

    def funnel() -> list[tuple[str, int]]:
        return st.funnel(steps, day_of(lo), day_of(hi), within=f"{WINDOW}d")

    check("funnel", list(zip(steps, truth_funnel(data), strict=True)), funnel())
    timed("bitstat funnel 3 steps, 30 days, within 7d", 50.0, funnel)
    figures["funnel answer"] = funnel()

    # context figures (no target): stickiness over the funnel's 30 days, a 12-week lifecycle
    def stickiness() -> dict[int, int]:
        return st.stickiness("active", day_of(lo), day_of(hi))

    active_days = sum(
        data.bits("active", range(d, d + 1)).astype(np.int64) for d in range(lo, hi + 1)
    )
    found = np.bincount(active_days, minlength=hi - lo + 2)
    check("stickiness", {n: int(found[n]) for n in range(1, hi - lo + 2)}, stickiness())
    timed("bitstat stickiness, 30 days", None, stickiness)

    def lifecycle() -> list[bitstat.analysis.LifecyclePeriod]:
        return st.lifecycle("active", day_of(7), 12, "week", now=now)

    check("lifecycle", truth_lifecycle(data, 1, 12), [
        (p.new, p.returning, p.resurrecting, p.dormant) for p in lifecycle()])  # fmt: skip
    timed("bitstat lifecycle, 12 weeks", None, lifecycle)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/analysis.py", description=__doc__.split("\n")[0])
    p.add_argument("--url", help="a single Redis/Valkey (default: a private embedded server)")
    p.add_argument("--quick", action="store_true", help="20,000 actors: a smoke test")
    p.add_argument("--actors", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=21, help="timed calls per figure (median shown)")
    p.add_argument("--json", metavar="PATH", help="write every figure and machine info as JSON")
    args = p.parse_args(argv)
    results = run(args)
    print(f"load average at start {results['machine']['load_average_at_start']},"
          f" at end {results['load_average_at_end']}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
