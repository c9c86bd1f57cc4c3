"""POST /v1/track tells bitstat's events from Segment's messages: a bitstat event that carries a
property named `messageId` is bitstat's; one that names a Segment field and has no write key is
a 401 that says why it was read as a Segment message and how to send it as a bitstat event.
Real Segment messages (ids, write key in the body or as Basic auth, gzip) are still Segment's.
And the SDK routes' reasons say "null", "an array", never Python's "NoneType", "list"."""

from __future__ import annotations

import base64
import gzip
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import Request

import bitstat
from bitstat.web import ServerConfig, create_app, segment

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "wk_shapes"
AT = "2025-11-02T10:00:00Z"
NO_KEY = (
    "no write key was given: send it as Basic auth 'WRITE_KEY:' (the SDKs' writeKey) or as"
    " `writeKey`. POST /v1/track read the body as a Segment message because "
)
WRONG_KEY = NO_KEY.replace("no write key was given", "the write key is not one of this server's")
AS_EVENT = (
    " (a Segment field); a bitstat event with a property so named is sent in an array ([event]),"
    " with the write token (Bearer) where the server has one"
)


@pytest.fixture
def client(embedded_url: str, namespace: str) -> Iterator[tuple[TestClient, bitstat.Stats]]:
    schema = bitstat.Schema(ids="map", count=["messageId", "userId"])
    st = bitstat.connect(embedded_url, namespace=namespace, schema=schema)
    config = ServerConfig(url=embedded_url, namespace=namespace, write_keys={KEY: namespace})
    with TestClient(create_app(config)) as c:
        yield c, st
    st.drop()
    st.close()


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_a_bitstat_event_with_a_messageid_property_is_recorded_as_one(
    client: tuple[TestClient, bitstat.Stats],
) -> None:
    c, st = client
    event = {"event": "email_sent", "user": "u1", "messageId": "abc", "time": AT}
    alone = c.post("/v1/track", json=event)
    assert (alone.status_code, alone.json()) == (200, {"recorded": 1, "rejected": []})
    listed = c.post("/v1/track", json=[{**event, "messageId": "def"}])
    assert (listed.status_code, listed.json()) == (200, {"recorded": 1, "rejected": []})
    assert st.counts("email_sent", "messageId", "2025-11-02") == {"abc": 1, "def": 1}
    assert st.unique("email_sent", "2025-11-02") == 1


@pytest.mark.parametrize(
    ("body", "headers", "said"),
    [
        ({"userId": "abc"}, {}, f"{NO_KEY}it names `userId`{AS_EVENT}"),
        ({"anonymousId": "abc"}, {}, f"{NO_KEY}it names `anonymousId`{AS_EVENT}"),
        ({"writeKey": "wk_other"}, {}, f"{WRONG_KEY}it names `writeKey`{AS_EVENT}"),
        (
            {},
            _basic("wk_other"),
            f"{WRONG_KEY}it came with Basic auth; bitstat's own events come with the write"
            " token (Bearer)",
        ),
        (
            {},
            {"Content-Encoding": "gzip"},
            f"{NO_KEY}it is compressed (gzip); bitstat's own events are sent uncompressed",
        ),
    ],
)
def test_a_body_read_as_a_segment_message_without_a_key_says_why(
    client: tuple[TestClient, bitstat.Stats],
    body: dict[str, Any],
    headers: dict[str, str],
    said: str,
) -> None:
    c, st = client
    event = {"event": "email_sent", "user": "u1", "time": AT, **body}
    content = json.dumps(event).encode()
    if headers.get("Content-Encoding") == "gzip":
        content = gzip.compress(content)
    answer = c.post("/v1/track", content=content, headers=headers)
    assert (answer.status_code, answer.json()) == (
        401,
        {"success": False, "code": "unauthorized", "message": said},
    )
    # sent as the answer says, in an array, it is bitstat's event
    listed = c.post("/v1/track", json=[event])
    assert (listed.status_code, listed.json()) == (200, {"recorded": 1, "rejected": []})
    assert st.unique("email_sent", "2025-11-02") == 1


def test_the_other_segment_routes_answer_a_missing_key_as_before(
    client: tuple[TestClient, bitstat.Stats],
) -> None:
    c, _ = client
    answer = c.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u", "event": "e"}]})
    assert answer.json()["message"] == (
        "no write key was given: send it as Basic auth 'WRITE_KEY:' (the SDKs' writeKey) or as"
        " `writeKey`"
    )


def test_segment_messages_are_still_segments(client: tuple[TestClient, bitstat.Stats]) -> None:
    c, st = client
    message = {"userId": "u1", "event": "go", "messageId": "m-1", "timestamp": AT}
    sent = [
        c.post("/v1/track", json={**message, "writeKey": KEY}),  # analytics.js: key in body
        c.post("/v1/track", json=message, headers=_basic(KEY)),  # a re-sent message: once
        c.post(
            "/v1/track",
            json={"type": "track", "anonymousId": "a1", "event": "go", "timestamp": AT},
            headers=_basic(KEY),
        ),
    ]
    assert [(a.status_code, a.json()) for a in sent] == [
        (200, {"success": True, "recorded": 1, "duplicates": 0, "rejected": []}),
        (200, {"success": True, "recorded": 0, "duplicates": 1, "rejected": []}),
        (200, {"success": True, "recorded": 1, "duplicates": 0, "rejected": []}),
    ]
    assert sorted(st.actors("go").day(2025, 11, 2).ids()) == ["a1", "u1"]


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/v1/track", "headers": raw})


def test_a_body_too_large_for_a_message_is_told_by_its_names() -> None:
    big = {"event": "e", "user": "u", "messageId": "m", "blob": "x" * segment.MAX_MESSAGE}
    assert (
        segment.read_as_message(_request({}), json.dumps(big).encode()[: segment.MAX_MESSAGE + 1])
        is None
    )
    named = json.dumps({"userId": "u", **big}).encode()[: segment.MAX_MESSAGE + 1]
    assert segment.read_as_message(_request({}), named) == f"it names `userId`{AS_EVENT}"
    assert segment.read_as_message(_request({"Authorization": "Bearer t"}), named) is None


def test_sdk_reasons_say_null_and_array_not_python_type_names(
    client: tuple[TestClient, bitstat.Stats],
) -> None:
    c, _ = client
    good = {"type": "track", "userId": "u1", "event": "go", "timestamp": AT}
    batch = [None, {**good, "properties": []}, {**good, "messageId": ["m"]}, "go"]
    answer = c.post("/v1/batch", json={"batch": batch}, headers=_basic(KEY)).json()
    assert [(r["index"], r["field"], r["reason"]) for r in answer["rejected"]] == [
        (0, None, "a message must be a JSON object, not null"),
        (1, "properties", "properties: must be an object, not an array"),
        (2, "messageId", "messageId: must be text, not an array"),
        (3, None, "a message must be a JSON object, not text"),
    ]
    events = [None, {"event": "go", "distinct_id": True}, {"event": "go", "distinct_id": "u"}]
    posthog = c.post("/batch/", json={"api_key": KEY, "batch": events}).json()
    assert [(r["index"], r["field"], r["reason"]) for r in posthog["rejected"]] == [
        (0, None, "an event must be a JSON object, not null"),
        (1, "distinct_id", "distinct_id: must be text or an integer, not a boolean"),
    ]
