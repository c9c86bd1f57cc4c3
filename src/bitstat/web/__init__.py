"""The HTTP API and the dashboard of `bitstat serve` (Starlette on the asyncio API).

Needs the `web` extra: `pip install 'bitstat[web]'`.
"""

from __future__ import annotations

from .app import create_app
from .config import ServerConfig, UnsafeBind, check_bind, is_loopback

__all__ = ["ServerConfig", "UnsafeBind", "check_bind", "create_app", "is_loopback"]
