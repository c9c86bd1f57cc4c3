"""The Starlette application: `POST /v1/track`, the read endpoints, /openapi.json, the dashboard,
and the probes /healthz and /readyz.

`create_app(config)` builds it; the connection to Redis opens when the app starts (lifespan)
and closes when it stops. Handlers are thin: check the token, read the parameters, call
`AsyncStats`, answer JSON. Errors answer JSON too: `{"error": ..., "parameter": ...}`, and an
unexpected exception is a logged JSON 500, never a plain-text page.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, request_response
from starlette.staticfiles import StaticFiles

from .. import jsontext
from ..aio import AsyncStats, AsyncStore
from ..calls import Call, step
from ..errors import BitstatError, ConnectionError, QueryError, ServerError, UnknownEvent
from ..record import TrackResult
from ..store import resolve_url, wrapped_errors
from ..transport import Script
from . import browsers, dashboard, grafana, identity, metrics, openapi, posthog, segment
from .answers import JSONResponse
from .auth import HIDDEN_KEYS
from .config import ServerConfig, cors_origins_from_env, write_keys_from_env
from .dispatch import EitherTrack
from .endpoints import ENDPOINTS, Endpoint
from .ingest import LargeBodies, WriteKeys
from .namespaces import Namespaces
from .params import NAMESPACE, BadParameter, read
from .span import PARAMS as SPAN_PARAMS
from .span import first_last_day
from .together import TOGETHER_MAX, Together, can_go_together

STATIC = Path(__file__).parent / "static"
MAX_BATCH_ID = 200
JSON_TYPE = "application/json"
DRAIN_LIMIT = 64 * 1024 * 1024  # the most of an unwanted body read (and dropped) before answering
TRACK_CHUNK = 5_000  # events of a large body recorded as one batch: the work between two breaths
OFFLOAD_BYTES = 64 * 1024  # bodies larger than this are parsed and planned off the event loop
OFFLOAD_EVENTS = 500  # bodies recorded together planned off the event loop from this many events
JSON_PIECE = 256 * 1024  # bytes of a large array parsed at a time (json.loads holds the GIL)
READY_TIMEOUT = 5.0  # seconds /readyz waits for Redis before it answers 503
LOG = logging.getLogger("bitstat.web")


class ApiError(Exception):
    """An answer other than 200, raised from anywhere in a handler; `field`: the event field at
    fault (a single event POSTed)."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        field: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.headers = headers
        self.field = field
        super().__init__(message)


class _State:
    """What the handlers share, set up when the app starts."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: AsyncStore | None = None
        self.namespaces: Namespaces | None = None
        self.planner: ThreadPoolExecutor | None = None
        self.read_token = config.read_token.encode() if config.read_token else None
        self.write_token = config.write_token.encode() if config.write_token else None
        self.metrics = metrics.Metrics(config.metrics_dir)
        self.large_bodies = LargeBodies()
        # bodies recorded together, by namespace (a namespace whose schema changed: anew)
        self.together: weakref.WeakKeyDictionary[AsyncStats, Together] = weakref.WeakKeyDictionary()

    async def stats(self, name: str | None) -> AsyncStats:
        assert self.namespaces is not None, "the app has not started"
        return await self.namespaces.get(name)

    def together_in(self, stats: AsyncStats) -> Together:
        found = self.together.get(stats)
        if found is None:
            found = self.together[stats] = Together(self.record_together)
        return found

    async def record_together(self, stats: AsyncStats, events: list[Any]) -> TrackResult:
        """A batch of bodies recorded together: planned off the event loop when large (a small
        one there, as a small body alone is: each step's hop to the planner thread and back
        made a single event's POST take 1.25-1.39 ms where it took 0.94-0.98)."""
        if self.planner is None or len(events) < OFFLOAD_EVENTS:
            return await stats.track_many(events)
        return await _record_in(self.planner, stats, events, None)


def _check_token(request: Request, token: bytes | None, side: str) -> None:
    if token is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise ApiError(
            401,
            f"this endpoint needs the {side} token: Authorization: Bearer TOKEN",
            {"WWW-Authenticate": 'Bearer realm="bitstat"'},
        )
    if not hmac.compare_digest(value.strip().encode(), token):
        raise ApiError(
            401,
            f"the token is not the {side} token",
            {"WWW-Authenticate": 'Bearer realm="bitstat", error="invalid_token"'},
        )


def _error(
    status: int,
    message: str,
    parameter: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    field: str | None = None,
) -> Response:
    body: dict[str, Any] = {"error": message}
    if parameter is not None:
        body["parameter"] = parameter
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status, headers=headers)


