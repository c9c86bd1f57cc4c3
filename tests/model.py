"""A plain-Python reference model of bitstat: sets and dicts over the raw events (the oracle).

Written from the public contract alone: periods, labels and ranges are computed here with plain
`datetime`/`zoneinfo`, never with bitstat's own planning code, so the two can disagree.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

PERIODS = ("hour", "day", "week", "month", "year")
LABEL = re.compile(r"(\d{4})(?:-W(\d{2})|-(\d{2})(?:-(\d{2})(?:T(\d{2}))?)?)?", re.ASCII)
EPOCH_MIN = datetime(1970, 1, 1, tzinfo=UTC)
FIRST = datetime(1970, 1, 1)
AFTER_LAST = datetime(9999, 1, 1)  # bitstat supports 1970-01-01 to 9998-12-31
DEFAULT_MAX_ID = 2**32 - 1
SUM_LIMIT = 1e308  # no total may leave +-SUM_LIMIT: the event that would carry it out is rejected


class ModelError(ValueError):
    """The model refuses a query (the library should raise QueryError)."""


class Rejected(ValueError):
    """The model rejects an event (the library should reject it too)."""


# time


@dataclass(frozen=True)
class Span:
    """One bucket: the half-open wall-clock interval [start, end) and its label."""

    period: str
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        s = self.start
        if self.period == "hour":
            return s.strftime("%Y-%m-%dT%H")
        if self.period == "day":
            return s.strftime("%Y-%m-%d")
        if self.period == "week":
            y, w, _ = s.isocalendar()
            return f"{y:04d}-W{w:02d}"
        if self.period == "month":
            return s.strftime("%Y-%m")
        return f"{s.year:04d}"


def span_of(period: str, wall: datetime) -> Span:
    """The bucket of `period` holding the naive wall time `wall`."""
    midnight = datetime(wall.year, wall.month, wall.day)
    if period == "hour":
        start = midnight + timedelta(hours=wall.hour)
        return Span(period, start, start + timedelta(hours=1))
    if period == "day":
        return Span(period, midnight, midnight + timedelta(days=1))
    if period == "week":
        start = midnight - timedelta(days=wall.isoweekday() - 1)
        return Span(period, start, start + timedelta(days=7))
    if period == "month":
        start = midnight.replace(day=1)
        end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1)
        return Span(period, start, end)
    if period == "year":
        return Span(period, datetime(wall.year, 1, 1), datetime(wall.year + 1, 1, 1))
    raise ModelError(f"unknown period {period!r}")


def parse_label(text: str) -> Span | None:
    m = LABEL.fullmatch(text)
    if m is None:
        return None
    y, w, mo, d, h = m.groups()
    try:
        if w is not None:
            return span_of("week", datetime.fromisocalendar(int(y), int(w), 1))
        if mo is None:
            return span_of("year", datetime(int(y), 1, 1))
        if d is None:
            return span_of("month", datetime(int(y), int(mo), 1))
        if h is None:
            return span_of("day", datetime(int(y), int(mo), int(d)))
        return span_of("hour", datetime(int(y), int(mo), int(d), int(h)))
    except ValueError as exc:
        raise ModelError(f"bad label {text!r}") from exc


def wall_time(value: Any, tz: ZoneInfo) -> datetime:
    """A time as naive local wall-clock time in `tz`."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=None)
        return value.astimezone(tz).replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError("not finite")
        whole = math.floor(value)
        return (EPOCH_MIN + timedelta(seconds=whole)).astimezone(tz).replace(tzinfo=None)
    if isinstance(value, str):
        span = parse_label(value.strip())
        if span is not None:
            return span.start
        return wall_time(datetime.fromisoformat(value.strip()), tz)
    raise ValueError(f"not a time: {value!r}")


def real_wall(wall: datetime, tz: ZoneInfo) -> datetime:
    """An event's wall time that the clocks jumped over (02:30 on a spring-forward day) as the
    instant Python reads (the offset before the jump: 03:30); any other as it is."""
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)


