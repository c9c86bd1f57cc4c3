"""What the SDK protocols (Segment and RudderStack, PostHog) share: the write key that names a
namespace, compressed bodies, times with the client's clock skew taken out, fields a schema
names inside nested objects (`context.os.name`), and recording a request's messages once each,
by their ids, however often the SDK sends them.

The protocol modules (`segment.py`, `posthog.py`) translate messages into bitstat events with
the pure functions here and answer in their protocol's shape; `IngestError` carries what went
wrong (status, a code, the message, the field) for them to render.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import ClientDisconnect, Request

from .. import jsontext
from ..aio import AsyncStats, AsyncStore
from ..errors import BitstatError, ConnectionError, SchemaError, ServerError
from ..events import unicode_problem
from ..keys import Keys
from ..record import DEFAULT_DEADLINE
from ..schema import Schema
from ..store import wrapped_errors
from ..transport import Transport, lua_script
from .auth import keys_in_text
from .config import ServerConfig
from .metrics import Metrics
from .namespaces import Namespaces

MESSAGE_MARK = "msg:"  # a message id's marker is the batch marker of the id "msg:<id>"
HOLD_WAIT = 10.0  # seconds a request waits for another's holds on its messages, then 503
# a hold outlives the recording it guards (retried up to the deadline) by this much, when its
# holder dies without releasing it
HOLD_MARGIN = 30.0

log = logging.getLogger(__name__)
MAX_MESSAGE_ID = 200  # characters of a message id (Segment asks for fewer than 100)
DRAIN_LIMIT = 64 * 1024 * 1024
LARGE_BODY = 64 * 1024  # bytes of a body (inflated) past which it waits for room to be read
LARGE_BODY_BYTES = 2 * 10 * 1024 * 1024  # of large bodies read at once: two of the largest


class IngestError(Exception):
    """An answer other than 200 to an SDK request: `code` is a short machine name (the SDKs
    log it), `message` says which message, which field and why; `field` names the field."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


class Host(Protocol):
    """What the protocol routes use of the running app (app.py's `_State`)."""

    config: ServerConfig
    store: AsyncStore | None
    namespaces: Namespaces | None
    metrics: Metrics
    large_bodies: LargeBodies


# write keys


class WriteKeys:
    """Which namespace a write key writes to: a key of `ServerConfig.write_keys` its own, the
    write token the server's default namespace. A server with neither takes any key (or none)
    for its default namespace, as its `/v1/track` is open too (loopback only)."""

    def __init__(self, token: str | None, keys: Mapping[str, str], default: str) -> None:
        self.token = token.encode() if token else None
        self.keys = [(k.encode(), ns) for k, ns in keys.items()]
        self.default = default

    @property
    def open(self) -> bool:
        return self.token is None and not self.keys

    def namespace(self, key: str | None) -> str | None:
        """The namespace `key` writes to, or None: the key is missing or wrong."""
        if key:
            given = key.encode("utf-8", "surrogatepass")  # JSON text may hold lone surrogates
            found = None
            for known, ns in self.keys:  # every key compared, in constant time each
                if hmac.compare_digest(known, given):
                    found = ns
            if found is not None:
                return found
            if self.token is not None and hmac.compare_digest(self.token, given):
                return self.default
        return self.default if self.open else None

    def is_token(self, key: str | None) -> bool:
        """Whether `key` is the write token (the SDK routes refuse it in the query)."""
        if not key or self.token is None:
            return False
        return hmac.compare_digest(self.token, key.encode("utf-8", "surrogatepass"))

    def in_text(self, text: bytes, fields: tuple[str, ...]) -> bool:
        """Whether the JSON text `text` gives one of this server's keys (or the write token) to
        a member named one of `fields`, at any depth; the text is not parsed (auth.py)."""
        if self.open:
            return True
        known = [len(k) for k, _ in self.keys] + [len(self.token or b"")]
        found = keys_in_text(text, fields, max(known))
        return any(self.namespace(key) is not None for key in found)


# bodies


@contextlib.contextmanager
def sdk_errors(invalid: str) -> Iterator[None]:
    """bitstat's errors as an SDK's answers: the server's failures a 503 `server_error` (the
    SDK sends again), any other a 400 with the code `invalid`."""
    try:
        yield
    except (ConnectionError, ServerError) as exc:
        raise IngestError(503, "server_error", str(exc)) from None
    except BitstatError as exc:
        raise IngestError(400, invalid, str(exc)) from None


