"""`POST /v1/track` serves two protocols: bitstat's own events and Segment's track message.

The route looks at the request before either handler reads it: the Authorization scheme
(Bearer is bitstat's, Basic is Segment's), a compressed body (Segment's), and else the body's
first bytes: an array is bitstat's; an object is Segment's when it names `userId`,
`anonymousId` or `writeKey` (segment.MARKS). What was read is handed on, so the chosen handler
reads the whole body as if nobody had looked.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PEEK = 32 * 1024 + 1  # enough to hold any Segment message (32 KB), and one byte to tell more


class EitherTrack:
    """An ASGI app that hands each request to `bitstat` or `segment`."""

    def __init__(
        self, bitstat: ASGIApp, segment: ASGIApp, is_segment: Callable[[Request, bytes], bool]
    ) -> None:
        self.bitstat = bitstat
        self.segment = segment
        self.is_segment = is_segment

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
        if scheme == "bearer":
            return await self.bitstat(scope, receive, send)
        if scheme == "basic":
            return await self.segment(scope, receive, send)
        seen: list[Message] = []
        size = 0
        while size < PEEK:
            message = await receive()
            seen.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
            if _told(seen):
                break
        head = b"".join(m.get("body", b"") for m in seen if m["type"] == "http.request")
        target = self.segment if self.is_segment(request, head) else self.bitstat

        async def replay() -> Message:
            return seen.pop(0) if seen else await receive()

        await target(scope, replay, send)


def _told(seen: list[Message]) -> bool:
    """Whether the body read so far starts with something other than an object (an array:
    bitstat's batch), so that nothing more need be read to choose."""
    for message in seen:
        start: bytes = message.get("body", b"").lstrip()[:1]
        if start:
            return start != b"{"
    return False
