"""The reference model of the analyses (retention, funnels, stickiness, lifecycle): plain Python.

Written from the public contract over the raw records kept by `tests/model.py`'s `Model`: sets of
actors per period, computed with `datetime` and nothing from bitstat's planning code, so the two
can disagree. Each function answers what the `Stats` method of the same name should.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from model import Model, ModelError, Record, Span, span_of, wall_time

ANALYSIS_PERIODS = ("hour", "day", "week", "month", "year")


def _spans(period: str, first: datetime, n: int) -> list[Span]:
    out = [span_of(period, first)]
    while len(out) < n:
        out.append(span_of(period, out[-1].end))
    return out


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"not a positive integer: {value!r}")
    return value


def _period(model: Model, period: str) -> str:
    if period not in model.periods:
        raise ModelError(f"{period!r} is not recorded")
    return period


def _actors(records: list[Record], event: str, lo: datetime, hi: datetime) -> set[Any]:
    return {r.actor for r in records if r.event == event and lo <= r.wall < hi}


def _with_actor(model: Model, *events: str) -> list[Record]:
    """The records with an actor; each of `events` must be known (recorded or configured)."""
    for event in events:
        model._known(event)
    return [r for r in model.records if r.actor is not None]


def retention(
    model: Model,
    first_event: str,
    return_event: str,
    start: Any,
    periods: int = 8,
    period: str = "week",
    kind: str = "first",
    *,
    columns: int | None = None,
    now: Any,
    **segment: Any,
) -> list[tuple[str, int, list[int | None]]]:
    """[(cohort label, size, counts)] as `Stats.retention(...).rows` holds them."""
    _period(model, period)
    if kind not in ("first", "recurring"):
        raise ModelError(f"kind {kind!r}")
    rows = _positive(periods)
    width = rows if columns is None else _positive(columns)
    match = model._segment_match(first_event, segment)
    records = _with_actor(model, first_event, return_event)
    wall_now = wall_time(now, model.tz)
    spans = _spans(period, wall_time(start, model.tz), rows + width - 1)
    if segment:  # a segment kept per day has no hour cohorts
        model.whole_days("segment", spans[0].start, spans[0].end)
    first_seen: dict[Any, datetime] = {}
    for r in records:
        if r.event == first_event and (r.actor not in first_seen or r.wall < first_seen[r.actor]):
            first_seen[r.actor] = r.wall
    out = []
    for i in range(rows):
        s = spans[i]
        cohort = {
            r.actor
            for r in records
            if r.event == first_event and s.start <= r.wall < s.end and match(r)
        }
        if kind == "first":
            cohort = {a for a in cohort if first_seen[a] >= s.start}
        counts: list[int | None] = []
        for k in range(width):
            later = spans[i + k]
            if later.start > wall_now:
                counts.append(None)
            else:
                counts.append(len(cohort & _actors(records, return_event, later.start, later.end)))
        out.append((s.label, len(cohort), counts))
    return out


def lifecycle(
    model: Model,
    event: str,
    start: Any,
    periods: int = 8,
    period: str = "week",
    *,
    now: Any,
    **segment: Any,
) -> list[tuple[str, int | None, int | None, int | None, int | None]]:
    """[(period label, new, returning, resurrecting, dormant)], None for periods not begun. A
    segment narrows the actors of a period and of the one before; "seen before" is any
    segment's."""
    _period(model, period)
    n = _positive(periods)
    match = model._segment_match(event, segment)
    records = _with_actor(model, event)
    wall_now = wall_time(now, model.tz)
    spans = _spans(period, wall_time(start, model.tz), n)
    if segment:  # a segment kept per day has no hour periods
        model.whole_days("segment", spans[0].start, spans[0].end)
    matching = [r for r in records if match(r)]
    out: list[tuple[str, int | None, int | None, int | None, int | None]] = []
    for s in spans:
        if s.start > wall_now:
            out.append((s.label, None, None, None, None))
            continue
        prev = span_of(period, s.start - timedelta(microseconds=1))
        active = _actors(matching, event, s.start, s.end)
        before = _actors(matching, event, prev.start, s.start)  # the previous period
        seen = _actors(records, event, datetime.min, s.start)  # any segment
        out.append(
            (
                s.label,
                len(active - seen),
                len(active & before),
                len((active & seen) - before),
                len(before - active),
            )
        )
    return out


def stickiness(
    model: Model, event: str, start: Any, end: Any = None, **segment: Any
) -> dict[int, int]:
    """{n: actors active on exactly n distinct days of the range} for n = 1 .. its days."""
    match = model._segment_match(event, segment)
    lo, hi = model.family_range("segment" if segment else None, start, end)
    days = 0
    span = span_of("day", lo)
    while span.start < hi:
        days += 1
        span = span_of("day", span.end)
    active: defaultdict[Any, set[date]] = defaultdict(set)
    for r in _with_actor(model, event):
        if r.event == event and lo <= r.wall < hi and match(r):
            active[r.actor].add(r.wall.date())
    found = Counter(len(d) for d in active.values())
    return {n: found.get(n, 0) for n in range(1, days + 1)}


def within_days(within: Any) -> int:
    if isinstance(within, bool):
        raise ModelError("bool window")
    if isinstance(within, int):
        days = within
    elif isinstance(within, timedelta):
        if within.total_seconds() % 86400:
            raise ModelError("not whole days")
        days = within.days
    elif isinstance(within, str) and (m := re.fullmatch(r"(\d+)([dwh])", within.strip())):
        n = int(m.group(1))
        if m.group(2) == "h" and n % 24:
            raise ModelError("not whole days")
        days = {"d": n, "w": 7 * n, "h": n // 24}[m.group(2)]
    else:
        raise ModelError(f"window {within!r}")
    if days < 1:
        raise ModelError("empty window")
    return days


def funnel(
    model: Model,
    steps: Sequence[str],
    start: Any,
    end: Any = None,
    within: Any = "7d",
    **segment: Any,
) -> list[tuple[str, int]]:
    """[(step, actors who reached it)]: step 1 on a day d of the range, then each further step
    on a day no earlier than the previous step's, all before d + within (days)."""
    if isinstance(steps, str) or not steps:
        raise ModelError("steps")
    window = within_days(within)
    match = model._segment_match(steps[0], segment)
    lo, hi = model.range(start, end)
    first, last = lo.date(), (hi - timedelta(microseconds=1)).date()
    days: defaultdict[Any, list[set[date]]] = defaultdict(lambda: [set() for _ in steps])
    for r in _with_actor(model, *steps):
        for j, name in enumerate(steps):
            if r.event != name:
                continue
            if j == 0 and not (first <= r.wall.date() <= last and match(r)):
                continue
            days[r.actor][j].add(r.wall.date())
    reached = [0] * len(steps)
    for per_step in days.values():
        best = 0
        for d in per_step[0]:
            deadline = d + timedelta(days=window)
            at, k = d, 1
            # the earliest next day is always the best choice for a fixed first day
            while k < len(steps):
                later = [x for x in per_step[k] if at <= x < deadline]
                if not later:
                    break
                at, k = min(later), k + 1
            best = max(best, k)
        for j in range(best):
            reached[j] += 1
    return list(zip(steps, reached, strict=True))