def endpoint(value: Any, tz: ZoneInfo, fine: str) -> Span:
    """What a range endpoint stands for: a label or date its bucket, an exact time its `fine`."""
    if isinstance(value, str):
        span = parse_label(value.strip())
        if span is not None:
            return span if span.period != "hour" else span_of(fine, span.start)
        try:
            d = date.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            return span_of("day", datetime(d.year, d.month, d.day))
    elif isinstance(value, date) and not isinstance(value, datetime):
        return span_of("day", datetime(value.year, value.month, value.day))
    try:
        return span_of(fine, wall_time(value, tz))
    except ValueError as exc:
        raise ModelError(str(exc)) from exc


# values and ids


def compound(name: str) -> tuple[str, ...]:
    return tuple(sorted(name.split("~")))


def norm(name: str) -> str:
    return "~".join(compound(name))


def text_of(value: Any, limit: int | None = None) -> str | None:
    """A property value as recorded; None when absent; Rejected when not a scalar or, with a
    `limit`, longer than `limit` characters."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"  # (as JSON writes them)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Rejected(f"not a finite number: {value!r}")
        text = javascript_text(value)
    else:
        raise Rejected(f"not a scalar: {value!r}")
    if limit is not None and len(text) > limit:
        raise Rejected(f"value of {len(text)} characters")
    return text


def javascript_text(value: float) -> str:
    """String(x) in JavaScript for a finite x, read off its exact decimal expansion: plain
    digits from 1e-6 up to below 1e21, else d.ddde+N (2.0 is "2", 1e21 is "1e+21")."""
    if value == 0:
        return "0"
    shortest = Decimal(repr(abs(value))).normalize()  # the shortest digits that read back
    _, digits, exponent = shortest.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # where the decimal point goes, counted from the left
    if len(text) <= point <= 21:
        body = text + "0" * (point - len(text))
    elif 0 < point <= 21:
        body = text[:point] + "." + text[point:]
    elif -6 < point <= 0:
        body = "0." + "0" * -point + text
    else:
        head = text[0] + ("." + text[1:] if len(text) > 1 else "")
        body = f"{head}e{point - 1:+d}"
    return ("-" if value < 0 else "") + body


def fsum(values: Iterable[float]) -> float:
    """The exact sum, or +-inf when it lies beyond the float range (bucket totals stay within
    +-1e308, but a range adds up many buckets)."""
    items = list(values)
    try:
        return math.fsum(items)
    except OverflowError:
        return sum(items)


def good_name(name: Any) -> bool:
    """Event names: non-empty printable text of at most 200 characters."""
    return isinstance(name, str) and 0 < len(name) <= 200 and name.isprintable()


def integer_text(text: str) -> bool:
    try:
        return str(int(text)) == text
    except ValueError:
        return False


@dataclass(frozen=True)
class Rules:
    count: tuple[str, ...] = ()
    sum: tuple[tuple[str, str | None], ...] = ()
    top: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    segment: tuple[str, ...] = ()
    approx: tuple[str, ...] = ()


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    out: list[str] = []
    for v in value:
        if norm(v) not in out:
            out.append(norm(v))
    return tuple(out)


def _sums(value: Any) -> tuple[tuple[str, str | None], ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    out: list[tuple[str, str | None]] = []
    for text in value:
        prop, sep, by = text.partition(" by ")
        rule = (prop.strip(), norm(by.strip()) if sep else None)
        if rule not in out:
            out.append(rule)
    return tuple(out)


def _rules(spec: Mapping[str, Any]) -> Rules:
    return Rules(
        _names(spec.get("count")),
        _sums(spec.get("sum")),
        _names(spec.get("top")),
        _names(spec.get("unique")),
        _names(spec.get("segment")),
        _names(spec.get("approx")),
    )


@dataclass
class Record:
    event: str
    actor: Any  # canonical: int (ids="int") or text (ids="map"); None without an actor
    wall: datetime
    props: dict[str, Any]


class Model:
    """What bitstat should answer, from the raw events; takes the same arguments as Schema."""

    def __init__(
        self,
        actor: str = "user",
        ids: str = "int",
        timezone: str = "UTC",
        periods: Iterable[str] = ("day", "week", "month", "year"),
        count: Any = None,
        sum: Any = None,
        top: Any = None,
        unique: Any = None,
        segment: Any = None,
        approx: Any = None,
        events: Mapping[str, Mapping[str, Any]] | None = None,
        max_id: int = DEFAULT_MAX_ID,
        anonymous: bool = False,
        max_value_length: int = 1024,
        horizon: float = 86400,
        hourly: Any = (),
    ) -> None:
        self.anonymous = anonymous
        self.max_value_length = max_value_length
        self.horizon = timedelta(seconds=horizon)
        self.totals: dict[tuple[Any, ...], float] = defaultdict(float)
        self.actor = actor
        self.ids_mode = ids
        self.tz = ZoneInfo(timezone)
        self.periods = tuple(p for p in PERIODS if p in set(periods))
        families = ("count", "sum", "top", "unique", "approx", "segment")
        self.hourly = set(
            families if hourly == "all" else [hourly] if isinstance(hourly, str) else hourly
        )
        self.base = _rules(
            {
                "count": count,
                "sum": sum,
                "top": top,
                "unique": unique,
                "segment": segment,
                "approx": approx,
            }
        )
        self.overrides = {name: _rules(spec) for name, spec in (events or {}).items()}
        self.max_id = max_id
        self.records: list[Record] = []
        self.batches: set[str] = set()
        self.person: dict[Any, Any] = {}  # ids="map": an id aliased to another -> its person

    def rules(self, event: str) -> Rules:
        return self.overrides.get(event, self.base)

    # recording

    def _actor(self, value: Any) -> Any:
        if value is None:
            return None
        if self.ids_mode == "int":
            if isinstance(value, bool):
                raise Rejected("bool actor")
            if isinstance(value, int):
                n = value
            elif isinstance(value, str) and value.isascii() and value.isdigit():
                n = int(value)
            else:
                raise Rejected(f"actor {value!r}")
            if not 0 <= n <= self.max_id:
                raise Rejected(f"actor {n} out of range")
            return n
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise Rejected(f"actor {value!r}")
        if value == "":
            raise Rejected("empty actor")
        if len(str(value)) > self.max_value_length:
            raise Rejected("actor id too long")
        return str(value)

    def _check(self, ev: Any) -> Record:
        if not isinstance(ev, Mapping):
            raise Rejected("not a mapping")
        name = ev.get("event")
        if not good_name(name):
            raise Rejected("event name")
        actor = self._actor(ev.get(self.actor))
        if actor is None and not self.anonymous:
            raise Rejected("no actor")
        if ev.get("time") is None:
            raise Rejected("the model needs an explicit time")
        t = ev["time"]
        if isinstance(t, bool) or not isinstance(t, (datetime, date, str, int, float)):
            raise Rejected("time type")
        try:
            wall = wall_time(t, self.tz)
            if not isinstance(t, (int, float)):
                wall = real_wall(wall, self.tz)
        except (ValueError, OverflowError) as exc:
            raise Rejected(f"time {t!r}") from exc
        latest = datetime.now(UTC) + self.horizon
        if isinstance(t, (int, float)):
            instant = EPOCH_MIN + timedelta(seconds=math.floor(t))
            early, late = instant < EPOCH_MIN, instant > latest
        elif isinstance(t, datetime) and t.utcoffset() is not None:
            early, late = t < EPOCH_MIN, t > latest
        else:
            early = wall < FIRST
            late = wall > latest.astimezone(self.tz).replace(tzinfo=None)
        if early or late or wall >= AFTER_LAST:
            raise Rejected(f"time {t!r} outside 1970..9998 or past the horizon")
        rules = self.rules(name)
        limit = self.max_value_length
        for prop in (*rules.count, *rules.top, *rules.unique, *rules.segment, *rules.approx):
            for part in compound(prop):
                text_of(ev.get(part), limit)
        for prop, by in rules.sum:
            number = self._number(ev.get(prop))
            if number is not None and by:
                for part in compound(by):
                    text_of(ev.get(part), limit)
        if self.ids_mode == "map" and actor is not None:
            actor = self.person.get(actor, actor)
        return Record(name, actor, wall, dict(ev))

    def _sum_buckets(self, r: Record) -> list[tuple[Any, ...]]:
        """Every total the event adds to: per sum rule (and `by` value) and recorded period."""
        out: list[tuple[Any, ...]] = []
        for prop, by in self.rules(r.event).sum:
            number = self._number(r.props.get(prop))
            key = self._keyed(r, by) if by else ()
            if number is None or key is None:
                continue
            for period in self.kept("sum"):
                out.append((r.event, prop, by, key, span_of(period, r.wall).label, number))
        return out

    def _fits(self, r: Record) -> bool:
        """Adds the event's values to the running totals if none leaves +-SUM_LIMIT."""
        adds = self._sum_buckets(r)
        if any(abs(self.totals[a[:-1]] + a[-1]) > SUM_LIMIT for a in adds):
            return False
        for a in adds:
            self.totals[a[:-1]] += a[-1]
        return True

    @staticmethod
    def _number(value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise Rejected(f"sum {value!r}")
        if isinstance(value, str) and "_" in value:  # (Python's 1_000: no JSON or CSV number)
            raise Rejected(f"sum {value!r}")
        try:
            number = float(value)
        except (ValueError, OverflowError) as exc:
            raise Rejected(f"sum {value!r}") from exc
        if not math.isfinite(number):
            raise Rejected(f"sum {value!r}")
        return number

    def track_many(
        self, events: Iterable[Any], batch_id: str | None = None
    ) -> tuple[int, list[int]]:
        """(recorded, rejected indexes), like TrackResult."""
        checked: list[tuple[int, Record]] = []
        rejected: list[int] = []
        for i, ev in enumerate(events):
            try:
                checked.append((i, self._check(ev)))
            except Rejected:
                rejected.append(i)
        if batch_id is not None:
            if batch_id in self.batches:
                return 0, rejected
            self.batches.add(batch_id)
        kept = []
        for i, r in checked:
            if self._fits(r):
                kept.append(r)
            else:
                rejected.append(i)
        self.records += kept
        return len(kept), sorted(rejected)

    def track(self, event: Any) -> None:
        if self.track_many([event])[1]:
            raise Rejected(repr(event))

    # identity

    def _person(self, actor: Any, param: str) -> Any:
        try:
            canonical = self._actor(actor)
        except Rejected as exc:
            raise ModelError(f"{param}: {exc}") from None
        if self.ids_mode == "map":
            return self.person.get(canonical, canonical)
        return canonical

    def alias(self, anon: Any, user: Any) -> None:
        """One person from now on: what `anon`'s person did becomes `user`'s person's; with
        ids="map", `anon` (and every id of its person) stands for `user`'s person later too."""
        a, u = self._person(anon, "anon"), self._person(user, "user")
        if a == u:
            return
        if self.ids_mode == "map":
            for k, v in list(self.person.items()):
                if v == a:
                    self.person[k] = u
            self.person[a] = u
            self.person[self._actor(anon)] = u
        for r in self.records:
            if r.actor == a:
                r.actor = u

    def forget(self, actor: Any) -> None:
        """The person is in no actor set any more (their events still count where counted),
        and none of their ids stands for them."""
        p = self._person(actor, "actor")
        if self.ids_mode == "map":
            for k, v in list(self.person.items()):
                if v == p:
                    del self.person[k]
        for r in self.records:
            if r.actor == p:
                r.actor = None

    # ranges

    def range(self, start: Any, end: Any = None) -> tuple[datetime, datetime]:
        fine = "hour" if "hour" in self.periods else "day"
        first = endpoint(start, self.tz, fine)
        if first.start < FIRST or first.end > AFTER_LAST:
            raise ModelError(f"{start!r} outside 1970..9998")
        if end is None:
            return first.start, first.end
        last = endpoint(end, self.tz, fine)
        if last.start < FIRST or last.end > AFTER_LAST:
            raise ModelError(f"{end!r} outside 1970..9998")
        if first.start >= last.end:
            raise ModelError("the range ends before it starts")
        return first.start, last.end

    def kept(self, family: str | None) -> tuple[str, ...]:
        """The periods a rule family is kept for: hours only where `hourly` names it."""
        if family is None or family in self.hourly:
            return self.periods
        return tuple(p for p in self.periods if p != "hour")

    def family_range(
        self, family: str | None, start: Any, end: Any = None
    ) -> tuple[datetime, datetime]:
        """`range`, refused for a family kept per day when it does not hold whole days."""
        lo, hi = self.range(start, end)
        self.whole_days(family, lo, hi)
        return lo, hi

    def whole_days(self, family: str | None, lo: datetime, hi: datetime) -> None:
        if self.kept(family) != self.periods and (lo.time() != time(0) or hi.time() != time(0)):
            raise ModelError(f"{family} kept per day: not whole days")

    def _known(self, event: str) -> None:
        """A query about an event never recorded (nor named by the schema) is refused: a typo
        never answers 0."""
        if event not in self.overrides and all(r.event != event for r in self.records):
            raise ModelError(f"no event {event!r} recorded")

    def _in(self, event: str, lo: datetime, hi: datetime) -> list[Record]:
        self._known(event)
        return [r for r in self.records if r.event == event and lo <= r.wall < hi]

    @staticmethod
    def _value(r: Record, parts: tuple[str, ...]) -> tuple[str, ...] | None:
        values = []
        for part in parts:
            text = text_of(r.props.get(part))
            if text is None:
                return None
            values.append(text)
        return tuple(values)

    def _keyed(self, r: Record, asked: str) -> Any:
        """A record's value of a (compound) property, in the order the caller named the parts."""
        parts = tuple(asked.split("~"))
        value = self._value(r, parts)
        if value is None:
            return None
        return value[0] if len(parts) == 1 else value

    def _prop(self, event: str, prop: str, kind: str) -> None:
        if norm(prop) not in getattr(self.rules(event), kind):
            raise ModelError(f"no {kind} {prop!r} for {event!r}")

    # actor sets

    def _segment_match(self, event: str, segment: Mapping[str, Any]) -> Any:
        if not segment:
            return lambda r: True
        name = norm("~".join(segment))
        if name not in self.rules(event).segment:
            raise ModelError(f"no segment {name!r} for {event!r}")
        wanted = {p: text_of(v) for p, v in segment.items()}
        return lambda r: all(text_of(r.props.get(p)) == v for p, v in wanted.items())

    def actor_set(self, event: str, lo: datetime, hi: datetime, **segment: Any) -> ModelSet:
        self._known(event)
        match = self._segment_match(event, segment)
        return ModelSet(
            self,
            frozenset(r.actor for r in self._in(event, lo, hi) if r.actor is not None and match(r)),
        )

    def actors(self, event: str, **segment: Any) -> ModelQuery:
        self._segment_match(event, segment)
        return ModelQuery(self, event, segment)

    def everyone(self) -> frozenset[Any]:
        return frozenset(r.actor for r in self.records if r.actor is not None)

    def original(self, actor: Any) -> Any:
        if self.ids_mode == "map" and integer_text(actor):
            return int(actor)
        return actor

    def canonical(self, actor: Any) -> Any:
        """The stored form of an id asked about; None for an id that cannot be stored."""
        try:
            return self._actor(actor)
        except Rejected:
            return None

    # metrics

    def unique(self, event: str, start: Any, end: Any = None, **segment: Any) -> int:
        self._known(event)
        self._segment_match(event, segment)
        lo, hi = self.family_range("segment" if segment else None, start, end)
        return len(self.actor_set(event, lo, hi, **segment).members)

    def total(self, event: str, start: Any, end: Any = None) -> int:
        return len(self._in(event, *self.range(start, end)))

    def series(
        self,
        event: str,
        start: Any,
        end: Any = None,
        *,
        by: str = "day",
        metric: str = "unique",
        **segment: Any,
    ) -> list[tuple[str, int]]:
        if by not in self.periods:
            raise ModelError(f"{by} not recorded")
        lo, hi = self.range(start, end)
        out = []
        span = span_of(by, lo)
        while span.start < hi:
            a, b = max(lo, span.start), min(hi, span.end)
            if metric == "unique" and segment:
                self._known(event)
                self._segment_match(event, segment)
                self.whole_days("segment", a, b)
            if metric == "unique":
                value = len(self.actor_set(event, a, b, **segment).members)
            else:
                value = len(self._in(event, a, b))
            out.append((span.label, value))
            span = span_of(by, span.end)
        return out

    def counts(self, event: str, prop: str, start: Any, end: Any = None) -> dict[Any, int]:
        self._prop(event, prop, "count")
        rows = self._in(event, *self.family_range("count", start, end))
        found = Counter(self._keyed(r, prop) for r in rows)
        found.pop(None, None)
        return dict(found)

    def _sum_rule(self, event: str, prop: str, by: str | None) -> None:
        if (prop, norm(by) if by else None) not in self.rules(event).sum:
            raise ModelError(f"no sum {prop!r} by {by!r} for {event!r}")

    def sums(
        self, event: str, prop: str, start: Any, end: Any = None, by: str | None = None
    ) -> float | dict[Any, float]:
        self._sum_rule(event, prop, by)
        rows = self._in(event, *self.family_range("sum", start, end))
        if by is None:
            return fsum(n for r in rows if (n := self._number(r.props.get(prop))) is not None)
        acc: dict[Any, list[float]] = defaultdict(list)
        for r in rows:
            n = self._number(r.props.get(prop))
            key = self._keyed(r, by)
            if n is not None and key is not None:
                acc[key].append(n)
        return {k: fsum(v) for k, v in acc.items()}

    def averages(self, event: str, prop: str, start: Any, end: Any = None) -> float | None:
        self._sum_rule(event, prop, None)
        rows = self._in(event, *self.family_range("sum", start, end))
        numbers = [n for r in rows if (n := self._number(r.props.get(prop))) is not None]
        if not numbers:
            return None
        total = fsum(numbers)
        # (the mean of numbers whose sum passes the float range: each divided first)
        return (
            total / len(numbers)
            if math.isfinite(total)
            else fsum(n / len(numbers) for n in numbers)
        )

    def top(
        self, event: str, prop: str, start: Any, end: Any = None, limit: int = 10
    ) -> list[tuple[Any, int]]:
        self._prop(event, prop, "top")
        rows = self._in(event, *self.family_range("top", start, end))
        found = Counter(self._keyed(r, prop) for r in rows)
        found.pop(None, None)
        return sorted(found.items(), key=lambda vc: (-vc[1], vc[0]))[:limit]

    def distinct(self, event: str, prop: str, start: Any, end: Any = None) -> int:
        """Exact, also for an `approx` property (the test allows the estimate its error)."""
        kind = "approx" if norm(prop) in self.rules(event).approx else "unique"
        self._prop(event, prop, kind)
        rows = self._in(event, *self.family_range(kind, start, end))
        return len({v for r in rows if (v := self._keyed(r, norm(prop))) is not None})

    def events(self) -> list[str]:
        return sorted({r.event for r in self.records})

    # analyses

    def _period(self, period: str) -> None:
        if period not in self.periods:
            raise ModelError(f"{period} not recorded")

    @staticmethod
    def _positive(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"not a positive integer: {value!r}")
        return value

    def _spans(self, period: str, start: Any, n: int) -> list[Span]:
        try:
            span = span_of(period, wall_time(start, self.tz))
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
        out = [span]
        while len(out) < n:
            out.append(span_of(period, out[-1].end))
        return out

    def _before(self, event: str, t: datetime) -> frozenset[Any]:
        self._known(event)
        return frozenset(
            r.actor for r in self.records if r.event == event and r.actor is not None and r.wall < t
        )

    def retention(
        self,
        first_event: str,
        return_event: str,
        start: Any,
        periods: int = 8,
        period: str = "week",
        kind: str = "first",
        *,
        columns: int | None = None,
        now: Any = None,
        **segment: Any,
    ) -> list[tuple[str, int, list[int | None]]]:
        """[(cohort label, cohort size, [actors back in period i + k or None])] per cohort i."""
        self._known(first_event)
        self._known(return_event)
        self._period(period)
        if kind not in ("first", "recurring"):
            raise ModelError(f"kind {kind!r}")
        rows = self._positive(periods)
        width = rows if columns is None else self._positive(columns)
        spans = self._spans(period, start, rows + width - 1)
        if segment:  # a segment kept per day has no hour cohorts
            self._segment_match(first_event, segment)
            self.whole_days("segment", spans[0].start, spans[0].end)
        wall_now = wall_time(now, self.tz)
        out = []
        for i in range(rows):
            cohort = self.actor_set(first_event, spans[i].start, spans[i].end, **segment).members
            if kind == "first":
                cohort -= self._before(first_event, spans[i].start)
            counts: list[int | None] = []
            for k in range(width):
                back = spans[i + k]
                if back.start > wall_now:
                    counts.append(None)
                else:
                    came = self.actor_set(return_event, back.start, back.end).members
                    counts.append(len(cohort & came))
            out.append((spans[i].label, len(cohort), counts))
        return out

    @staticmethod
    def _within(within: Any) -> int:
        if isinstance(within, int) and not isinstance(within, bool):
            days = within
        elif isinstance(within, timedelta) and within % timedelta(days=1) == timedelta(0):
            days = within // timedelta(days=1)
        elif isinstance(within, str) and (m := re.fullmatch(r"\s*(\d+)\s*([dwh])\s*", within)):
            n, unit = int(m.group(1)), m.group(2)
            if unit == "h" and n % 24:
                raise ModelError(f"within {within!r} is not whole days")
            days = {"d": n, "w": 7 * n, "h": n // 24}[unit]
        else:
            raise ModelError(f"within {within!r}")
        if days < 1:
            raise ModelError(f"within {within!r}")
        return days

    def _days_of(self, event: str, match: Any = None) -> dict[Any, set[date]]:
        self._known(event)
        out: dict[Any, set[date]] = defaultdict(set)
        for r in self.records:
            if r.event == event and r.actor is not None and (match is None or match(r)):
                out[r.actor].add(r.wall.date())
        return out

    def funnel(
        self, steps: list[str], start: Any, end: Any = None, within: Any = "7d", **segment: Any
    ) -> list[tuple[str, int]]:
        """Actors reaching each step: step 1 on a day of the range, then each next step on the
        same day or later, every step before the first day + `within` days (day resolution)."""
        if isinstance(steps, str) or not steps:
            raise ModelError("steps")
        window = self._within(within)
        match = self._segment_match(steps[0], segment)
        lo, hi = self.range(start, end)
        first_day, last_day = lo.date(), (hi - timedelta(microseconds=1)).date()
        starts = self._days_of(steps[0], match)
        later = [self._days_of(step) for step in steps[1:]]
        reached: Counter[int] = Counter()
        for actor, days in starts.items():
            best = 0
            for d in sorted(x for x in days if first_day <= x <= last_day):
                cur, got = d, 1
                for step_days in later:
                    nxt = [x for x in step_days.get(actor, ()) if cur <= x < d + timedelta(window)]
                    if not nxt:
                        break
                    cur, got = min(nxt), got + 1
                best = max(best, got)
            for k in range(best):
                reached[k] += 1
        return [(step, reached[k]) for k, step in enumerate(steps)]

    def stickiness(self, event: str, start: Any, end: Any = None, **segment: Any) -> dict[int, int]:
        """{n: actors active on exactly n of the range's days}, n = 1 .. number of days."""
        self._known(event)
        match = self._segment_match(event, segment)
        lo, hi = self.family_range("segment" if segment else None, start, end)
        days: list[Span] = []
        span = span_of("day", lo)
        while span.start < hi:
            days.append(span)
            span = span_of("day", span.end)
        active: dict[Any, set[date]] = defaultdict(set)
        for r in self._in(event, lo, hi):
            if r.actor is not None and match(r):
                active[r.actor].add(r.wall.date())
        histogram = Counter(len(seen) for seen in active.values())
        return {n: histogram[n] for n in range(1, len(days) + 1)}

    def lifecycle(
        self, event: str, start: Any, periods: int = 8, period: str = "week", *, now: Any = None
    ) -> list[tuple[str, int | None, int | None, int | None, int | None]]:
        """(label, new, returning, resurrecting, dormant) per period; None when not begun."""
        self._known(event)
        self._period(period)
        n = self._positive(periods)
        spans = self._spans(period, start, n)
        wall_now = wall_time(now, self.tz)
        out: list[tuple[str, int | None, int | None, int | None, int | None]] = []
        for span in spans:
            if span.start > wall_now:
                out.append((span.label, None, None, None, None))
                continue
            prev_span = span_of(period, span.start - timedelta(microseconds=1))
            active = self.actor_set(event, span.start, span.end).members
            prev = self.actor_set(event, prev_span.start, prev_span.end).members
            before = self._before(event, span.start)
            out.append(
                (
                    span.label,
                    len(active - before),
                    len(active & prev),
                    len((active & before) - prev),
                    len(prev - active),
                )
            )
        return out


class ModelQuery:
    """`actors(event, **segment)`: pick the time like ActorQuery does."""

    def __init__(self, model: Model, event: str, segment: Mapping[str, Any]) -> None:
        self.model = model
        self.event = event
        self.segment = dict(segment)

    def _span(self, period: str, wall: datetime) -> ModelSet:
        if period not in self.model.periods:
            raise ModelError(f"{period} not recorded")
        span = span_of(period, wall)
        if self.segment:
            self.model.whole_days("segment", span.start, span.end)
        return self.model.actor_set(self.event, span.start, span.end, **self.segment)

    def hour(self, year: int, month: int, day: int, hour: int) -> ModelSet:
        return self._span("hour", datetime(year, month, day, hour))

    def day(self, year: int, month: int, day: int) -> ModelSet:
        return self._span("day", datetime(year, month, day))

    def week(self, year: int, week: int) -> ModelSet:
        return self._span("week", datetime.fromisocalendar(year, week, 1))

    def month(self, year: int, month: int) -> ModelSet:
        return self._span("month", datetime(year, month, 1))

    def year(self, year: int) -> ModelSet:
        return self._span("year", datetime(year, 1, 1))

    def between(self, start: Any, end: Any = None) -> ModelSet:
        family = "segment" if self.segment else None
        lo, hi = self.model.family_range(family, start, end)
        return self.model.actor_set(self.event, lo, hi, **self.segment)


class ModelSet:
    """A set of canonical actor ids with the algebra of ActorSet."""

    def __init__(self, model: Model, members: frozenset[Any]) -> None:
        self.model = model
        self.members = members

    def __and__(self, other: ModelSet) -> ModelSet:
        return ModelSet(self.model, self.members & other.members)

    def __or__(self, other: ModelSet) -> ModelSet:
        return ModelSet(self.model, self.members | other.members)

    def __xor__(self, other: ModelSet) -> ModelSet:
        return ModelSet(self.model, self.members ^ other.members)

    def __sub__(self, other: ModelSet) -> ModelSet:
        return ModelSet(self.model, self.members - other.members)

    def __invert__(self) -> ModelSet:
        return ModelSet(self.model, self.model.everyone() - self.members)

    def __len__(self) -> int:
        return len(self.members)

    def count(self) -> int:
        return len(self.members)

    def __contains__(self, actor: object) -> bool:
        canonical = self.model.canonical(actor)
        if self.model.ids_mode == "map":  # an id aliased to a person stands for them
            canonical = self.model.person.get(canonical, canonical)
        return canonical is not None and canonical in self.members

    def ids(self) -> list[Any]:
        return [self.model.original(a) for a in self.members]
