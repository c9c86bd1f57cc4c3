"""The Segment HTTP Tracking API (which RudderStack speaks too): `POST /v1/batch` and the
single-message routes `/v1/track`, `/v1/page`, `/v1/screen`, `/v1/identify`, `/v1/group`,
`/v1/alias`, so that `segment-analytics-python`, `rudder-sdk-python` and their siblings send to
`bitstat serve` unchanged.

`translate` turns one message into a bitstat event (pure; docs/ingest.md has the table);
`routes` are thin: the write key (Basic auth `KEY:`, or `writeKey` in the body) names the
namespace, the body may be gzip, each message is recorded once by its `messageId`.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..schema import Schema
from . import identity, ingest
from .answers import JSONResponse
from .ingest import IngestError, Invalid, Rejection

MAX_MESSAGE = 32 * 1024  # bytes of a single-message route's body, once inflated
# a /v1/batch body is held to the server's --max-body, not to Segment's 500 KB: RudderStack's
# SDKs send batches of 4 MB of messages of any size up to that, which RudderStack takes (and
# Segment's SDKs never send more than Segment takes)
# Segment's API answers 400 Bad Request to a body past its limits (not 413), and so does this
TOO_LARGE = 400
TYPES = ("track", "page", "screen", "identify", "group", "alias")
# the event a message of each type records (a track message records its own `event`)
EVENT_OF = {
    "page": "page",
    "screen": "screen",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
}
# bitstat's names of the fields it sets, as a Segment message spells them
FIELDS = {"event": "event", "time": "timestamp"}
# what marks an object POSTed to /v1/track as a Segment message rather than a bitstat event:
# the ids of which every message this module records names one, and the key analytics.js puts
# in the body. Not `messageId`: alone it makes no message that can be recorded, and a bitstat
# event may well carry a property so named (an e-mail's id)
MARKS = ("userId", "anonymousId", "writeKey")


def _name(msg: Mapping[str, Any], kind: str) -> str:
    if kind != "track":
        return EVENT_OF[kind]
    name = msg.get("event")
    if not isinstance(name, str) or not name:
        problem = "is missing" if name is None else f"must be non-empty text, got {name!r}"
        raise Invalid("event", f"a track message names its event; `event` {problem}")
    return name


def _props(msg: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The properties an event of this message type carries (docs/ingest.md)."""
    if kind in ("track", "page", "screen"):
        props = dict(ingest.mapping(msg.get("properties"), "properties"))
        if kind != "track":
            for key in ("name", "category"):
                if msg.get(key) is not None:
                    props[key] = msg[key]
        return props
    if kind == "identify":  # RudderStack's SDKs send the traits in context.traits
        context = ingest.mapping(msg.get("context"), "context")
        inner = ingest.mapping(context.get("traits"), "context.traits")
        return {**inner, **ingest.mapping(msg.get("traits"), "traits")}
    if kind == "group":
        props = dict(ingest.mapping(msg.get("traits"), "traits"))
        group = ingest.actor_id(msg.get("groupId"), "groupId")
        if group is None:
            raise Invalid("groupId", "a group message names its group; `groupId` is missing")
        props["groupId"] = group
        return props
    previous = ingest.actor_id(msg.get("previousId"), "previousId")
    if previous is None:
        raise Invalid("previousId", "an alias message names the id it links; it is missing")
    return {"previousId": previous}


def spelling(msg: Mapping[str, Any], kind: str) -> dict[str, str]:
    """Where the message holds each property bitstat records from it, when not under
    `properties` (as `_props` takes them), and which field gave the time: a rejection names
    the message's own field."""
    out: dict[str, str] = {}
    if kind in ("page", "screen"):
        out.update((key, key) for key in ("name", "category") if msg.get(key) is not None)
    elif kind in ("identify", "group"):
        if kind == "identify":
            context = msg.get("context")
            inner = context.get("traits") if isinstance(context, Mapping) else None
            if isinstance(inner, Mapping):
                out.update((key, f"context.traits.{key}") for key in inner)
        traits = msg.get("traits")
        if isinstance(traits, Mapping):
            out.update((key, f"traits.{key}") for key in traits)
        if kind == "group":
            out["groupId"] = "groupId"
    elif kind == "alias":
        out["previousId"] = "previousId"
    for name in ("originalTimestamp", "timestamp"):
        if msg.get(name) is not None:
            out["time"] = name
            break
    return out