async def read_body(request: Request, limit: int, status: int = 413) -> bytes:
    """The body as sent (compressed or not), at most `limit` bytes: more is answered `status`
    (Segment's API says 400 where PostHog and bitstat say 413)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit, "the body", status)
    parts, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(size, limit, "the body", status)
            parts.append(chunk)
    except ClientDisconnect:
        raise IngestError(400, "client_disconnected", "the client left mid-body") from None
    return b"".join(parts)


class LargeBodies:
    """Large bodies (over LARGE_BODY bytes) are parsed and recorded at once up to `budget`
    bytes in all, in the order they came; a body larger than the budget alone.

    Parsed, a body takes about ten times its size in memory (10 MB of JSON events: 110 MB), and
    nothing bounded how many were: ten clients sending 10 MB at once took the server to 1.1 GB
    (and left it at 400 MB). The others wait holding their bytes alone. The wait starts once a
    body has arrived, so a client sending slowly holds no room. Bytes, not bodies, are counted:
    two bodies of 10 MB take it all, where bodies of 200 KB from many senders go on together
    (and their events are recorded together: web/together.py). First come, first in: a large
    body waiting for room is not passed by smaller ones that would fit (it waited for ever
    while they kept coming: found by review, 2026-12-08)."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = LARGE_BODY_BYTES if budget is None else budget
        self.taken = 0
        self.waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def _fits(self, size: int) -> bool:
        return self.taken == 0 or self.taken + size <= self.budget

    def _let_in(self) -> None:
        """The bodies at the head of the line that fit now."""
        while self.waiting and self._fits(self.waiting[0][0]):
            size, room = self.waiting.popleft()
            if not room.cancelled():
                self.taken += size
                room.set_result(None)

    @contextlib.asynccontextmanager
    async def slot(self, size: int) -> AsyncIterator[None]:
        """Hold room for a body of `size` bytes while the block runs, when it is large."""
        if size <= LARGE_BODY:
            yield
            return
        if not self.waiting and self._fits(size):
            self.taken += size
        else:
            entry = (size, asyncio.get_running_loop().create_future())
            self.waiting.append(entry)
            try:
                await entry[1]
            except BaseException:  # cancelled: out of the line, or its room given back
                if entry in self.waiting:
                    self.waiting.remove(entry)
                elif entry[1].done() and not entry[1].cancelled():
                    self.taken -= size
                self._let_in()
                raise
        try:
            yield
        finally:
            self.taken -= size
            self._let_in()


