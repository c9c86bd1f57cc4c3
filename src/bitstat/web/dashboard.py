"""Everything one dashboard view shows, gathered in one answer (`GET /v1/dashboard`).

The live dashboard asks for it on every refresh; `bitstat report` inlines the same answer in a
static page, so both draw from the same data. Each chart's part is built by the handler of the
matching `/v1/...` endpoint, so its numbers are the API's; a part that cannot be answered (a
period the namespace lacks, a window too long, buckets expired) carries `{"error": ...}` and the
rest still draws; only an event never recorded fails the whole view. `sum_total` is the plain
total of the summed property (the tile), beside the chart's rule, often a breakdown (`sums`).
Choices left open take defaults from the schema and the data: the last 30 days with data (in
whole weeks, months or years when the namespace keeps no days), the most frequent event then,
the first property of each kind (a `sum ... by` rule first), the most frequent events as funnel
steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from .. import periods as P
from ..aio import AsyncStats
from ..errors import BitstatError, ConnectionError, ServerError, UnknownEvent
from ..schema import Schema
from . import endpoints as E
from .params import NAMESPACE, BadParameter, Param, bucket_span, time_range
from .span import spans, totals

DEFAULT_DAYS = 30
MAX_COHORTS = 12
MAX_STEPS = 4
# the bucket size a range gets when none is picked: the finest giving at most ~120 points
AUTO_PERIODS = (("hour", 5), ("day", 120), ("week", 7 * 120), ("month", 3660))

PARAMS = (
    NAMESPACE,
    Param("event", description="Event to show; default: the most frequent of the range."),
    Param("start", "time", description="Range start; default: 30 days before `end`."),
    Param("end", "time", description="Range end; default: the last day with data (of `event`)."),
    Param("period", enum=P.PERIODS, description="Bucket size of series, cohorts, lifecycle."),
    Param("count", description="`count` property for the counts chart."),
    Param("top", description="`top` property for the top values chart."),
    Param("sum", description="`sum` rule for the sums chart: `amount` or `amount by country`."),
    Param(
        "unique",
        description="`unique` or `approx` property whose distinct values are shown.",
    ),
    Param("step", multiple=True, description="Funnel steps, in order (repeat)."),
    Param("within", default="7d", description="Funnel window."),
)

Part = dict[str, Any] | None
# the parts of the answer, one per card or tile, in the order they are gathered
PARTS = (
    "unique",
    "total",
    "series_unique",
    "series_total",
    "counts",
    "top",
    "sums",
    "sum_total",
    "distinct",
    "funnel",
    "retention",
    "lifecycle",
)


async def _part(call: Callable[[], Awaitable[dict[str, Any]]], event: str, **extra: Any) -> Part:
    """One card's part: its answer, or `{"error": ...}` when that card cannot be answered. An
    `event` never recorded fails the whole view instead (one error naming it, not twelve)."""
    try:
        return {**extra, **(await call())}
    except UnknownEvent as exc:
        if exc.event == event:
            raise
        return {**extra, "error": str(exc)}
    except (ConnectionError, ServerError):
        raise
    except BitstatError as exc:
        return {**extra, "error": str(exc)}


def _pick(asked: str | None, available: list[str]) -> str | None:
    if asked is not None:
        return asked
    return available[0] if available else None


async def _range(st: AsyncStats, events: list[str], a: dict[str, Any]) -> tuple[str, str]:
    """`start` and `end` as asked, or by default: `end` the last day with data (of `event`, or
    of any event when none is asked), `start` DEFAULT_DAYS days before `end`."""
    start, end = a["start"], a["end"]
    if end is None:
        last = await _last_day(st, events, a["event"])
        end = _days_of_bucket(st.schema, last)[1]
        if start is not None and bucket_span(st.schema, start, "start")[0] >= _end_of(st, end):
            raise BadParameter(
                "start", f"{start!r} is after the default `end`, {end}: give `end` too"
            )
    else:
        last = (_end_of(st, end) - timedelta(microseconds=1)).date()
    if start is None:
        start = _days_of_bucket(st.schema, last - timedelta(days=DEFAULT_DAYS - 1))[0]
    return start, end


def _end_of(st: AsyncStats, end: str) -> datetime:
    return bucket_span(st.schema, end, "end")[1]


def _days_of_bucket(schema: Schema, day: date) -> tuple[str, str]:
    """The first and last days of the bucket holding `day` of the finest recorded period of a
    day or more: a default range of them is one the namespace can answer (days, when it keeps
    only hours: they make up days)."""
    period = next((p for p in ("day", "week", "month", "year") if p in schema.periods), "day")
    bucket = P.bucket_of(period, datetime(day.year, day.month, day.day))
    return bucket.start.date().isoformat(), (bucket.end - timedelta(days=1)).date().isoformat()


async def _last_day(st: AsyncStats, events: list[str], event: str | None) -> date:
    """The last day `event` was recorded on, or any event when it is None (else: today)."""
    # every name's span in one round trip: a namespace may hold thousands of event names
    names = [event] if event is not None else events
    lasts = [span[1] for span in await st._run(spans(st._ns, names)) if span is not None]
    return max(lasts) if lasts else datetime.now(st.schema.tz).date()


def _cohorts(period: str, lo: datetime, hi: datetime) -> tuple[str, int]:
    """The first label and the number of the range's last buckets (at most MAX_COHORTS): the
    cohorts of the retention table and the periods of the lifecycle chart."""
    bucket = P.bucket_of(period, hi - timedelta(microseconds=1))
    n = 1
    while n < MAX_COHORTS and bucket.start > lo:
        bucket = bucket.prev()
        n += 1
    return bucket.label, n


async def _data_end(st: AsyncStats, event: str, lo: datetime, hi: datetime) -> datetime:
    """`hi`, or the end of the last day `event` was recorded on when that is inside the range."""
    [span] = await st._run(spans(st._ns, [event]))
    if span is None:
        return hi
    end = datetime(span[1].year, span[1].month, span[1].day) + timedelta(days=1)
    return end if lo < end < hi else hi


def _auto_period(st: AsyncStats, lo: datetime, hi: datetime) -> str:
    for period, max_days in AUTO_PERIODS:
        if period in st.schema.periods and hi - lo <= timedelta(days=max_days):
            return period
    return next(p for p in reversed(P.PERIODS) if p in st.schema.periods)  # the coarsest


async def _ranked(st: AsyncStats, events: list[str], start: str, end: str) -> list[str]:
    """Events that happened in the range, most frequent first (the default event and funnel)."""
    counted = await st._run(totals(st._ns, events, start, end))  # one round trip for all
    ranked = sorted(zip(events, counted, strict=True), key=lambda nt: (-nt[1], nt[0]))
    return [n for n, t in ranked if t]


def _query(**given: Any) -> dict[str, Any]:
    """Handler arguments: every parameter the handlers read, with the endpoints' defaults."""
    base: dict[str, Any] = {"end": None, "where": {}, "by": None, "limit": 10}
    return {**base, **given}