def event_time(msg: Mapping[str, Any], sent_at: Any, received: float) -> float:
    """When the message happened, in epoch seconds, as Segment computes `timestamp`: the
    device's time (`originalTimestamp`, else `timestamp`) moved by the device clock's skew,
    received - (sentAt - device time), when the message or its batch says `sentAt`; the
    device's time as it is without `sentAt`; the time received without either."""
    for name in ("originalTimestamp", "timestamp"):
        if msg.get(name) is not None:
            device = ingest.parse_time(msg[name], name)
            break
    else:
        return received
    own = msg.get("sentAt")  # null is no sentAt, as a null timestamp is no timestamp
    sent = own if own is not None else sent_at
    if sent is None:
        return device.timestamp()
    where = "sentAt" if own is not None else "sentAt (of the batch)"
    return ingest.skew_corrected(device, ingest.parse_time(sent, where), received)


def merged_context(outer: Any, inner: Any) -> Any:
    """A message's `context` (`inner`) over its batch's (`outer`), object by object: Segment
    merges a batch's context into each message's (analytics-go sends its library there)."""
    if inner is None:
        return outer
    if not isinstance(inner, Mapping) or not isinstance(outer, Mapping):
        return inner
    out = dict(outer)
    for key, value in inner.items():
        out[key] = merged_context(out.get(key), value)
    return out