# Python argument names a library error may blame, as the HTTP API spells them
_HTTP_NAMES = {"steps": "step", "segment": "where"}


def _blamed(exc: QueryError, given: Mapping[str, Any]) -> str | None:
    """The parameter a library `QueryError` is about, by its `param` (None: the query as a
    whole), spelled as the HTTP API spells it."""
    if exc.param is None:
        return None
    name = _HTTP_NAMES.get(exc.param, exc.param)
    if name == "end" and "end" not in given and "start" in given:
        return "start"  # no end was given: the range is the bucket of `start`
    return name


def _holding(given: Mapping[str, Any], event: str) -> str:
    """The parameter that named `event`: `event`, a funnel `step`, a retention event."""
    for name, value in given.items():
        if value == event or (isinstance(value, list) and event in value):
            return name
    return "event"


async def _guarded(
    given: dict[str, Any], call: Callable[[], Awaitable[dict[str, Any]]]
) -> Response:
    """Run a handler, turning bitstat errors into 400 (naming the parameter), 404 (an event
    never recorded) or 503 answers, and anything unexpected into a logged JSON 500."""
    try:
        return JSONResponse(await call())
    except BadParameter as exc:
        return _error(400, str(exc), exc.parameter)
    except UnknownEvent as exc:
        return _error(404, str(exc), _holding(given, exc.event))
    except (ConnectionError, ServerError) as exc:
        return _error(503, str(exc))
    except QueryError as exc:
        return _error(400, str(exc), _blamed(exc, given))
    except BitstatError as exc:
        return _error(400, str(exc))
    except ApiError as exc:
        return _error(exc.status, exc.message, headers=exc.headers, field=exc.field)
    except Exception as exc:
        LOG.exception("internal error answering a request")
        return _internal(exc)


def _internal(exc: BaseException) -> Response:
    return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def _read_route(state: _State, endpoint: Endpoint) -> Route:
    async def handle(request: Request) -> Response:
        given: dict[str, Any] = {}

        async def call() -> dict[str, Any]:
            _check_token(request, state.read_token, "read")
            args = read(endpoint.params, request.query_params.multi_items())
            given.update({k: v for k, v in args.items() if v not in (None, [], {})})
            stats = await state.stats(args["namespace"])
            return await endpoint.handler(stats, args)

        return await _guarded(given, call)

    return Route(endpoint.path, handle, methods=["GET"], name=endpoint.name)


class _Body:
    """The body of a request, read up to the server's limit.

    Whatever the answer, what is left of the body is read and dropped before it is sent (up to
    DRAIN_LIMIT): a client that writes the whole body before it reads (Python's urllib, among
    others) would otherwise get a connection reset instead of the 413 or 4xx answer."""

    def __init__(self, request: Request, limit: int) -> None:
        self.limit = limit
        declared = request.headers.get("content-length", "")
        self.declared = int(declared) if declared.isdigit() else None
        self.chunks = request.stream()

    def too_big(self) -> ApiError:
        return ApiError(413, f"the body is larger than the limit of {self.limit} bytes")

    async def read(self) -> bytes:
        if self.declared is not None and self.declared > self.limit:
            raise self.too_big()
        parts, size = [], 0
        try:
            async for chunk in self.chunks:
                size += len(chunk)
                if size > self.limit:
                    raise self.too_big()
                parts.append(chunk)
        except ClientDisconnect:
            raise ApiError(400, "the client left before the whole body arrived") from None
        return b"".join(parts)

    async def drain(self) -> None:
        """Read what is left of the body, if anything, and drop it."""
        if self.declared is not None and self.declared > DRAIN_LIMIT:
            return  # too much to read: the client may see the connection close early
        seen = 0
        try:
            async for chunk in self.chunks:
                seen += len(chunk)
                if seen > DRAIN_LIMIT:
                    break
        except ClientDisconnect:
            pass
        finally:
            await self.chunks.aclose()


