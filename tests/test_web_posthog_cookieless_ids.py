"""The visitor ids of posthog-js's cookieless mode (bitstat/web/cookieless.py), without a
server: which days are taken, how long a day's salt lives, and that an id changes with each of
its parts (the salt, the day, the namespace, the IP, the host, the user agent, the extra).
tests/test_web_posthog_cookieless.py sends the events to a server."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bitstat.web import cookieless as ck
from bitstat.web.ingest import Invalid

CHROME = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Chrome/140.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:142.0) Gecko/20100101 Firefox/142.0"


def test_the_days_taken_and_the_salts_life() -> None:
    """Days are the schema's (its time zone): yesterday, today and tomorrow of the day the
    event is received are taken; a salt lives until the day after next begins, and an hour."""
    amsterdam = ZoneInfo("Europe/Amsterdam")
    received = datetime(2026, 3, 10, 23, 30, tzinfo=UTC).timestamp()  # 00:30 on the 11th there
    for day in (date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12)):
        ck.check_day(day, received, amsterdam)
    for day in (date(2026, 3, 9), date(2026, 3, 13)):
        with pytest.raises(Invalid) as refused:
            ck.check_day(day, received, amsterdam)
        assert refused.value.field == "timestamp"
    expires = ck.salt_expiry(date(2026, 3, 11), amsterdam)
    assert expires == datetime(2026, 3, 13, 1, tzinfo=amsterdam)


def test_the_id_changes_with_each_of_its_parts() -> None:
    salt, day = bytes(range(32)), date(2026, 3, 11)
    who = ck.Visitor("203.0.113.7", "shop.example.com", CHROME, "")
    base = ck.actor_id(salt, day, "shop", who)
    assert base.startswith("cookieless:") and len(base) == len("cookieless:") + 22
    assert ck.actor_id(salt, day, "shop", who) == base
    others = {
        ck.actor_id(bytes(32), day, "shop", who),
        ck.actor_id(salt, day + timedelta(days=1), "shop", who),
        ck.actor_id(salt, day, "blog", who),
        ck.actor_id(salt, day, "shop", ck.Visitor("203.0.113.8", who.host, CHROME, "")),
        ck.actor_id(salt, day, "shop", ck.Visitor(who.ip, "blog.example.com", CHROME, "")),
        ck.actor_id(salt, day, "shop", ck.Visitor(who.ip, who.host, FIREFOX, "")),
        ck.actor_id(salt, day, "shop", ck.Visitor(who.ip, who.host, CHROME, "tab-2")),
    }
    assert len(others) == 7 and base not in others
    # the day's one session, a UUIDv7 of the day's start in the schema's time zone
    tz = ZoneInfo("Europe/Amsterdam")
    session = uuid.UUID(ck.session_id(salt, day, "shop", who, tz))
    assert session.version == 7 and session.variant == uuid.RFC_4122
    start = datetime.combine(day, time(), tz).timestamp()
    assert session.int >> 80 == int(start * 1000)
