"""`GET /metrics`: the server's own health in Prometheus' text exposition format (0.0.4).

Kept in the process: requests by route and status with their durations,
requests in flight, events recorded and rejected (the ingest rate is `rate()` of the counter),
server errors and answers refused because Redis was unavailable, and Redis' latency, timed by a
PING at each scrape. Written here rather than with prometheus_client: the format is a few
lines, and the server needs no global registry.

The N processes of `serve --workers N` share one port, so a scrape reaches any one of them:
each publishes its figures to a file of a directory they share (`shared`), at most a second
old, and the one scraped answers with the sum, so the counters never go down between scrapes.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
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
PUBLISH_EVERY = 1.0  # seconds: how stale another worker's figures may be in a scrape
REQUEST_LABELS = ("method", "route", "status")
# any other method is `other`: a client sending made-up ones must not add series without end
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
)
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
    """The counters of one server process; `shared`: the directory the processes of
    `serve --workers N` publish theirs to, each scrape answering for them all."""

    def __init__(self, shared: Path | None = None) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.durations = Histogram()
        self.in_flight = 0
        self.events: dict[str, int] = defaultdict(int)  # "recorded" / "rejected" -> events
        self.redis_unavailable = 0
        self.server_errors = 0
        self.shared = shared
        # its file there: the pid alone would be a later process's too, once the pid is
        # reused (a worker replaced after the system went round its pids), whose first
        # publish would take the ended one's counts out of every sum: counters going down
        self.file = f"{os.getpid()}-{secrets.token_hex(8)}.json"
        self.changes = 0  # to publish only what changed
        self.published = -1

    def recorded(self, recorded: int, rejected: int) -> None:
        """Events a request recorded and rejected (every ingest route calls this)."""
        self.events["recorded"] += recorded
        self.events["rejected"] += rejected
        self.changes += 1

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests[(method, route, str(status))] += 1
        self.durations.observe((("route", route),), seconds)
        if status == 503:
            self.redis_unavailable += 1
        elif status >= 500:
            self.server_errors += 1
        self.changes += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started": self.started,
            "requests": [[*k, n] for k, n in self.requests.items()],
            "durations": [
                [[list(pair) for pair in labels], counts, self.durations.sums[labels]]
                for labels, counts in self.durations.buckets.items()
            ],
            "in_flight": self.in_flight,
            "events": dict(self.events),
            "redis_unavailable": self.redis_unavailable,
            "server_errors": self.server_errors,
        }

    def add(self, snapshot: dict[str, Any], running: bool) -> None:
        """Count another process's published figures in (its requests in flight if it runs)."""
        self.started = min(self.started, snapshot["started"])
        for method, route, status, n in snapshot["requests"]:
            self.requests[(method, route, status)] += n
        for pairs, counts, total in snapshot["durations"]:
            labels = tuple((k, v) for k, v in pairs)
            mine = self.durations.buckets.setdefault(labels, [0] * (len(BUCKETS) + 1))
            self.durations.buckets[labels] = [a + b for a, b in zip(mine, counts, strict=True)]
            self.durations.sums[labels] += total
        self.in_flight += snapshot["in_flight"] if running else 0
        for outcome, n in snapshot["events"].items():
            self.events[outcome] += n
        self.redis_unavailable += snapshot["redis_unavailable"]
        self.server_errors += snapshot["server_errors"]

    def publish(self) -> None:
        """Write this process's figures for the others (replacing the file, never half)."""
        if self.shared is None or self.published == self.changes:
            return
        self.published = self.changes
        mine = self.shared / self.file
        part = mine.with_suffix(".part")
        try:
            part.write_text(json.dumps(self.snapshot()), encoding="utf-8")
            os.replace(part, mine)
        except OSError:  # a full /tmp: the scrapes show the figures last written
            self.published = -1

    async def publishing(self) -> None:
        """Publish every PUBLISH_EVERY seconds what changed, until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(PUBLISH_EVERY)
                self.publish()
        finally:
            self.publish()

    def combined(self) -> Metrics:
        """Every process's figures: this one's now, the others' as last published. A process
        that ended keeps its counts (its file stays), so a sum never goes down when one is
        replaced; its requests in flight no longer count."""
        if self.shared is None:
            return self
        self.changes += 1  # the in-flight gauge moves without a change
        self.publish()
        total = Metrics()
        for file in self.shared.glob("*.json"):
            try:
                snapshot = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            total.add(snapshot, _running(snapshot["pid"]))
        return total

    async def exposition(self, ping: Ping | None) -> str:
        """The text format, Redis pinged now (`ping` None: the server has not started)."""
        return await self.combined().text(ping)

    async def text(self, ping: Ping | None) -> str:
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


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # runs, as another user
    return True


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
