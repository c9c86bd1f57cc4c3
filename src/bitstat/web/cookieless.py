"""posthog-js's cookieless mode: an event whose `distinct_id` is `$posthog_cookieless` (the
browser keeps no id) is counted under an id made on the server for the visitor's day, as
PostHog's "cookieless server hash mode" does.

The id is a keyed hash (HMAC-SHA256) of the day, the namespace, the client's IP, the site's
host and the user agent, under a salt of random bytes made once for that day and kept in Redis
(`{NS}:cookieless:salt:DAY`, SET NX: every process of `serve --workers` uses the same) until
its day can no longer be recorded; then it expires, and no one can tell again which IP and user
agent made that day's ids. Nothing of the IP or user agent is recorded. docs/ingest.md has the
privacy properties and limits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from starlette.requests import Request

from ..aio import AsyncStore
from ..keys import Keys
from ..store import wrapped_errors
from .ingest import Invalid

SENTINEL = "$posthog_cookieless"  # posthog-js's distinct_id when it may keep none
FLAG = "$cookieless_mode"  # true on every event posthog-js sends in that mode
EXTRA = "$cookieless_extra"  # the site's own addition to the hash (PostHog: 100 characters)
PREFIX = "cookieless:"  # every id made here begins with it
SALT_BYTES = 32
# the days (in the schema's time zone) whose events are taken, around the day received: a
# browser's retries and the midnight of its time zone; a salt lives until its last such day
# ends, and this much longer (a request that began just before)
DAYS_BEFORE = 1
DAYS_AFTER = 1
SALT_MARGIN = timedelta(hours=1)
# properties PostHog strips from a cookieless event, and those within $set / $set_once
PRIVATE = ("$ip", "$raw_user_agent", EXTRA)
PRIVATE_IN = {"$set": ("$raw_user_agent",), "$set_once": ("$initial_raw_user_agent",)}


@dataclass(frozen=True)
class Visitor:
    """What a cookieless event's id is made of besides its day's salt."""

    ip: str
    host: str
    user_agent: str
    extra: str


def is_cookieless(ev: Mapping[str, Any], props: Mapping[str, Any]) -> bool:
    """Whether posthog-js sent the event in cookieless mode: the sentinel as its distinct_id,
    or the mode's flag (an identified visitor's events still carry it)."""
    return ev.get("distinct_id", props.get("distinct_id")) == SENTINEL or props.get(FLAG) is True


def scrubbed(props: Mapping[str, Any]) -> dict[str, Any]:
    """The properties without those that only made the id (the raw user agent, an `$ip`, the
    site's hash extra), as PostHog drops them from a cookieless event."""
    kept = {k: v for k, v in props.items() if k not in PRIVATE}
    for name, private in PRIVATE_IN.items():
        inner = kept.get(name)
        if isinstance(inner, Mapping):
            kept[name] = {k: v for k, v in inner.items() if k not in private}
    return kept


def client_ip(request: Request) -> str:
    """The client's address as the server took it: the connection's peer, or the address a
    trusted proxy put in X-Forwarded-For (uvicorn's FORWARDED_ALLOW_IPS: loopback unless set)."""
    return request.client.host if request.client is not None else ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def visitor(props: Mapping[str, Any], request: Request) -> Visitor:
    """The visitor of a cookieless event: the client's IP, the site's host (posthog-js's
    `$host`, else the page's origin), the user agent (posthog-js's `$raw_user_agent`, else the
    request's), and the site's `$cookieless_extra`."""
    host = _text(props.get("$host")).strip().lower()
    if not host:
        host = (urlsplit(request.headers.get("origin", "")).netloc or "").lower()
    agent = _text(props.get("$raw_user_agent")) or request.headers.get("user-agent", "")
    extra = props.get(EXTRA)
    extra_text = extra if isinstance(extra, str) else "" if extra is None else json.dumps(extra)
    return Visitor(client_ip(request), host, agent, extra_text[:100])


def day_of(when: float, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(when, tz).date()


def check_day(day: date, received: float, tz: ZoneInfo) -> None:
    """A cookieless event's day must be near the day it was received: the salts of other days
    are gone (or not yet made), so that no id can be made for them later. Invalid otherwise."""
    today = day_of(received, tz)
    first, last = today - timedelta(days=DAYS_BEFORE), today + timedelta(days=DAYS_AFTER)
    if not first <= day <= last:
        raise Invalid(
            "timestamp",
            f"a cookieless event (distinct_id {SENTINEL}) is of {day.isoformat()}: its visitor"
            f" is counted by an id made with a salt of its day, kept only for events of"
            f" {first.isoformat()} to {last.isoformat()} (received {today.isoformat()})",
        )


def salt_key(namespace: str, day: date) -> str:
    return Keys(namespace).cookieless_salt(day.isoformat())


def salt_expiry(day: date, tz: ZoneInfo) -> datetime:
    """When `day`'s salt expires: after the last day on which an event of `day` is taken."""
    last = day + timedelta(days=DAYS_BEFORE + 1)  # the first day received that refuses it
    return datetime.combine(last, time(), tz) + SALT_MARGIN


async def salts(
    store: AsyncStore, namespace: str, days: Iterable[date], tz: ZoneInfo, now: float
) -> dict[date, bytes]:
    """The salt of each day: the one in Redis, or new random bytes stored there if none is
    (SET NX, then read back: of two processes making one at once, both use the one stored)."""
    wanted = sorted(set(days))
    if not wanted:
        return {}
    pipe = store.client.pipeline(transaction=False)
    for day in wanted:
        ttl_ms = max(1000, int((salt_expiry(day, tz).timestamp() - now) * 1000))
        pipe.set(salt_key(namespace, day), secrets.token_bytes(SALT_BYTES), nx=True, px=ttl_ms)
        pipe.get(salt_key(namespace, day))
    with wrapped_errors("reading the day's salt of cookieless events"):
        replies = await pipe.execute()
    found: dict[date, bytes] = {}
    for day, salt in zip(wanted, replies[1::2], strict=True):
        found[day] = salt if isinstance(salt, bytes) else str(salt).encode("latin-1")
    return found


def _digest(salt: bytes, day: date, namespace: str, who: Visitor) -> bytes:
    parts = [day.isoformat(), namespace, who.ip, who.host, who.user_agent, who.extra]
    return hmac.new(salt, json.dumps(parts).encode(), hashlib.sha256).digest()


def actor_id(salt: bytes, day: date, namespace: str, who: Visitor) -> str:
    """The visitor's id on `day`: `cookieless:` and 22 characters (128 bits of the hash)."""
    digest = _digest(salt, day, namespace, who)[:16]
    return PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def session_id(salt: bytes, day: date, namespace: str, who: Visitor, tz: ZoneInfo) -> str:
    """One session a visitor a day, as PostHog's stateless mode makes it: a UUIDv7 whose time
    is the start of the day and whose random bits are the hash's."""
    start_ms = int(datetime.combine(day, time(), tz).timestamp() * 1000)
    tail = int.from_bytes(_digest(salt, day, namespace, who)[16:26])  # 80 bits, 74 used
    value = (start_ms & (1 << 48) - 1) << 80
    value |= 0x7 << 76 | (tail >> 62 & 0xFFF) << 64  # version 7, 12 bits
    value |= 0b10 << 62 | (tail & (1 << 62) - 1)  # the variant, 62 bits
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