def translate(
    msg: Any,
    schema: Schema,
    *,
    kind: str | None,
    sent_at: Any,
    received: float,
    context: Mapping[str, Any] | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """(messageId, the bitstat event) of one message; raises Invalid naming the field.

    `kind`: the message type a single-message route implies (a `type` given must agree);
    None in a batch, where `type` is required. `context`: the batch's, under the message's."""
    if not isinstance(msg, Mapping):
        raise Invalid(None, f"a message must be a JSON object, not {ingest.json_kind(msg)}")
    if context:
        msg = {**msg, "context": merged_context(context, msg.get("context"))}
    given = msg.get("type")
    if given is None and kind is None:
        raise Invalid("type", f"a message in a batch says its type, one of {', '.join(TYPES)}")
    if given is not None and given not in TYPES:
        raise Invalid("type", f"unknown type {given!r}; the types are {', '.join(TYPES)}")
    if kind is not None and given is not None and given != kind:
        raise Invalid("type", f"a {given!r} message was sent to /v1/{kind}")
    kind = given or kind
    assert kind is not None
    mid = ingest.message_id(msg.get("messageId"), "messageId")
    user = ingest.actor_id(msg.get("userId"), "userId")
    anonymous = ingest.actor_id(msg.get("anonymousId"), "anonymousId")
    actor = user if user is not None else anonymous
    if actor is None:
        field = "userId" if kind == "alias" else "userId or anonymousId"
        raise Invalid(field, f"a {kind} message names who did it; neither id is given")
    name = _name(msg, kind)
    props = _props(msg, kind)
    when = event_time(msg, sent_at, received)
    roots = (props, msg)
    return mid, ingest.bitstat_event(schema, name, actor, when, props, roots)


# HTTP


def _error(exc: IngestError) -> Response:
    body: dict[str, Any] = {"success": False, "code": exc.code, "message": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    return JSONResponse(body, exc.status, headers=exc.headers)


def basic_key(request: Request) -> str | None:
    """The user of Basic auth (`KEY:`), the SDKs' write key; None without Basic auth."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise IngestError(
            401, "unauthorized", "the Basic credentials are not base64 of 'KEY:'"
        ) from None
    return user.partition(":")[0]


def write_key(request: Request, body: Any) -> str | None:
    """The write key: the user of Basic auth (`KEY:`), else `writeKey` in the body, else in
    the query (RudderStack's beacon: `/beacon/v1/batch?writeKey=KEY`)."""
    key = basic_key(request)
    if key is not None:
        return key
    key = body.get("writeKey") if isinstance(body, Mapping) else None
    if not isinstance(key, str):
        key = request.query_params.get("writeKey")
    return key


def unauthorized(key: str | None, why: str | None = None, *, looked: bool = False) -> IngestError:
    """The 401 of a missing or wrong write key; `why`: what made /v1/track read the body as a
    Segment message (`read_as_message`), said with how to send a bitstat event instead;
    `looked`: a large body's text was looked at for its key, not parsed (WriteKeys.in_text)."""
    said = "no write key was given" if not key else "the write key is not one of this server's"
    if looked:
        said = (
            "no write key of this server's is in the body's `writeKey` (a body over"
            f" {ingest.LARGE_BODY // 1024} KiB is looked at for its key before it is parsed)"
        )
    message = f"{said}: send it as Basic auth 'WRITE_KEY:' (the SDKs' writeKey) or as `writeKey`"
    if why is not None:
        message += f". POST /v1/track read the body as a Segment message because {why}"
    return IngestError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Basic realm="bitstat"'}
    )


def token_in_query() -> IngestError:
    """The 400 of the write token sent as `?writeKey=`: a proxy's access log keeps the query,
    and the write token also erases actors and writes to any namespace."""
    return IngestError(
        400,
        "token_in_query",
        "the write token is not taken in the query, which proxies write to their logs: send"
        " it in the Authorization header, as Basic auth 'WRITE_TOKEN:' (or `writeKey` in the"
        " body); a write key of BITSTAT_WRITE_KEYS may come in the query",
        field="writeKey",
    )


async def handle(
    host: ingest.Host,
    keys: ingest.WriteKeys,
    checked: set[str],
    request: Request,
    kind: str | None,
    shared: bool = False,
) -> Response:
    """One request to /v1/batch (`kind` None) or to a single-message route; `shared`: to
    /v1/track, which takes bitstat's own events too (a 401 then says why the body was taken
    for a Segment message)."""
    limit = host.config.max_body if kind is None else MAX_MESSAGE
    try:
        # the credentials outside the body are checked before it is read; a large body's key
        # is looked for in its text before it is parsed, which only a slot may do
        key = basic_key(request)
        in_query = request.query_params.get("writeKey")
        if keys.is_token(in_query):
            raise token_in_query()
        if key is not None and keys.namespace(key) is None:
            raise unauthorized(key, read_as_message(request, b"") if shared else None)
        with ingest.sdk_errors("invalid_request"):
            raw = await ingest.read_body(request, limit, TOO_LARGE)
            text = ingest.decompress(raw, request.headers.get("content-encoding", ""), limit)
        if (
            len(text) > ingest.LARGE_BODY
            and key is None
            and keys.namespace(in_query) is None
            and not keys.in_text(text, ("writeKey",))
        ):
            raise unauthorized(None, looked=True)
        async with host.large_bodies.slot(len(text)):
            with ingest.sdk_errors("invalid_request"):
                body = ingest.load_json(text)
                if not isinstance(body, Mapping):
                    raise IngestError(400, "invalid_request", "the body must be a JSON object")
                key = write_key(request, body)
                namespace = keys.namespace(key)
                if namespace is None:
                    raise unauthorized(key, read_as_message(request, raw) if shared else None)
                assert host.namespaces is not None and host.store is not None
                stats = await ingest.text_id_stats(host.namespaces, namespace, checked)
                received = time.time()
                if kind is None:
                    batch = body.get("batch")
                    if not isinstance(batch, list):
                        raise IngestError(
                            400,
                            "invalid_request",
                            "a batch body holds `batch`: a list of messages",
                            field="batch",
                        )
                    sent_at, context = body.get("sentAt"), body.get("context")
                    if context is not None and not isinstance(context, Mapping):
                        raise IngestError(
                            400,
                            "invalid_request",
                            "a batch's `context` is an object, merged into each message's",
                            field="context",
                        )
                else:
                    batch, sent_at, context = [body], None, None
                ingest.check_count(batch, host.config.max_events, "messages", TOO_LARGE)
                messages, rejections = _translated(
                    batch, stats.schema, kind, sent_at, received, context
                )
                if kind is not None and rejections:
                    bad = rejections[0]
                    raise IngestError(400, "invalid_message", bad.reason, field=bad.field)
                fields = {**FIELDS, stats.schema.actor: "userId or anonymousId"}
                spelled = [
                    spelling(msg, str(msg.get("type") or kind)) if event is not None else {}
                    for msg, (_, event) in zip(batch, messages, strict=True)
                ]
                outcome = await ingest.record_once(
                    host.store,
                    stats,
                    messages,
                    rejections,
                    fields,
                    host.namespaces.batch_ttl,
                    spelled,
                )
                host.metrics.recorded(outcome.recorded, len(outcome.rejected))
                if kind is not None and outcome.rejected:
                    bad = outcome.rejected[0]
                    raise IngestError(400, "invalid_message", bad.reason, field=bad.field)
                refused = [r.index for r in outcome.rejected]
                link = partial(identity.segment_link, route=kind)
                await identity.apply_links(stats, identity.links(batch, link, refused))
                if outcome.recorded:
                    await host.namespaces.note(namespace)
        answer: dict[str, Any] = {
            "success": True,
            "recorded": outcome.recorded,
            "duplicates": outcome.duplicates,
            "rejected": [r.as_json() for r in outcome.rejected],
        }
        response: Response = JSONResponse(answer)
    except IngestError as exc:
        response = _error(exc)
    await ingest.drain(request)
    return response


def _translated(
    batch: list[Any],
    schema: Schema,
    kind: str | None,
    sent_at: Any,
    received: float,
    context: Mapping[str, Any] | None,
) -> tuple[list[tuple[str | None, dict[str, Any] | None]], list[Rejection]]:
    messages: list[tuple[str | None, dict[str, Any] | None]] = []
    rejections: list[Rejection] = []
    for i, msg in enumerate(batch):
        try:
            messages.append(
                translate(
                    msg, schema, kind=kind, sent_at=sent_at, received=received, context=context
                )
            )
        except Invalid as exc:
            mid = msg.get("messageId") if isinstance(msg, Mapping) else None
            rejections.append(
                Rejection(i, mid if isinstance(mid, str) else None, exc.field, str(exc))
            )
            messages.append((None, None))
    return messages, rejections


def read_as_message(request: Request, head: bytes) -> str | None:
    """Why a POST to /v1/track is a Segment message rather than a bitstat event (or list),
    with how to send a bitstat event instead; None when it is bitstat's: Basic auth, a
    compressed body, or an object naming one of MARKS. `head`: the body, or its first bytes
    when it is larger than a message may be."""
    scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
    if scheme == "basic":
        return "it came with Basic auth; bitstat's own events come with the write token (Bearer)"
    if scheme == "bearer":
        return None
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        return f"it is compressed ({encoding}); bitstat's own events are sent uncompressed"
    start = head.lstrip()[:1]
    if start != b"{":
        return None
    if len(head) > MAX_MESSAGE:  # too large to be read as a message: its keys tell
        named = [mark for mark in MARKS if f'"{mark}"'.encode() in head]
    else:
        try:
            data = json.loads(head)
        except (ValueError, RecursionError):
            return None
        named = [mark for mark in MARKS if isinstance(data, dict) and mark in data]
    if not named:
        return None
    return (
        f"it names `{named[0]}` (a Segment field); a bitstat event with a property so named is"
        " sent in an array ([event]), with the write token (Bearer) where the server has one"
    )


def is_message(request: Request, head: bytes) -> bool:
    """Whether a POST to /v1/track is a Segment message (`read_as_message` says why)."""
    return read_as_message(request, head) is not None


def routes(host: ingest.Host, keys: ingest.WriteKeys) -> tuple[list[Route], Any]:
    """The Segment routes but /v1/track, and the handler of a Segment message sent to
    /v1/track (app.py's /v1/track hands such messages to it)."""
    checked: set[str] = set()

    def route(kind: str | None, path: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await handle(host, keys, checked, request, kind)

        return Route(path, endpoint, methods=["POST"], name=f"segment{path.replace('/', '-')}")

    async def track(request: Request) -> Response:
        return await handle(host, keys, checked, request, "track", shared=True)

    # /v1/import: the older name of /v1/batch; analytics.js (analytics-next) posts one message
    # to /v1/ and the first letter of its type (/v1/t, /v1/p, ...) and batches to /v1/b;
    # rudder-sdk-js with useBeacon posts its batches to /beacon/v1/batch
    batches = ("/v1/batch", "/v1/import", "/v1/b", "/beacon/v1/batch")
    found = [route(None, path) for path in batches]
    found += [route(k, f"/v1/{k}") for k in TYPES if k != "track"]
    found += [route(k, f"/v1/{k[0]}") for k in TYPES]
    return found, track
