"""GET /metrics: the server's own health in Prometheus' text format, on a real server.

The exposition is parsed line by line against the format's grammar, and each figure is
checked against what the test did: requests by route and status, events recorded and
rejected over bitstat's and Segment's routes, Redis reachable or not.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bitstat.web import ServerConfig, create_app
from bitstat.web.metrics import CONTENT_TYPE, Metrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r",?)*\})? (?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|NaN|\+Inf|-Inf))$"
)


def parse(text: str) -> dict[str, float]:
    """{'name{labels}': value} of every sample; each line must follow the text format, and
    each family be announced by HELP and TYPE before its samples."""
    assert text.endswith("\n")
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            typed.add(name)
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        base = re.sub(r"_(bucket|sum|count)$", "", match["name"])
        assert match["name"] in typed or base in typed, line
        samples[match["name"] + (match["labels"] or "")] = float(match["value"])
    return samples


@pytest.fixture
def client(embedded_url: str) -> Iterator[TestClient]:
    namespace = f"mx-{uuid.uuid4().hex[:8]}"
    config = ServerConfig(url=embedded_url, namespace=namespace, write_token="w-secret")
    with TestClient(create_app(config)) as c:
        yield c


def test_requests_events_and_redis(client: TestClient) -> None:
    # Segment's route first: a namespace it opens takes text ids
    segment = {"Authorization": "Basic " + base64.b64encode(b"w-secret:").decode()}
    batch = {
        "batch": [
            {"type": "track", "event": "buy", "userId": "u1", "messageId": "m1"},
            {"type": "track", "event": "buy", "userId": "u2", "messageId": "m2"},
        ]
    }
    sent = client.post("/v1/batch", json=batch, headers=segment)
    assert sent.json() == {"success": True, "recorded": 2, "duplicates": 0, "rejected": []}
    auth = {"Authorization": "Bearer w-secret"}
    events = [{"event": "login", "user": f"n{n}", "time": "2026-11-02T10:00:00"} for n in range(7)]
    events.append({"event": "login", "time": "2026-11-02T10:00:00"})  # no actor: rejected
    assert client.post("/v1/track", json=events, headers=auth).json()["recorded"] == 7
    assert client.get("/v1/unique", params={"event": "nope", "start": "2026-11"}).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE
    got = parse(answer.text)
    assert got['bitstat_events_total{outcome="recorded"}'] == 9
    assert got['bitstat_events_total{outcome="rejected"}'] == 1
    assert got['bitstat_http_requests_total{method="POST",route="/v1/track",status="200"}'] == 1
    assert got['bitstat_http_requests_total{method="POST",route="/v1/batch",status="200"}'] == 1
    assert got['bitstat_http_requests_total{method="GET",route="/v1/unique",status="404"}'] == 1
    assert got['bitstat_http_requests_total{method="GET",route="other",status="404"}'] == 1
    assert got['bitstat_http_request_duration_seconds_count{route="/v1/track"}'] == 1
    assert got['bitstat_http_request_duration_seconds_bucket{route="/v1/track",le="+Inf"}'] == 1
    assert got["bitstat_http_requests_in_flight"] == 1  # the scrape itself
    assert got["bitstat_redis_up"] == 1
    assert 0 < got["bitstat_redis_ping_seconds"] < 2
    assert got["bitstat_http_server_errors_total"] == 0
    again = parse(client.get("/metrics").text)
    assert again['bitstat_http_requests_total{method="GET",route="/metrics",status="200"}'] == 1


def test_histogram_buckets_are_cumulative() -> None:
    metrics = Metrics()
    for seconds in (0.0005, 0.003, 0.003, 0.2, 30.0):
        metrics.request("GET", "/v1/unique", 200, seconds)
    metrics.request("GET", "/v1/unique", 503, 0.01)
    metrics.request("POST", "/v1/track", 500, 0.01)
    got = parse(asyncio.run(metrics.exposition(None)))
    bucket = 'bitstat_http_request_duration_seconds_bucket{route="/v1/unique",le="%s"}'
    assert got[bucket % "0.001"] == 1
    assert got[bucket % "0.005"] == 3
    assert got[bucket % "0.01"] == 4
    assert got[bucket % "0.25"] == 5
    assert got[bucket % "10.0"] == 5
    assert got[bucket % "+Inf"] == 6
    total = got['bitstat_http_request_duration_seconds_sum{route="/v1/unique"}']
    assert total == pytest.approx(30.2165)
    assert got["bitstat_redis_unavailable_total"] == 1
    assert got["bitstat_http_server_errors_total"] == 1
    assert got["bitstat_redis_up"] == 0 and math.isnan(got["bitstat_redis_ping_seconds"])


def test_redis_down_is_reported_not_raised() -> None:
    async def refused() -> None:
        raise OSError("connection refused")

    got = parse(asyncio.run(Metrics().exposition(refused)))
    assert got["bitstat_redis_up"] == 0
    assert math.isnan(got["bitstat_redis_ping_seconds"])


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.request("GET", 'a"b\\c\nd', 200, 0.1)
    text = asyncio.run(metrics.exposition(None))
    assert 'route="a\\"b\\\\c\\nd"' in text
    parse(text)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    labels = {s.labels["route"] for s in families["bitstat_http_requests"].samples}
    assert labels == {'a"b\\c\nd'}


def test_unknown_methods_are_one_label_value(client: TestClient) -> None:
    # each made-up method was a series of its own: a client could add them without end
    for n in range(5):
        assert client.request(f"PROBE{n}", "/v1/track").status_code == 405
    assert client.request("DELETE", "/v1/track").status_code == 405
    got = parse(client.get("/metrics").text)
    assert got['bitstat_http_requests_total{method="other",route="other",status="405"}'] == 5
    assert got['bitstat_http_requests_total{method="DELETE",route="other",status="405"}'] == 1
    assert not [key for key in got if "PROBE" in key]


def test_prometheus_own_parser_reads_the_exposition(client: TestClient) -> None:
    """prometheus_client's parser (the one Prometheus' Python tools use) reads every family
    with its type, and the figures agree with the line parser above."""
    auth = {"Authorization": "Bearer w-secret"}
    events = [{"event": "login", "user": n, "time": "2026-11-02T10:00:00"} for n in range(3)]
    assert client.post("/v1/track", json=events, headers=auth).json()["recorded"] == 3
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    kinds = {name: f.type for name, f in families.items()}
    assert kinds == {
        "bitstat_http_requests": "counter",
        "bitstat_http_request_duration_seconds": "histogram",
        "bitstat_http_requests_in_flight": "gauge",
        "bitstat_events": "counter",
        "bitstat_http_server_errors": "counter",
        "bitstat_redis_unavailable": "counter",
        "bitstat_redis_up": "gauge",
        "bitstat_redis_ping_seconds": "gauge",
        "bitstat_process_start_time_seconds": "gauge",
    }
    ours = parse(text)
    for family in families.values():
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
            key = sample.name + (f"{{{labels}}}" if labels else "")
            assert ours[key] == pytest.approx(sample.value, nan_ok=True), key
    recorded = [
        s for s in families["bitstat_events"].samples if s.labels == {"outcome": "recorded"}
    ]
    assert [s.value for s in recorded] == [3]


def test_a_process_with_the_pid_of_one_that_ended_keeps_its_counts_in(tmp_path: Path) -> None:
    # serve --workers N: a worker that ended leaves its counts in the sum, also once a later
    # worker is given its pid (the system went round its pids): no counter goes down
    ended = Metrics(tmp_path)
    ended.recorded(5, 1)
    ended.publish()
    later = Metrics(tmp_path)  # (the same pid: this process's)
    later.recorded(2, 0)
    total = later.combined()
    assert (total.events["recorded"], total.events["rejected"]) == (7, 1)
