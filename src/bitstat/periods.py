"""Calendar arithmetic for bitstat: period buckets, their labels, and date-range covers.

Everything here is pure and works in naive local wall-clock time of a namespace's IANA zone.
DST: an hour bucket is a wall-clock hour, so the hour repeated when clocks fall back is ONE
bucket (holding two real hours), and the hour skipped when they spring forward stays empty.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from bitstat.errors import QueryError

PERIODS: tuple[str, ...] = ("hour", "day", "week", "month", "year")

_RANK = {p: i for i, p in enumerate(PERIODS)}
_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The dates bitstat records and answers for: every bucket of any period holding one of them
# (the week of 9998-12-31 ends in 9999) is a datetime Python can represent.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
SUPPORTED = f"{FIRST_DAY} to {LAST_DAY}"
LAST_SECOND = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp()) - 1
_HOUR = timedelta(hours=1)
_UTC_KEYS = frozenset(
    {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"}
    | {"GMT", "Etc/GMT", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "GMT0", "Etc/Greenwich"}
)

_LABEL_RE = re.compile(
    r"(?P<y>[0-9]{4})(?:-W(?P<w>[0-9]{2})|-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2})(?:T(?P<h>[0-9]{2}))?)?)?"
)
_LONGEST_LABEL = len("2026-11-22T13")
# ISO 8601's basic form of a week, "2026W47": Python's fromisoformat reads it as the Monday
_BASIC_WEEK_RE = re.compile(r"(?P<y>[0-9]{4})W(?P<w>[0-9]{2})")


@functools.total_ordering
@dataclass(frozen=True)
class Bucket:
    """One bucket of a period: the half-open wall-clock interval [start, end)."""

    period: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _check_period(self.period)

    @property
    def label(self) -> str:
        """Its name in keys: "2026-11-22T13", "2026-11-22", "2026-W47", "2026-11", "2026"."""
        s = self.start
        if self.period == "week":
            iso = s.isocalendar()
            return f"{iso.year:04d}-W{iso.week:02d}"
        if self.period == "hour":
            return f"{s.year:04d}-{s.month:02d}-{s.day:02d}T{s.hour:02d}"
        if self.period == "day":
            return f"{s.year:04d}-{s.month:02d}-{s.day:02d}"
        if self.period == "month":
            return f"{s.year:04d}-{s.month:02d}"
        return f"{s.year:04d}"

    def next(self) -> Bucket:
        """The bucket of the same period that starts where this one ends."""
        return bucket_of(self.period, self.end)

    def prev(self) -> Bucket:
        """The bucket of the same period that ends where this one starts."""
        try:
            before = self.start - timedelta(microseconds=1)
        except OverflowError:
            raise QueryError(f"no {self.period} before {self.label}") from None
        return bucket_of(self.period, before)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Bucket):
            return NotImplemented
        return (self.start, _RANK[self.period]) < (other.start, _RANK[other.period])


def _check_period(period: str) -> None:
    if period not in _RANK:
        raise QueryError(f"unknown period {period!r}; expected one of {', '.join(PERIODS)}")


def _check_periods(periods: Iterable[str]) -> frozenset[str]:
    if isinstance(periods, str):
        periods = (periods,)
    chosen = frozenset(periods)
    for p in chosen:
        _check_period(p)
    if not chosen:
        raise QueryError("no periods given")
    return chosen


def _month_start(year: int, month: int) -> datetime:
    if month > 12:
        year, month = year + 1, 1
    return datetime(year, month, 1)


def bucket_of(period: str, wall: datetime) -> Bucket:
    """The bucket of `period` containing the naive wall-clock time `wall`."""
    _check_period(period)
    if wall.tzinfo is not None:
        raise QueryError(f"expected a naive wall-clock time, got {wall.isoformat()}")
    try:
        if period == "hour":
            start = wall.replace(minute=0, second=0, microsecond=0)
            return Bucket(period, start, start + _HOUR)
        day = datetime(wall.year, wall.month, wall.day)
        if period == "day":
            return Bucket(period, day, day + timedelta(days=1))
        if period == "week":
            start = day - timedelta(days=day.weekday())
            return Bucket(period, start, start + timedelta(days=7))
        if period == "month":
            return Bucket(period, day.replace(day=1), _month_start(day.year, day.month + 1))
        return Bucket(period, datetime(day.year, 1, 1), datetime(day.year + 1, 1, 1))
    except (OverflowError, ValueError):
        raise QueryError(
            f"the {period} of {wall:%Y-%m-%d} is outside the dates bitstat supports ({SUPPORTED})"
        ) from None


def parse_label(text: str) -> Bucket:
    """The bucket named by a label in any of the five formats; QueryError for anything else."""
    match = _LABEL_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise QueryError(
            f"not a period label: {text!r}; expected YYYY, YYYY-MM, YYYY-Www, YYYY-MM-DD "
            "or YYYY-MM-DDTHH"
        )
    y, w, m, d, h = (int(g) if g is not None else None for g in match.groups())
    assert y is not None
    try:
        if w is not None:
            start = datetime.combine(date.fromisocalendar(y, w, 1), datetime.min.time())
            return bucket_of("week", start)
        if m is None:
            return bucket_of("year", datetime(y, 1, 1))
        if d is None:
            return bucket_of("month", datetime(y, m, 1))
        if h is None:
            return bucket_of("day", datetime(y, m, d))
        return bucket_of("hour", datetime(y, m, d, h))
    except QueryError:
        raise
    except ValueError as exc:
        raise QueryError(f"not a valid period label: {text!r} ({exc})") from None


def parse_time(value: Any, tz: ZoneInfo) -> datetime:
    """Convert a user-given time to naive local wall-clock time in `tz`.

    An aware datetime is converted to `tz`; a naive one is already local wall time. A date means
    its midnight; an int/float is epoch seconds. A string is ISO-8601 with or without an offset
    ("2026-11-22", "2026-11-22 13:05", "2026-11-22T13:05:00+01:00", "...Z"), or a period label,
    which means the start of its bucket.
    """
    try:
        if isinstance(value, str):  # (first: the form most events give)
            text = value.strip()
            if len(text) <= _LONGEST_LABEL and _LABEL_RE.fullmatch(text):
                return parse_label(text).start
            value = datetime.fromisoformat(text)
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                return value.replace(tzinfo=None)
            return value.astimezone(tz).replace(tzinfo=None)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day)
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool | np.bool_
        ):
            if not math.isfinite(value):
                raise QueryError(f"not a finite epoch time: {value!r}")
            if value > LAST_SECOND:
                raise QueryError(_past_last_second(value))
            seconds = int(value) if isinstance(value, int | np.integer) else float(value)
            return (_UTC_EPOCH + timedelta(seconds=seconds)).astimezone(tz).replace(tzinfo=None)
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, QueryError):
            raise
        raise QueryError(
            f"cannot read {value!r} as a time: {exc}{_epoch_text_hint(value)}"
        ) from None
    raise QueryError(
        f"cannot read {value!r} as a time: expected a datetime, date, epoch seconds or ISO string"
    )


def _epoch_text_hint(value: Any) -> str:
    """What digits given as text would be as epoch seconds (a query string's `start=1795348800`),
    to add to the message refusing them: text is read as ISO-8601 alone; "" if nothing."""
    text = value.strip() if isinstance(value, str) else ""
    if len(text) <= 8 or len(text) > 16 or not text.isdigit():  # (8 digits: 20261122)
        return ""
    if int(text) > LAST_SECOND:
        return f"; text is read as ISO-8601, not as epoch seconds{milliseconds_hint(int(text))}"
    as_time = _UTC_EPOCH + timedelta(seconds=int(text))
    return (
        f"; text is read as ISO-8601, not as epoch seconds: as epoch seconds it is"
        f" {as_time:%Y-%m-%dT%H:%M:%SZ}, so send that (or the number itself, not as text)"
    )


def _past_last_second(value: Any) -> str:
    return f"epoch seconds {value!r} are after {LAST_DAY} ({SUPPORTED}){milliseconds_hint(value)}"


def milliseconds_hint(value: float) -> str:
    """What epoch seconds past the supported dates would mean as milliseconds (JavaScript's
    Date.now(), the likely mistake), to add to the message refusing them; "" if nothing."""
    if not 0 <= value / 1000 <= LAST_SECOND:
        return ""
    as_ms = _UTC_EPOCH + timedelta(seconds=float(value) / 1000)
    return f"; as milliseconds it is {as_ms:%Y-%m-%dT%H:%M:%SZ}: divide by 1000"


def _endpoint(value: Any, tz: ZoneInfo, fine: str) -> Bucket:
    """The bucket a range endpoint stands for; exact instants get `fine` resolution."""
    if isinstance(value, Bucket):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _LABEL_RE.fullmatch(text):
            bucket = parse_label(text)
            if bucket.period != "hour":
                return bucket
            # An hour label reads like an ISO time, so it follows the rule for datetimes.
            return bucket_of(fine, bucket.start)
        if week := _BASIC_WEEK_RE.fullmatch(text):  # the whole week, as "2026-W47" is
            return parse_label(f"{week['y']}-W{week['w']}")
        try:
            return bucket_of("day", datetime.combine(date.fromisoformat(text), datetime.min.time()))
        except ValueError:
            pass
    elif isinstance(value, date) and not isinstance(value, datetime):
        return bucket_of("day", datetime(value.year, value.month, value.day))
    return bucket_of(fine, parse_time(value, tz))


def resolve_range(
    start: Any, end: Any, tz: ZoneInfo, periods: Iterable[str]
) -> tuple[datetime, datetime]:
    """The half-open wall-clock interval [lo, hi) a user means by `start` .. `end` (inclusive).

    Each endpoint is a date, datetime, ISO string, epoch number or period label. A label or date
    stands for its whole bucket: a start begins at the bucket's start, an end finishes at its end,
    so ("2026-11-01", "2026-11-30") is all of November. `end=None` means the whole bucket of
    `start` alone. An exact time (datetime, epoch, ISO time, hour label) has hour resolution when
    "hour" is in `periods`: a start is floored to its hour and an end includes its whole hour.
    Without "hour" in `periods`, exact times are taken at day resolution: their whole day counts.
    """
    fine = "hour" if "hour" in _check_periods(periods) else "day"
    first = _supported(start, tz, fine, "start")
    if end is None:
        return first.start, first.end
    last = _supported(end, tz, fine, "end")
    if first.start >= last.end:
        raise QueryError(f"the range ends ({end!r}) before it starts ({start!r})", param="end")
    return first.start, last.end


_FIRST = datetime(1970, 1, 1)
_AFTER_LAST = datetime(9999, 1, 1)


def _supported(value: Any, tz: ZoneInfo, fine: str, param: str) -> Bucket:
    """The bucket of a range endpoint, which must lie within the dates bitstat supports (the
    same dates it records: nothing is ever recorded outside them)."""
    try:
        bucket = _endpoint(value, tz, fine)
    except QueryError as exc:
        raise QueryError(f"{param} {value!r}: {exc}", param=param) from None
    if bucket.start < _FIRST or bucket.end > _AFTER_LAST:
        raise QueryError(
            f"{param} {value!r} is outside the dates bitstat supports ({SUPPORTED})",
            param=param,
        )
    return bucket


def _hours(lo: datetime, hi: datetime) -> list[Bucket]:
    out = []
    while lo < hi:
        out.append(Bucket("hour", lo, lo + _HOUR))
        lo += _HOUR
    return out


def _coarse_edges(d0: int, d1: int, chosen: frozenset[str]) -> dict[int, list[tuple[int, str]]]:
    """Buckets of week/month/year inside day ordinals [d0, d1], as start -> [(end, period)]."""
    edges: dict[int, list[tuple[int, str]]] = {}
    first = date.fromordinal(d0)
    if "year" in chosen:
        for y in range(first.year + (first.timetuple().tm_yday > 1), date.fromordinal(d1).year):
            s, e = date(y, 1, 1).toordinal(), date(y + 1, 1, 1).toordinal()
            edges.setdefault(s, []).append((e, "year"))
    if "month" in chosen:
        y, m = first.year, first.month
        s = date(y, m, 1).toordinal()
        while s < d1:
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
            e = date(y, m, 1).toordinal()
            if s >= d0 and e <= d1:
                edges.setdefault(s, []).append((e, "month"))
            s = e
    if "week" in chosen:
        # Ordinal 1 (0001-01-01) is a Monday.
        for s in range(d0 + (-(d0 - 1)) % 7, d1 - 6, 7):
            edges.setdefault(s, []).append((s + 7, "week"))
    return edges


def _whole_years(d0: int, d1: int, chosen: frozenset[str]) -> tuple[int, int] | None:
    """The first and last 1 January of the days [d0, d1] (ordinals) when every fewest tiling
    has whole years between them, else None.

    Only a week crosses a 1 January. A 1 January with a whole year of the range on one side is
    never crossed in a fewest tiling: that year's 353 days or more beside the crossing weeks
    need 12 buckets or more, where the year and at most 6 days on either side need 13 at most
    (so days are needed, when weeks are kept). With two such dates a year apart, every 1
    January between them qualifies, and a year between two of them is one bucket."""
    if "year" not in chosen or ("week" in chosen and "day" not in chosen):
        return None
    start, stop = date.fromordinal(d0), date.fromordinal(d1)
    first = start.year if (start.month, start.day) == (1, 1) else start.year + 1
    if stop.year - first < 1:
        return None
    return date(first, 1, 1).toordinal(), date(stop.year, 1, 1).toordinal()


def _cover_days(d0: int, d1: int, chosen: frozenset[str]) -> list[Bucket] | None:
    """Fewest buckets tiling the whole days [d0, d1) (ordinals), or None if impossible.

    A shortest path over the dates where a week/month/year can start or end: between two
    neighbouring such dates only days (or 24 hours each) fit, so runs of days are single edges.
    Whole years in the middle are taken as they are (`_whole_years`), so that a range of
    centuries costs its two edges, not a path over every week of it.
    """
    years = _whole_years(d0, d1, chosen)
    if years is not None:
        first, last = years
        head, tail = _cover_days(d0, first, chosen), _cover_days(last, d1, chosen)
        if head is None or tail is None:
            return None
        begin, end = date.fromordinal(first).year, date.fromordinal(last).year
        middle = [
            Bucket("year", datetime(y, 1, 1), datetime(y + 1, 1, 1)) for y in range(begin, end)
        ]
        return head + middle + tail
    per_day = 1 if "day" in chosen else 24 if "hour" in chosen else 0
    edges = _coarse_edges(d0, d1, chosen)
    nodes = sorted({d0, d1}.union(edges, *([e for e, _ in es] for es in edges.values())))
    index = {n: i for i, n in enumerate(nodes)}
    inf = math.inf
    cost: list[float] = [inf] * len(nodes)
    back: list[tuple[int, str]] = [(0, "")] * len(nodes)
    cost[0] = 0
    for i, here in enumerate(nodes):
        c = cost[i]
        if c == inf:
            continue
        for end, period in edges.get(here, ()):
            j = index[end]
            if c + 1 < cost[j]:
                cost[j], back[j] = c + 1, (i, period)
        if per_day and i + 1 < len(nodes):
            run = c + per_day * (nodes[i + 1] - here)
            if run < cost[i + 1]:
                cost[i + 1], back[i + 1] = run, (i, "day")
    if cost[-1] == inf:
        return None
    out: list[Bucket] = []
    j = len(nodes) - 1
    while j:
        i, period = back[j]
        start = datetime.fromordinal(nodes[i])
        stop = datetime.fromordinal(nodes[j])
        if period != "day":
            out.append(Bucket(period, start, stop))
        elif per_day == 24:
            out.extend(reversed(_hours(start, stop)))
        else:
            out.extend(
                Bucket("day", stop - timedelta(days=k + 1), stop - timedelta(days=k))
                for k in range(nodes[j] - nodes[i])
            )
        j = i
    out.reverse()
    return out


@functools.lru_cache(maxsize=1024)
def cover_labels(lo: datetime, hi: datetime, periods: tuple[str, ...]) -> tuple[str, ...]:
    """The labels of `cover(lo, hi, periods)`, remembered: dashboards ask the same ranges."""
    return tuple(b.label for b in cover(lo, hi, periods))


def cover(lo: datetime, hi: datetime, periods: Iterable[str]) -> list[Bucket]:
    """The fewest buckets of `periods` that tile [lo, hi) exactly, in time order.

    Weeks cross months and years, so largest-first is not optimal; the middle whole days are
    solved as a shortest path, the partial days at either edge can only be hours.
    Raises QueryError naming the missing period if the range cannot be tiled.
    """
    chosen = _check_periods(periods)
    for t in (lo, hi):
        if t.tzinfo is not None:
            raise QueryError(f"expected a naive wall-clock time, got {t.isoformat()}")
        if t.minute or t.second or t.microsecond:
            raise QueryError(f"{t.isoformat()} is not on a whole hour; no bucket can start there")
    if lo >= hi:
        if lo == hi:
            return []
        raise QueryError(f"the range ends ({hi.isoformat()}) before it starts ({lo.isoformat()})")
    day_lo = lo if lo.hour == 0 else datetime(lo.year, lo.month, lo.day) + timedelta(days=1)
    day_hi = datetime(hi.year, hi.month, hi.day)
    span = f"{lo.isoformat()} .. {hi.isoformat()}"
    if day_lo >= day_hi or lo < day_lo or day_hi < hi:
        if "hour" not in chosen:
            raise QueryError(f"cannot cover {span} with {sorted(chosen)}: 'hour' is needed")
        if day_lo >= day_hi:
            return _hours(lo, hi)
    middle = _cover_days(day_lo.toordinal(), day_hi.toordinal(), chosen)
    if middle is None:
        raise QueryError(f"cannot cover {span} with {sorted(chosen)}: 'day' is needed")
    return _hours(lo, day_lo) + middle + _hours(day_hi, hi)


def buckets_between(period: str, lo: datetime, hi: datetime) -> list[Bucket]:
    """Every bucket of `period` overlapping [lo, hi), in time order."""
    out: list[Bucket] = []
    if lo >= hi:
        return out
    bucket = bucket_of(period, lo)
    while bucket.start < hi:
        out.append(bucket)
        bucket = bucket.next()
    return out


_LAST_DAY = LAST_SECOND // 86400  # (days past it are refused before they are recorded)


def _distinct(days: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The distinct day numbers, sorted (by counting when they span few days: faster)."""
    first, last = int(days.min()), int(days.max())
    if last - first <= 4 * days.size + 64:
        return np.flatnonzero(np.bincount(days - first)) + first
    return np.unique(days)


def real_walls(wall: npt.NDArray[np.int64], tz: ZoneInfo) -> npt.NDArray[np.int64]:
    """Naive wall-clock seconds with any that never happened (in a gap the clocks jumped
    over: 02:30 on a spring-forward day) moved on by the gap, as Python reads such a time
    (fold=0: the offset before the jump, so 02:30 is the instant 03:30 names); others as given.
    zoneinfo is asked once a distinct day (cached); the array is copied only if one moves."""
    w = np.asarray(wall, dtype=np.int64)
    if w.size == 0 or getattr(tz, "key", None) in _UTC_KEYS:
        return w
    days = w // 86400
    out = w
    for day in _distinct(days).tolist():
        gap = _gap_of_day(tz, day) if 0 <= day <= _LAST_DAY else None  # (others: refused)
        if gap is not None:
            start, end = gap
            inside = (w >= start) & (w < end)
            if inside.any():
                out = out.copy() if out is w else out
                out[inside] += end - start
    return out


def real_wall(wall: int, tz: ZoneInfo) -> int:
    """`real_walls` of one naive wall-clock second."""
    if getattr(tz, "key", None) in _UTC_KEYS:
        return wall
    day = wall // 86400
    gap = _gap_of_day(tz, day) if 0 <= day <= _LAST_DAY else None
    return wall + (gap[1] - gap[0]) if gap and gap[0] <= wall < gap[1] else wall


@functools.lru_cache(maxsize=4096)
def _gap_of_day(tz: ZoneInfo, day: int) -> tuple[int, int] | None:
    """The wall-clock seconds [start, end) of the day (days since 1970-01-01) that never
    happened in `tz` (the clocks jumped forward over them), or None."""
    midnight = datetime(1970, 1, 1) + timedelta(days=day)

    def offset(second: int) -> int:  # (fold=0: a time in the gap gets the offset before it)
        local = (midnight + timedelta(seconds=second)).replace(tzinfo=tz)
        found = local.utcoffset()
        assert found is not None
        return found // timedelta(seconds=1)

    # (looked for into the next day's first hours: a gap may cross midnight)
    before, after = offset(0), offset(86400 + 7200)
    if after <= before:
        return None
    low, high = 0, 86400 + 7200  # the first wall second with the later offset: the gap's end
    while low < high:
        mid = (low + high) // 2
        if offset(mid) > before:
            high = mid
        else:
            low = mid + 1
    end = day * 86400 + low
    start = end - (after - before)
    return (start, end) if start < (day + 1) * 86400 else None  # (else the next day's)


def local_offset(tz: ZoneInfo, t: int) -> int:
    """The zone's UTC offset in seconds at UTC epoch second `t` (what `wall_seconds` adds)."""
    return _offset(tz, t)


def _offset(tz: ZoneInfo, t: int) -> int:
    offset = (_UTC_EPOCH + timedelta(seconds=t)).astimezone(tz).utcoffset()
    assert offset is not None
    return offset // timedelta(seconds=1)


def _changes(tz: ZoneInfo, a: int, oa: int, b: int, ob: int, out: list[tuple[int, int]]) -> None:
    """Append (instant, new offset) for every offset change in (a, b], by bisection."""
    if oa == ob:
        return
    if b - a == 1:
        out.append((b, ob))
        return
    mid = (a + b) // 2
    om = _offset(tz, mid)
    _changes(tz, a, oa, mid, om, out)
    _changes(tz, mid, om, b, ob, out)


def wall_seconds(utc_epoch: npt.NDArray[np.int64], tz: ZoneInfo) -> npt.NDArray[np.int64]:
    """Local wall-clock seconds since 1970-01-01T00:00 (naive) for int64 UTC epoch seconds.

    zoneinfo is asked only at the edges of each distinct UTC day in the batch, and changes inside
    a day are found by bisection to the second, so historic odd offsets come out exact too.
    """
    t = np.asarray(utc_epoch, dtype=np.int64)
    if getattr(tz, "key", None) in _UTC_KEYS or t.size == 0:
        return t.copy()
    days = t // 86400
    try:
        present = _distinct(days)
        # The briefest offset excursion in tzdata lasts about four days (a week since 1970), so
        # equal offsets at both ends of a day mean no change within it.
        points: list[tuple[int, int]] = []
        b = ob = None
        for d in present.tolist():
            a = d * 86400
            oa = ob if a == b and ob is not None else _offset(tz, a)
            b = a + 86400
            ob = _offset(tz, b)
            points.append((a, oa))
            _changes(tz, a, oa, b, ob, points)
    except (OverflowError, ValueError):
        raise QueryError("epoch seconds outside the supported dates (years 1 to 9999)") from None
    if all(o == points[0][1] for _, o in points):
        return t + points[0][1]
    starts = np.fromiter((s for s, _ in points), dtype=np.int64, count=len(points))
    offsets = np.fromiter((o for _, o in points), dtype=np.int64, count=len(points))
    return t + offsets[np.searchsorted(starts, t, side="right") - 1]


@functools.lru_cache(maxsize=65536)
def _labels_of_day(day_number: int) -> tuple[str, str, str, str]:
    d = date.fromordinal(_EPOCH_ORDINAL + day_number)
    iso = d.isocalendar()
    return (
        f"{d.year:04d}-{d.month:02d}-{d.day:02d}",
        f"{iso.year:04d}-W{iso.week:02d}",
        f"{d.year:04d}-{d.month:02d}",
        f"{d.year:04d}",
    )


def labels_for_day(day_number: int | np.integer[Any]) -> dict[str, str]:
    """Labels of the day, week, month and year containing wall day `day_number` (since 1970)."""
    day, week, month, year = _labels_of_day(int(day_number))
    return {"day": day, "week": week, "month": month, "year": year}


@functools.lru_cache(maxsize=65536)
def hour_label(wall_hour_number: int | np.integer[Any]) -> str:
    """The label of wall-clock hour `wall_hour_number`, counted in hours since 1970-01-01T00."""
    day, hour = divmod(int(wall_hour_number), 24)
    return f"{_labels_of_day(day)[0]}T{hour:02d}"


def day_labels(days: npt.NDArray[np.int64]) -> dict[int, dict[str, str]]:
    """For each distinct wall day number in `days`, its labels as given by labels_for_day."""
    return {d: labels_for_day(d) for d in np.unique(np.asarray(days, dtype=np.int64)).tolist()}


@functools.lru_cache(maxsize=4096)
def expire_at(period: str, label: str, tz_name: str, ttl: int) -> int:
    """The Unix time a bucket's keys expire at: `ttl` seconds after the bucket ends."""
    end: datetime = parse_label(label).end
    return int(end.replace(tzinfo=ZoneInfo(tz_name)).timestamp()) + ttl
