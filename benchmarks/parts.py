"""Batches in parts against whole batches, alternated in one process on one server.

A single server gets a batch of `record.PART_MIN` events or more with several event names in
parts (`record.parts_of`), each planned while Redis writes the one before. This records the
realistic profile's stream through `track_many` both ways, round after round on fresh
namespaces (the order of the two alternates), with `PART_MIN` set out of reach for the whole
batches, and prints events/s, client and Redis CPU per event of each round:

    python benchmarks/parts.py --kind live --batch 5000 --rounds 6
    python benchmarks/parts.py --kind backfill --batch 5000 --rounds 3 --events 100000

`--against names`: the rounds to beat go in parts of a whole event name each, never cut by
weeks (`record.PIECES` 1), as before 2026-12-07.

The machine's noise moves a single figure by 10-20%; compare the rounds pair by pair.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import bitstat
import realistic
import realistic_data as rd
from bitstat import record


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=("live", "backfill"), default="live")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument(
        "--part-min", type=int, default=record.PART_MIN, help="PART_MIN for the parts' rounds"
    )
    ap.add_argument(
        "--against",
        choices=("whole", "names"),
        default="whole",
        help="whole batches, or parts of a whole event name each",
    )
    args = ap.parse_args()
    events = rd.events(args.events, args.kind, args.seed, rd.population(args.seed)).dicts()
    base = args.against
    found: dict[str, list[tuple[float, float, float]]] = {base: [], "parts": []}
    parts_min, default, pieces = args.part_min, record.PART_MIN, record.PIECES
    with realistic.Server(None) as server:
        warm = bitstat.connect(server.url, namespace="warm", schema=rd.SCHEMA)
        warm.track_many(events[:1000])
        for n in range(args.rounds):
            for way in (base, "parts") if n % 2 == 0 else ("parts", base):
                record.PART_MIN = 10**12 if way == "whole" else parts_min
                record.PIECES = 1 if way == "names" else pieces
                ns = f"parts-{way}-{n}"
                st = bitstat.connect(server.url, namespace=ns, schema=rd.SCHEMA)
                s0, c0, t0 = server.cpu_seconds(), cpu(), time.perf_counter()
                for i in range(0, len(events), args.batch):
                    st.track_many(events[i : i + args.batch])
                t1, c1, s1 = time.perf_counter(), cpu(), server.cpu_seconds()
                st.close()
                server.delete_matching("{" + ns + "}*", "{" + ns + ":*")
                k = len(events)
                found[way].append((k / (t1 - t0), 1e6 * (c1 - c0) / k, 1e6 * (s1 - s0) / k))
    record.PART_MIN, record.PIECES = default, pieces
    print(f"{args.kind} by {args.batch:,}, {len(events):,} events, {args.rounds} rounds")
    for way, rounds in found.items():
        each = "  ".join(f"{r:,.0f} ({c:.1f}/{s:.1f})" for r, c, s in rounds)
        print(
            f"{way:>5}: median {statistics.median(r for r, _, _ in rounds):,.0f} ev/s;"
            f" each round ev/s (client/Redis µs an event): {each}"
        )


if __name__ == "__main__":
    main()