def _check_content_type(request: Request) -> None:
    """The body must be sent as JSON; no Content-Type at all is taken as JSON too."""
    given = request.headers.get("content-type", "").strip()
    media = given.partition(";")[0].strip().lower()
    if media and media != JSON_TYPE:
        raise ApiError(
            415,
            f"the body is sent as {given!r}; send it as {JSON_TYPE} (a JSON object or array,"
            f" with Content-Type: {JSON_TYPE}; curl: --json or -H 'Content-Type: {JSON_TYPE}')",
        )


def _check_uncompressed(request: Request) -> None:
    """bitstat's own events come uncompressed: a compressed body with the write token would
    otherwise be read as JSON and refused for its first byte ('can't decode byte 0x8b')."""
    encoding = request.headers.get("content-encoding", "").strip()
    if encoding.lower() not in ("", "identity"):
        raise ApiError(
            415,
            f"the body is compressed (Content-Encoding: {encoding}); POST /v1/track with the"
            " write token takes bitstat's events uncompressed (Segment's SDKs send compressed"
            " messages with their write key, as Basic auth)",
        )


# A large body is recorded off the event loop. `AsyncStats.track_many` drives the namespace's
# `track_many` generator (ops.py) on the loop, and between two server calls each of its steps
# parses, maps ids and plans in pure Python: seconds for 70k events, during which no other
# request is answered. Here the same generator is driven with its steps run in a worker thread
# and its server calls awaited on the loop's own connection, so the loop keeps answering. A
# thread, not a process: the steps read and fill the namespace's id caches and pass numpy
# columns to each other, which a process could only share by copying. One worker, so the steps
# of concurrent batches never overlap (the caches take no locks), as they never did on the loop.
# The body goes in batches of TRACK_CHUNK events, so one request holds the worker for a bounded
# time; with an Idempotency-Key each batch gets the id `KEY#i`, the same on a retry, so a
# request cut off half way is retried exactly once.


_BETWEEN_EVENTS = re.compile(rb"\}\s*,\s*\{")


def _loads_in_pieces(raw: bytes) -> Any:
    """`json.loads(raw)`, a large array of objects parsed JSON_PIECE bytes at a time.

    json.loads holds the GIL for the whole text (a third of a second for 8 MB), and the loop
    waits for it. A piece is cut at a `},{` and parsed as an array of its own: one cut inside a
    string or a nested value leaves a string unclosed or a bracket unmatched, so that piece fails
    and the body is parsed whole instead, which also gives the error at its true position."""
    if raw[:1] != b"[" or b"\x00" in raw[:4]:  # not an array, or UTF-16/32 text
        return jsontext.loads(raw)
    items: list[Any] = []
    at = 1
    try:
        while True:
            cut = _BETWEEN_EVENTS.search(raw, at + JSON_PIECE)
            if cut is None:
                items += jsontext.loads(b"[" + raw[at:])
                return items
            items += jsontext.loads(b"[" + raw[at : cut.start() + 1] + b"]")
            at = cut.end() - 1
    except ValueError:
        return jsontext.loads(raw)


def _advance(
    op: Generator[Call, Any, TrackResult], reply: Any, error: BitstatError | None
) -> tuple[Call | None, Any]:
    """One step of an operation: (the next server call, None) or (None, its result)."""
    try:
        return step(op, reply, error), None
    except StopIteration as stop:  # not raised through a Future: asyncio refuses it
        return None, stop.value


async def _record_in(
    planner: ThreadPoolExecutor, stats: AsyncStats, events: list[Any], batch_id: str | None
) -> TrackResult:
    # AsyncStats runs a whole operation on the loop and has no way to run its steps elsewhere,
    # so its namespace and store are taken as they are here (the operation is its own).
    loop = asyncio.get_running_loop()
    op = stats._ns.track_many(events, batch_id, None)
    reply: Any = None
    error: BitstatError | None = None  # thrown into the operation, which may try again
    while True:
        call, result = await loop.run_in_executor(planner, _advance, op, reply, error)
        if call is None:
            assert isinstance(result, TrackResult)
            return result
        try:
            reply, error = await stats._store.perform(call), None
        except BitstatError as exc:
            reply, error = None, exc


