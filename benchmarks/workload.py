"""Synthetic events for the benchmark, built once, outside every timed region.

All randomness is seeded, so two runs (and both libraries in one run) see the same events.
Ids are plain Python ints (numpy scalars are not `int` and would take slower paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

DAY = 86400
# The live stream runs through two days; the backfill and the query data cover 60 days.
LIVE_START = datetime(2026, 11, 20, tzinfo=UTC)
LIVE_DAYS = 2
BACKFILL_START = datetime(2026, 9, 22, tzinfo=UTC)
HISTORY_START = date(2026, 9, 1)  # scenario 2: 2026-09-01 .. 2026-10-30
HISTORY_DAYS = 60

# fmt: off
COUNTRIES = (
    "US", "CN", "JP", "DE", "GB", "FR", "IN", "IT", "BR", "CA", "KR", "RU", "AU", "ES",
    "MX", "ID", "NL", "SA", "TR", "CH", "PL", "SE", "BE", "AR", "NO", "AT", "IE", "IL",
    "TH", "DK", "SG", "MY", "PH", "ZA", "NG", "EG", "VN", "CL", "FI", "PT",
)
# fmt: on
PLATFORMS = ("ios", "android", "web")
ITEM_COUNT = 2000


@dataclass
class Stream:
    """Events as parallel columns (ids, epoch seconds) plus optional property columns."""

    event: str
    ids: list[int]
    times: list[int]
    props: dict[str, list[Any]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def dicts(self, *, datetimes: bool = False) -> list[dict[str, Any]]:
        """The events as bitstat takes them; times as epoch seconds or aware UTC datetimes."""
        times: list[Any] = self.times
        if datetimes:
            times = utc_datetimes(self.times)
        ev = self.event
        if not self.props:
            return [
                {"event": ev, "user": u, "time": t} for u, t in zip(self.ids, times, strict=True)
            ]
        names = list(self.props)
        columns = [self.props[n] for n in names]
        out = []
        for i, (u, t) in enumerate(zip(self.ids, times, strict=True)):
            d: dict[str, Any] = {"event": ev, "user": u, "time": t}
            for n, col in zip(names, columns, strict=True):
                d[n] = col[i]
            out.append(d)
        return out

    def head(self, n: int) -> Stream:
        props = None if self.props is None else {k: v[:n] for k, v in self.props.items()}
        return Stream(self.event, self.ids[:n], self.times[:n], props)


def utc_datetimes(times: list[int]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in times]


def live_stream(n: int, seed: int, id_space: int = 1_000_000) -> Stream:
    """`n` events with ids uniform in [0, id_space), times increasing through LIVE_DAYS days."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, id_space, n)
    t0 = int(LIVE_START.timestamp())
    times = t0 + (np.arange(n, dtype=np.int64) * (LIVE_DAYS * DAY)) // max(n, 1)
    return Stream("active", ids.tolist(), times.tolist())


def backfill_stream(n: int, seed: int, id_space: int = 1_000_000, days: int = 60) -> Stream:
    """`n` events with ids uniform in [0, id_space), times uniformly random over `days` days."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, id_space, n)
    t0 = int(BACKFILL_START.timestamp())
    times = t0 + rng.integers(0, days * DAY, n)
    return Stream("active", ids.tolist(), times.tolist())


def full_props(n: int, rng: np.random.Generator) -> dict[str, list[Any]]:
    """country (40), platform (3), item (2,000, skewed like real catalogues), amount."""
    weights = 1.0 / np.arange(1, ITEM_COUNT + 1) ** 0.8
    items = rng.choice(ITEM_COUNT, size=n, p=weights / weights.sum())
    item_names = [f"sku-{i}" for i in range(ITEM_COUNT)]
    return {
        "country": [COUNTRIES[i] for i in rng.integers(0, len(COUNTRIES), n).tolist()],
        "platform": [PLATFORMS[i] for i in rng.integers(0, len(PLATFORMS), n).tolist()],
        "item": [item_names[i] for i in items.tolist()],
        "amount": np.round(rng.uniform(1.0, 200.0, n), 2).tolist(),
    }


def full_stream(n: int, seed: int, id_space: int = 1_000_000) -> Stream:
    """The live stream with the full schema's properties."""
    base = live_stream(n, seed, id_space)
    rng = np.random.default_rng(seed + 1)
    return Stream("purchase", base.ids, base.times, full_props(n, rng))


@dataclass
class History:
    """Scenario 2: a fixed population of actors, a random share of them active each day."""

    id_space: int
    population: np.ndarray  # the distinct actor ids
    days: list[date]
    daily: list[np.ndarray]  # ids active on each day (distinct within a day)

    def day_stream(self, i: int, seed: int) -> Stream:
        """Day i's events, one per active actor, at random times of that day."""
        rng = np.random.default_rng(seed * 1000 + i)
        ids = self.daily[i]
        start = int(datetime(*self.days[i].timetuple()[:3], tzinfo=UTC).timestamp())
        times = start + rng.integers(0, DAY, len(ids))
        return Stream("active", ids.tolist(), times.tolist())

    def distinct(self, first: int, last: int) -> int:
        """How many distinct actors were active on days first..last (inclusive, indexes)."""
        return len(np.unique(np.concatenate(self.daily[first : last + 1])))


def history(population: int, id_space: int, daily_share: float, seed: int) -> History:
    rng = np.random.default_rng(seed)
    actors = rng.choice(id_space, size=population, replace=False)
    per_day = max(1, round(population * daily_share))
    days = [HISTORY_START + timedelta(days=i) for i in range(HISTORY_DAYS)]
    daily = [rng.choice(actors, size=per_day, replace=False) for _ in days]
    return History(id_space, actors, days, daily)


def counters_stream(per_day: int, id_space: int, seed: int) -> Stream:
    """Scenario 2c: `per_day` full-schema purchases on each of the 60 history days."""
    rng = np.random.default_rng(seed)
    n = per_day * HISTORY_DAYS
    t0 = int(datetime(*HISTORY_START.timetuple()[:3], tzinfo=UTC).timestamp())
    day_index = np.repeat(np.arange(HISTORY_DAYS, dtype=np.int64), per_day)
    times = t0 + day_index * DAY + rng.integers(0, DAY, n)
    ids = rng.integers(0, id_space, n)
    return Stream("purchase", ids.tolist(), times.tolist(), full_props(n, rng))


def random_ids_64(n: int, seed: int) -> list[int]:
    """`n` distinct random 64-bit ids (as non-negative ints)."""
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(0, 2**64, size=n + n // 100 + 16, dtype=np.uint64, endpoint=False))
    rng.shuffle(ids)
    return [int(x) for x in ids[:n]]


def random_ids_32(n: int, seed: int) -> list[int]:
    """`n` random ids below 2^32, as bitmapist users have them."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**32, size=n, dtype=np.int64).tolist()
