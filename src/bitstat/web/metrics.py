"""`GET /metrics`: the server's own health in Prometheus' text exposition format (0.0.4).

Kept in the process (each worker of `serve --workers N` answers for itself, as Prometheus
expects of one scrape target per process): requests by route and status with their durations,
requests in flight, events recorded and rejected (the ingest rate is `rate()` of the counter),
server errors and answers refused because Redis was unavailable, and Redis' latency, timed by a
PING at each scrape. Written here rather than with prometheus_client: the format is a few
lines, and the server needs no global registry.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .answers import JSONResponse
from .auth import bearer_is

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PING_TIMEOUT = 2.0
REQUEST_LABELS = ("method", "route", "status")
Ping = Callable[[], Awaitable[Any]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + text + "}" if text else ""


def _number(value: float) -> str:
    """A sample value as the format spells it (NaN, +Inf and -Inf, not Python's nan, inf)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Histogram:
    """Cumulative buckets, a sum and a count of observations, per label set."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[tuple[str, str], ...], list[int]] = {}
        self.sums: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)

    def observe(self, labels: tuple[tuple[str, str], ...], value: float) -> None:
        counts = self.buckets.setdefault(labels, [0] * (len(BUCKETS) + 1))
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1
        self.sums[labels] += value

    def lines(self, name: str) -> list[str]:
        out = []
        for labels, counts in sorted(self.buckets.items()):
            for bound, n in zip((*map(repr, BUCKETS), "+Inf"), counts, strict=True):
                out.append(f"{name}_bucket{_labels((*labels, ('le', bound)))} {n}")
            out.append(f"{name}_sum{_labels(labels)} {self.sums[labels]!r}")
            out.append(f"{name}_count{_labels(labels)} {counts[-1]}")
        return out


class Metrics:
    """The counters of one server process."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.durations = Histogram()
        self.in_flight = 0
        self.events: dict[str, int] = defaultdict(int)  # "recorded" / "rejected" -> events
        self.redis_unavailable = 0
        self.server_errors = 0

    def recorded(self, recorded: int, rejected: int) -> None:
        """Events a request recorded and rejected (every ingest route calls this)."""
        self.events["recorded"] += recorded
        self.events["rejected"] += rejected

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, str(status))] += 1
        self.durations.observe((("route", route),), seconds)
        if status == 503:
            self.redis_unavailable += 1
        elif status >= 500:
            self.server_errors += 1

    async def exposition(self, ping: Ping | None) -> str:
        """The text format, Redis pinged now (`ping` None: the server has not started)."""
        up, latency = 0, float("nan")
        if ping is not None:
            began = time.perf_counter()
            try:
                await asyncio.wait_for(ping(), PING_TIMEOUT)
            except Exception:  # any failure is what the gauge reports: Redis is not up
                up = 0
            else:
                up, latency = 1, time.perf_counter() - began
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> None:
            out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples])

        family(
            "bitstat_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route and status.",
            (
                f"bitstat_http_requests_total{_labels(zip(REQUEST_LABELS, k, strict=True))} {n}"
                for k, n in sorted(self.requests.items())
            ),
        )
        family(
            "bitstat_http_request_duration_seconds",
            "histogram",
            "Time to answer an HTTP request, by route.",
            self.durations.lines("bitstat_http_request_duration_seconds"),
        )
        family(
            "bitstat_http_requests_in_flight",
            "gauge",
            "HTTP requests being answered.",
            [f"bitstat_http_requests_in_flight {self.in_flight}"],
        )
        family(
            "bitstat_events_total",
            "counter",
            "Events received by the ingest routes, by outcome (recorded or rejected).",
            [
                f'bitstat_events_total{{outcome="{k}"}} {self.events[k]}'
                for k in ("recorded", "rejected")
            ],
        )
        family(
            "bitstat_http_server_errors_total",
            "counter",
            "Answers 500 and over but 503: internal errors.",
            [f"bitstat_http_server_errors_total {self.server_errors}"],
        )
        family(
            "bitstat_redis_unavailable_total",
            "counter",
            "Answers 503: Redis could not be reached or refused the work.",
            [f"bitstat_redis_unavailable_total {self.redis_unavailable}"],
        )
        family(
            "bitstat_redis_up",
            "gauge",
            "1 if Redis answered a PING at this scrape.",
            [f"bitstat_redis_up {up}"],
        )
        family(
            "bitstat_redis_ping_seconds",
            "gauge",
            "Round trip of a PING to Redis at this scrape (NaN when it failed).",
            [f"bitstat_redis_ping_seconds {_number(latency)}"],
        )
        family(
            "bitstat_process_start_time_seconds",
            "gauge",
            "Start time of the server process, seconds since the epoch.",
            [f"bitstat_process_start_time_seconds {_number(self.started)}"],
        )
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """Counts and times every HTTP request by the route it matched (its path template, so the
    labels stay few); a path no route matches is `other`."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = list(routes)

    def _route(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return str(getattr(route, "path", "other")) or "other"
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception before the answer starts is a 500
        began = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.in_flight -= 1
            elapsed = time.perf_counter() - began
            self.metrics.request(scope["method"], self._route(scope), status, elapsed)


def route(metrics: Metrics, ping: Callable[[], Ping | None], token: bytes | None) -> Route:
    """`GET /metrics`, with the read token when the server has one (`token`): it tells no
    data, but how many events arrive and which routes are asked, which is the business's own.
    `ping()` gives the PING of the running server's Redis (None before it started)."""

    async def endpoint(request: Request) -> Response:
        if token is not None and not bearer_is(request, token):
            return JSONResponse(
                {"error": "the metrics need the read token: Authorization: Bearer TOKEN"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="bitstat"'},
            )
        return Response(await metrics.exposition(ping()), media_type=CONTENT_TYPE)

    return Route("/metrics", endpoint, methods=["GET"], name="metrics")
