"""The scale benchmark's streams and their truth: the realistic profile at any size.

A stream is `realistic_data`'s events (UUID ids, ISO text times with offsets, the same skews)
for any number of actors and events, kept as numpy columns; the event dicts are built a batch
at a time (`Stream.batches`), so millions of events never sit in memory as dicts. Two time
shapes: `live` (time-ordered over days, with the profile's daily rhythm) and `rate` (a fixed
number of events per second of event time, as a busy product sends them). Sessions are drawn
from a pool 1.5 times the number of events, as in the realistic profile (300,000 for 200,000),
so distinct sessions grow with the stream instead of saturating.

The truth of every query (`Truth`) is computed from the columns with numpy, never from what
bitstat answered: local days in the namespace's zone, unique actors per day/week/month/range,
retention of first-time actors, an ordered funnel with a window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

import realistic_data as rd

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
SESSIONS_PER_EVENT = 1.5  # the realistic profile's pool: 300,000 sessions for 200,000 events


@dataclass
class Stream:
    """`n` events as columns; the ISO texts and dicts are made per batch."""

    events: rd.Events  # every column; `times` is empty (made per batch)
    minutes: np.ndarray  # UTC offset of each event's sender, in minutes
    offsets: np.ndarray  # the same as text ("+01:00")
    pool: np.ndarray  # session ids (int64) by session index

    def __len__(self) -> int:
        return len(self.events)

    def part(self, lo: int, hi: int) -> rd.Events:
        """Events lo..hi as `realistic_data.Events`, with their ISO texts and session ids."""
        ev = self.events
        used, local = np.unique(ev.session[lo:hi], return_inverse=True)
        return rd.Events(
            ev.kind,
            ev.users,
            ev.name[lo:hi],
            ev.user[lo:hi],
            ev.millis[lo:hi],
            local.reshape(-1),
            [f"{x:016x}" for x in self.pool[used].tolist()],
            ev.item[lo:hi],
            ev.amount[lo:hi],
            rd._iso_texts(ev.millis[lo:hi], self.minutes[lo:hi], self.offsets[lo:hi]),
        )

    def batches(
        self, size: int, lo: int = 0, hi: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """The event dicts of events lo..hi, `size` at a time, in stream order."""
        end = len(self) if hi is None else hi
        for i in range(lo, end, size):
            yield self.part(i, min(i + size, end)).dicts()


def stream(
    users: rd.Population,
    n: int,
    *,
    shape: str = "live",
    start: datetime = rd.LIVE_START,
    days: int = rd.LIVE_DAYS,
    rate: float = 10_000.0,
    seed: int = 2026,
) -> Stream:
    """`n` events of `users`. `live`: random times over `days` days from `start` with the
    profile's daily rhythm, sorted; `rate`: `rate` events a second from `start`, in order."""
    rng = np.random.default_rng([seed, 3 if shape == "live" else 4, n])
    if shape == "live":
        millis = np.sort(rd._times(rng, n, start, days))
    elif shape == "rate":
        t0 = int(start.timestamp() * 1000)
        millis = t0 + (np.arange(n, dtype=np.int64) * 1000 / rate).astype(np.int64)
    else:
        raise ValueError(f"shape must be live or rate, got {shape!r}")
    name = rng.choice(len(rd.EVENTS), size=n, p=rd._shares(rd.EVENTS))
    user = rng.choice(len(users.ids), size=n, p=users.activity)
    sessions = max(1, int(n * SESSIONS_PER_EVENT))
    pool = rng.integers(0, 2**63, sessions, dtype=np.int64)
    session = rng.integers(0, sessions, n)
    item = rng.choice(rd.ITEMS, size=n, p=rd._powerlaw(rd.ITEMS, 0.8))
    names = [e for e, _ in rd.EVENTS]
    item = np.where(np.isin(name, [names.index(e) for e in rd.WITH_ITEM]), item, -1)
    price = np.round(np.exp(rng.normal(3.2, 0.8, n)), 2)
    amount = np.where(np.isin(name, [names.index(e) for e in rd.WITH_AMOUNT]), price, np.nan)
    minutes, offsets = rd._offset_columns(users, user)
    events = rd.Events(shape, users, name, user, millis, session, [], item, amount, [])
    return Stream(events, minutes, offsets, pool)


# --------------------------------------------------------------------------------------------
# The truth


