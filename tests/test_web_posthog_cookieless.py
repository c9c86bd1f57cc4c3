"""posthog-js's cookieless mode sent to `bitstat serve`: every event says `distinct_id`
`$posthog_cookieless`, and the server counts it under an id of the visitor's day, a keyed hash
of a daily salt, the namespace, the client's IP, the site's host and the user agent (as
PostHog's server does). Two visitors are two uniques (they were one), a visitor is one id a
day and another the next, two server processes agree, the IP and user agent are not recorded.
The requests are built as posthog-js 1.449 sends them (gzip-js, its properties); the client's
IP comes from X-Forwarded-For, which the test server trusts from loopback as uvicorn does.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import pytest

import bitstat
import servers
from bitstat.web import ServerConfig
from webserver import running

KEY = "phc_project"
SENTINEL = "$posthog_cookieless"
CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/140.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:142.0) Gecko/20100101 Firefox/142.0"
TODAY = datetime.now(UTC).date()
RULES: dict[str, Any] = {"count": ["$raw_user_agent", "$ip", "$host", "$browser", "plan"]}


def noon(day: date) -> str:
    return datetime.combine(day, time(12), UTC).isoformat()


def js_event(name: str = "$pageview", when: str | None = None, **props: Any) -> dict[str, Any]:
    """An event as posthog-js builds it in cookieless mode (the properties it always sends,
    the sentinel as distinct_id, $device_id null, no $session_id)."""
    return {
        "uuid": str(uuid.uuid4()),
        "event": name,
        "properties": {
            "$os": "Mac OS X",
            "$browser": "Chrome",
            "$device_type": "Desktop",
            "$current_url": "https://shop.example.com/pricing",
            "$host": "shop.example.com",
            "$pathname": "/pricing",
            "$browser_language": "en-GB",
            "$timezone": "Europe/Amsterdam",
            "$lib": "web",
            "$lib_version": "1.449.2",
            "distinct_id": SENTINEL,
            "$device_id": None,
            "$cookieless_mode": True,
            "$process_person_profile": False,
            "token": KEY,
            **props,
        },
        "timestamp": when or noon(TODAY),
    }


def post(base: str, events: list[dict[str, Any]], ip: str, agent: str) -> httpx.Response:
    """posthog-js's request: the gzip of {api_key, batch, sent_at} as text/plain to /e/, from
    a browser at `ip` (told by a trusted proxy) whose User-Agent is `agent` (posthog-js sends
    it as $raw_user_agent too)."""
    for event in events:
        event["properties"].setdefault("$raw_user_agent", agent)
    body = {"api_key": KEY, "batch": events, "sent_at": datetime.now(UTC).isoformat()}
    now_ms = round(datetime.now(UTC).timestamp() * 1000)
    return httpx.post(
        f"{base}/e/?ip=0&_={now_ms}&ver=1.449.2",
        content=gzip.compress(json.dumps(body).encode()),
        headers={
            "Content-Type": "text/plain",
            "User-Agent": agent,
            "Origin": "https://shop.example.com",
            "X-Forwarded-For": ip,
        },
    )


def visit(base: str, ip: str, agent: str, *events: dict[str, Any]) -> dict[str, Any]:
    answer = post(base, list(events), ip, agent)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def actors(st: bitstat.Stats, event: str, day: date) -> set[Any]:
    return set(st.actors(event).day(day.year, day.month, day.day))


def config_for(url: str, namespace: str) -> ServerConfig:
    return ServerConfig(
        url=url,
        namespace="ph-default",
        write_token="token-w",
        write_keys={KEY: namespace},
        cors_origins=("https://shop.example.com",),  # the shop's pages post to the server
    )


@pytest.fixture
def server(embedded_url: str, namespace: str) -> Iterator[tuple[str, bitstat.Stats]]:
    st = bitstat.connect(
        embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map", **RULES)
    )
    with running(config_for(embedded_url, namespace)) as base:
        yield base, st
    st.close()


def test_two_visitors_are_two_uniques(server: tuple[str, bitstat.Stats]) -> None:
    """Before: every cookieless event was the actor `$posthog_cookieless`, so any number of
    visitors counted 1."""
    base, st = server
    visit(base, "203.0.113.7", CHROME, js_event(), js_event(), js_event("signup"))
    visit(base, "198.51.100.23", FIREFOX, js_event(), js_event())
    # one household: the same address, another browser
    visit(base, "203.0.113.7", FIREFOX, js_event())
    assert st.total("$pageview", TODAY) == 5
    assert st.unique("$pageview", TODAY) == 3
    assert st.unique("signup", TODAY) == 1
    ids = actors(st, "$pageview", TODAY)
    assert SENTINEL not in ids
    assert all(isinstance(i, str) and i.startswith("cookieless:") for i in ids)


def test_a_visitor_is_one_id_a_day(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    for n in range(4):  # four requests, as a browsing visitor sends them
        visit(base, "203.0.113.7", CHROME, js_event(), js_event("click", n=n))
    assert st.unique("$pageview", TODAY) == 1
    assert st.total("$pageview", TODAY) == 4
    (one,) = actors(st, "$pageview", TODAY)
    assert isinstance(one, str) and one.startswith("cookieless:")
    assert actors(st, "click", TODAY) == {one}


def test_the_next_day_is_another_id_unlinkable(server: tuple[str, bitstat.Stats]) -> None:
    """The same visitor yesterday and today: two ids, made with two salts, which nothing
    links (a retention question sees two visitors, as with PostHog's cookieless mode)."""
    base, st = server
    yesterday = TODAY - timedelta(days=1)
    visit(base, "203.0.113.7", CHROME, js_event(when=noon(yesterday)), js_event())
    before, after = actors(st, "$pageview", yesterday), actors(st, "$pageview", TODAY)
    assert len(before) == len(after) == 1
    assert before != after
    assert st.unique("$pageview", yesterday, TODAY) == 2


@pytest.mark.parametrize("backend", ["embedded_url", "cluster_url"])
def test_two_server_processes_agree_on_the_days_salt(
    request: pytest.FixtureRequest, backend: str, namespace: str
) -> None:
    """Two apps (as `serve --workers 2` runs them) against one server make the same id for one
    visitor: the salt is made once a day, in Redis. It expires when its day can no longer be
    recorded, and drop() deletes it."""
    url: str = request.getfixturevalue(backend)
    st = bitstat.connect(url, namespace=namespace, schema=bitstat.Schema(ids="map", **RULES))
    with running(config_for(url, namespace)) as one, running(config_for(url, namespace)) as two:
        for base in (one, two, one, two):
            visit(base, "203.0.113.7", CHROME, js_event())
        visit(two, "198.51.100.23", CHROME, js_event())
    assert st.total("$pageview", TODAY) == 5
    assert st.unique("$pageview", TODAY) == 2
    client = servers.client_for(url)
    try:
        key = f"{{{namespace}}}:cookieless:salt:{TODAY.isoformat()}"
        assert len(client.get(key) or b"") == 32  # random bytes
        ttl = client.pttl(key) / 1000
        # until the day after tomorrow begins (yesterday's events are taken until then)
        assert 86400 < ttl <= 2 * 86400 + 3600 + 60
        st.drop()
        assert client.exists(key) == 0
    finally:
        client.close()
        st.close()


def test_a_real_posthog_js_payload(server: tuple[str, bitstat.Stats]) -> None:
    """posthog-js 1.449 with cookieless_mode 'always': pageviews, an autocapture, a custom
    event, and an identify() the page called anyway, whose $anon_distinct_id is the sentinel.
    Nothing of the IP or raw user agent is kept; the identify links no visitor to the user."""
    base, st = server
    st.configure(bitstat.Schema(ids="map", **RULES))
    first = [
        js_event(),
        js_event("$autocapture", **{"$event_type": "click"}),
        js_event("purchase", plan="pro", **{"$ip": "203.0.113.7"}),
    ]
    answer = visit(base, "203.0.113.7", CHROME, *first)
    assert answer == {"status": 1, "recorded": 3, "duplicates": 0, "rejected": []}
    visit(base, "198.51.100.23", FIREFOX, js_event())
    identify = js_event("$identify", **{"$anon_distinct_id": SENTINEL, "distinct_id": "u-42"})
    visit(base, "192.0.2.55", CHROME, identify, js_event(**{"distinct_id": "u-42"}))
    # again, as a browser retries: nothing changes
    again = visit(base, "203.0.113.7", CHROME, *first)
    assert again["recorded"] == 0 and again["duplicates"] == 3
    assert st.unique("$pageview", TODAY) == 3  # two cookieless visitors and u-42
    assert st.unique("purchase", TODAY) == 1
    assert "u-42" in actors(st, "$pageview", TODAY)
    assert st.counts("$pageview", "$raw_user_agent", TODAY) == {}
    assert st.counts("purchase", "$ip", TODAY) == {}
    assert st.counts("$pageview", "$host", TODAY) == {"shop.example.com": 3}
    assert st.counts("$pageview", "$browser", TODAY) == {"Chrome": 3}
    assert st.counts("purchase", "plan", TODAY) == {"pro": 1}


def test_the_ids_are_what_the_server_took_as_the_clients_address(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """X-Forwarded-For counts only from a proxy the server trusts (uvicorn's
    FORWARDED_ALLOW_IPS, loopback unless set): from any other peer, the peer's address."""
    st = bitstat.connect(embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.1")  # not the test's 127.0.0.1
    with running(config_for(embedded_url, namespace)) as base:
        for ip in ("203.0.113.7", "198.51.100.23", "192.0.2.200"):
            visit(base, ip, CHROME, js_event())
    assert st.total("$pageview", TODAY) == 3
    assert st.unique("$pageview", TODAY) == 1  # one peer, one browser
    st.close()


def test_what_cookieless_mode_cannot_record_is_rejected_alone(
    server: tuple[str, bitstat.Stats],
) -> None:
    base, st = server
    old = TODAY - timedelta(days=3)
    answer = visit(
        base,
        "203.0.113.7",
        CHROME,
        js_event(when=noon(old)),  # its day's salt is gone
        js_event("$create_alias", alias="user-9"),  # PostHog drops it in this mode too
        js_event(),
    )
    assert answer["recorded"] == 1
    rejected = {r["index"]: r for r in answer["rejected"]}
    assert rejected[0]["field"] == "timestamp" and old.isoformat() in rejected[0]["reason"]
    assert rejected[1]["field"] == "event" and "cookieless" in rejected[1]["reason"]
    assert st.total("$pageview", old) == 0
    assert st.unique("$pageview", TODAY) == 1
