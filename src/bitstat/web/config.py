"""How a server is set up: where the data is, its tokens and limits, and where it may listen."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BitstatError

DEFAULT_MAX_BODY = 10 * 1024 * 1024
READ_TOKEN_ENV = "BITSTAT_READ_TOKEN"
WRITE_TOKEN_ENV = "BITSTAT_WRITE_TOKEN"


class UnsafeBind(BitstatError):
    """A server asked to listen beyond loopback without tokens to guard it."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything `create_app` needs. Tokens: None means that side is open (loopback only)."""

    url: str | None = None
    namespace: str = "bitstat"
    data_dir: Path | None = None
    read_token: str | None = None
    write_token: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    refresh_seconds: int = 10  # how often the dashboard reloads its charts (0: never)

    @classmethod
    def from_env(cls, **given: object) -> ServerConfig:
        """A config with the tokens taken from $BITSTAT_READ_TOKEN / $BITSTAT_WRITE_TOKEN
        unless given."""
        given.setdefault("read_token", os.environ.get(READ_TOKEN_ENV) or None)
        given.setdefault("write_token", os.environ.get(WRITE_TOKEN_ENV) or None)
        return cls(**given)  # type: ignore[arg-type]

    @property
    def guarded(self) -> bool:
        return self.read_token is not None and self.write_token is not None


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name to bind) only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def check_bind(host: str, config: ServerConfig) -> None:
    """Refuse to listen beyond loopback unless both the read and the write token are set."""
    if is_loopback(host) or config.guarded:
        return
    missing = [
        env
        for env, token in (
            (READ_TOKEN_ENV, config.read_token),
            (WRITE_TOKEN_ENV, config.write_token),
        )
        if token is None
    ]
    raise UnsafeBind(
        f"refusing to listen on {host}: without tokens the API is open to anyone who can reach"
        f" it. Set {' and '.join(missing)} (or --read-token/--write-token), or listen on"
        " 127.0.0.1 behind a reverse proxy."
    )
