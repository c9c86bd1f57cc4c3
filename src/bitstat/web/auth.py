"""The bearer token of a request, compared with the server's in constant time; and the access
log's lines, with the write keys an SDK sends in the query hidden."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import unquote_plus

from starlette.requests import Request


def bearer(request: Request) -> str | None:
    """The token of `Authorization: Bearer TOKEN`, None without one."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def bearer_is(request: Request, token: bytes) -> bool:
    """Whether the request carries `token` as its bearer token. The comparison takes the same
    time whichever byte differs, so timing the answers cannot reveal the token."""
    given = bearer(request)
    return given is not None and hmac.compare_digest(given.encode(), token)


# the query parameters that carry a write key: PostHog's `token` (and `api_key`, which its
# older clients send), RudderStack's beacon `writeKey`
KEY_PARAMS = frozenset({"token", "api_key", "writeKey"})


def key_hidden(target: str) -> str:
    """A request's path and query as the access log shows it, each write key's value `***`
    (its name is matched as the server reads it, percent-escapes decoded)."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, equals, _ = part.partition("=")
        if equals and unquote_plus(name) in KEY_PARAMS:
            parts[i] = f"{name}=***"
    return f"{path}?{'&'.join(parts)}"


class HiddenKeys(logging.Filter):
    """On uvicorn's access logger: the write keys of a line's query hidden (`key_hidden`), so a
    log, which is read and kept by more people than the keys are, never carries one."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 2 and isinstance(args[2], str):
            record.args = (*args[:2], key_hidden(args[2]), *args[3:])
        return True


HIDDEN_KEYS = HiddenKeys()  # (one filter: adding it again, in another app, adds nothing)