async def _record_large(
    planner: ThreadPoolExecutor, stats: AsyncStats, events: list[Any], key: str | None
) -> TrackResult:
    """`stats.track_many(events, key)` in batches of TRACK_CHUNK, planned in `planner`."""
    total = TrackResult(0)
    starts = range(0, len(events), TRACK_CHUNK)
    for n, at in enumerate(starts):
        batch_id = key if key is None or len(starts) == 1 else f"{key}#{n}"
        part = await _record_in(planner, stats, events[at : at + TRACK_CHUNK], batch_id)
        total.recorded += part.recorded
        total.rejected += [(at + i, reason) for i, reason in part.rejected]
        for period, count in part.expired.items():
            total.expired[period] = total.expired.get(period, 0) + count
    return total


async def _record_body(
    state: _State, raw: bytes, namespace: str | None, batch_id: str | None
) -> dict[str, Any]:
    """The answer to a POST /v1/track of the JSON text `raw`: parsed, recorded, the rejected
    events listed; raises ApiError for a body that cannot be recorded at all."""
    try:
        if len(raw) > OFFLOAD_BYTES:
            data = await asyncio.get_running_loop().run_in_executor(
                state.planner, _loads_in_pieces, raw
            )
        else:
            data = jsontext.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply to read") from None
    single = isinstance(data, dict)
    if single:
        data = [data]
    elif not isinstance(data, list):
        raise ApiError(400, "the body must be a JSON object (one event) or an array")
    if len(data) > state.config.max_events:
        raise ApiError(
            413,
            f"the body holds {len(data):,} events; the limit is"
            f" {state.config.max_events:,} a request",
        )
    stats = await state.stats(namespace)
    if can_go_together(stats, batch_id) and len(data) <= TOGETHER_MAX:
        result = await state.together_in(stats).record(stats, data)  # with those come meanwhile
    elif len(raw) > OFFLOAD_BYTES:
        assert state.planner is not None
        result = await _record_large(state.planner, stats, data, batch_id)
    else:
        result = await stats.track_many(data, batch_id=batch_id)
    state.metrics.recorded(result.recorded, len(result.rejected))
    if single and result.rejected:
        reason = result.rejected[0][1]
        field = getattr(reason, "field", None)  # errors.Reason: the field at fault
        raise ApiError(400, f"the event is rejected: {reason}", field=field)
    if result.recorded:
        assert state.namespaces is not None
        await state.namespaces.note(stats.namespace)
    answer: dict[str, Any] = {
        "recorded": result.recorded,
        "rejected": [{"index": i, "reason": r} for i, r in result.rejected],
    }
    if result.expired:
        answer["expired"] = dict(result.expired)
    return answer


TRACK_PARAMS = (NAMESPACE,)


def _track_route(state: _State) -> Route:
    async def track(request: Request) -> Response:
        body = _Body(request, state.config.max_body)

        async def call() -> dict[str, Any]:
            _check_token(request, state.write_token, "write")
            args = read(TRACK_PARAMS, request.query_params.multi_items())
            batch_id = request.headers.get("idempotency-key")
            if batch_id is not None and not 0 < len(batch_id) <= MAX_BATCH_ID:
                raise BadParameter("Idempotency-Key", f"must be 1 to {MAX_BATCH_ID} characters")
            _check_content_type(request)
            _check_uncompressed(request)
            raw = await body.read()
            async with state.large_bodies.slot(len(raw)):
                return await _record_body(state, raw, args["namespace"], batch_id)

        response = await _guarded({}, call)
        await body.drain()
        return response

    return Route("/v1/track", track, methods=["POST"], name="track")


def _span_route(state: _State) -> Route:
    async def span(request: Request) -> Response:
        given: dict[str, Any] = {}

        async def call() -> dict[str, Any]:
            _check_token(request, state.read_token, "read")
            args = read(SPAN_PARAMS, request.query_params.multi_items())
            given.update(args)
            stats = await state.stats(args["namespace"])
            first, last = await first_last_day(stats, args["event"])
            return {"first": first, "last": last}

        return await _guarded(given, call)

    return Route("/v1/span", span, methods=["GET"], name="span")