def local_days(millis: np.ndarray) -> np.ndarray:
    """Day numbers (days since 1970-01-01) of each instant on the namespace zone's clock."""
    hours = millis // HOUR_MS
    unique_hours, index = np.unique(hours, return_inverse=True)
    offsets = np.array([_offset_ms(int(h)) for h in unique_hours.tolist()], dtype=np.int64)
    return (millis + offsets[index.reshape(-1)]) // DAY_MS


def _offset_ms(hour: int) -> int:
    offset = datetime.fromtimestamp(hour * 3600, UTC).astimezone(rd.ZONE).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() * 1000)


def day_of(number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=number)


def number_of(day: date) -> int:
    return (day - date(1970, 1, 1)).days


class Truth:
    """What every query of the benchmark must answer, from the stream's columns."""

    def __init__(self, s: Stream) -> None:
        self.ev = s.events
        self.day = local_days(self.ev.millis)
        self.first = int(self.day.min())
        self.last = int(self.day.max())
        self.names = [e for e, _ in rd.EVENTS]

    def days(self) -> tuple[date, date]:
        return day_of(self.first), day_of(self.last)

    def _mask(self, event: str) -> np.ndarray:
        return np.asarray(self.ev.name == self.names.index(event))

    def unique(self, event: str, lo: date, hi: date, plan: str | None = None) -> int:
        d = self.day
        mask = self._mask(event) & (d >= number_of(lo)) & (d <= number_of(hi))
        users = np.unique(self.ev.user[mask])
        if plan is not None:
            wanted = [p for p, _ in rd.PLANS].index(plan)
            users = users[self.ev.users.plan[users] == wanted]
        return len(users)

    def presence(self, event: str) -> np.ndarray:
        """actors x days of the stream: did the actor do `event` that day."""
        out = np.zeros((len(self.ev.users.ids), self.last - self.first + 1), dtype=bool)
        mask = self._mask(event)
        out[self.ev.user[mask], self.day[mask] - self.first] = True
        return out

    def retention_first(self, first: str, back: str, periods: int) -> list[tuple[int, list[int]]]:
        """(cohort size, counts) per day from the stream's first day: actors whose first-ever
        `first` is on day i, and of them those who did `back` on day i + k (k < periods)."""
        did, came = self.presence(first), self.presence(back)
        ever = did.any(axis=1)
        first_day = np.where(ever, did.argmax(axis=1), -1)
        width = did.shape[1]
        rows = []
        for i in range(periods):
            cohort = first_day == i
            counts = [
                int((cohort & came[:, i + k]).sum()) if i + k < width else 0 for k in range(periods)
            ]
            rows.append((int(cohort.sum()), counts))
        return rows

    def funnel(self, steps: list[str], within_days: int) -> list[int]:
        """Actors reaching each step: step 1 on a day d of the stream, each later step on a day
        no earlier than the step before, all before d + within_days."""
        present = [self.presence(s) for s in steps]
        actors, width = present[0].shape
        never = width + within_days + 1
        # next_day[k][a, d]: the first day >= d on which actor a did step k (never if none)
        following = []
        for p in present[1:]:
            nxt = np.full((actors, width + 1), never, dtype=np.int32)
            for d in range(width - 1, -1, -1):
                nxt[:, d] = np.where(p[:, d], d, nxt[:, d + 1])
            following.append(nxt)
        best = np.zeros(actors, dtype=np.int32)
        rows = np.arange(actors)
        for d in range(width):
            reached = np.where(present[0][:, d], 1, 0).astype(np.int32)
            at = np.full(actors, d, dtype=np.int32)
            for k, nxt in enumerate(following, start=2):
                later = nxt[rows, np.minimum(at, width)]
                ok = (reached == k - 1) & (later < d + within_days)
                reached = np.where(ok, k, reached)
                at = np.where(ok, later, at)
            best = np.maximum(best, reached)
        return [int((best >= k).sum()) for k in range(1, len(steps) + 1)]


def iso_week_days(label: str) -> tuple[date, date]:
    year, week = int(label[:4]), int(label[6:])
    monday = date.fromisocalendar(year, week, 1)
    return monday, monday + timedelta(days=6)


def month_days(label: str) -> tuple[date, date]:
    year, month = int(label[:4]), int(label[5:7])
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return first, following - timedelta(days=1)
