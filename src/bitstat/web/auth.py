"""The bearer token of a request, compared with the server's in constant time; the write keys a
large body's text names, found before it is parsed; and the access log's lines, with the write
keys an SDK sends in the query hidden."""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Iterable, Iterator
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


# A JSON member `"NAME": "TEXT"`, TEXT with its escapes, at any depth; possessive, so that a
# string that never ends is read once, not once per way to give back what was read (the worst
# 10 MB texts tried took 0.16 s). A string found is only a candidate, compared with the
# server's keys: what it admits is a text that holds a valid key.
_MEMBER = rb'"(?:%s)"\s*:\s*"([^"\\]*+(?:\\.[^"\\]*+)*+)"'
KEYS_LOOKED_AT = 100  # distinct candidates compared with the keys: the first, the last


def keys_in_text(text: bytes, fields: Iterable[str], longest: int) -> Iterator[str]:
    """The distinct strings that the JSON text `text` gives to a member named one of `fields`:
    the first KEYS_LOOKED_AT of them in order, then the last KEYS_LOOKED_AT (posthog-python
    puts its `api_key` after the batch, whose events may name as many `token`s as they like);
    every one of `longest` bytes or fewer, and some longer. Found by a regular expression,
    without parsing the text and in time linear in it, so that a large body's key is checked
    before the body is parsed (which takes about ten times its size in memory)."""
    names = b"|".join(re.escape(name.encode()) for name in fields)
    seen: set[bytes] = set()
    last: dict[bytes, None] = {}  # past the first ones: the latest, in order
    for match in re.finditer(_MEMBER % names, text):
        value = match[1]
        if len(value) > 6 * longest or value in seen:  # a byte is at most `\u00XX` in JSON
            continue
        if len(seen) < KEYS_LOOKED_AT:
            seen.add(value)
            yield from _decoded(value)
            continue
        last.pop(value, None)
        last[value] = None
        if len(last) > KEYS_LOOKED_AT:
            del last[next(iter(last))]
    for value in last:
        yield from _decoded(value)


def _decoded(value: bytes) -> Iterator[str]:
    """The JSON string body `value` as the parser reads it (escapes such as \\/ undone);
    nothing if it is not valid."""
    try:
        decoded = json.loads(b'"' + value + b'"') if b"\\" in value else value.decode()
    except (ValueError, UnicodeDecodeError):
        return
    yield decoded


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
