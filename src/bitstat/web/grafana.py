"""A Grafana data source: the JSON protocol of Grafana's simple JSON / JSON API data-source
plugins (and of Infinity's), mounted under /grafana/ because the root serves the dashboard.

- `GET /grafana/` answers 200: the plugin's "Save & test".
- `POST /grafana/search` (`{"target": "..."}`) lists the targets the namespace can answer;
  `POST /grafana/metrics` lists them as `{"label", "value"}` (the JSON API plugin's name).
- `POST /grafana/query` answers each target over the panel's time range (ISO times, or epoch
  milliseconds as Grafana's `${__from}` gives them): a time series
  (`{"target", "datapoints": [[value, epoch ms], ...]}`) or a table (`{"type": "table",
  "columns", "rows"}`).

A target is `kind:event`, or `kind:event:property` for a property's values: `unique:login`,
`total:login`, `counts:visit:country`, `sums:purchase:amount`, `top:purchase:item`,
`stickiness:login`, `lifecycle:login`; `funnel:visit,signup,purchase` and
`retention:signup:purchase` (first event, return event). A target's `payload` (or `data`) may
set `namespace`, `by` (the series bucket: hour, day, week, month, year), `where`
(`{"country": "NL"}`: unique, stickiness, funnel, retention and lifecycle targets only),
`limit`, `within`, `period`, `periods`, `kind`, `steps`, `event`, `prop`.
A target without a `namespace` (and /search, /metrics without one in their body's `payload`)
takes the `X-Bitstat-Namespace` header's or `?namespace=`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import jsontext
from .. import periods as P
from ..aio import AsyncStats
from ..analysis import parse_within
from ..errors import BitstatError, ConnectionError, QueryError, ServerError, UnknownEvent
from ..stats import SEGMENT_CLASHES
from ..tables import Tabular
from . import endpoints as E
from .answers import JSONResponse
from .auth import bearer_is
from .ingest import IngestError, read_body

PREFIX = "/grafana"
MAX_POINTS = E.MAX_SERIES_POINTS
MAX_BODY = 1024 * 1024  # a request of the plugins is a few KB
KINDS = ("unique", "total", "counts", "sums", "top", "stickiness", "lifecycle")
# the kinds a segment filter narrows, as in the library (which keeps no segment of event totals
# or property tallies)
SEGMENTED = ("unique", "stickiness", "funnel", "retention", "lifecycle")
_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 28 * 86400, "year": 365 * 86400}
Stats = Callable[[str | None], Awaitable[AsyncStats]]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class GrafanaError(Exception):
    """A request the data source cannot answer, with the HTTP status to answer it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _epoch_ms(wall: datetime, stats: AsyncStats) -> int:
    return int(wall.replace(tzinfo=stats.schema.tz).timestamp() * 1000)


def _datapoints(points: Iterable[tuple[Any, str]], stats: AsyncStats) -> list[list[Any]]:
    """[value, epoch ms] of (value, bucket label)s, but for an hour the zone's clocks skipped
    (a spring change): it holds no event and has no instant of its own (the next hour's)."""
    tz = stats.schema.tz
    out = []
    for value, label in points:
        wall = P.parse_label(label).start
        at = wall.replace(tzinfo=tz)
        if at.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
            out.append([value, int(at.timestamp() * 1000)])
    return out


