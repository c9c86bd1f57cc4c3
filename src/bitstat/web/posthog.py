"""PostHog's capture API: `POST /batch/`, `/capture/`, `/e/`, `/i/v0/e/`, `/i/v0/ai/batch/` (the
legacy routes, `api_key` or `token` in the body; the JavaScript client's gzip and base64
bodies, told by the `compression` query parameter) and `/i/v1/analytics/events` (Bearer key,
an answer per event), so that the `posthog` SDKs send to `bitstat serve` unchanged.

`translate` turns one captured event into a bitstat event (pure; docs/ingest.md has the
table); `distinct_id` is the actor, `uuid` makes a re-sent event count once. posthog-js's
cookieless events (`distinct_id` `$posthog_cookieless`) get a visitor id of their day
(cookieless.py) before they are recorded.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..aio import AsyncStore
from ..schema import Schema
from . import cookieless, identity, ingest
from .answers import JSONResponse
from .auth import bearer
from .ingest import IngestError, Invalid, Rejection

# /i/v0/ai/batch/: where the Python SDK's capture_ai() (and enable_full_ai_capture) posts,
# a /batch/ body of LLM events
LEGACY_PATHS = ("/batch/", "/capture/", "/e/", "/i/v0/e/", "/i/v0/ai/batch/")
V1_PATH = "/i/v1/analytics/events"
FIELDS = {"event": "event", "time": "timestamp"}


def _key_of(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def event_time(ev: Mapping[str, Any], sent_at: Any, received: float, skew: bool) -> float:
    """When the event happened, in epoch seconds, as PostHog computes it: `timestamp` moved by
    the client clock's skew (received - sent_at) when the request says `sent_at` (its body, or
    posthog-js's `?_=` milliseconds: `query_sent_at`) (and the
    event does not set `$ignore_sent_at`), `timestamp` as it is without; else `offset`
    milliseconds before the time received; else the time received."""
    stamp = ev.get("timestamp")
    if stamp is not None:
        when = ingest.parse_time(stamp, "timestamp")
        own = ev.get("sent_at")  # null is no sent_at
        sent = own if own is not None else sent_at
        if sent is None or not skew:
            return when.timestamp()
        return ingest.skew_corrected(when, ingest.parse_time(sent, "sent_at"), received)
    offset = ev.get("offset")
    if offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, int | float):
            raise Invalid("offset", f"must be milliseconds, a number, not {offset!r}")
        return received - offset / 1000
    return received


def _ignores_sent_at(ev: Mapping[str, Any], props: Mapping[str, Any]) -> bool:
    options = ev.get("options")
    if isinstance(options, Mapping) and options.get("disable_skew_correction") is True:
        return True
    flag = props.get("$ignore_sent_at")
    return flag is True or (isinstance(flag, str) and flag.strip().lower() in ("true", "1"))


def translate(
    ev: Any, schema: Schema, *, sent_at: Any, received: float
) -> tuple[str | None, dict[str, Any]]:
    """(uuid, the bitstat event) of one captured event; raises Invalid naming the field. A
    cookieless event keeps `$posthog_cookieless` as its actor (`_cookieless_ids` replaces it)
    and loses the properties that only make its id (`cookieless.scrubbed`)."""
    if not isinstance(ev, Mapping):
        raise Invalid(None, f"an event must be a JSON object, not {ingest.json_kind(ev)}")
    name = ev.get("event")
    if not isinstance(name, str) or not name:
        problem = "is missing" if name is None else f"must be non-empty text, got {name!r}"
        raise Invalid("event", f"the event name {problem}")
    props = dict(ingest.mapping(ev.get("properties"), "properties"))
    for key in ("$set", "$set_once"):  # sent at the top level by set() and set_once()
        if key in ev and key not in props:
            props[key] = ingest.mapping(ev[key], key)
    actor = ingest.actor_id(ev.get("distinct_id", props.get("distinct_id")), "distinct_id")
    if actor is None:
        raise Invalid("distinct_id", "every event names who did it; `distinct_id` is missing")
    uuid = ingest.message_id(ev.get("uuid"), "uuid")
    when = event_time(ev, sent_at, received, not _ignores_sent_at(ev, props))
    message: Mapping[str, Any] = ev
    if cookieless.is_cookieless(ev, props):
        if name == "$create_alias" and cookieless.SENTINEL in (actor, props.get("alias")):
            raise Invalid(
                "event",
                f"$create_alias in posthog-js's cookieless mode ({cookieless.SENTINEL}) names"
                " no visitor to alias, and PostHog drops it too",
            )
        props = cookieless.scrubbed(props)
        message = {k: v for k, v in ev.items() if k != "ip"} | {"properties": props}
    return uuid, ingest.bitstat_event(schema, name, actor, when, props, (props, message))


def _link(ev: Any) -> identity.Link | None:
    """The link a PostHog event makes, none to or from the cookieless sentinel (an $identify
    in that mode has no anonymous id: it would join every cookieless visitor to the user)."""
    found = identity.posthog_link(ev)
    if found is None or cookieless.SENTINEL in (found[0], found[1]):
        return None
    return found


async def _cookieless_ids(
    store: AsyncStore,
    namespace: str,
    schema: Schema,
    request: Request,
    events: list[Any],
    messages: list[tuple[str | None, dict[str, Any] | None]],
    rejections: list[Rejection],
    received: float,
) -> None:
    """Give each cookieless event (actor `$posthog_cookieless`) its visitor's id of its day,
    and the `$device_id` and `$session_id` PostHog gives it when it has none; one whose day has
    no salt to be had is rejected (cookieless.check_day)."""
    tz = schema.tz
    found: list[tuple[int, date, cookieless.Visitor]] = []
    for i, (uuid, event) in enumerate(messages):
        if event is None or event.get(schema.actor) != cookieless.SENTINEL:
            continue
        day = cookieless.day_of(event["time"], tz)
        try:
            cookieless.check_day(day, received, tz)
        except Invalid as exc:
            rejections.append(Rejection(i, uuid, exc.field, str(exc)))
            messages[i] = (None, None)
            continue
        props = events[i].get("properties")
        who = cookieless.visitor(props if isinstance(props, Mapping) else {}, request)
        found.append((i, day, who))
    salts = await cookieless.salts(store, namespace, (day for _, day, _ in found), tz, received)
    for i, day, who in found:
        event = messages[i][1]
        assert event is not None
        salt = salts[day]
        event[schema.actor] = cookieless.actor_id(salt, day, namespace, who)
        if event.get("$device_id") is None:
            event["$device_id"] = event[schema.actor]
        if event.get("$session_id") is None:
            event["$session_id"] = cookieless.session_id(salt, day, namespace, who, tz)


# bodies


def _unbase64(text: str) -> bytes:
    text = "".join(text.strip().replace(" ", "+").split())  # a "+" form-decoded into a space
    altchars = b"-_" if "-" in text or "_" in text else None  # the URL-safe alphabet
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IngestError(400, "invalid_payload", f"the body is not valid base64: {exc}") from None


def decode(raw: bytes, request: Request, limit: int) -> bytes:
    """The JSON text of a capture body: inflated by its Content-Encoding or by `compression`
    (`gzip-js`, `gzip`: the JavaScript client's), read from a form's `data` field, and
    base64-decoded when `compression=base64` or when the field is not JSON already."""
    compression = request.query_params.get("compression", "").strip().lower()
    if compression == "lz64":
        raise IngestError(
            400,
            "invalid_payload",
            "compression=lz64 is not supported; posthog-js sends gzip-js or base64",
            field="compression",
        )
    text = ingest.decompress(raw, request.headers.get("content-encoding", ""), limit)
    if compression in ("gzip", "gzip-js") or ingest.looks_gzipped(text):
        text = ingest.decompress(text, "gzip", limit)
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded" or text.startswith(b"data="):
        form = parse_qs(text.decode("utf-8", "replace"), keep_blank_values=True)
        if "data" not in form:
            raise IngestError(400, "invalid_payload", "a form body holds `data`", field="data")
        data = form["data"][0]
        if compression == "base64" or data.lstrip()[:1] not in ("{", "["):
            return _unbase64(data)
        return data.encode()
    if compression == "base64":
        return _unbase64(text.decode("ascii", "replace"))
    return text


def query_sent_at(request: Request) -> str | None:
    """When posthog-js sent the request, by its clock: the query's `_`, unix milliseconds
    (seconds when 11 digits or fewer, as PostHog reads it), as ISO text; None when `_` is
    absent or no time (then only a cache-buster)."""
    stamp = request.query_params.get("_", "").strip()
    if not stamp.isascii() or not stamp.isdigit():
        return None
    seconds = int(stamp) / 1000 if len(stamp) > 11 else int(stamp)
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return None


def events_of(body: Any) -> tuple[list[Any], Any, str | None]:
    """(events, the request's sent_at, the request's key) of a decoded capture body: a batch
    object, a list of events, or one event."""
    if isinstance(body, list):
        return body, None, None
    if not isinstance(body, Mapping):
        raise IngestError(400, "invalid_payload", "the body must be a JSON object or array")
    key = _key_of(body.get("api_key")) or _key_of(body.get("token"))
    sent_at = body.get("sent_at", body.get("created_at"))
    for name in ("batch", "data"):
        if name in body:
            found = body[name]
            if isinstance(found, Mapping):
                found = [found]
            if not isinstance(found, list):
                raise IngestError(
                    400, "invalid_payload", f"`{name}` must be a list of events", field=name
                )
            return found, sent_at, key
    return [body], sent_at, key


def _event_key(ev: Any) -> str | None:
    if not isinstance(ev, Mapping):
        return None
    props = ev.get("properties")
    found = _key_of(ev.get("api_key")) or _key_of(ev.get("token"))
    if found is None and isinstance(props, Mapping):
        found = _key_of(props.get("token"))
    return found


def project_key(request: Request, body_key: str | None, events: list[Any]) -> str | None:
    """The project key: Bearer, the body's `api_key`/`token`, the query's `token`, else the
    events' own (`api_key`, `token`, `properties.token`), which must then agree."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = body_key or _key_of(request.query_params.get("token"))
    if key is not None:
        return key
    keys = {k for k in map(_event_key, events) if k is not None}
    if len(keys) > 1:
        raise IngestError(
            400, "invalid_payload", "the events of one request carry different project keys"
        )
    return keys.pop() if keys else None


# HTTP


def _error(exc: IngestError) -> Response:
    kind = "authentication_error" if exc.status == 401 else "validation_error"
    if exc.status >= 500:
        kind = "server_error"
    body = {"type": kind, "code": exc.code, "detail": exc.message, "attr": exc.field}
    return JSONResponse(body, exc.status, headers=exc.headers)


def _unauthorized(key: str | None, *, looked: bool = False) -> IngestError:
    """The 401 of a missing or wrong key; `looked`: a large body's text was looked at for its
    key, not parsed (WriteKeys.in_text)."""
    said = "no project API key was given" if not key else "the API key is not valid"
    if looked:
        said = (
            "no project API key of this server's is in the body's `api_key` or `token` (a body"
            f" over {ingest.LARGE_BODY // 1024} KiB is looked at for its key before it is parsed)"
        )
    return IngestError(
        401,
        "invalid_api_key",
        f"{said}: the SDK's project API key is one of this server's write keys",
    )


async def handle(
    host: ingest.Host,
    keys: ingest.WriteKeys,
    checked: set[str],
    request: Request,
    v1: bool,
) -> Response:
    limit = host.config.max_body
    try:
        # the credentials outside the body are checked before it is read; a large body's key
        # is looked for in its text before it is parsed, which only a slot may do
        key = bearer(request)
        in_query = _key_of(request.query_params.get("token"))
        if keys.is_token(in_query):
            raise IngestError(
                400,
                "token_in_query",
                "the write token is not taken in the query, which proxies write to their"
                " logs: send it in the Authorization header (Bearer), or as `api_key` in the"
                " body; a write key of BITSTAT_WRITE_KEYS may come as ?token=",
                field="token",
            )
        if key is not None and keys.namespace(key) is None:
            raise _unauthorized(key)
        with ingest.sdk_errors("invalid_payload"):
            text = decode(await ingest.read_body(request, limit), request, limit)
        if (
            len(text) > ingest.LARGE_BODY
            and key is None
            and keys.namespace(in_query) is None
            and not keys.in_text(text, ("api_key", "token"))
        ):
            raise _unauthorized(None, looked=True)
        async with host.large_bodies.slot(len(text)):
            response = await _recorded(host, keys, checked, request, v1, text)
    except IngestError as exc:
        response = _error(exc)
    await ingest.drain(request)
    return response


async def _recorded(
    host: ingest.Host,
    keys: ingest.WriteKeys,
    checked: set[str],
    request: Request,
    v1: bool,
    text: bytes,
) -> Response:
    """The answer to a capture request whose JSON text is `text`; raises IngestError."""
    with ingest.sdk_errors("invalid_payload"):
        body = ingest.load_json(text)
        events, sent_at, body_key = events_of(body)
        if not v1:  # posthog-js's `_`, which PostHog reads before the body's sent_at
            sent_at = query_sent_at(request) or sent_at
        key = project_key(request, None if v1 else body_key, events)
        namespace = keys.namespace(key)
        if namespace is None:
            raise _unauthorized(key)
        ingest.check_count(events, host.config.max_events, "events")
        assert host.namespaces is not None and host.store is not None
        stats = await ingest.text_id_stats(host.namespaces, namespace, checked)
        received = time.time()
        messages: list[tuple[str | None, dict[str, Any] | None]] = []
        rejections: list[Rejection] = []
        for i, ev in enumerate(events):
            try:
                messages.append(translate(ev, stats.schema, sent_at=sent_at, received=received))
            except Invalid as exc:
                uuid = ev.get("uuid") if isinstance(ev, Mapping) else None
                uuid = uuid if isinstance(uuid, str) else None
                rejections.append(Rejection(i, uuid, exc.field, str(exc)))
                messages.append((None, None))
        await _cookieless_ids(
            host.store, namespace, stats.schema, request, events, messages, rejections, received
        )
        fields = {**FIELDS, stats.schema.actor: "distinct_id"}
        outcome = await ingest.record_once(
            host.store, stats, messages, rejections, fields, host.namespaces.batch_ttl
        )
        refused = [r.index for r in outcome.rejected]
        found = identity.links(events, _link, refused)
        await identity.apply_links(stats, found)
        host.metrics.recorded(outcome.recorded, len(outcome.rejected))
        if outcome.recorded:
            await host.namespaces.note(namespace)
    return JSONResponse(_answer(events, outcome, v1))


def _answer(events: list[Any], outcome: ingest.Outcome, v1: bool) -> dict[str, Any]:
    rejected = [r.as_json() for r in outcome.rejected]
    if not v1:
        return {
            "status": 1,
            "recorded": outcome.recorded,
            "duplicates": outcome.duplicates,
            "rejected": rejected,
        }
    # v1 answers per event uuid: ok (recorded, or a duplicate of one) or drop, with why
    results: dict[str, dict[str, Any]] = {}
    for ev in events:
        uuid = ev.get("uuid") if isinstance(ev, Mapping) else None
        if isinstance(uuid, str):
            results[uuid] = {"result": "ok"}
    for r in outcome.rejected:
        if r.message_id is not None:
            results[r.message_id] = {"result": "drop", "details": r.reason}
    return {"results": results, "recorded": outcome.recorded, "rejected": rejected}


def routes(host: ingest.Host, keys: ingest.WriteKeys) -> list[Route]:
    checked: set[str] = set()

    async def legacy(request: Request) -> Response:
        return await handle(host, keys, checked, request, v1=False)

    async def v1(request: Request) -> Response:
        return await handle(host, keys, checked, request, v1=True)

    found = [Route(V1_PATH, v1, methods=["POST"], name="posthog-v1")]
    for path in LEGACY_PATHS:
        for spelled in (path, path.rstrip("/")):
            found.append(Route(spelled, legacy, methods=["POST"], name=f"posthog{spelled}"))
    return found
