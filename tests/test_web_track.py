"""POST /v1/track at its edges: content types, a single rejected event, bodies over the limit
sent by a client that writes before it reads, what expired periods kept; and a range too long
named by the parameter that made it so."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import bitstat
from bitstat.aio import AsyncStats
from bitstat.record import TrackResult
from bitstat.web import ServerConfig, create_app
from bitstat.web import app as web_app
from webserver import running

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EVENT = {"event": "login", "user": 1, "time": "2025-11-02T10:00:00Z"}


@pytest.fixture
def client(embedded_url: str, namespace: str) -> Iterator[TestClient]:
    config = ServerConfig(url=embedded_url, namespace=namespace, max_body=4096)
    with TestClient(create_app(config)) as c:
        yield c


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",  # what `curl -d` sends
        "multipart/form-data; boundary=xyz",
        "text/plain;charset=UTF-8",
        "application/xml",
    ],
)
def test_a_body_not_sent_as_json_is_415_naming_both_types(
    client: TestClient, content_type: str
) -> None:
    answer = client.post(
        "/v1/track", content=json.dumps(EVENT), headers={"content-type": content_type}
    )
    assert answer.status_code == 415, answer.text
    error = answer.json()["error"]
    assert repr(content_type) in error and "application/json" in error
    assert "malformed" not in error


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "x-gzip"])
def test_a_compressed_body_with_the_write_token_is_415_naming_the_encoding(
    embedded_url: str, namespace: str, encoding: str
) -> None:
    """With the write token the body is bitstat's own, which comes uncompressed: it was read as
    JSON and refused as "malformed JSON: 'utf-8' codec can't decode byte 0x8b"."""
    config = ServerConfig(url=embedded_url, namespace=namespace, write_token="w-1")
    with TestClient(create_app(config)) as c:
        answer = c.post(
            "/v1/track",
            content=gzip.compress(json.dumps([EVENT]).encode()),
            headers={"Authorization": "Bearer w-1", "Content-Encoding": encoding},
        )
        assert answer.status_code == 415, answer.text
        assert f"Content-Encoding: {encoding}" in answer.json()["error"]
        assert "uncompressed" in answer.json()["error"]
        plain = c.post(
            "/v1/track",
            json=[EVENT],
            headers={"Authorization": "Bearer w-1", "Content-Encoding": "identity"},
        )
        assert plain.json() == {"recorded": 1, "rejected": []}


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json"},
        {"content-type": "Application/JSON; charset=utf-8"},
        {},  # no content type: read as JSON, as before
    ],
)
def test_json_and_a_missing_content_type_are_accepted(
    client: TestClient, headers: dict[str, str]
) -> None:
    answer = client.post("/v1/track", content=json.dumps(EVENT).encode(), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 1, "rejected": []}


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        ({"user": 1}, "event", "missing event name"),
        ({"event": "", "user": 1}, "event", "event name is empty"),
        ({"event": "login", "user": -5}, "user", "outside"),
        ({"event": "login", "user": 1, "time": "yesterday"}, "time", "yesterday"),
    ],
)
def test_a_single_rejected_event_is_a_400_naming_the_field(
    client: TestClient, event: dict[str, Any], field: str, reason: str
) -> None:
    answer = client.post("/v1/track", json=event)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["field"] == field
    assert body["error"].startswith(f"the event is rejected: {field}: ")
    assert reason in body["error"]
    # the same event in a batch of one is still a 200 listing it as rejected
    batch = client.post("/v1/track", json=[event])
    assert batch.status_code == 200
    assert batch.json()["recorded"] == 0
    assert [r["index"] for r in batch.json()["rejected"]] == [0]


@pytest.mark.parametrize("depth", [1500, 4 * 1024 * 1024])
def test_json_nested_too_deeply_is_a_400(embedded_url: str, namespace: str, depth: int) -> None:
    config = ServerConfig(url=embedded_url, namespace=namespace, max_body=10 * depth)
    with TestClient(create_app(config)) as client:  # small and large bodies are read apart
        answer = client.post("/v1/track", content=b"[" * depth + b"]" * depth)
    assert answer.status_code == 400
    assert answer.json() == {"error": "malformed JSON: nested too deeply to read"}


def test_expired_periods_are_reported_when_there_are_some(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "expired" not in client.post("/v1/track", json=EVENT).json()

    async def track_many(self: AsyncStats, events: Any, batch_id: Any = None) -> TrackResult:
        return TrackResult(len(events), [], {"hour": len(events)})

    monkeypatch.setattr(AsyncStats, "track_many", track_many)
    # (recorded alone, as in a namespace with an expiry: the faked batch is this body's)
    monkeypatch.setattr(web_app, "can_go_together", lambda stats, batch_id: False)
    answer = client.post("/v1/track", json=[EVENT, EVENT])
    assert answer.json() == {"recorded": 2, "rejected": [], "expired": {"hour": 2}}


# a client that writes the whole body before it reads the answer: Python's urllib


@pytest.fixture(scope="module")
def small_server(embedded_url: str) -> Iterator[str]:
    with running(ServerConfig(url=embedded_url, namespace="urllib-limit", max_body=4096)) as base:
        yield base


def _urllib_post(url: str, body: bytes, content_type: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


# Far more than the socket buffers hold: unread when the server answers, the rest of the body
# made the kernel reset the connection, and urllib saw "connection reset" instead of the JSON.
BIG = 24 * 1024 * 1024


@pytest.mark.parametrize(
    ("content_type", "status", "message"),
    [
        ("application/json", 413, "larger than the limit of 4096 bytes"),
        ("application/x-www-form-urlencoded", 415, "send it as application/json"),
    ],
)
def test_urllib_gets_the_json_answer_to_a_big_body(
    small_server: str, content_type: str, status: int, message: str
) -> None:
    body = b"[" + b'{"event": "x", "user": 1},' * (BIG // 26) + b"{}]"
    code, answer = _urllib_post(f"{small_server}/v1/track", body, content_type)
    assert code == status
    assert message in answer["error"]
    # the connection was not left in a bad state: the server answers the next request
    assert _urllib_post(f"{small_server}/v1/track", b"{}", "application/json")[0] == 400


def test_a_range_too_long_names_start_when_no_end_was_given(
    embedded_url: str, namespace: str
) -> None:
    hourly = bitstat.Schema(periods=("hour", "day", "week", "month", "year"))
    bitstat.connect(embedded_url, namespace=namespace, schema=hourly).close()
    with TestClient(create_app(ServerConfig(url=embedded_url, namespace=namespace))) as c:
        # a year of hours is more than a series holds; only `start` was given
        answer = c.get("/v1/series", params={"event": "x", "start": "2025", "by": "hour"})
        assert answer.status_code == 400
        assert answer.json()["parameter"] == "start"
        assert "at most 5000 points" in answer.json()["error"]
        both = {"event": "x", "start": "2025-01", "end": "2025-12", "by": "hour"}
        assert c.get("/v1/series", params=both).json()["parameter"] == "end"
