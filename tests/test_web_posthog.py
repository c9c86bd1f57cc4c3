"""PostHog's capture API of `bitstat serve`: the real `posthog` SDK (legacy /batch/ and the newer
/i/v1/analytics/events, plain and gzip), and the JavaScript client's bodies sent by hand
(gzip-js, base64 forms, token in the properties). Answers are compared with the reference
model; a re-sent uuid counts once; a wrong key records nothing.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from posthog import Posthog

import bitstat
from bitstat.web import ServerConfig
from bitstat.web.posthog import event_time
from model import Model
from webserver import running

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RULES: dict[str, Any] = {
    "count": ["plan", "$current_url", "$set.plan"],
    "sum": ["amount"],
    "top": ["item"],
}
FIRST = datetime(2025, 11, 3, tzinfo=UTC)
EVENTS = ("purchase", "$pageview", "$identify", "$set", "$create_alias")


def calls(seed: int, n: int = 200) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for k in range(n):
        call: dict[str, Any] = {
            "kind": rnd.choice(["capture", "capture", "pageview", "identify", "set", "alias"]),
            "distinct_id": f"person-{rnd.randrange(25)}",
            "timestamp": FIRST + timedelta(days=rnd.randrange(20), hours=rnd.randrange(1, 23)),
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{k}")),
        }
        if call["kind"] == "capture":
            call["properties"] = {
                "plan": rnd.choice(["free", "pro"]),
                "item": f"sku-{k % 4}",
                "amount": rnd.randrange(1, 100),
            }
        elif call["kind"] == "pageview":
            call["properties"] = {"$current_url": rnd.choice(["https://x/", "https://x/docs"])}
        elif call["kind"] == "identify":
            call["properties"] = {"$anon_distinct_id": f"anon-{k}"}
        elif call["kind"] == "set":
            call["set"] = {"plan": rnd.choice(["free", "pro"])}
        else:
            call["previous_id"] = f"anon-{rnd.randrange(30)}"
        out.append(call)
    return out


def send(client: Posthog, call: dict[str, Any]) -> None:
    at = {"timestamp": call["timestamp"], "uuid": call["uuid"]}
    kind = call["kind"]
    if kind == "capture":
        client.capture(
            "purchase", distinct_id=call["distinct_id"], properties=call["properties"], **at
        )
    elif kind == "pageview":
        client.capture(
            "$pageview", distinct_id=call["distinct_id"], properties=call["properties"], **at
        )
    elif kind == "identify":
        client.capture(
            "$identify", distinct_id=call["distinct_id"], properties=call["properties"], **at
        )
    elif kind == "set":
        client.set(distinct_id=call["distinct_id"], properties=call["set"], **at)
    else:
        client.alias(previous_id=call["previous_id"], distinct_id=call["distinct_id"], **at)


def expected(call: dict[str, Any]) -> dict[str, Any]:
    """The bitstat event a call means (docs/ingest.md, PostHog's table)."""
    name = {
        "capture": "purchase",
        "pageview": "$pageview",
        "identify": "$identify",
        "set": "$set",
        "alias": "$create_alias",
    }[call["kind"]]
    # alias() sends the previous id as distinct_id: PostHog's $create_alias
    actor = call["previous_id"] if call["kind"] == "alias" else call["distinct_id"]
    event = {"event": name, "user": actor, "time": call["timestamp"]}
    event.update(call.get("properties", {}))
    if "set" in call:
        event["$set.plan"] = call["set"]["plan"]
    return event


def link(model: Model, sent: list[dict[str, Any]]) -> None:
    """The ids the calls link (docs/identity.md): $identify's $anon_distinct_id joins its
    distinct_id; alias() joins its distinct_id to the previous id's person."""
    for call in sent:
        if call["kind"] == "identify":
            model.alias(call["properties"]["$anon_distinct_id"], call["distinct_id"])
        elif call["kind"] == "alias":
            model.alias(call["distinct_id"], call["previous_id"])


def assert_same(st: bitstat.Stats, model: Model) -> None:
    start, end = "2025-11-01", "2025-11-30"
    for name in EVENTS:
        assert st.unique(name, start, end) == model.unique(name, start, end), name
        assert st.total(name, start, end) == model.total(name, start, end), name
        assert st.series(name, start, end, by="day") == model.series(name, start, end, by="day")
        for prop in ("plan", "$current_url", "$set.plan"):
            assert st.counts(name, prop, start, end) == model.counts(name, prop, start, end)
    assert st.sums("purchase", "amount", start, end) == model.sums("purchase", "amount", start, end)
    assert st.top("purchase", "item", start, end) == model.top("purchase", "item", start, end)


@pytest.fixture
def server(embedded_url: str, namespace: str) -> Iterator[tuple[str, bitstat.Stats]]:
    st = bitstat.connect(
        embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map", **RULES)
    )
    config = ServerConfig(
        url=embedded_url,
        namespace="ph-default",
        write_token="token-w",
        read_token="token-r",
        write_keys={"phc_project": namespace},
    )
    with running(config) as base:
        yield base, st
    st.close()


@pytest.mark.parametrize(
    ("mode", "compression"),
    [("v0", None), ("v0", "gzip"), ("v1", None), ("v1", "gzip"), ("v1", "deflate")],
)
def test_the_sdk_sends_and_the_answers_match_the_model(
    server: tuple[str, bitstat.Stats], mode: str, compression: str | None
) -> None:
    base, st = server
    errors: list[Any] = []
    client = Posthog(
        "phc_project",
        host=base,
        gzip=compression == "gzip",  # v0 compresses with gzip only
        capture_compression=compression,
        capture_mode=mode,
        flush_at=30,
        on_error=lambda e, b: errors.append(e),
    )
    sent = calls(seed=3)
    for call in sent:
        send(client, call)
    client.flush()
    assert errors == []
    model = Model(ids="map", **RULES)
    model.track_many([expected(c) for c in sent])
    link(model, sent)
    assert_same(st, model)
    for call in sent[:80]:  # sent again, same uuids: nothing changes
        send(client, call)
    client.flush()
    client.shutdown()
    assert errors == []
    assert_same(st, model)


def test_a_wrong_key_is_401_and_records_nothing(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    event = {"event": "x", "distinct_id": "p1", "timestamp": "2025-11-04T10:00:00Z"}
    for path, body, headers in [
        ("/batch/", {"api_key": "phc_wrong", "batch": [event]}, {}),
        ("/capture/", {**event, "api_key": "phc_wrong"}, {}),
        ("/e/", [{**event, "properties": {"token": "phc_wrong"}}], {}),
        ("/i/v1/analytics/events", {"batch": [event]}, {"Authorization": "Bearer phc_wrong"}),
        ("/batch/", {"batch": [event]}, {}),  # no key at all
        ("/i/v1/analytics/events", {"batch": [event], "api_key": "phc_project"}, {}),  # not Bearer
    ]:
        answer = httpx.post(f"{base}{path}", json=body, headers=headers)
        assert answer.status_code == 401, (path, answer.text)
        assert answer.json()["type"] == "authentication_error"
        assert answer.json()["code"] == "invalid_api_key"
    assert st.events() == []


def _now_ms() -> int:
    """posthog-js's `?_=`: its clock's time of sending, unix milliseconds (a sent_at)."""
    return round(datetime.now(UTC).timestamp() * 1000)


def _gzip_js(base: str, path: str, events: Any) -> httpx.Response:
    """posthog-js with compression: the gzip of the JSON, sent as text/plain."""
    return httpx.post(
        f"{base}{path}?compression=gzip-js&ver=1.200.0&_={_now_ms()}",
        content=gzip.compress(json.dumps(events).encode()),
        headers={"Content-Type": "text/plain"},
    )


def _base64_form(base: str, path: str, events: Any, *, flag: bool = True) -> httpx.Response:
    """posthog-js's form body: data=<base64 of the JSON>, URL-encoded."""
    data = base64.b64encode(json.dumps(events).encode()).decode()
    query = "?compression=base64" if flag else ""
    return httpx.post(
        f"{base}{path}{query}",
        content=f"data={quote(data)}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_the_javascript_clients_bodies(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server

    def js_event(n: int, name: str = "$pageview") -> dict[str, Any]:
        return {
            "event": name,
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"js-{n}")),
            "timestamp": f"2025-11-04T10:{n:02d}:00Z",
            "properties": {
                "token": "phc_project",
                "distinct_id": f"visitor-{n % 3}",
                "$current_url": "https://x/docs",
            },
        }

    answers = [
        _gzip_js(base, "/e/", [js_event(1), js_event(2)]),
        _gzip_js(base, "/i/v0/e/", js_event(3)),
        _base64_form(base, "/e/", [js_event(4)]),
        _base64_form(base, "/i/v0/e/", js_event(5), flag=False),  # told by the field
        httpx.post(f"{base}/e/", json=[js_event(6)]),
        httpx.post(
            f"{base}/i/v0/e/",
            content=json.dumps(js_event(7)),
            headers={"Content-Type": "text/plain"},
        ),
        httpx.post(f"{base}/capture/", json={**js_event(8), "api_key": "phc_project"}),
        # posthog-js 1.449 (seen in Chromium): gzip told by its bytes alone (no `compression`
        # parameter), text/plain, the events in `batch` with the key and sent_at beside them
        httpx.post(
            f"{base}/e/?ip=0&_={_now_ms()}&ver=1.449.2",
            content=gzip.compress(
                json.dumps(
                    {
                        "api_key": "phc_project",
                        "batch": [js_event(9), js_event(10)],
                        "sent_at": datetime.now(UTC).isoformat(),
                    }
                ).encode()
            ),
            headers={"Content-Type": "text/plain"},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["recorded"] >= 1
    assert st.total("$pageview", "2025-11-04") == 10
    assert st.unique("$pageview", "2025-11-04") == 3
    assert st.counts("$pageview", "$current_url", "2025-11-04") == {"https://x/docs": 10}
    # the same bodies again (a page that retried): nothing changes
    again = _gzip_js(base, "/e/", [js_event(1), js_event(2)]).json()
    assert again["recorded"] == 0 and again["duplicates"] == 2
    assert st.total("$pageview", "2025-11-04") == 10


def test_bodies_that_cannot_be_read_say_why(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    cases = [
        (
            httpx.post(f"{base}/e/?compression=lz64", content=b"xyz"),
            "lz64",
        ),
        (
            httpx.post(
                f"{base}/e/?compression=gzip-js",
                content=b"\x1f\x8bnot gzip",
                headers={"Content-Type": "text/plain"},
            ),
            "not valid gzip",
        ),
        (
            httpx.post(f"{base}/e/?compression=base64", content=b"data=%%%%", headers={}),
            "base64",
        ),
        (httpx.post(f"{base}/batch/", content=b"{nope"), "not valid JSON"),
    ]
    for answer, said in cases:
        assert answer.status_code == 400, answer.text
        assert said in answer.json()["detail"]
        assert answer.json()["type"] == "validation_error"
    assert st.events() == []


def test_a_bad_event_is_named_and_the_rest_is_recorded(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    good = {"event": "ok", "distinct_id": "p1", "timestamp": "2025-11-05T10:00:00Z"}
    ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, str(n))) for n in range(5)]
    batch = [
        {**good, "uuid": ids[0]},
        {**good, "uuid": ids[1], "distinct_id": None},
        {**good, "uuid": ids[2], "timestamp": "soon"},
        {**good, "uuid": ids[3], "properties": {"amount": "much"}},
        {**good, "uuid": ids[4], "distinct_id": "p2"},
    ]
    st.configure(bitstat.Schema(ids="map", sum=["amount"]))
    legacy = httpx.post(f"{base}/batch/", json={"api_key": "phc_project", "batch": batch}).json()
    assert legacy["status"] == 1 and legacy["recorded"] == 2
    rejected = {r["index"]: r for r in legacy["rejected"]}
    assert rejected[1]["field"] == "distinct_id"
    assert rejected[2]["field"] == "timestamp" and "soon" in rejected[2]["reason"]
    assert rejected[3]["field"] == "properties.amount" and "much" in rejected[3]["reason"]
    # the v1 route answers per event: ok for those recorded (or recorded before), drop with why
    v1 = httpx.post(
        f"{base}/i/v1/analytics/events",
        json={"created_at": datetime.now(UTC).isoformat(), "batch": batch},
        headers={"Authorization": "Bearer phc_project"},
    ).json()
    results = v1["results"]
    assert results[ids[0]] == results[ids[4]] == {"result": "ok"}
    assert [results[i]["result"] for i in ids[1:4]] == ["drop"] * 3
    assert "distinct_id" in results[ids[1]]["details"]
    assert st.unique("ok", "2025-11-05") == 2


def test_times_are_corrected_as_posthog_does(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    now = datetime.now(UTC)
    fast = timedelta(days=3)  # a client whose clock is three days ahead
    happened = datetime(2025, 11, 10, 12, tzinfo=UTC)
    skewed = {"event": "skewed", "distinct_id": "p", "timestamp": (happened + fast).isoformat()}
    ignored = {**skewed, "event": "ignored", "properties": {"$ignore_sent_at": True}}
    body = {"api_key": "phc_project", "sent_at": (now + fast).isoformat()}
    answer = httpx.post(f"{base}/batch/", json={**body, "batch": [skewed, ignored]})
    assert answer.json()["recorded"] == 2
    assert st.total("skewed", "2025-11-10") == 1
    assert st.total("ignored", "2025-11-13") == 1  # its timestamp as it is
    # no sent_at: the timestamp as it is; offset: milliseconds before the time received
    plain = {**skewed, "event": "plain"}
    offset = {"event": "offset", "distinct_id": "p", "offset": 3 * 86400 * 1000}
    answer = httpx.post(f"{base}/batch/", json={"api_key": "phc_project", "batch": [plain, offset]})
    assert answer.json()["recorded"] == 2
    assert st.total("plain", "2025-11-13") == 1
    around = [(now - timedelta(days=d)).date().isoformat() for d in (4, 2)]
    assert st.total("offset", *around) == 1


def test_posthog_js_says_when_it_sent_in_the_query(server: tuple[str, bitstat.Stats]) -> None:
    """posthog-js puts its clock's time of sending in the query (`?_=` milliseconds), which
    PostHog reads as sent_at: a browser whose clock is three days fast records the day the
    event happened, as with a body's sent_at."""
    base, st = server
    fast = timedelta(days=3)
    happened = datetime(2025, 11, 10, 12, tzinfo=UTC)
    sent = round((datetime.now(UTC) + fast).timestamp() * 1000)
    event = {
        "event": "js-skewed",
        "timestamp": (happened + fast).isoformat(),
        "properties": {"token": "phc_project", "distinct_id": "p"},
    }
    answer = httpx.post(
        f"{base}/e/?compression=gzip-js&ver=1.200.0&_={sent}",
        content=gzip.compress(json.dumps([event]).encode()),
        headers={"Content-Type": "text/plain"},
    )
    assert answer.json()["recorded"] == 1, answer.text
    assert st.total("js-skewed", "2025-11-10") == 1
    # seconds rather than milliseconds are read too (PostHog's rule: more than 11 digits is ms);
    # a `_` that is no time is a cache-buster, not a clock: the timestamp as it is
    for name, stamp in (("js-seconds", str(sent // 1000)), ("js-junk", "abc")):
        answer = httpx.post(
            f"{base}/e/?_={stamp}", json=[{**event, "event": name, "uuid": str(uuid.uuid4())}]
        )
        assert answer.json()["recorded"] == 1, answer.text
    assert st.total("js-seconds", "2025-11-10") == 1
    assert st.total("js-junk", "2025-11-13") == 1


def test_the_event_time_is_posthogs_to_the_millisecond() -> None:
    """PostHog: timestamp + (now - sent_at) with a sent_at (the event's own first), unless
    skew correction is off; timestamp as it is without; now - offset ms; else now."""
    now = datetime(2025, 11, 10, 12, tzinfo=UTC).timestamp()
    stamp = "2025-11-13T12:30:00.125Z"  # a client clock 3 days fast
    sent = "2025-11-13T12:40:00Z"
    happened = datetime(2025, 11, 10, 11, 50, 0, 125_000, tzinfo=UTC).timestamp()
    assert event_time({"timestamp": stamp}, sent, now, True) == happened
    assert event_time({"timestamp": stamp, "sent_at": sent}, None, now, True) == happened
    plain = datetime(2025, 11, 13, 12, 30, 0, 125_000, tzinfo=UTC).timestamp()
    assert event_time({"timestamp": stamp}, sent, now, False) == plain
    assert event_time({"timestamp": stamp}, None, now, True) == plain
    assert event_time({"offset": 1500}, sent, now, True) == now - 1.5
    assert event_time({}, sent, now, True) == now


def test_the_sdks_llm_events_are_recorded(server: tuple[str, bitstat.Stats]) -> None:
    """capture_ai() (and the AI wrappers with enable_full_ai_capture) posts to its own route,
    /i/v0/ai/batch/, a /batch/ body: it was a 404, and the SDK dropped the events."""
    base, st = server
    errors: list[Any] = []
    client = Posthog(
        "phc_project", host=base, max_retries=0, on_error=lambda e, b: errors.append(e)
    )
    sent = [
        {
            "distinct_id": f"person-{k % 3}",
            "timestamp": FIRST + timedelta(hours=k),
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ai/{k}")),
            "properties": {"$ai_model": "m", "plan": ["free", "pro"][k % 2], "amount": k},
        }
        for k in range(7)
    ]
    for _ in range(2):  # sent again, same uuids: counted once
        for call in sent:
            client.capture_ai("$ai_generation", **call)
        client.flush()
    client.shutdown()
    assert errors == []
    model = Model(ids="map", **RULES)
    model.track_many(
        [
            {"event": "$ai_generation", "user": c["distinct_id"], "time": c["timestamp"]}
            | c["properties"]
            for c in sent
        ]
    )
    start, end = "2025-11-01", "2025-11-30"
    assert st.unique("$ai_generation", start, end) == model.unique("$ai_generation", start, end)
    assert st.total("$ai_generation", start, end) == model.total("$ai_generation", start, end)
    counts = st.counts("$ai_generation", "plan", start, end)
    assert counts == model.counts("$ai_generation", "plan", start, end)
    sums = st.sums("$ai_generation", "amount", start, end)
    assert sums == model.sums("$ai_generation", "amount", start, end)
