"""The bearer token of a request, compared with the server's in constant time."""

from __future__ import annotations

import hmac

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
