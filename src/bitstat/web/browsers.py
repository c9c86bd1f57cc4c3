"""What the server tells browsers, and what it refuses from them.

- CORS is off unless origins are listed (`ServerConfig.cors_origins`, `$BITSTAT_CORS_ORIGINS`):
  pages of a listed origin may call the API (posthog-js or analytics.js on a shop's own site),
  so their preflights are answered and every answer names them in
  `Access-Control-Allow-Origin`. Cookies are never asked for: the API's credentials are its
  tokens and write keys, which a page sends itself.
- A write (any method but GET, HEAD and OPTIONS) from a page of another origin, neither listed
  nor the server's own, is refused with a 403 before its body is read. Browsers name the
  page's origin in `Origin` on such requests, so a site the user visits cannot record events
  in, or erase actors from, a server that answers without a token on loopback. Clients that
  are not browsers (the SDKs, curl) send no `Origin` and are not concerned.
- Every answer says `X-Content-Type-Options: nosniff` and may not be framed by other sites;
  an HTML page (the dashboard) may run only the server's own scripts.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOW_METHODS = "GET, HEAD, POST, DELETE"
# X-Retry-Count: analytics.js (analytics-next) sends it when it sends an event again;
# AnonymousId: rudder-sdk-js sends it with every message. A preflight that did not allow them
# would make the browser drop those requests
ALLOW_HEADERS = (
    "Authorization, Content-Type, Content-Encoding, Idempotency-Key, X-Bitstat-Namespace,"
    " X-Retry-Count, AnonymousId"
)
PREFLIGHT_MAX_AGE = "600"
DEFAULT_PORTS = {"http": 80, "https": 443}
# the dashboard: its own scripts and styles (its heat map colours cells with style
# attributes), its own API, the favicon's data: URL; never framed
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)


def _host_port(netloc: str, default: int | None) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + netloc)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, default if port is None else port


def same_origin(origin: str, host: str | None) -> bool:
    """Whether `origin` (a page's `Origin`) is this server, as the request's `Host` names it."""
    if not host:
        return False
    scheme, _, netloc = origin.partition("://")
    default = DEFAULT_PORTS.get(scheme.lower())
    if default is None:
        return False
    page = _host_port(netloc, default)
    return page is not None and page == _host_port(host, default)


class Browsers:
    """ASGI middleware: CORS for the listed origins, no writes from pages of other origins,
    and the headers every answer carries."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def listed(self, origin: str | None) -> bool:
        return origin is not None and (self.any_origin or origin.lower() in self.origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        method = scope["method"]
        listed = self.listed(origin)
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        if origin is not None and preflight:
            if listed:
                await self._answer(send, 204, None, self._preflight(origin))
            else:
                await self._refuse(send, origin, "asked to call")
            return
        if (
            origin is not None
            and method not in SAFE_METHODS
            and not listed
            and not same_origin(origin, headers.get("host"))
        ):
            await self._refuse(send, origin, "may not write to")
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                _common(out)
                if listed and origin is not None:
                    out["Access-Control-Allow-Origin"] = origin
                    out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, sending)

    @staticmethod
    def _preflight(origin: str) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            "Vary": "Origin",
        }

    async def _refuse(self, send: Send, origin: str, what: str) -> None:
        message = (
            f"a page of {origin} {what} this server: its origin is not listed"
            " (bitstat serve --cors-origin ORIGIN, or $BITSTAT_CORS_ORIGINS)"
        )
        await self._answer(send, 403, {"error": message}, {"Vary": "Origin"})

    @staticmethod
    async def _answer(
        send: Send, status: int, body: dict[str, str] | None, headers: dict[str, str]
    ) -> None:
        content = json.dumps(body).encode() if body is not None else b""
        start: Message = {"type": "http.response.start", "status": status, "headers": []}
        out = MutableHeaders(scope=start)
        for name, value in headers.items():
            out[name] = value
        if body is not None:
            out["Content-Type"] = "application/json"
        out["Content-Length"] = str(len(content))
        _common(out)
        await send(start)
        await send({"type": "http.response.body", "body": content})


def _common(headers: MutableHeaders) -> None:
    """The headers of every answer; an HTML page's policy besides."""
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    if headers.get("content-type", "").startswith("text/html"):
        headers.setdefault("Content-Security-Policy", PAGE_POLICY)
