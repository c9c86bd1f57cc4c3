"""The HTTP API and the dashboard of `bitstat serve` (Starlette on the asyncio API).

Starlette and uvicorn are dependencies of bitstat; the `web` extra only adds uvicorn's faster
event loop and HTTP parser (`pip install 'bitstat[web]'`: uvloop, httptools).
"""

from __future__ import annotations

from .app import create_app
from .config import ServerConfig, UnsafeBind, check_bind, is_loopback

__all__ = ["ServerConfig", "UnsafeBind", "check_bind", "create_app", "is_loopback"]