async def drain(request: Request) -> None:
    """Read and drop what is left of the body (up to DRAIN_LIMIT), so that a client that
    writes its whole body before it reads gets the answer, not a connection reset."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_LIMIT:
                break
    except (ClientDisconnect, RuntimeError):  # RuntimeError: the stream was read already
        pass


def too_large(size: int, limit: int, what: str, status: int = 400) -> IngestError:
    return IngestError(
        status,
        "payload_too_large",
        f"{what} is {size:,} bytes or more; the limit is {limit:,} bytes",
    )


def check_count(messages: Sequence[Any], limit: int, what: str, status: int = 413) -> None:
    """A request carries at most `limit` messages (the server's max_events): each one rejected
    costs a line of the answer, so the count is bounded as well as the bytes."""
    if len(messages) > limit:
        raise IngestError(
            status,
            "payload_too_large",
            f"the request holds {len(messages):,} {what}; the limit is {limit:,} a request",
        )


_GZIP_MAGIC = b"\x1f\x8b"


def decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """`raw` inflated by its Content-Encoding (gzip, deflate, or none), at most `limit` bytes
    once inflated (a small gzip body may inflate a thousandfold)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":  # zlib-wrapped, as RFC 9110 says; raw deflate is tried too
        wbits = zlib.MAX_WBITS if raw[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        raise IngestError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none",
        )
    out: list[bytes] = []
    size = 0
    data = raw
    while data:  # a gzip body may hold several members, one after another
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise IngestError(
                400, "invalid_encoding", f"the body is not valid {encoding} data: {exc}"
            ) from None
        size += len(part)
        out.append(part)
        if size > limit or inflater.unconsumed_tail:
            raise too_large(size, limit, f"the {encoding} body once inflated")
        if not inflater.eof:
            raise IngestError(400, "invalid_encoding", f"the {encoding} body is cut short")
        data = inflater.unused_data if wbits == 16 + zlib.MAX_WBITS else b""
    return b"".join(out)


def looks_gzipped(raw: bytes) -> bool:
    return raw[:2] == _GZIP_MAGIC


def load_json(text: bytes | str, what: str = "the body") -> Any:
    try:
        return jsontext.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IngestError(400, "invalid_json", f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise IngestError(400, "invalid_json", f"{what} is nested too deeply to read") from None


# one message


class Invalid(Exception):
    """One message cannot be recorded: `field` (as the protocol spells it) and why."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return self.reason if self.field is None else f"{self.field}: {self.reason}"


def json_kind(value: Any) -> str:
    """What a JSON value is, in the words of JSON (a reason says "not null", "not an array",
    not Python's "not NoneType", "not list")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def parse_time(value: Any, name: str) -> datetime:
    """An ISO-8601 time of a message (UTC when it names no offset), aware."""
    if not isinstance(value, str):
        raise Invalid(name, f"must be ISO-8601 text, not {json_kind(value)} ({value!r})")
    text = value.strip()
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
    except ValueError:
        raise Invalid(name, f"cannot read {value!r} as an ISO-8601 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def skew_corrected(client_time: datetime, sent_at: datetime, received: float) -> float:
    """Epoch seconds of `client_time`, read on a clock that said `sent_at` when the server's
    said `received`: received - (sent_at - client_time)."""
    return received - (sent_at - client_time).total_seconds()


def message_id(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Invalid(name, f"must be text, not {json_kind(value)}")
    text = str(value)
    if not text or len(text) > MAX_MESSAGE_ID:
        raise Invalid(name, f"must be 1 to {MAX_MESSAGE_ID} characters, got {len(text)}")
    if problem := unicode_problem(text):
        raise Invalid(name, problem)
    return text


def actor_id(value: Any, name: str) -> str | int | None:
    """An id as the SDKs send it: text or an integer; empty text is no id."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Invalid(name, f"must be text or an integer, not {json_kind(value)}")
    return value


def mapping(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(name, f"must be an object, not {json_kind(value)}")
    return value


def schema_paths(schema: Schema) -> tuple[str, ...]:
    """The property names the schema uses that hold a dot (`context.os.name`,
    `address.city`): read out of the nested objects of a message."""
    found = schema.derived.get("ingest_paths")
    if found is None:
        names: set[str] = set()
        for rules in (schema.base_rules(), *schema.events.values()):
            for kind in ("count", "top", "unique", "approx", "segment"):
                for name in getattr(rules, kind):
                    names.update(name.split("~"))
            for rule in rules.sum:
                names.add(rule.prop)
                names.update(rule.by.split("~") if rule.by else ())
        found = schema.derived["ingest_paths"] = tuple(sorted(n for n in names if "." in n))
    return found


def lookup(roots: Sequence[Mapping[str, Any]], path: str) -> Any:
    """The value at `path` ("a.b.c") in the first root that holds it, else None."""
    steps = path.split(".")
    for root in roots:
        node: Any = root
        for step in steps:
            if not isinstance(node, Mapping) or step not in node:
                break
            node = node[step]
        else:
            if node is not None:
                return node
    return None


def bitstat_event(
    schema: Schema,
    name: str,
    actor: str | int | None,
    when: float,
    props: Mapping[str, Any],
    roots: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The event bitstat records: the message's properties, the fields the schema names by a
    dotted path (looked up in `roots`: the properties, then the message), then the name, the
    actor under the schema's actor name and the time, which win over properties so named."""
    event = dict(props)
    for path in schema_paths(schema):
        if path not in event:
            value = lookup(roots, path)
            if value is not None:
                event[path] = value
    event["event"] = name
    event["time"] = when
    if actor is not None:
        event[schema.actor] = actor
    else:
        event.pop(schema.actor, None)
    return event


# recording once


@dataclass
class Rejection:
    index: int
    message_id: str | None
    field: str | None
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "messageId": self.message_id,
            "field": self.field,
            "reason": self.reason,
        }


@dataclass
class Outcome:
    """What became of a request's messages: recorded, seen before (duplicates), rejected."""

    recorded: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    duplicate_indexes: list[int] = field(default_factory=list)


def batch_id_of(ids: Sequence[str]) -> str:
    """The batch id of a request's new messages: a message alone is its own marker; several
    are named by a digest of their ids, so a re-sent request is recognised as the same batch."""
    if len(ids) == 1:
        return MESSAGE_MARK + ids[0]
    digest = hashlib.sha256()
    for mid in sorted(ids):
        digest.update(mid.encode("utf-8", "surrogatepass") + b"\x00")
    return "msgs:" + digest.hexdigest()


def _field_of(reason: str, fields: Mapping[str, str]) -> str | None:
    """The message field a bitstat rejection (an `errors.Reason`) blames, in the protocol's
    spelling (`fields` maps bitstat names to it; a property `p` is `properties.p`)."""
    name = getattr(reason, "field", None)
    return None if name is None else fields.get(name, f"properties.{name}")


async def record_once(
    store: AsyncStore,
    stats: AsyncStats,
    messages: Sequence[tuple[str | None, dict[str, Any] | None]],
    rejections: Iterable[Rejection],
    fields: Mapping[str, str],
    ttl: int,
    spelled: Sequence[Mapping[str, str]] = (),
) -> Outcome:
    """Record the translated messages (message id, event; None where translation rejected
    it), each once: a message whose id was recorded before (in this request or an earlier
    one, within `ttl` seconds) is a duplicate and changes nothing.

    The new messages go as one batch whose id derives from their ids, then each id gets a
    marker. A request cut off between the two is retried with the same messages, hence the
    same batch id, which bitstat records once; markers make a message re-sent in another
    batch a duplicate too."""
    outcome = Outcome(rejected=list(rejections))
    schema = stats.schema
    paths = {path: path for path in schema_paths(schema)}
    every = {**fields, **paths}

    def field_of(i: int, reason: str) -> str | None:
        """The field of message i a rejection blames: `spelled[i]` says where that message
        holds a property when not in `properties` (a Segment identify's traits, say)."""
        return _field_of(reason, {**fields, **spelled[i], **paths} if spelled else every)

    keys = Keys(stats.namespace)
    first: dict[str, int] = {}
    candidates: list[int] = []
    for i, (mid, event) in enumerate(messages):
        if event is None:
            continue
        if mid is not None:
            if mid in first:
                outcome.duplicate_indexes.append(i)
                continue
            first[mid] = i
        candidates.append(i)
    # held from reading the markers to setting them: another request sharing a message waits
    holds = [keys.message_hold(mid) for mid in first]
    async with held(store, holds, DEFAULT_DEADLINE + HOLD_MARGIN):
        marked = [keys.batch(keys.meta_tag, MESSAGE_MARK + mid) for mid in first]
        if marked:
            with wrapped_errors("reading the markers of messages"):
                seen = await store.client.mget(marked)
            old = {first[mid] for mid, hit in zip(first, seen, strict=True) if hit is not None}
            outcome.duplicate_indexes += sorted(old)
            candidates = [i for i in candidates if i not in old]
        outcome.duplicates = len(outcome.duplicate_indexes)
        with_id = [i for i in candidates if messages[i][0] is not None]
        if with_id:
            ids = [messages[i][0] or "" for i in with_id]
            batch = batch_id_of(ids)
            refused = await _record(stats, messages, with_id, batch, field_of, outcome)
            # a rejected message is not marked: sent again, it is rejected again, with its
            # reason
            marks = [MESSAGE_MARK + mid for at, mid in enumerate(ids) if at not in refused]
            if marks and marks != [batch]:
                await mark(store, [keys.batch(keys.meta_tag, m) for m in marks], ttl)
    without = [i for i in candidates if messages[i][0] is None]
    if without:  # nothing tells such a message from a new one: recorded each time it comes
        await _record(stats, messages, without, None, field_of, outcome)
    outcome.rejected.sort(key=lambda r: r.index)
    return outcome


async def _record(
    stats: AsyncStats,
    messages: Sequence[tuple[str | None, dict[str, Any] | None]],
    rows: list[int],
    batch_id: str | None,
    field_of: Callable[[int, str], str | None],
    outcome: Outcome,
) -> set[int]:
    """Record the messages at `rows` as one batch; add to `outcome`; the positions in `rows`
    of those bitstat rejected."""
    events = [messages[i][1] or {} for i in rows]
    result = await stats.track_many(events, batch_id=batch_id)
    outcome.recorded += result.recorded
    for at, reason in result.rejected:
        i = rows[at]
        outcome.rejected.append(Rejection(i, messages[i][0], field_of(i, reason), reason))
    return {at for at, _ in result.rejected}


@contextlib.asynccontextmanager
async def held(store: AsyncStore, holds: list[str], seconds: float) -> AsyncIterator[None]:
    """Hold the keys `holds` (scripts/holds.lua: all of them or none) while the block runs,
    waiting up to `HOLD_WAIT` seconds for other requests' holds to end (then a 503 the SDK
    answers by sending again); a hold its holder never releases ends after `seconds`."""
    if not holds:
        yield
        return
    script = lua_script("holds.lua")
    token = secrets.token_hex(8)
    give_up = time.monotonic() + HOLD_WAIT
    pause = 0.002
    while True:
        with wrapped_errors("holding the messages' ids"):
            got = await store.client.eval(
                script.source, len(holds), *holds, "hold", token, int(seconds * 1000)
            )
        if got == 1:
            break
        if time.monotonic() > give_up:
            raise IngestError(
                503,
                "busy",
                "another request is recording some of these messages; send them again",
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, 0.1)
    try:
        yield
    finally:
        try:
            await _release(store, holds, token)
        except (ConnectionError, ServerError) as exc:
            # (kept by the server's append-only file, they would hold their messages for the
            # whole `seconds` after a short outage: released as soon as it answers again)
            log.warning("%s; tried again in the background", exc)
            task = asyncio.create_task(_release_later(store, holds, token, seconds))
            _RELEASING.add(task)
            task.add_done_callback(_RELEASING.discard)


_RELEASING: set[asyncio.Task[None]] = set()  # (a task nothing refers to may be collected)


async def _release(store: AsyncStore, holds: list[str], token: str) -> None:
    with wrapped_errors("releasing the messages' ids"):
        script = lua_script("holds.lua")
        await store.client.eval(script.source, len(holds), *holds, "release", token)


async def _release_later(store: AsyncStore, holds: list[str], token: str, seconds: float) -> None:
    """`_release`, tried again until the server answers or the holds have ended anyway."""
    give_up = time.monotonic() + seconds
    pause = 0.25
    while time.monotonic() < give_up:
        await asyncio.sleep(pause)
        try:
            await _release(store, holds, token)
            return
        except (ConnectionError, ServerError):
            pause = min(pause * 2, 5.0)
    log.warning("the holds of %d message ids ended on their own", len(holds))


async def mark(store: AsyncStore, markers: list[str], ttl: int) -> None:
    """Set the markers of recorded messages (one slot: the namespace's), for `ttl` seconds."""
    with wrapped_errors("marking the messages recorded"):
        pipe = store.client.pipeline(transaction=False)
        for marker in markers:
            pipe.set(marker, b"1", ex=ttl)
        await pipe.execute()


async def text_id_stats(namespaces: Namespaces, name: str, checked: set[str]) -> AsyncStats:
    """The namespace's stats for SDK messages, whose ids are text (UUIDs, e-mails): a namespace
    that has no stored schema gets `Schema(ids="map")` before its first SDK message. One with a
    schema keeps it (with ids="int", text ids are rejected, and the reason says so). Read
    again after that step: another process (`serve --workers`) may have stored the schema
    meanwhile, and this one must not record under the default it saw before."""
    stats = await namespaces.get(name)
    if name in checked:
        return stats
    if await namespaces.store.call(Transport.get, Keys(name).schema) is None:
        # SchemaError: events recorded with integer ids and no stored schema keep ids="int"
        with contextlib.suppress(SchemaError):
            await stats.configure(Schema(ids="map"))
    checked.add(name)
    return await namespaces.get(name)
