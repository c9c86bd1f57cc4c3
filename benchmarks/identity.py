"""Time `forget` and `alias` in a namespace holding a year of data.

A year (2025) of a product's events: ACTORS text ids, EVENTS event names, each actor active on
random days, every event segmented by country (5 values), periods day/week/month/year. Then
forget and alias a few actors and print the seconds each took, with the number of actor sets
scanned (the SCAN of the actor's shard is most of the cost).

    python benchmarks/identity.py                       # the embedded server
    python benchmarks/identity.py redis://localhost:6379/0
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from datetime import datetime, timedelta

import bitstat

ACTORS = 20_000
EVENTS = ("visit", "search", "view", "cart", "purchase", "login", "share", "review")
EVENTS_PER_ACTOR = 40
COUNTRIES = ("NL", "DE", "FR", "BE", "US")


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else None
    ns = f"bench-identity-{uuid.uuid4().hex[:6]}"
    schema = bitstat.Schema(ids="map", segment=["country"], count=["country"])
    st = bitstat.connect(url, namespace=ns, schema=schema)
    rnd = random.Random(1)
    start = datetime(2025, 1, 1)
    try:
        t0 = time.perf_counter()
        batch = []
        for n in range(ACTORS):
            country = rnd.choice(COUNTRIES)
            for _ in range(EVENTS_PER_ACTOR):
                when = start + timedelta(days=rnd.randrange(365), hours=rnd.randrange(24))
                event = rnd.choice(EVENTS)
                batch.append({"event": event, "user": f"u-{n}", "time": when, "country": country})
            if len(batch) >= 50_000:
                st.track_many(sorted(batch, key=lambda e: e["time"]))
                batch = []
        st.track_many(batch)
        keys = sum(1 for _ in st._store.client.scan_iter(match=f"{{{ns}:s0}}:a:*", count=1000))
        print(
            f"loaded {ACTORS * EVENTS_PER_ACTOR:,} events of {ACTORS:,} actors over 2025 in"
            f" {time.perf_counter() - t0:.1f} s; {keys:,} actor sets in shard 0"
        )
        for n in (5, 500, 5000):
            t = time.perf_counter()
            done = st.forget(f"u-{n}")
            took = time.perf_counter() - t
            print(
                f"forget u-{n}: {took * 1000:.0f} ms, {done.scanned:,} actor sets scanned,"
                f" {done.removed} held it"
            )
        for n in (10, 1000, 10000):
            t = time.perf_counter()
            done = st.alias(f"u-{n}", f"u-{n + 1}")
            took = time.perf_counter() - t
            print(f"alias u-{n} -> u-{n + 1}: {took * 1000:.0f} ms, {done.moved} actor sets moved")
        t = time.perf_counter()
        st.forget("nobody")
        print(f"forget of an unknown id: {(time.perf_counter() - t) * 1000:.1f} ms")
    finally:
        st.drop()
        st.close()


if __name__ == "__main__":
    main()
