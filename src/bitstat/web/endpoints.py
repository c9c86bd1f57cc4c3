"""The read endpoints of the HTTP API: each one's parameters, answer schema and handler.

An `Endpoint` is the single description of a `GET /v1/...` route: `app.py` routes it, `openapi.py`
documents it, `report.py` calls its handler directly. A handler takes the namespace's
`AsyncStats` and the checked parameters, calls one library method and shapes its answer as JSON:
mappings keyed by property values become ranked lists of `{"value": ..., ...}` (a compound
value is a list, in the order the parts were named).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .. import periods as P
from ..aio import AsyncStats
from ..analysis import funnel_days, funnel_work, parse_within, start_days
from ..stats import Stats, clashes
from .params import (
    END,
    EVENT,
    NAMESPACE,
    START,
    WHERE,
    BadParameter,
    Param,
    check_period,
    time_range,
    too_long,
)

Handler = Callable[[AsyncStats, dict[str, Any]], Awaitable[dict[str, Any]]]

MAX_SERIES_POINTS = 5_000
MAX_STICKINESS_DAYS = 3_660
MAX_FUNNEL_WORK = 20_000  # days read x pairs of steps (analysis.funnel_work), as planned
MAX_TOP = 1_000
MAX_PERIODS = 520
MAX_STEPS = 10

PROP = Param("prop", required=True, description="Property name; compound ones join with `~`.")
PERIOD = Param("period", enum=P.PERIODS, default="week", description="Cohort / period size.")
NOW = Param(
    "now",
    "time",
    description="Treat this time as now: later periods are not begun (default: the clock).",
)


@dataclass(frozen=True)
class Endpoint:
    name: str
    summary: str
    params: tuple[Param, ...]
    answer: dict[str, Any]  # JSON schema of the 200 answer
    handler: Handler

    @property
    def path(self) -> str:
        return f"/v1/{self.name}"


# JSON schemas shared by the answers
VALUE: dict[str, Any] = {
    "description": "A property value; a list of values for a compound property.",
    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
}
COUNT = {"type": "integer", "minimum": 0}
MAYBE_COUNT = {"type": "integer", "minimum": 0, "nullable": True}


def json_object(**props: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(props),
        "properties": props,
        "additionalProperties": False,
    }


def _rows(**props: Any) -> dict[str, Any]:
    return {"type": "array", "items": json_object(**props)}


def jsonable_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def ranked(answer: dict[Any, Any], column: str) -> list[dict[str, Any]]:
    """{value: n} -> [{"value": value, column: n}], largest first, then by value."""
    items = sorted(answer.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"value": jsonable_value(v), column: n} for v, n in items]


def _segment(where: dict[str, str], method: Any) -> dict[str, str]:
    """`where` as the segment keywords of `method`, checked."""
    reserved = clashes(method)
    for name in where:
        if name in reserved:
            raise BadParameter("where", f"{name!r} cannot be a segment filter over HTTP")
        if "~" in name:
            raise BadParameter("where", f"give each part of {name!r} as its own where=PROP:VALUE")
    return where


# handlers


async def unique(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    time_range(st.schema, a["start"], a["end"])
    n = await st.unique(a["event"], a["start"], a["end"], **_segment(a["where"], Stats.unique))
    return {"unique": n}


async def total(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    time_range(st.schema, a["start"], a["end"])
    return {"total": await st.total(a["event"], a["start"], a["end"])}


_SHORTEST = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=28),
    "year": timedelta(days=365),
}


async def series(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    lo, hi = time_range(st.schema, a["start"], a["end"])
    check_period(st.schema, "by", a["by"])
    if (hi - lo) / _SHORTEST[a["by"]] > MAX_SERIES_POINTS + 2:
        raise BadParameter(
            too_long(a["end"]),
            f"the range holds more than {MAX_SERIES_POINTS} {a['by']}s; a series has"
            f" at most {MAX_SERIES_POINTS} points: shorten the range or use a longer `by`",
        )
    answer = await st.series(
        a["event"],
        a["start"],
        a["end"],
        by=a["by"],
        metric=a["metric"],
        **_segment(a["where"], Stats.series),
    )
    return {"series": [{"period": label, "value": v} for label, v in answer]}


async def counts(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    time_range(st.schema, a["start"], a["end"])
    answer = await st.counts(a["event"], a["prop"], a["start"], a["end"])
    return {"counts": ranked(answer, "count")}


SUM_TOO_LARGE = "the sum over this range passes the float range (+-1.8e308): ask a shorter one"


def sum_is_finite(answer: float | dict[Any, float]) -> bool:
    """Whether JSON can carry a `sums` answer: each bucket's total is kept within +-1e308, a
    range's may pass the float range, and the library then answers inf."""
    return all(map(math.isfinite, answer.values() if isinstance(answer, dict) else [answer]))