def parse_target(target: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """`kind:event[:prop]` and the payload -> the question's parts (kind, event, prop, ...)."""
    kind, _, rest = target.partition(":")
    kind = kind.strip()
    if kind == "funnel":
        steps = payload.get("steps") or [s.strip() for s in rest.split(",") if s.strip()]
        return {"kind": kind, "steps": steps}
    if kind == "retention":
        first, _, back = rest.rpartition(":")
        first = payload.get("event", first or back)
        return {"kind": kind, "event": first, "return": payload.get("return", back)}
    if kind not in KINDS:
        raise GrafanaError(400, f"unknown target kind {kind!r} in {target!r}: {', '.join(KINDS)}")
    if kind in ("counts", "sums", "top"):
        event, _, prop = rest.rpartition(":")
        event, prop = payload.get("event", event), payload.get("prop", prop)
        if not event or not prop:
            raise GrafanaError(400, f"{target!r}: expected {kind}:EVENT:PROPERTY")
        return {"kind": kind, "event": event, "prop": prop}
    event = payload.get("event", rest)
    if not event:
        raise GrafanaError(400, f"{target!r}: expected {kind}:EVENT")
    return {"kind": kind, "event": event}


def targets(stats: AsyncStats, events: list[str]) -> list[str]:
    """Every target the namespace can answer, event by event."""
    out: list[str] = []
    for event in events:
        rules = stats.schema.rules_for(event)
        out += [f"{k}:{event}" for k in ("unique", "total", "stickiness", "lifecycle")]
        out += [f"counts:{event}:{p}" for p in rules.count]
        out += [f"sums:{event}:{r.prop}" for r in rules.sum if r.by is None]
        out += [f"top:{event}:{p}" for p in rules.top]
    return out


def _bucket(stats: AsyncStats, interval_ms: Any, lo: datetime, hi: datetime) -> str:
    """The finest recorded period at least as long as Grafana's interval, coarser if the range
    would hold more than MAX_POINTS buckets of it."""
    kept = [p for p in P.PERIODS if p in stats.schema.periods]
    if not kept:
        raise GrafanaError(400, "the namespace records no actor periods")
    seconds = interval_ms / 1000 if isinstance(interval_ms, int | float) else 0
    span = (hi - lo).total_seconds()
    for period in kept:
        if _SECONDS[period] >= seconds and span / _SECONDS[period] <= MAX_POINTS:
            return period
    return kept[-1]


def _columns(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[dict[str, str]]:
    def kind(i: int) -> str:
        cells = [r[i] for r in rows if r[i] is not None]
        if cells and all(isinstance(c, datetime) for c in cells):
            return "time"
        if cells and all(isinstance(c, int | float) for c in cells):
            return "number"
        return "string"

    return [{"text": name, "type": kind(i)} for i, name in enumerate(header)]


def table(answer: Tabular, stats: AsyncStats) -> dict[str, Any]:
    """A bitstat answer as a Grafana table: times as epoch ms, compound values joined by `~`."""
    header, *rows = answer.to_rows()

    def cell(c: Any) -> Any:
        if isinstance(c, datetime):
            return _epoch_ms(c, stats)
        return "~".join(map(str, c)) if isinstance(c, tuple) else c

    return {
        "type": "table",
        "columns": _columns(header, rows),
        "rows": [[cell(c) for c in row] for row in rows],
    }


def target_name(target: Mapping[str, Any]) -> str:
    name = target.get("target")
    if not isinstance(name, str) or not name:
        raise GrafanaError(400, "each target needs a `target` string")
    return name


def payload_of(asked: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """The `payload` (or `data`) of a target or of a /metrics body, read when it is text."""
    payload = asked.get("payload") or asked.get("data") or {}
    if isinstance(payload, str):  # the JSON API plugin sends the payload as text
        payload = _loads(payload, f"{what}: the payload") if payload.strip() else {}
    if not isinstance(payload, Mapping):
        raise GrafanaError(400, f"{what}: the payload must be a JSON object")
    return payload


def namespace_of(payload: Mapping[str, Any], what: str, default: str | None) -> str | None:
    """The payload's `namespace`, else `default` (the request's)."""
    given = payload.get("namespace")
    if given is not None and not isinstance(given, str):
        raise GrafanaError(400, f"{what}: the payload's `namespace` must be text")
    return given or default


async def answer(
    stats: AsyncStats,
    target: Mapping[str, Any],
    payload: Mapping[str, Any],
    lo: str,
    hi: str,
    interval_ms: Any,
) -> list[dict[str, Any]]:
    """The answers to one target of a /query request (a lifecycle time series is four), its
    payload read by `payload_of`."""
    name = target_name(target)
    q = parse_target(name, payload)
    kind = q["kind"]
    where = _where(payload.get("where"))
    if where and kind not in SEGMENTED:
        raise GrafanaError(
            400,
            f"{name!r}: a `where` segment filter applies to"
            f" {', '.join(SEGMENTED[:-1])} and {SEGMENTED[-1]} targets only, not to {kind}",
        )
    series = target.get("type", "timeserie") != "table"
    wall_lo, wall_hi = (P.parse_time(t, stats.schema.tz) for t in (lo, hi))
    _check_size(q, payload, wall_hi - wall_lo)
    if kind in ("unique", "total"):
        by = payload.get("by") or _bucket(stats, interval_ms, wall_lo, wall_hi)
        if by not in _SECONDS or (wall_hi - wall_lo).total_seconds() / _SECONDS[by] > MAX_POINTS:
            raise GrafanaError(
                400, f"`by` {by!r}: one of {', '.join(_SECONDS)}, and at most {MAX_POINTS} points"
            )
        points = await stats.series(q["event"], lo, hi, by=by, metric=kind, **where)
        if not series:
            return [table(points, stats)]
        return [
            {
                "target": name,
                "datapoints": _datapoints(((v, lb) for lb, v in points), stats),
            }
        ]
    if kind == "counts":
        return [table(await stats.counts(q["event"], q["prop"], lo, hi), stats)]
    if kind == "sums":
        summed = await stats.sums(q["event"], q["prop"], lo, hi, by=payload.get("by"))
        if not E.sum_is_finite(summed):
            raise GrafanaError(400, f"{name!r}: {E.SUM_TOO_LARGE}")
        return [table(summed, stats)]
    if kind == "top":
        limit = payload.get("limit", 10)
        return [table(await stats.top(q["event"], q["prop"], lo, hi, limit=limit), stats)]
    if kind == "stickiness":
        return [table(await stats.stickiness(q["event"], lo, hi, **where), stats)]
    if kind == "funnel":  # (its work measured here: it reads the days the data ends on)
        within = parse_within(payload.get("within", "7d"))
        await E.check_funnel_work(stats, q["steps"], lo, hi, within)
        return [table(await stats.funnel(q["steps"], lo, hi, within=within, **where), stats)]
    period = payload.get("period", "week")
    if kind == "retention":
        retention = await stats.retention(
            q["event"],
            q["return"],
            lo,
            periods=payload.get("periods", 8),
            period=period,
            kind=payload.get("kind", "first"),
            **where,
        )
        return [table(retention, stats)]
    # lifecycle: the periods whose start falls in the range
    if period not in _SECONDS:
        raise GrafanaError(400, f"`period` {period!r}: one of {', '.join(_SECONDS)}")
    first = P.bucket_of(period, wall_lo)
    n = max(1, len(P.buckets_between(period, first.start, wall_hi + timedelta(microseconds=1))))
    life = await stats.lifecycle(q["event"], first.start, n, period, **where)
    if not series:
        return [table(life, stats)]
    return [
        {
            "target": f"{name} {column}",
            "datapoints": _datapoints(
                ((getattr(p, column), p.period) for p in life if getattr(p, column) is not None),
                stats,
            ),
        }
        for column in ("new", "returning", "resurrecting", "dormant")
    ]


def _loads(text: str | bytes, what: str) -> Any:
    try:
        return jsontext.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GrafanaError(400, f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise GrafanaError(400, f"{what} is nested too deeply to read") from None


def _where(given: Any) -> dict[str, Any]:
    """A target's segment filter `{"country": "NL"}`: names of segment properties, values
    text or numbers."""
    if given is None or given == {}:
        return {}
    if not isinstance(given, Mapping):
        raise GrafanaError(400, "`where` must be an object of segment filters")
    for name, value in given.items():
        if name in SEGMENT_CLASHES:
            raise GrafanaError(400, f"`where`: {name!r} cannot be a segment filter")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise GrafanaError(400, f"`where`: the value of {name!r} must be text or a number")
    return dict(given)


def _whole(payload: Mapping[str, Any], name: str, default: int, most: int) -> int:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise GrafanaError(400, f"`{name}` must be a whole number from 1 to {most}, got {value!r}")
    return value


def _check_size(q: Mapping[str, Any], payload: Mapping[str, Any], span: timedelta) -> None:
    """The bounds the /v1 endpoints keep, so that no target holds the server for long."""
    kind = q["kind"]
    days = -(-span // timedelta(days=1))
    if kind == "top":
        _whole(payload, "limit", 10, E.MAX_TOP)
    elif kind == "retention":
        _whole(payload, "periods", 8, E.MAX_PERIODS // 5)
    elif kind == "stickiness" and days > E.MAX_STICKINESS_DAYS:
        raise GrafanaError(
            400, f"stickiness: the range is longer than {E.MAX_STICKINESS_DAYS} days"
        )
    elif kind == "lifecycle":
        period = payload.get("period", "week")
        if period in _SECONDS and span.total_seconds() / _SECONDS[period] > E.MAX_PERIODS:
            raise GrafanaError(400, f"lifecycle: the range holds more than {E.MAX_PERIODS} periods")
    elif kind == "funnel":
        steps = q["steps"]
        if not isinstance(steps, list) or not 1 <= len(steps) <= E.MAX_STEPS:
            raise GrafanaError(400, f"funnel: 1 to {E.MAX_STEPS} steps")


def range_end(value: Any) -> str | None:
    """A time range's end as the library reads it: ISO text as it is; epoch milliseconds, a
    number or its digits (Grafana's ${__from}, as Infinity's and templated bodies send it), as
    ISO text; None for anything else."""
    if isinstance(value, str) and not (len(value.strip()) >= 10 and value.strip().isdigit()):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        at = _EPOCH + timedelta(milliseconds=float(value))
    except (OverflowError, ValueError):  # (nan, inf, past year 9999)
        raise GrafanaError(400, f"the range's {value!r} is no time as epoch milliseconds") from None
    return at.isoformat().replace("+00:00", "Z")


def _namespace(request: Request) -> str | None:
    """The namespace of the request: its header or `?namespace=` (None: the server's)."""
    given = request.headers.get("x-bitstat-namespace") or request.query_params.get("namespace")
    return given or None


async def _body(request: Request) -> dict[str, Any]:
    try:
        raw = await read_body(request, MAX_BODY)
    except IngestError as exc:
        raise GrafanaError(exc.status, exc.message) from None
    body = _loads(raw, "the body") if raw.strip() else {}
    if not isinstance(body, dict):
        raise GrafanaError(400, "the body must be a JSON object")
    return body


def _check_token(request: Request, token: bytes | None) -> None:
    """The server's read token, as `Authorization: Bearer TOKEN` (Grafana's data-source
    settings send it as a custom header, or Infinity's bearer-token authentication)."""
    if token is not None and not bearer_is(request, token):
        raise GrafanaError(401, "this data source needs the read token: Authorization: Bearer")


def routes(stats_of: Stats, token: bytes | None) -> list[Route]:
    """The data source's routes; `stats_of(namespace)` opens a namespace; `token`: the read
    token (None: open)."""

    async def stats_for(request: Request, payload: Mapping[str, Any], what: str) -> AsyncStats:
        return await stats_of(namespace_of(payload, what, _namespace(request)))

    async def guarded(request: Request, work: Callable[[], Awaitable[Any]]) -> Response:
        try:
            _check_token(request, token)
            return JSONResponse(await work())
        except GrafanaError as exc:
            return JSONResponse({"error": str(exc), "message": str(exc)}, exc.status)
        except UnknownEvent as exc:
            return JSONResponse({"error": str(exc), "message": str(exc)}, 404)
        except (ConnectionError, ServerError) as exc:
            return JSONResponse({"error": str(exc), "message": str(exc)}, 503)
        except (BitstatError, QueryError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc), "message": str(exc)}, 400)

    async def test(request: Request) -> Response:
        async def work() -> dict[str, Any]:
            stats = await stats_of(_namespace(request))
            return {"status": "ok", "namespace": stats.namespace}

        return await guarded(request, work)

    async def search(request: Request) -> Response:
        async def work() -> list[str]:
            body = await _body(request)
            stats = await stats_for(request, payload_of(body, "the body"), "the body")
            found = targets(stats, await stats.events())
            wanted = body.get("target") or body.get("metric") or ""
            return [t for t in found if str(wanted).lower() in t.lower()]

        return await guarded(request, work)

    async def metrics(request: Request) -> Response:
        async def work() -> list[dict[str, str]]:
            body = await _body(request)
            stats = await stats_for(request, payload_of(body, "the body"), "the body")
            return [{"label": t, "value": t} for t in targets(stats, await stats.events())]

        return await guarded(request, work)

    async def query(request: Request) -> Response:
        async def work() -> list[dict[str, Any]]:
            body = await _body(request)
            span = body.get("range")
            ends = (span.get("from"), span.get("to")) if isinstance(span, Mapping) else (None,) * 2
            lo, hi = (range_end(end) for end in ends)
            if lo is None or hi is None:
                raise GrafanaError(
                    400,
                    "the query needs range.from and range.to: ISO times, or epoch milliseconds"
                    " (${__from} and ${__to})",
                )
            targets = body.get("targets") or []
            if not isinstance(targets, list):
                raise GrafanaError(400, "`targets` must be a list")
            out: list[dict[str, Any]] = []
            for target in targets:
                if not isinstance(target, Mapping) or target.get("hide"):
                    continue
                what = repr(target_name(target))
                payload = payload_of(target, what)
                stats = await stats_for(request, payload, what)
                try:
                    out += await answer(stats, target, payload, lo, hi, body.get("intervalMs"))
                except (ConnectionError, ServerError):
                    raise
                except BitstatError as exc:  # which of the panel's targets, asking where
                    status = 404 if isinstance(exc, UnknownEvent) else 400
                    raise GrafanaError(
                        status, f"{what} (namespace {stats.namespace!r}): {exc}"
                    ) from None
            return out

        return await guarded(request, work)

    async def annotations(request: Request) -> Response:
        return await guarded(request, _no_annotations)

    return [
        Route(f"{PREFIX}/", test, methods=["GET"], name="grafana"),
        Route(f"{PREFIX}/search", search, methods=["POST"], name="grafana-search"),
        Route(f"{PREFIX}/metrics", metrics, methods=["POST"], name="grafana-metrics"),
        Route(f"{PREFIX}/query", query, methods=["POST"], name="grafana-query"),
        Route(f"{PREFIX}/annotations", annotations, methods=["POST"], name="grafana-annotations"),
    ]


async def _no_annotations() -> list[Any]:
    return []  # bitstat keeps no annotations; the plugins ask all the same
