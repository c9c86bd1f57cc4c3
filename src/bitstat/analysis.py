"""Retention tables, ordered funnels, stickiness and lifecycle, planned over actor bitmaps.

Each analysis is an operation in the manner of `ops.py`: a generator over a `Namespace` that
plans with the pure modules and yields a `Call` whenever it needs the server, so the blocking
and the asyncio API drive the same code. A lifecycle is a list of actor-set expressions
(`query.Leaf` / `query.Op`) counted by `Namespace.count_exprs`. Retention tables, funnels and
stickiness use one intermediate set many times (a cohort in every cell of its row, the funnel
steps reached so far, a running count of active days), so they write the registers of their
`query.SetProgram` by hand. Both run on `scripts/sets.lua` (`Namespace.totals`): one call for
all id shards on a single server, one call per shard on a cluster; a program is made once for
every shard, so every analysis runs unchanged on Redis Cluster. Results are plain data; a
retention table also renders as CSV, an HTML heat map and JSON-ready dicts.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from . import periods as P
from .calls import Call
from .errors import QueryError, blaming
from .integers import whole
from .ops import Namespace
from .query import Expr, Leaf, Op, Segment, SetProgram
from .tables import Funnel, Lifecycle, Stickiness, Tabular, pandas_frame, polars_frame
from .transport import Transport, call

__all__ = [
    "FunnelDays",
    "LifecyclePeriod",
    "Retention",
    "RetentionRow",
    "SetProgram",
    "funnel",
    "funnel_days",
    "funnel_work",
    "lifecycle",
    "parse_within",
    "retention",
    "start_days",
    "stickiness",
]

T = TypeVar("T")
Steps = Generator[Call, Any, T]  # an operation, as in ops.py

KINDS = ("first", "recurring")
_EPOCH = datetime(1970, 1, 1)
_DAY = timedelta(days=1)
_AFTER_LAST = datetime.combine(P.LAST_DAY, datetime.min.time()) + _DAY
_SHORTEST = {"hour": timedelta(hours=1), "day": _DAY, "week": 7 * _DAY, "month": 28 * _DAY,
             "year": 365 * _DAY}  # fmt: skip
ADJECTIVES = {
    "hour": "hourly",
    "day": "daily",
    "week": "weekly",
    "month": "monthly",
    "year": "yearly",
}
_WITHIN = re.compile(r"\s*([0-9]+)\s*([dwh]?)\s*")  # no unit: days


# arguments


def _name(param: str, value: Any, what: str | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise QueryError(
            f"{what or param} must be a non-empty event name, got {value!r}", param=param
        )
    return value


def _count(param: str, value: Any) -> int:
    count = whole(value)
    if count is None or count < 1:
        raise QueryError(f"{param} must be a positive integer, got {value!r}", param=param)
    return count


def parse_within(within: Any) -> int:
    """A funnel window in whole days: `"7d"`, `"2w"`, `"48h"`, `"7"`, a timedelta, or an int of
    days. The one parser of windows: the CLI and the HTTP API read theirs with it too."""
    days = whole(within)
    if isinstance(within, timedelta):
        if within % _DAY == timedelta(0):
            days = within // _DAY
    elif isinstance(within, str) and (m := _WITHIN.fullmatch(within)):
        n, unit = int(m.group(1)), m.group(2)
        if unit != "h" or n % 24 == 0:
            days = n * {"d": 1, "": 1, "w": 7, "h": 1}[unit] // (24 if unit == "h" else 1)
    if days is None or days < 1:
        raise QueryError(
            f"within: expected a positive number of whole days ('7d', '2w', '48h', 7 or a"
            f" timedelta), got {within!r}: funnels work at day resolution",
            param="within",
        )
    return days


def _now(ns: Namespace, now: Any) -> datetime:
    """`now` as wall time of the namespace (the wall clock when not given)."""
    if now is None:
        return datetime.now(ns.schema.tz).replace(tzinfo=None)
    with blaming("now"):
        return P.parse_time(now, ns.schema.tz)


def _first_day(ns: Namespace, event: str) -> Steps[datetime | None]:
    """Midnight of the first wall day `event` was recorded on (None if never)."""
    raw = yield call(Transport.hget, ns.keys.span_first, event)
    return None if raw is None else _EPOCH + timedelta(days=int(raw))


def _labels(
    ns: Namespace, lo: datetime, hi: datetime, family: str | None = None
) -> tuple[str, ...]:
    """Labels of the fewest recorded buckets tiling [lo, hi), all of them kept (for a segment:
    `family` "segment", which may be kept per day only)."""
    return tuple(b.label for b in ns.kept_cover(lo, hi, ns.tiling(lo, hi, family), family=family))


def _before(ns: Namespace, first: datetime | None, hi: datetime) -> tuple[str, ...]:
    """Buckets covering every recorded day of an event before `hi` (a bucket boundary).

    The event's first day is floored to a bucket's start (nothing is recorded before that day)
    of the coarsest recorded period whose floor tiles the span with buckets still kept: the old
    span is then read from long buckets, which expire last (a few days of an old week would be
    refused under an expiry of days). Without days, a week's `hi` inside a month needs the
    week's floor; the floor of `hi`'s own period always tiles, without the finer periods
    too: an old week's `hi`, the days before it in its month gone, is reached by weeks and
    months alone."""
    if first is None:
        return ()
    gone: QueryError | None = None
    periods = ns.schema.periods  # (finest first)
    for period in reversed(periods):
        lo = P.bucket_of(period, first).start
        if lo >= hi:
            return ()
        # the fewest buckets, else without the finest periods (which expire first)
        for chosen in (periods[i:] for i in range(len(periods))):
            try:
                P.cover(lo, hi, chosen)
            except QueryError:
                continue
            try:
                return tuple(b.label for b in ns.kept_cover(lo, hi, chosen))
            except QueryError as exc:  # a bucket of this tiling is gone
                gone = gone or exc
    if gone is not None:
        raise gone
    return _labels(ns, first, hi)  # (unreachable for a bucket boundary: raises, saying why)


def _buckets(first: P.Bucket, n: int, param: str) -> list[P.Bucket]:
    """`n` consecutive buckets from `first`, all within the dates bitstat supports: `n` that
    runs past them is refused at once, naming `param` (not after counting to the year 9999)."""
    shortest = _SHORTEST[first.period].total_seconds()
    fits = (n - 1) * shortest < (_AFTER_LAST - first.start).total_seconds()  # (else surely not)
    out = [first]
    while fits and len(out) < n and out[-1].end < _AFTER_LAST:
        out.append(out[-1].next())
    if len(out) < n:
        raise QueryError(
            f"{param}: {n:,} {first.period}s from {first.label} run past {P.LAST_DAY}, the last"
            " date bitstat supports",
            param=param,
        )
    return out


def _check_period(ns: Namespace, period: Any) -> str:
    if not isinstance(period, str) or period not in P.PERIODS:
        raise QueryError(
            f"period must be one of {', '.join(P.PERIODS)}, got {period!r}", param="period"
        )
    ns.require_period(period, "period")
    return period


def _start_bucket(ns: Namespace, period: str, start: Any) -> P.Bucket:
    """The `period` bucket holding `start` (the first cohort, the first period shown)."""
    with blaming("start"):
        return P.bucket_of(period, P.parse_time(start, ns.schema.tz))


# retention tables


@dataclass
class RetentionRow:
    """One cohort: its period label, its size, and its actors back in each later period."""

    cohort: str
    size: int
    counts: list[int | None]  # None: the period has not begun

    def rates(self) -> list[float | None]:
        """Each count as a share of the cohort (None: not begun, or an empty cohort)."""
        return [None if c is None or not self.size else c / self.size for c in self.counts]


@dataclass
class Retention(Tabular):
    """A retention table: `rows[i].counts[k]` is cohort i's actors back in period i + k."""

    first_event: str
    return_event: str
    period: str
    kind: str
    rows: list[RetentionRow]

    @property
    def columns(self) -> int:
        return len(self.rows[0].counts) if self.rows else 0

    def rates(self) -> list[list[float | None]]:
        return [row.rates() for row in self.rows]

    def as_dicts(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per cohort: cohort, size, counts, rates."""
        return [
            {"cohort": r.cohort, "size": r.size, "counts": list(r.counts), "rates": r.rates()}
            for r in self.rows
        ]

    def to_csv(self, rates: bool = False) -> str:
        """cohort,size,0,1,... with counts (or shares of the cohort); empty cells not begun."""
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["cohort", "size", *range(self.columns)])
        for row in self.rows:
            cells = row.rates() if rates else row.counts
            out.writerow(
                [
                    row.cohort,
                    row.size,
                    *("" if c is None else f"{c:.6g}" if rates else c for c in cells),
                ]
            )
        return buf.getvalue()

    def _table(self, rates: bool = False) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        header = ("cohort", "size", *(str(k) for k in range(self.columns)))
        return header, [(r.cohort, r.size, *(r.rates() if rates else r.counts)) for r in self.rows]

    def _kinds(self, rates: bool = False) -> tuple[type, ...]:
        return (str, int, *[float if rates else int] * self.columns)

    def to_pandas(self, rates: bool = False) -> Any:
        """A pandas DataFrame: cohort, size, then a column per period after the cohort's ("0",
        "1", ...) holding counts (or shares with `rates=True`); missing where not begun."""
        return pandas_frame(*self._table(rates), self._kinds(rates))

    def to_polars(self, rates: bool = False) -> Any:
        """The same table as a polars DataFrame (nulls where not begun)."""
        return polars_frame(*self._table(rates), self._kinds(rates))

    def to_html(self, page: bool = False) -> str:
        """The table as an HTML heat map (a fragment, or a whole page with `page=True`)."""
        title = (
            f"{self.return_event} after {self.first_event}, {ADJECTIVES[self.period]} cohorts"
            f" ({'first time' if self.kind == 'first' else 'recurring'})"
        )
        head = "".join(f"<th>{self.period} {k}</th>" for k in range(self.columns))
        body = []
        for row in self.rows:
            cells = []
            for count, rate in zip(row.counts, row.rates(), strict=True):
                if count is None:
                    cells.append('<td class="future"></td>')
                elif rate is None:
                    cells.append(f"<td>{count:,}</td>")
                else:
                    cells.append(
                        f'<td style="{_heat(rate)}" title="{count:,} of {row.size:,}">'
                        f"{rate:.1%}</td>"
                    )
            body.append(
                f'<tr><th scope="row">{html.escape(row.cohort)}</th>'
                f'<td class="size">{row.size:,}</td>{"".join(cells)}</tr>'
            )
        table = (
            f'{_STYLE}<table class="bitstat-retention"><caption>{html.escape(title)}</caption>'
            f"<thead><tr><th>cohort</th><th>size</th>{head}</tr></thead>"
            f"<tbody>{chr(10).join(body)}</tbody></table>"
        )
        if not page:
            return table
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title></head><body>{table}</body></html>\n"
        )


_STYLE = (
    "<style>.bitstat-retention{border-collapse:collapse;font:13px/1.4 system-ui,sans-serif;"
    "font-variant-numeric:tabular-nums}.bitstat-retention caption{text-align:left;"
    "font-weight:600;padding:4px 0}.bitstat-retention th,.bitstat-retention td{padding:4px 8px;"
    "text-align:right;border:1px solid #e2e8f0}.bitstat-retention thead th{background:#f7fafc}"
    ".bitstat-retention th[scope=row]{text-align:left;background:#f7fafc}"
    ".bitstat-retention td.size{font-weight:600}.bitstat-retention td.future"
    "{background:repeating-linear-gradient(45deg,#fff,#fff 4px,#f1f5f9 4px,#f1f5f9 8px)}</style>"
)


# The heat maps of retention (this HTML, the terminal's, the dashboard's dashboard.js) go from
# white at 0% to this blue at 100%; text on a cell past half way is light.
HEAT_RGB = (37, 99, 235)
HEAT_LIGHT_TEXT = 0.5


def heat(rate: float) -> tuple[tuple[int, int, int], bool]:
    """The colour of a share on a heat map, and whether text on it is light."""
    r = min(max(rate, 0.0), 1.0)
    red, green, blue = (round(255 + (c - 255) * r) for c in HEAT_RGB)
    return (red, green, blue), r > HEAT_LIGHT_TEXT


def _heat(rate: float) -> str:
    (red, green, blue), light = heat(rate)
    return f"background:rgb({red},{green},{blue});color:{'#fff' if light else '#1a202c'}"


# retention


def retention(
    ns: Namespace,
    first_event: str,
    return_event: str,
    start: Any,
    periods: int,
    period: str,
    kind: str,
    columns: int | None,
    now: Any,
    segment: Mapping[str, Any],
) -> Steps[Retention]:
    """Cohort table: row i is cohort `start + i`, `counts[k]` its actors back in period i + k.

    kind="recurring": cohort i is every actor who did `first_event` in period i. kind="first":
    only those whose first-ever `first_event` (over all data of the namespace) falls in period
    i. A segment filter narrows the cohort: the actors who did `first_event` in period i with
    that segment value ("first-ever" still looks at every segment). `counts[k]` counts the
    cohort's actors who did `return_event` in period i + k (any segment), so counts[0] is the
    cohort's own period; it is None for a period that has not begun by `now`.
    """
    _name("first_event", first_event)
    _name("return_event", return_event)
    yield from ns.require_events([first_event], "first_event")
    yield from ns.require_events([return_event], "return_event")
    _check_period(ns, period)
    if kind not in KINDS:
        raise QueryError(f"kind must be 'first' or 'recurring', got {kind!r}", param="kind")
    rows = _count("periods", periods)
    width = rows if columns is None else _count("columns", columns)
    seg = ns.segment(first_event, segment)
    wall_now = _now(ns, now)
    buckets = _buckets(_start_bucket(ns, period, start), rows, "periods")
    buckets += _buckets(buckets[-1], width, "periods" if columns is None else "columns")[1:]
    first = (yield from _first_day(ns, first_event)) if kind == "first" else None

    if seg is not None:  # a segment kept per day has no hour buckets
        ns.tiling(buckets[0].start, buckets[0].end, "segment")
    before = _before(ns, first, buckets[0].start) if kind == "first" else None
    # each period read as unique() reads it: from finer buckets where its own lacks data (a
    # week added to the schema after its days were recorded, or expired before them)
    parts = [_labels(ns, b.start, b.end) for b in buckets]
    cohorts = [_labels(ns, b.start, b.end, "segment") for b in buckets[:rows]] if seg else parts
    begun = sum(b.start <= wall_now for b in buckets)
    prog = retention_program(
        first_event, return_event, parts, cohorts, rows, width, begun, before, seg
    )
    values = iter((yield from ns.totals(prog)))
    out = []
    for i in range(rows):
        size = next(values)
        counts: list[int | None] = [None] * width
        for k in range(min(width, begun - i)):
            counts[k] = size if k == 0 and first_event == return_event else next(values)
        out.append(RetentionRow(buckets[i].label, size, counts))
    return Retention(first_event, return_event, period, kind, out)


# lifecycle


@dataclass(frozen=True)
class LifecyclePeriod:
    """One period of a lifecycle; every count is None for a period that has not begun."""

    period: str
    new: int | None  # active now, never before
    returning: int | None  # active now and in the previous period
    resurrecting: int | None  # active now, not in the previous period, but before it
    dormant: int | None  # active in the previous period, not now

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def lifecycle(
    ns: Namespace,
    event: str,
    start: Any,
    periods: int,
    period: str,
    now: Any,
    segment: Mapping[str, Any],
) -> Steps[Lifecycle]:
    """New, returning, resurrecting and dormant actors of `event` in each of `periods` periods.

    A segment filter narrows the actors active in a period, and in the one before, to that
    segment value; "seen before" (new or resurrecting) looks at every segment, as retention's
    first-ever does: an actor seen before in another segment is resurrecting into this one."""
    _name("event", event)
    yield from ns.require_events([event])
    _check_period(ns, period)
    n = _count("periods", periods)
    wall_now = _now(ns, now)
    first_bucket = _start_bucket(ns, period, start)
    buckets = [first_bucket.prev(), *_buckets(first_bucket, n, "periods")]
    seg = ns.segment(event, segment)
    if seg is not None:  # a segment kept per day has no hour buckets
        ns.tiling(first_bucket.start, first_bucket.end, "segment")
    first = yield from _first_day(ns, event)
    # per period begun: |now|, |now & previous|, |previous|, |now & any earlier period|
    asked: list[list[Expr]] = []
    parts: list[tuple[str, ...]] = []  # each period read as in retention()
    for t in range(1, n + 1):
        if buckets[t].start > wall_now:
            break
        for b in buckets[len(parts) : t + 1]:
            parts.append(_labels(ns, b.start, b.end, "segment" if seg else None))
        now_set = Leaf(event, parts[t], seg)
        prev = Leaf(event, parts[t - 1], seg)
        labels = _before(ns, first, buckets[t].start)
        seen = [Op("and", (now_set, Leaf(event, labels)))] if labels else []
        asked.append([now_set, Op("and", (now_set, prev)), prev, *seen])
    exprs = [e for per_period in asked for e in per_period]
    values = iter((yield from ns.count_exprs(exprs)) if exprs else [])
    out = Lifecycle()
    for t in range(1, n + 1):
        if t > len(asked):
            out.append(LifecyclePeriod(buckets[t].label, None, None, None, None))
            continue
        active, both, prev_active = next(values), next(values), next(values)
        before = next(values) if len(asked[t - 1]) == 4 else 0
        out.append(
            LifecyclePeriod(
                buckets[t].label,
                new=active - before,
                returning=both,
                resurrecting=before - both,
                dormant=prev_active - both,
            )
        )
    return out


def retention_program(
    first_event: str,
    return_event: str,
    parts: Sequence[tuple[str, ...]],
    cohorts: Sequence[tuple[str, ...]],
    rows: int,
    width: int,
    begun: int,
    before: Sequence[str] | None,
    segment: Segment,
) -> SetProgram:
    """Cohort sizes and cells of a retention table, row by row: each cohort is built once.

    `parts` are the bucket labels of consecutive periods (`cohorts`: of the first `rows`, for
    the segment); cells of periods from index `begun` on are not asked. `before`
    (kind="first") are the buckets of the first event before the first period: a register
    keeps everyone seen so far, and grows by each period as the rows go on.
    """
    prog = SetProgram()
    same = first_event == return_event  # then counts[0] is the cohort's size: not asked
    seen, cohort, cell = prog.register(), prog.register(), prog.register()
    if before:
        prog.op("or", seen, [prog.leaf(first_event, (lb,)) for lb in before])
    for i in range(rows):
        did = prog.leaf(first_event, cohorts[i], segment)
        if before is not None and i > 0:
            earlier = prog.leaf(first_event, parts[i - 1])
            prog.op("or", seen, [seen, earlier] if before or i > 1 else [earlier])
        members = did
        if before or (before is not None and i > 0):
            prog.diff(cohort, did, seen)
            members = cohort
        prog.count(members)
        for k in range(width):
            if i + k < begun and (k or not same):
                prog.and_count(cell, [members, prog.leaf(return_event, parts[i + k])])
    return prog


# stickiness


def _days(
    ns: Namespace, lo: datetime, hi: datetime, family: str | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """(day label, labels of the buckets covering that day's share of [lo, hi)) per day."""
    return [
        (b.label, _labels(ns, max(lo, b.start), min(hi, b.end), family))
        for b in P.buckets_between("day", lo, hi)
    ]


def stickiness_program(
    days: Sequence[tuple[str, ...]], event: str, segment: Segment = None
) -> SetProgram:
    """Counts of actors active on exactly 1, 2, ... len(days) of the days (bucket labels each).

    A bit-sliced counter: register `planes[p]` holds the actors whose count of active days so far
    has bit p set; adding a day is a ripple-carry add of one bit per actor.
    """
    prog = SetProgram()
    planes: list[int] = []
    spare = [prog.register(), prog.register()]
    for added, labels in enumerate(days, start=1):
        carry = prog.leaf(event, labels, segment)
        grows = added.bit_length() > len(planes)  # the carry out of the top plane can be set
        for p, plane in enumerate(planes):
            nxt = spare[0] if carry != spare[0] else spare[1]
            if grows or p + 1 < len(planes):
                prog.op("and", nxt, [plane, carry])
            prog.op("xor", plane, [plane, carry])
            carry = nxt
        if grows:
            planes.append(prog.register())
            prog.op("or", planes[-1], [carry])
    ones, zeros, exact = prog.register(), prog.register(), prog.register()
    for n in range(1, len(days) + 1):
        set_bits = [plane for p, plane in enumerate(planes) if n >> p & 1]
        clear = [plane for p, plane in enumerate(planes) if not n >> p & 1]
        have = set_bits[0]
        if len(set_bits) > 1:
            prog.op("and", ones, set_bits)
            have = ones
        if clear:
            lack = clear[0]
            if len(clear) > 1:
                prog.op("or", zeros, clear)
                lack = zeros
            prog.diff(exact, have, lack)
            have = exact
        prog.count(have)
    return prog


def stickiness(
    ns: Namespace, event: str, start: Any, end: Any, segment: Mapping[str, Any]
) -> Steps[Stickiness]:
    """{n: actors active on exactly n distinct days of [start, end]} for n = 1 .. days."""
    _name("event", event)
    yield from ns.require_events([event])
    seg = ns.segment(event, segment)
    days = _days(ns, *ns.range(start, end), "segment" if seg else None)
    values = yield from ns.totals(stickiness_program([lbs for _, lbs in days], event, seg))
    return Stickiness(enumerate(values, start=1))


# funnels


def funnel_program(
    steps: Sequence[str],
    days: Sequence[tuple[str, ...]],
    starts: int,
    within: int,
    segment: Segment,
) -> SetProgram:
    """Actors reaching each step: `days[x]` are the bucket labels of day x; step 1 on a day
    d < `starts`, then steps 2.. in order (the same day allowed) on days x < d + `within`.

    Start days go in blocks of `within` days. A window [d, d + within) then ends in the next
    block, so a chain of steps splits at the block boundary t into a part within [d, t), built
    for every d of the block from the right (`suf`), and a part within [t, d + within), built
    for every window end from the left (`pre`): about 5 set operations per start day for 3
    steps, instead of one per day of every window.
    """
    prog = SetProgram()
    m, w = len(steps), within
    # A value is a set reference, None (the empty set) or ALL (the chain of no steps). It may
    # stand for a register written before (pre values of the block, suf in place), never for
    # one of the scratch registers (tmp, parts, reach, hit) beyond its immediate use.
    ALL = 0
    Value = int | None

    def day(j: int, x: int) -> int:
        return prog.leaf(steps[j], days[x], segment if j == 0 else None)

    def both(dest: int, x: Value, y: Value) -> Value:
        if x is None or y is None:
            return None
        if x == ALL or y == ALL:
            return y if x == ALL else x
        prog.op("and", dest, [x, y])
        return dest

    def either(dest: int, xs: Sequence[Value]) -> Value:
        """The union, in `dest` unless it is one set (then that set itself)."""
        present = [x for x in xs if x is not None]
        if len(present) <= 1:
            return present[0] if present else None
        prog.op("or", dest, present)
        return dest

    def grow(dest: int, old: Value, x: Value, y: Value) -> Value:
        """dest := old | (x & y)."""
        if old is None:
            return both(dest, x, y)
        return either(dest, [old, both(tmp, x, y)])

    pairs = [(a, c) for c in range(1, m) for a in range(1, c + 1)]  # chains of steps a..c
    total: list[Value] = [None] * m
    totals = [prog.register() for _ in range(m)]
    tmp, reach, hit = prog.register(), prog.register(), prog.register()
    parts = [prog.register() for _ in range(m)]
    suf_regs = {pair: prog.register() for pair in pairs}
    pre_regs: dict[tuple[int, int, int], int] = {}
    total[0] = either(totals[0], [day(0, d) for d in range(starts)])
    for s in range(0, starts if m > 1 else 0, w):
        t = s + w
        # pre[e][a, c]: steps a..c in order within [t, e], for each window end e of the block
        pre: dict[int, dict[tuple[int, int], Value]] = {t - 1: dict.fromkeys(pairs)}
        for e in range(t, min(t, starts) + w - 1):
            here: dict[tuple[int, int], Value] = {}
            for a, c in pairs:
                reg = pre_regs.setdefault((e - t, a, c), prog.register())
                inner = ALL if a == c else here[a, c - 1]
                here[a, c] = grow(reg, pre[e - 1][a, c], inner, day(c, e))
            pre[e] = here
        # suf[a, c]: steps a..c in order within [d, t), for d from t - 1 down to s
        suf: dict[tuple[int, int], Value] = dict.fromkeys(pairs)
        for d in range(t - 1, s - 1, -1):
            for c in range(1, m):
                for a in range(c, 0, -1):
                    inner = ALL if a == c else suf[a + 1, c]
                    suf[a, c] = grow(suf_regs[a, c], suf[a, c], day(a, d), inner)
            if d >= starts:
                continue
            ends = pre[max(d + w - 1, t - 1)]
            for k in range(1, m):
                # steps 2..i of the chain before t, steps i+1..k from t on
                split = [suf[1, k], ends[1, k]]
                split += [both(parts[i], suf[1, i], ends[i + 1, k]) for i in range(1, k)]
                found = both(hit, day(0, d), either(reach, split))
                if total[k] is None and found == hit:
                    prog.op("or", totals[k], [hit])  # keep it: hit is scratch
                    found = totals[k]
                total[k] = either(totals[k], [total[k], found])
    for j in range(m):
        ref = total[j]
        assert ref is not None and ref != ALL
        prog.count(ref)
    return prog


def _days_to_last(ns: Namespace, events: Sequence[str], day: datetime) -> Steps[int]:
    """Days from `day` to the last day any of `events` was recorded on, both counted (at
    least 1: none of them after `day`, or none recorded)."""
    raw = yield call(Transport.hget_many, [(ns.keys.span_last, e) for e in events])
    last = max((int(r) for r in raw if r is not None), default=-1)
    return max(1, last - (day - _EPOCH) // _DAY + 1)


def funnel_work(starts: int, window: int, steps: int) -> int:
    """The size of a funnel's program (`funnel_program`), as a limit measures it: the days it
    reads, start days and window days alike (start days are planned in blocks of the window,
    not window by window), times the pairs of steps it chains (at least 1). The program runs
    at most 5 set operations a unit (tests/test_analysis.py)."""
    return (starts + window - 1) * max(1, steps * (steps - 1) // 2)


def start_days(lo: datetime, hi: datetime) -> tuple[datetime, int]:
    """The first day of a funnel's range [lo, hi) (midnight) and the days the range touches:
    the days step 1 is looked for on."""
    first = P.bucket_of("day", lo).start
    return first, (P.bucket_of("day", hi - timedelta(microseconds=1)).end - first) // _DAY


@dataclass(frozen=True)
class FunnelDays:
    """The days a funnel plans (`funnel_days`): step 1 on each of `starts` days from `first`,
    the later steps within `window` days of it: `within` as asked (in days), cut at the last
    day a later step was recorded on (no later day can change the answer)."""

    steps: tuple[str, ...]
    first: datetime
    starts: int
    window: int
    within: int

    @property
    def work(self) -> int:
        return funnel_work(self.starts, self.window, len(self.steps))


def funnel_days(
    ns: Namespace, steps: Sequence[str], start: Any, end: Any, within: Any
) -> Steps[FunnelDays]:
    """The days `funnel` plans, its arguments checked as it checks them (the HTTP API measures
    the work of a funnel with it, before asking it)."""
    if isinstance(steps, str) or not isinstance(steps, Sequence) or not steps:
        raise QueryError(
            f"steps must be a non-empty list of event names, got {steps!r}", param="steps"
        )
    names = tuple(_name("steps", s, "each step") for s in steps)
    yield from ns.require_events(names, "steps")
    asked = parse_within(within)
    first, starts = start_days(*ns.range(start, end))
    # no later step was recorded after its last day: a longer window ("36500d" for "ever")
    # is cut there, not planned day by day, nor past the last date a day can have
    window = min(asked, (yield from _days_to_last(ns, names[1:], first)))
    return FunnelDays(names, first, starts, window, asked)


def funnel(
    ns: Namespace,
    steps: Sequence[str],
    start: Any,
    end: Any,
    within: Any,
    segment: Mapping[str, Any],
) -> Steps[Funnel]:
    """[(step, actors who reached it)]; see `Stats.funnel`."""
    plan = yield from funnel_days(ns, steps, start, end, within)
    names, first, starts, window = plan.steps, plan.first, plan.starts, plan.window
    seg = ns.segment(names[0], segment)
    # (with a segment, step 1's days are the segment's: kept per day at least, or refused)
    days = _days(ns, first, first + (starts + window - 1) * _DAY, "segment" if seg else None)
    prog = funnel_program(names, [labels for _, labels in days], starts, window, seg)
    return Funnel(zip(names, (yield from ns.totals(prog)), strict=True))
