"""How a server is set up: where the data is, its tokens and limits, the browser origins it
answers, and where it may listen."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import BitstatError

DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_MAX_EVENTS = 100_000  # events in one request, on every ingest route
READ_TOKEN_ENV = "BITSTAT_READ_TOKEN"
WRITE_TOKEN_ENV = "BITSTAT_WRITE_TOKEN"
WRITE_KEYS_ENV = "BITSTAT_WRITE_KEYS"  # "KEY=NAMESPACE,KEY=NAMESPACE"
WRITE_KEYS_FILE_ENV = "BITSTAT_WRITE_KEYS_FILE"  # a file of "KEY NAMESPACE" lines
CORS_ORIGINS_ENV = "BITSTAT_CORS_ORIGINS"  # "https://shop.example.com https://app.example.com"
# what an Authorization header can carry and this server compare: visible ASCII, no space
_TOKEN = re.compile(r"[!-~]+")


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
    max_events: int = DEFAULT_MAX_EVENTS
    # the browser origins (scheme://host[:port], or "*") whose pages may call the API: CORS
    # headers for them, and no writes from pages of any other; None: $BITSTAT_CORS_ORIGINS
    cors_origins: tuple[str, ...] | None = None
    # `serve --workers N`: the directory where each process publishes its /metrics figures,
    # so the one a scrape reaches answers for all; None: one process answers for itself
    metrics_dir: Path | None = None

    def __post_init__(self) -> None:
        for side in ("read", "write"):
            token = getattr(self, f"{side}_token")
            if token == "":
                raise BitstatError(
                    f"the {side} token is empty, which guards nothing: leave it unset"
                )
            if token is not None and not _TOKEN.fullmatch(token):
                raise BitstatError(
                    f"the {side} token holds a space or a character that is not visible ASCII;"
                    " clients send it in an Authorization header, where only visible ASCII is"
                    " the same on both sides"
                )
        if self.cors_origins is not None:
            object.__setattr__(self, "cors_origins", cors_origins(self.cors_origins))

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


def cors_origins(given: Iterable[str] | str) -> tuple[str, ...]:
    """Browser origins, checked and spelled as browsers send them in `Origin` (lower case, no
    default port, no path): `https://shop.example.com`, `http://localhost:3000`, or `*`.
    Text is split on commas and white space."""
    texts = [given] if isinstance(given, str) else list(given)
    items = [item for text in texts for item in text.replace(",", " ").split()]
    found: list[str] = []
    for item in items:
        origin = item.strip().rstrip("/").lower()
        if origin != "*":
            parts = urlsplit(origin)
            try:
                port = parts.port
            except ValueError:
                port = -1
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path
                or parts.query
                or parts.fragment
                or parts.username is not None
                or port == -1
            ):
                raise BitstatError(
                    f"CORS origin {item!r}: expected scheme://host[:port] such as"
                    " https://shop.example.com, or * for any origin"
                )
            default = {"http": 80, "https": 443}[parts.scheme]
            origin = f"{parts.scheme}://{parts.netloc}"
            if port == default:
                origin = origin.rsplit(":", 1)[0]
        if origin not in found:
            found.append(origin)
    return tuple(found)


def cors_origins_from_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The origins of `$BITSTAT_CORS_ORIGINS` (space or comma separated); none when unset."""
    env = os.environ if env is None else env
    return cors_origins(env.get(CORS_ORIGINS_ENV, ""))


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
