"""`top` over many buckets: the threshold algorithm, its fallback, and ties, on every backend.

Each case is checked against counts computed here from the same events.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

import bitstat
import servers

FIRST = date(2026, 9, 14)  # a Monday: 3 whole ISO weeks and some days around them
DAYS = 26


@pytest.fixture
def stats(server_url: str, namespace: str, redis_client: servers.Client) -> Iterator[bitstat.Stats]:
    schema = bitstat.Schema(top=["item"], anonymous=True)  # counts of items, no actors
    st = bitstat.connect(server_url, namespace=namespace, schema=schema)
    yield st
    st.close()
    for key in list(redis_client.scan_iter(match="{" + namespace + "*", count=1000)):
        redis_client.delete(key)


def record(st: bitstat.Stats, items_per_day: list[list[str]]) -> Counter[str]:
    events: list[dict[str, Any]] = []
    for i, items in enumerate(items_per_day):
        day = (FIRST + timedelta(days=i)).isoformat()
        events += [{"event": "buy", "item": item, "time": f"{day}T12:00"} for item in items]
    for start in range(0, len(events), 10_000):
        assert st.track_many(events[start : start + 10_000]).recorded == len(
            events[start : start + 10_000]
        )
    return Counter(item for items in items_per_day for item in items)


def expected(counts: Counter[str], limit: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda ic: (-ic[1], ic[0]))[:limit]


def ask(st: bitstat.Stats, limit: int) -> list[tuple[Any, int]]:
    last = (FIRST + timedelta(days=DAYS - 1)).isoformat()
    return st.top("buy", "item", FIRST.isoformat(), last, limit=limit)


def test_skewed_counts_stop_early_and_are_exact(stats: bitstat.Stats) -> None:
    rng = random.Random(5)
    weights = [1 / (i + 1) ** 0.9 for i in range(3000)]
    names = [f"sku-{i}" for i in range(3000)]
    days = [rng.choices(names, weights, k=800) for _ in range(DAYS)]
    counts = record(stats, days)
    for limit in (1, 10, 50):
        assert ask(stats, limit) == expected(counts, limit)


def test_flat_counts_fall_back_to_merging_and_keep_every_tie(stats: bitstat.Stats) -> None:
    # every item once a day: all tied, the threshold never separates them
    days = [[f"item-{j:03}" for j in range(300)] for _ in range(DAYS)]
    counts = record(stats, days)
    assert ask(stats, 10) == expected(counts, 10) == [(f"item-{j:03}", DAYS) for j in range(10)]


def test_items_missing_from_some_buckets_and_ties_at_the_cut(stats: bitstat.Stats) -> None:
    days: list[list[str]] = []
    for i in range(DAYS):
        items = ["every-day"] * 3 + ["odd-days"] * (6 if i % 2 else 0)
        items += [f"once-{i}"] * 40 if i in (3, 20) else []  # two big one-day items, tied
        items += [f"tail-{i}-{j}" for j in range(30)]
        days.append(items)
    counts = record(stats, days)
    assert counts["once-3"] == counts["once-20"] == 40
    for limit in (1, 2, 3, 4):
        assert ask(stats, limit) == expected(counts, limit)


def test_increments_reach_a_set_by_zadd_zincrby_or_union_alike(
    server_url: str, namespace: str, redis_client: servers.Client
) -> None:
    """A batch's increments reach a sorted set three ways (a new set: ZADD; a few into a big
    set: ZINCRBY; many: ZUNIONSTORE with a scratch set): every way gives the same counts and
    sums, and a union keeps the key's expiry."""
    schema = bitstat.Schema(
        top=["item"], sum=["amount by item"], expire={"day": "36500d"}, anonymous=True
    )
    st = bitstat.connect(server_url, namespace=namespace, schema=schema)
    rng = random.Random(11)
    names = [f"sku-{i}" for i in range(200)]
    counts: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    day = FIRST.isoformat()
    # 200 items new; 3 items into 200 (ZINCRBY); 150 into 200 (union); 9 into 200 (ZINCRBY)
    for size in (len(names), 3, 150, 9):
        batch = rng.sample(names, size)
        events = []
        for item in batch:
            amount = rng.randint(1, 500) / 4
            events.append({"event": "buy", "item": item, "amount": amount, "time": f"{day}T09:00"})
            counts[item] += 1
            totals[item] += amount
        assert st.track_many(events).recorded == size
        assert st.top("buy", "item", day, day, limit=999) == expected(counts, 999)
    assert st.sums("buy", "amount", day, day, by="item") == dict(totals)  # quarters: exact
    day_sets = list(redis_client.scan_iter(match="{" + namespace + f"*:[ts]:{day}:*"))
    assert len(day_sets) == 2  # the top items and the sums by item of the day
    assert all(redis_client.ttl(k) > 0 for k in day_sets)
    st.close()
    for key in list(redis_client.scan_iter(match="{" + namespace + "*", count=1000)):
        redis_client.delete(key)
