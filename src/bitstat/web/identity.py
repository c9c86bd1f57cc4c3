"""Identity and erasure over HTTP: `DELETE /v1/actors/{id}` (forget, with the write token),
and the links the SDK protocols carry (Segment `identify` with both ids and `alias`, whose
`POST /v1/alias` is also bitstat's own way to link; PostHog `$identify` and `$create_alias`),
applied after their batch is recorded. Semantics in docs/identity.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..aio import AsyncStats
from ..errors import QueryError
from .params import NAMESPACE, read

Guard = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]]], Awaitable[Response]]
Link = tuple[Any, Any]  # (anonymous id, user id)


def _id(value: Any) -> Any:
    """An id as the SDKs send it (text or an integer), else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return value


def segment_link(msg: Any, route: str | None = None) -> Link | None:
    """The link a Segment/RudderStack message makes: `alias` links `previousId` to `userId`;
    `identify` with both `anonymousId` and `userId` links the first to the second. `route`:
    the type a single-message route implies."""
    if not isinstance(msg, Mapping):
        return None
    kind = msg.get("type") or route
    user = _id(msg.get("userId"))
    anon = _id(msg.get("previousId")) if kind == "alias" else None
    if kind == "identify":
        anon = _id(msg.get("anonymousId"))
    if anon is None or user is None or str(anon) == str(user):
        return None
    return anon, user


def posthog_link(ev: Any) -> Link | None:
    """The link a PostHog event makes: `$identify` links `$anon_distinct_id` to `distinct_id`;
    `$create_alias` links its `alias` property to `distinct_id` (whose person it joins)."""
    if not isinstance(ev, Mapping):
        return None
    props = ev.get("properties")
    props = props if isinstance(props, Mapping) else {}
    user = _id(ev.get("distinct_id", props.get("distinct_id")))
    name = ev.get("event")
    anon = None
    if name == "$identify":
        anon = _id(props.get("$anon_distinct_id"))
    elif name == "$create_alias":
        anon = _id(props.get("alias"))
    if anon is None or user is None or str(anon) == str(user):
        return None
    return anon, user


def links(
    messages: Sequence[Any], link_of: Callable[[Any], Link | None], refused: Iterable[int]
) -> list[Link]:
    """The links of the messages not refused (rejected ones), in order. A duplicate's link is
    kept: applying a link again changes nothing."""
    skip = set(refused)
    found = (link_of(m) for i, m in enumerate(messages) if i not in skip)
    return [link for link in found if link is not None]


async def apply_links(stats: AsyncStats, found: Sequence[Link]) -> int:
    """Alias each link in order; a link whose id cannot be an actor of the namespace (text
    with ids="int": nothing can have been recorded under it) is skipped. How many applied."""
    applied = 0
    for anon, user in found:
        try:
            await stats.alias(anon, user)
        except QueryError:
            continue
        applied += 1
    return applied


def routes(
    stats_of: Callable[[str | None], Awaitable[AsyncStats]],
    token: bytes | None,
    check: Callable[[Request, bytes | None, str], None],
    guarded: Guard,
) -> list[Route]:
    """The erasure route, answered as app.py answers: `check` the write token, errors
    `guarded` into JSON."""

    async def forget(request: Request) -> Response:
        async def call() -> dict[str, Any]:
            check(request, token, "write")
            args = read((NAMESPACE,), request.query_params.multi_items())
            stats = await stats_of(args["namespace"])
            done = await stats.forget(request.path_params["actor"])
            return {
                "actor": done.actor,
                "found": done.found,
                "ids": done.ids,
                "removed": done.removed,
                "scanned": done.scanned,
                "kept": done.kept,
            }

        return await guarded({}, call)

    return [
        Route("/v1/actors/{actor:path}", forget, methods=["DELETE"], name="forget"),
    ]