async def view(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    """The dashboard answer for the parameters `a` (see PARAMS)."""
    events = await st.events()
    event = a["event"]
    start, end = await _range(st, events, a)
    lo, hi = time_range(st.schema, start, end)
    ranked = await _ranked(st, events, start, end)
    if event is None and events:
        event = ranked[0] if ranked else events[0]
    period = a["period"] or _auto_period(st, lo, hi)
    out: dict[str, Any] = {
        "namespace": st.namespace,
        "events": events,
        "event": event,
        "start": start,
        "end": end,
        "period": period,
        "periods": list(st.schema.periods),
        "timezone": st.schema.timezone,
        "generated": datetime.now(st.schema.tz).replace(microsecond=0).isoformat(),
    }
    if event is None:
        return out
    if a["period"] is not None and period not in st.schema.periods:
        raise BadParameter("period", f"{period!r} buckets are not recorded in this namespace")
    rules = st.schema.rules_for(event)
    out["rules"] = {
        "count": list(rules.count),
        "sum": [str(r) for r in rules.sum],
        "top": list(rules.top),
        "unique": [*rules.unique, *rules.approx],
    }
    count, top, unique = (
        _pick(a["count"], list(rules.count)),
        _pick(a["top"], list(rules.top)),
        _pick(a["unique"], [*rules.unique, *rules.approx]),
    )
    # a breakdown makes a better chart than one number; the tile shows the total beside it
    sum_rule = _pick(a["sum"], sorted((str(r) for r in rules.sum), key=lambda r: " by " not in r))
    steps = a["step"] or ranked[:MAX_STEPS]
    rng = {"event": event, "start": start, "end": end}
    series_args = {**rng, "by": period}

    def part(call: Callable[[], Awaitable[dict[str, Any]]], **extra: Any) -> Awaitable[Part]:
        return _part(call, event, **extra)

    async def none() -> Part:
        return None

    # the chart's rule, and the plain total of its property beside it when one is recorded: the
    # sum of a breakdown leaves out the events without its label
    prop, _, by = (sum_rule or "").partition(" by ")
    plain = {str(r) for r in rules.sum if r.by is None}

    def sums(label: str | None, **extra: Any) -> Awaitable[Part]:
        return part(lambda: E.sums(st, _query(**rng, prop=prop, by=label)), **extra)

    # the cards' cohorts: the range's last buckets up to the event's last day, whatever became
    # of its series (a range asked to end in 2099 shows the cohorts of the data, not 12 empty)
    first, n = _cohorts(period, lo, await _data_end(st, event, lo, hi) if a["end"] else hi)
    # cells after the range (or after the clock) are left out: the table stays a triangle
    wall_now = datetime.now(st.schema.tz).replace(tzinfo=None)
    now = min(hi - timedelta(seconds=1), wall_now).isoformat(timespec="seconds")
    cohort = {"start": first, "periods": n, "period": period, "now": now}
    retention = {"first_event": event, "return_event": event, "kind": "first", "columns": None}
    funnel = {"step": steps, "start": start, "end": end, "within": a["within"]}
    parts = await asyncio.gather(
        part(lambda: E.unique(st, _query(**rng))),
        part(lambda: E.total(st, _query(**rng))),
        part(lambda: E.series(st, _query(**series_args, metric="unique"))),
        part(lambda: E.series(st, _query(**series_args, metric="total"))),
        part(lambda: E.counts(st, _query(**rng, prop=count)), prop=count) if count else none(),
        part(lambda: E.top(st, _query(**rng, prop=top)), prop=top) if top else none(),
        sums(by or None, rule=sum_rule) if sum_rule else none(),
        sums(None, prop=prop) if by and prop in plain else none(),
        part(lambda: E.distinct(st, _query(**rng, prop=unique)), prop=unique) if unique else none(),
        part(lambda: E.funnel(st, _query(**funnel)), steps=steps, within=a["within"])
        if steps
        else none(),
        part(lambda: E.retention(st, _query(**retention, **cohort))),
        part(lambda: E.lifecycle(st, _query(event=event, **cohort))),
    )
    out.update(zip(PARTS, parts, strict=True))
    if sum_rule is not None and not by:  # the chart's answer is the total already
        out["sum_total"] = {"prop": prop, **{k: v for k, v in out["sums"].items() if k != "rule"}}
    return out


ENDPOINT = E.Endpoint(
    "dashboard",
    "Everything one dashboard view shows, in one answer (each part as its /v1 endpoint answers).",
    PARAMS,
    {"type": "object", "required": ["namespace", "events", "event", "start", "end", "period"]},
    view,
)
