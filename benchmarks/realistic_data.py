"""The realistic profile's events: what a product really sends, generated once, seeded.

Actor ids are UUID strings, times are ISO-8601 text with a UTC offset and milliseconds
(`2026-11-03T14:07:09.123+01:00`, in the offset of the user's own clock), and every event
carries the properties the schema below records. Users are skewed (a few are very active),
countries are skewed, items follow a catalogue's long tail. Everything is drawn from one
numpy generator per seed, so two runs (and every door of one run) see the same events.

The truth the doors are checked against is computed here, from the columns, never from what
a library answered.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

import bitstat

TIMEZONE = "Europe/Amsterdam"
ZONE = ZoneInfo(TIMEZONE)
SCHEMA = bitstat.Schema(
    ids="map",
    timezone=TIMEZONE,
    periods=("hour", "day", "week", "month", "year"),
    count=["country", "platform", "country~plan"],
    sum=["amount"],
    top=["item"],
    unique=["session"],
    segment=["plan", "country"],
)

USERS = 40_000
ITEMS = 2_000
SESSIONS = 300_000
LIVE_START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
LIVE_DAYS = 14
BACKFILL_START = datetime(2026, 9, 21, tzinfo=UTC)  # 8 weeks ending where the live one ends
BACKFILL_DAYS = 56

# event names and their share of the traffic; which properties each one carries
EVENTS = (
    ("page_view", 0.55),
    ("search", 0.18),
    ("add_to_cart", 0.12),
    ("login", 0.10),
    ("purchase", 0.05),
)
WITH_ITEM = frozenset({"page_view", "add_to_cart", "purchase"})
WITH_AMOUNT = frozenset({"purchase"})

# (country, UTC offset of its users' clocks); the share of users falls off like a power law
# fmt: off
COUNTRIES = (
    ("US", "-05:00"), ("DE", "+01:00"), ("GB", "+00:00"), ("IN", "+05:30"), ("NL", "+01:00"),
    ("FR", "+01:00"), ("CA", "-05:00"), ("ES", "+01:00"), ("IT", "+01:00"), ("IE", "+00:00"),
    ("BE", "+01:00"), ("PL", "+01:00"), ("SE", "+01:00"), ("PT", "+00:00"), ("AT", "+01:00"),
    ("CH", "+01:00"), ("DK", "+01:00"), ("NO", "+01:00"), ("CO", "-05:00"), ("PE", "-05:00"),
    ("LK", "+05:30"), ("CZ", "+01:00"), ("HU", "+01:00"), ("IS", "+00:00"), ("GH", "+00:00"),
)
# fmt: on
PLATFORMS = (("web", 0.45), ("ios", 0.35), ("android", 0.20))
PLANS = (("free", 0.80), ("pro", 0.15), ("team", 0.05))
# share of the day's traffic in each UTC hour: quiet at night in Europe, busy in the evening
HOURLY = np.array(
    [2, 1.5, 1, 1, 1, 1.5, 3, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4, 3], dtype=float
)


def _powerlaw(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1, dtype=float) ** exponent
    return weights / weights.sum()


def _shares(table: tuple[tuple[str, float], ...]) -> np.ndarray:
    p = np.array([w for _, w in table], dtype=float)
    return p / p.sum()


@dataclass
class Population:
    """The 40,000 users: id, country, clock offset, platform and plan are fixed per user."""

    ids: list[str]  # UUID text
    country: np.ndarray  # index into COUNTRIES
    platform: np.ndarray  # index into PLATFORMS
    plan: np.ndarray  # index into PLANS
    activity: np.ndarray  # probability of each user being the actor of an event


def population(seed: int, users: int = USERS) -> Population:
    rng = np.random.default_rng(seed)
    raw = rng.bytes(16 * users)
    ids = [str(uuid.UUID(bytes=raw[i * 16 : i * 16 + 16], version=4)) for i in range(users)]
    # activity: zipf-like (exponent 0.7), in a random order so it is not tied to the index
    activity = _powerlaw(users, 0.7)[rng.permutation(users)]
    return Population(
        ids=ids,
        country=rng.choice(len(COUNTRIES), size=users, p=_powerlaw(len(COUNTRIES), 1.1)),
        platform=rng.choice(len(PLATFORMS), size=users, p=_shares(PLATFORMS)),
        plan=rng.choice(len(PLANS), size=users, p=_shares(PLANS)),
        activity=activity,
    )


@dataclass
class Events:
    """n events as columns, in the order they are sent, and as the dicts users send."""

    kind: str  # "live" or "backfill"
    users: Population
    name: np.ndarray  # index into EVENTS
    user: np.ndarray  # index into users
    millis: np.ndarray  # epoch milliseconds, int64
    session: np.ndarray  # index into the session pool
    session_ids: list[str]
    item: np.ndarray  # index into ITEMS, -1 where the event has no item
    amount: np.ndarray  # NaN where the event has no amount
    times: list[str]  # the ISO-8601 text sent

    def __len__(self) -> int:
        return len(self.user)

    def head(self, n: int) -> Events:
        return Events(
            self.kind,
            self.users,
            self.name[:n],
            self.user[:n],
            self.millis[:n],
            self.session[:n],
            self.session_ids,
            self.item[:n],
            self.amount[:n],
            self.times[:n],
        )

    def dicts(self) -> list[dict[str, Any]]:
        """The events as an application builds them: one dict each, text and float values."""
        pop = self.users
        names = [n for n, _ in EVENTS]
        countries = [c for c, _ in COUNTRIES]
        platforms = [p for p, _ in PLATFORMS]
        plans = [p for p, _ in PLANS]
        items = item_names()
        out: list[dict[str, Any]] = []
        columns = zip(
            self.name.tolist(),
            self.user.tolist(),
            self.times,
            self.session.tolist(),
            self.item.tolist(),
            self.amount.tolist(),
            strict=True,
        )
        for name, user, time, session, item, amount in columns:
            event: dict[str, Any] = {
                "event": names[name],
                "user": pop.ids[user],
                "time": time,
                "country": countries[pop.country[user]],
                "platform": platforms[pop.platform[user]],
                "plan": plans[pop.plan[user]],
                "session": self.session_ids[session],
            }
            if item >= 0:
                event["item"] = items[item]
            if amount == amount:  # not NaN
                event["amount"] = amount
            out.append(event)
        return out

    # ----------------------------------------------------------------------------------------
    # the truth, per event name

    def days(self) -> tuple[date, date]:
        """First and last wall-clock day (in the namespace's zone) holding an event."""
        lo, hi = int(self.millis.min()), int(self.millis.max())
        return (
            datetime.fromtimestamp(lo / 1000, ZONE).date(),
            datetime.fromtimestamp(hi / 1000, ZONE).date(),
        )

    def names_present(self) -> list[str]:
        return [EVENTS[i][0] for i in sorted(set(self.name.tolist()))]

    def _mask(self, event: str) -> np.ndarray:
        return self.name == [n for n, _ in EVENTS].index(event)

    def total(self, event: str) -> int:
        return int(self._mask(event).sum())

    def unique(self, event: str, plan: str | None = None) -> int:
        users = np.unique(self.user[self._mask(event)])
        if plan is not None:
            wanted = [p for p, _ in PLANS].index(plan)
            users = users[self.users.plan[users] == wanted]
        return len(users)

    def unique_ids(self, event: str) -> set[int]:
        return set(np.unique(self.user[self._mask(event)]).tolist())

    def counts(self, event: str, prop: str) -> dict[Any, int]:
        pop = self.users
        users = self.user[self._mask(event)]
        if prop == "country":
            return dict(Counter(COUNTRIES[c][0] for c in pop.country[users].tolist()))
        if prop == "platform":
            return dict(Counter(PLATFORMS[p][0] for p in pop.platform[users].tolist()))
        if prop == "country~plan":
            pairs = zip(pop.country[users].tolist(), pop.plan[users].tolist(), strict=True)
            return dict(Counter((COUNTRIES[c][0], PLANS[p][0]) for c, p in pairs))
        raise ValueError(prop)

    def sum_amount(self, event: str) -> float:
        values = self.amount[self._mask(event)]
        return float(np.nansum(values))

    def distinct_sessions(self, event: str) -> int:
        return len(np.unique(self.session[self._mask(event)]))

    def top_items(self, event: str, limit: int) -> list[tuple[str, int]]:
        items = self.item[self._mask(event)]
        counts = Counter(items[items >= 0].tolist())
        names = item_names()
        ranked = sorted(((names[i], c) for i, c in counts.items()), key=lambda p: (-p[1], p[0]))
        return ranked[:limit]


def item_names() -> list[str]:
    return [f"sku-{i:05d}" for i in range(ITEMS)]


def _iso_texts(millis: np.ndarray, offset_minutes: np.ndarray, offsets: np.ndarray) -> list[str]:
    """`2026-11-03T14:07:09.123+01:00`: the instant in the sender's clock, with its offset."""
    local = (millis + offset_minutes.astype(np.int64) * 60_000).astype("datetime64[ms]")
    wall = np.datetime_as_string(local, unit="ms")
    return np.char.add(wall.astype("U23"), offsets).tolist()


def _offset_columns(users: Population, user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    def minutes(text: str) -> int:
        sign = -1 if text[0] == "-" else 1
        return sign * (int(text[1:3]) * 60 + int(text[4:6]))

    texts = np.array([off for _, off in COUNTRIES], dtype="U6")
    mins = np.array([minutes(off) for _, off in COUNTRIES], dtype=np.int64)
    country = users.country[user]
    return mins[country], texts[country]


def _times(rng: np.random.Generator, n: int, start: datetime, days: int) -> np.ndarray:
    """n epoch-millisecond times over `days` days, with the daily rhythm of HOURLY."""
    day = rng.integers(0, days, n)
    hour = rng.choice(24, size=n, p=HOURLY / HOURLY.sum())
    within = rng.integers(0, 3_600_000, n)
    t0 = int(start.timestamp()) * 1000
    return t0 + day * 86_400_000 + hour * 3_600_000 + within


def events(n: int, kind: str = "live", seed: int = 2026, users: Population | None = None) -> Events:
    """`n` events. `live`: time-ordered over LIVE_DAYS days, as a product sends them now.
    `backfill`: random times over BACKFILL_DAYS days, in random order (an export loaded late)."""
    if kind not in ("live", "backfill"):
        raise ValueError(f"kind must be live or backfill, got {kind!r}")
    pop = users or population(seed)
    rng = np.random.default_rng([seed, 1 if kind == "live" else 2])
    if kind == "live":
        millis = np.sort(_times(rng, n, LIVE_START, LIVE_DAYS))
    else:
        millis = _times(rng, n, BACKFILL_START, BACKFILL_DAYS)
    name = rng.choice(len(EVENTS), size=n, p=_shares(EVENTS))
    user = rng.choice(len(pop.ids), size=n, p=pop.activity)
    pool = rng.integers(0, 2**63, SESSIONS, dtype=np.int64)
    session_ids = [f"{x:016x}" for x in pool.tolist()]
    session = rng.integers(0, SESSIONS, n)
    item = rng.choice(ITEMS, size=n, p=_powerlaw(ITEMS, 0.8))
    has_item = np.isin(name, [i for i, (e, _) in enumerate(EVENTS) if e in WITH_ITEM])
    item = np.where(has_item, item, -1)
    price = np.round(np.exp(rng.normal(3.2, 0.8, n)), 2)  # a median around 25
    has_amount = np.isin(name, [i for i, (e, _) in enumerate(EVENTS) if e in WITH_AMOUNT])
    amount = np.where(has_amount, price, np.nan)
    mins, texts = _offset_columns(pop, user)
    return Events(
        kind=kind,
        users=pop,
        name=name,
        user=user,
        millis=millis,
        session=session,
        session_ids=session_ids,
        item=item,
        amount=amount,
        times=_iso_texts(millis, mins, texts),
    )


def month_span(first: date, last: date) -> list[tuple[int, int]]:
    """(year, month) of every month from `first` to `last`, both included."""
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def local_datetime(text: str) -> datetime:
    """An ISO time as bitmapist's caller must hand it over: a datetime in the reporting zone."""
    return datetime.fromisoformat(text).astimezone(ZONE)