async def sums(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    time_range(st.schema, a["start"], a["end"])
    answer = await st.sums(a["event"], a["prop"], a["start"], a["end"], by=a["by"])
    if not sum_is_finite(answer):
        raise BadParameter("end", SUM_TOO_LARGE)
    if isinstance(answer, dict):
        return {"sums": ranked(answer, "sum")}
    return {"sum": answer}


async def averages(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    time_range(st.schema, a["start"], a["end"])
    return {"average": await st.averages(a["event"], a["prop"], a["start"], a["end"])}


async def top(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    time_range(st.schema, a["start"], a["end"])
    answer = await st.top(a["event"], a["prop"], a["start"], a["end"], limit=a["limit"])
    return {"top": [{"value": jsonable_value(v), "count": n} for v, n in answer]}


async def distinct(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    time_range(st.schema, a["start"], a["end"])
    return {"distinct": await st.distinct(a["event"], a["prop"], a["start"], a["end"])}


async def events(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    return {"events": await st.events()}


async def schema(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    return st.schema.to_dict()


async def retention(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    time_range(st.schema, a["start"], None)
    check_period(st.schema, "period", a["period"])
    if a["now"] is not None:
        time_range(st.schema, a["now"], None, start_name="now")
    table = await st.retention(
        a["first_event"],
        a["return_event"],
        a["start"],
        a["periods"],
        a["period"],
        a["kind"],
        columns=a["columns"],
        now=a["now"],
        **_segment(a["where"], Stats.retention),
    )
    return {
        "first_event": table.first_event,
        "return_event": table.return_event,
        "period": table.period,
        "kind": table.kind,
        "rows": table.as_dicts(),
    }


async def funnel(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    steps: list[str] = a["step"]
    if not steps:
        raise BadParameter("step", "is required: repeat it once per step, in order")
    if len(steps) > MAX_STEPS:
        raise BadParameter("step", f"at most {MAX_STEPS} steps, got {len(steps)}")
    time_range(st.schema, a["start"], a["end"])
    within = parse_within(a["within"])
    await check_funnel_work(st, steps, a["start"], a["end"], within)
    answer = await st.funnel(
        steps, a["start"], a["end"], within, **_segment(a["where"], Stats.funnel)
    )
    return {"funnel": [{"step": s, "actors": n} for s, n in answer]}


async def check_funnel_work(
    st: AsyncStats, steps: list[str], start: str, end: str | None, within: int
) -> None:
    """BadParameter when a funnel is more work than MAX_FUNNEL_WORK, measured on the days the
    library plans (a window longer than the data cut at the later steps' last recorded day),
    naming what to shorten: the range when it alone is too long, else `within`."""
    _, starts = start_days(*st._ns.range(start, end))
    if funnel_work(starts, within, len(steps)) <= MAX_FUNNEL_WORK:
        return  # (the window the library plans is never longer: no need to read where it ends)
    plan = await st._run(funnel_days(st._ns, steps, start, end, within))
    if plan.work <= MAX_FUNNEL_WORK:
        return
    days = plan.starts + plan.window - 1
    pairs = plan.work // days
    cut = ""
    if plan.window < within:
        cut = f" (of the {within} asked: the later steps were recorded up to its last day)"
    says = (
        f"{plan.starts} start days and a {plan.window}-day window{cut} read {days} days for"
        f" {'the pair' if pairs == 1 else f'each of {pairs} pairs'} of steps: {plan.work} is"
        f" more than {MAX_FUNNEL_WORK}"
    )
    if funnel_work(plan.starts, 1, len(steps)) > MAX_FUNNEL_WORK:
        raise BadParameter(too_long(end), f"{says}; shorten the range")
    most = MAX_FUNNEL_WORK // pairs - plan.starts + 1
    raise BadParameter("within", f"{says}; shorten the window (at most {most} days here)")


async def stickiness(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    lo, hi = time_range(st.schema, a["start"], a["end"])
    if hi - lo > timedelta(days=MAX_STICKINESS_DAYS):
        raise BadParameter(
            too_long(a["end"]), f"the range is longer than {MAX_STICKINESS_DAYS} days"
        )
    answer = await st.stickiness(
        a["event"], a["start"], a["end"], **_segment(a["where"], Stats.stickiness)
    )
    return {"stickiness": [{"days": n, "actors": v} for n, v in sorted(answer.items())]}


async def lifecycle(st: AsyncStats, a: dict[str, Any]) -> dict[str, Any]:
    time_range(st.schema, a["start"], None)
    check_period(st.schema, "period", a["period"])
    if a["now"] is not None:
        time_range(st.schema, a["now"], None, start_name="now")
    answer = await st.lifecycle(
        a["event"],
        a["start"],
        a["periods"],
        a["period"],
        now=a["now"],
        **_segment(a["where"], Stats.lifecycle),
    )
    return {"lifecycle": [p.as_dict() for p in answer]}


def _range_params(*extra: Param) -> tuple[Param, ...]:
    return (NAMESPACE, EVENT, START, END, *extra)


def _prop_params(*extra: Param) -> tuple[Param, ...]:
    return (NAMESPACE, EVENT, PROP, START, END, *extra)


def _periods(rows: str, maximum: int) -> Param:
    """`periods`: how many `rows`, 8 by default."""
    return Param(
        "periods",
        "integer",
        default=8,
        minimum=1,
        maximum=maximum,
        description=f"Number of {rows}.",
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "events",
        "Event names recorded in the namespace, sorted.",
        (NAMESPACE,),
        json_object(events={"type": "array", "items": {"type": "string"}}),
        events,
    ),
    Endpoint(
        "schema",
        "The namespace's schema (what it records per event).",
        (NAMESPACE,),
        {"type": "object"},
        schema,
    ),
    Endpoint(
        "unique",
        "Distinct actors who did the event in the range (optionally in a segment).",
        _range_params(WHERE),
        json_object(unique=COUNT),
        unique,
    ),
    Endpoint(
        "total",
        "How many times the event happened in the range.",
        _range_params(),
        json_object(total=COUNT),
        total,
    ),
    Endpoint(
        "series",
        "One value per bucket of the range: unique actors or events.",
        _range_params(
            Param("by", enum=P.PERIODS, default="day", description="Bucket size."),
            Param(
                "metric",
                enum=("unique", "total"),
                default="unique",
                description="Distinct actors (`unique`) or events (`total`).",
            ),
            WHERE,
        ),
        json_object(series=_rows(period={"type": "string"}, value=COUNT)),
        series,
    ),
    Endpoint(
        "counts",
        "Events per value of a `count` property, largest first.",
        _prop_params(),
        json_object(counts=_rows(value=VALUE, count=COUNT)),
        counts,
    ),
    Endpoint(
        "sums",
        "Sum of a `sum` property: `{sum}`, or with `by` a sum per value `{sums: [...]}`.",
        _prop_params(Param("by", description="Per value of this property (a `sum ... by` rule).")),
        {
            "oneOf": [
                json_object(sum={"type": "number"}),
                json_object(sums=_rows(value=VALUE, sum={"type": "number"})),
            ]
        },
        sums,
    ),
    Endpoint(
        "averages",
        "Mean of a `sum` property over the events that carried it (null when none did).",
        _prop_params(),
        json_object(average={"type": "number", "nullable": True}),
        averages,
    ),
    Endpoint(
        "top",
        "The most frequent values of a `top` property: count descending, then value.",
        _prop_params(
            Param(
                "limit",
                "integer",
                default=10,
                minimum=1,
                maximum=MAX_TOP,
                description="How many values.",
            )
        ),
        json_object(top=_rows(value=VALUE, count=COUNT)),
        top,
    ),
    Endpoint(
        "distinct",
        "How many distinct values a `unique` (exact) or `approx` (estimated) property took in"
        " the range.",
        _prop_params(),
        json_object(distinct=COUNT),
        distinct,
    ),
    Endpoint(
        "retention",
        "Cohort retention table: row i is the cohort of period start + i.",
        (
            NAMESPACE,
            Param("first_event", required=True, description="Event that puts actors in a cohort."),
            Param("return_event", required=True, description="Event that counts as coming back."),
            Param("start", "time", required=True, description="Period of the first cohort."),
            _periods("cohorts", MAX_PERIODS // 5),
            PERIOD,
            Param(
                "kind",
                enum=("first", "recurring"),
                default="first",
                description="`first`: actors whose first-ever first_event is in the period;"
                " `recurring`: all who did it then.",
            ),
            Param(
                "columns",
                "integer",
                minimum=1,
                maximum=MAX_PERIODS // 5,
                description="Periods after each cohort (default: `periods`).",
            ),
            NOW,
            WHERE,
        ),
        json_object(
            first_event={"type": "string"},
            return_event={"type": "string"},
            period={"type": "string"},
            kind={"type": "string"},
            rows=_rows(
                cohort={"type": "string"},
                size=COUNT,
                counts={"type": "array", "items": MAYBE_COUNT},
                rates={"type": "array", "items": {"type": "number", "nullable": True}},
            ),
        ),
        retention,
    ),
    Endpoint(
        "funnel",
        "Ordered funnel at day resolution: actors reaching each step within the window.",
        (
            NAMESPACE,
            Param("step", multiple=True, required=True, description="A step; repeat, in order."),
            START,
            END,
            Param(
                "within",
                default="7d",
                description="Window after step 1: days `7`, `7d`, weeks `2w`, hours `48h`.",
            ),
            WHERE,
        ),
        json_object(funnel=_rows(step={"type": "string"}, actors=COUNT)),
        funnel,
    ),
    Endpoint(
        "stickiness",
        "Actors active on exactly n distinct days of the range, for n = 1 .. days.",
        _range_params(WHERE),
        json_object(stickiness=_rows(days={"type": "integer", "minimum": 1}, actors=COUNT)),
        stickiness,
    ),
    Endpoint(
        "lifecycle",
        "New, returning, resurrecting and dormant actors per period.",
        (
            NAMESPACE,
            EVENT,
            Param("start", "time", required=True, description="The first period."),
            _periods("periods", MAX_PERIODS),
            PERIOD,
            NOW,
            WHERE,
        ),
        json_object(
            lifecycle=_rows(
                period={"type": "string"},
                new=MAYBE_COUNT,
                returning=MAYBE_COUNT,
                resurrecting=MAYBE_COUNT,
                dormant=MAYBE_COUNT,
            )
        ),
        lifecycle,
    ),
)
