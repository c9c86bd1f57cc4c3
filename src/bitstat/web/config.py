"""How a server is set up: where the data is, its tokens and limits, and where it may listen."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import BitstatError

DEFAULT_MAX_BODY = 10 * 1024 * 1024
READ_TOKEN_ENV = "BITSTAT_READ_TOKEN"
WRITE_TOKEN_ENV = "BITSTAT_WRITE_TOKEN"
WRITE_KEYS_ENV = "BITSTAT_WRITE_KEYS"  # "KEY=NAMESPACE,KEY=NAMESPACE"
WRITE_KEYS_FILE_ENV = "BITSTAT_WRITE_KEYS_FILE"  # a file of "KEY NAMESPACE" lines


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
    # the SDK protocols' write keys, each naming the namespace it writes to; None: read them
    # from $BITSTAT_WRITE_KEYS / $BITSTAT_WRITE_KEYS_FILE when the app is created
    write_keys: Mapping[str, str] | None = None

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


def _key_pairs(text: str, where: str, line_sep: bool) -> dict[str, str]:
    pairs: dict[str, str] = {}
    items = text.splitlines() if line_sep else text.split(",")
    for n, item in enumerate(items, 1):
        item = item.partition("#")[0].strip() if line_sep else item.strip()
        if not item:
            continue
        parts = item.split() if line_sep else [p.strip() for p in item.split("=", 1)]
        at = f"{where}, line {n}" if line_sep else f"{where}, item {n}"
        if len(parts) != 2 or not all(parts):
            shape = "KEY NAMESPACE" if line_sep else "KEY=NAMESPACE"
            raise BitstatError(f"{at}: expected {shape}, got {item!r}")
        key, namespace = parts
        if pairs.get(key, namespace) != namespace:
            raise BitstatError(f"{at}: the key {key[:4]}... names two namespaces")
        pairs[key] = namespace
    return pairs


def write_keys_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The write keys of the SDK protocols: `$BITSTAT_WRITE_KEYS` ("KEY=NAMESPACE,...") and the
    lines "KEY NAMESPACE" of the file named by `$BITSTAT_WRITE_KEYS_FILE` ('#' starts a
    comment). A key may appear in both when it names the same namespace."""
    env = os.environ if env is None else env
    keys = _key_pairs(env.get(WRITE_KEYS_ENV, ""), f"${WRITE_KEYS_ENV}", line_sep=False)
    path = env.get(WRITE_KEYS_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise BitstatError(f"${WRITE_KEYS_FILE_ENV}: cannot read {path}: {exc}") from None
        for key, namespace in _key_pairs(text, path, line_sep=True).items():
            if keys.get(key, namespace) != namespace:
                raise BitstatError(f"{path}: the key {key[:4]}... names two namespaces")
            keys[key] = namespace
    return keys


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