def _namespaces_route(state: _State) -> Route:
    async def namespaces(request: Request) -> Response:
        async def call() -> dict[str, Any]:
            _check_token(request, state.read_token, "read")
            read((), request.query_params.multi_items())
            assert state.namespaces is not None
            return {
                "default": state.namespaces.default,
                "namespaces": await state.namespaces.listed(),
                "refresh_seconds": state.config.refresh_seconds,
            }

        return await _guarded({}, call)

    return Route("/v1/namespaces", namespaces, methods=["GET"], name="namespaces")


async def _load_scripts(store: AsyncStore) -> None:
    """Check that the server answers and holds bitstat's scripts; load those it has forgotten
    (a restart, SCRIPT FLUSH). Raises ConnectionError or ServerError saying why not."""
    scripts = [s for s in vars(store.io).values() if isinstance(s, Script)]
    with wrapped_errors("checking the server"):
        await store.client.ping()
        held = await store.client.script_exists(*(s.sha for s in scripts))
        for script, loaded in zip(scripts, held, strict=True):
            if not loaded:
                await store.client.script_load(script.source)


async def check_server(url: str) -> None:
    """What the app does first when it starts, on a connection of its own: reach the server at
    `url` and load the scripts. Raises ConnectionError or ServerError saying why not."""
    store = await AsyncStore.from_url(url)
    try:
        await _load_scripts(store)
    finally:
        await store.close()


def _probe_routes(state: _State) -> list[Route]:
    """GET /healthz: the process answers. GET /readyz: it can serve, Redis reachable and the
    scripts loaded (503 with the reason otherwise). Open without tokens, as probes ask them:
    they tell nothing of the data."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            if state.store is None:
                raise ApiError(503, "the server has not started")
            await asyncio.wait_for(_load_scripts(state.store), READY_TIMEOUT)
        except TimeoutError:
            reason = f"Redis did not answer within {READY_TIMEOUT:g} seconds"
        except (ConnectionError, ServerError, ApiError) as exc:
            reason = str(exc)
        else:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", "error": reason}, 503)

    return [
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
        Route("/readyz", readyz, methods=["GET"], name="readyz"),
    ]


def create_app(config: ServerConfig | None = None) -> Starlette:
    """The ASGI app of `bitstat serve`; it connects to Redis when it starts."""
    config = config or ServerConfig()
    state = _State(config)
    endpoints = (*ENDPOINTS, dashboard.ENDPOINT)
    document = openapi.document(endpoints)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logging.getLogger("uvicorn.access").addFilter(HIDDEN_KEYS)  # (in every process)
        state.store = await AsyncStore.from_url(
            resolve_url(config.url, config.data_dir, "everysec")
        )
        try:
            await _load_scripts(state.store)
        except BaseException:
            await state.store.close()
            raise
        state.namespaces = Namespaces(state.store, config.namespace)
        state.planner = ThreadPoolExecutor(1, thread_name_prefix="bitstat-track")
        publishing = asyncio.create_task(state.metrics.publishing())
        try:
            yield
        finally:
            publishing.cancel()
            state.planner.shutdown(cancel_futures=True)
            await state.store.close()

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    async def internal_error(request: Request, exc: Exception) -> Response:
        return _internal(exc)  # outside the handlers (static files...); the server logs it

    # the SDK protocols (segment.py, posthog.py); /v1/track takes Segment's track messages too
    write_keys = config.write_keys if config.write_keys is not None else write_keys_from_env()
    keys = WriteKeys(config.write_token, write_keys, config.namespace)
    segment_routes, segment_track = segment.routes(state, keys)
    track = EitherTrack(
        _track_route(state).app, request_response(segment_track), segment.is_message
    )
    routes = [
        Route("/", index, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/v1/track", track, methods=["POST"], name="track"),
        *segment_routes,
        *posthog.routes(state, keys),
        *identity.routes(state.stats, state.write_token, _check_token, _guarded),
        *(_read_route(state, e) for e in endpoints),
        _span_route(state),
        _namespaces_route(state),
        *_probe_routes(state),
        *grafana.routes(state.stats, state.read_token),
        metrics.route(
            state.metrics,
            lambda: state.store.client.ping if state.store else None,
            state.read_token,
        ),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    origins = config.cors_origins
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(metrics.MetricsMiddleware, state.metrics, routes),
            Middleware(browsers.Browsers, cors_origins_from_env() if origins is None else origins),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.state.bitstat = state
    return app
