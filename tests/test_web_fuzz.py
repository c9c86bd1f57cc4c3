"""Every route of `bitstat serve` fed anything (hypothesis): query strings with unknown, repeated,
empty and badly encoded parameters, JSON bodies of any shape, bodies that are no JSON, every
content type and encoding the SDKs use and some they do not. Never a 500 or a traceback; an
answer other than 200 changes nothing in Redis.

The documented API (/openapi.json) is also walked by schemathesis in tests/test_web.py; this
walk covers what the document does not describe (the SDK protocols, the Grafana data source,
DELETE /v1/actors) and inputs no schema would generate.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
import warnings
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitstat
import servers
from bitstat.web import ServerConfig, create_app
from bitstat.web.dashboard import ENDPOINT as DASHBOARD
from bitstat.web.endpoints import ENDPOINTS
from test_fuzz_inputs import NASTY, events, snapshot, texts, time_texts, values
from webserver import SHOP, shop_events

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
READ, WRITE, KEY = "fz-read", "fz-write", "fz-key"
AUTH = {"Authorization": f"Bearer {READ}"}


class Served:
    """The app, a namespace holding the shop's events (read), and one written to (write)."""

    def __init__(self, client: TestClient, redis: servers.Client, read: str, write: str) -> None:
        self.client = client
        self.redis = redis
        self.read = read
        self.write = write

    def check(self, answer: Any) -> None:
        assert answer.status_code < 500, answer.text
        assert "Traceback" not in answer.text
        if answer.headers.get("content-type", "").startswith("application/json"):
            answer.json()


@pytest.fixture(scope="module")
def served(embedded_url: str) -> Iterator[Served]:
    read, write = (f"fz-{uuid.uuid4().hex[:8]}-{side}" for side in ("r", "w"))
    with bitstat.connect(embedded_url, namespace=read, schema=SHOP) as st_:
        st_.track_many(shop_events(visitors=40))
    bitstat.connect(embedded_url, namespace=write, schema=SHOP).close()
    config = ServerConfig(
        url=embedded_url,
        namespace=write,
        read_token=READ,
        write_token=WRITE,
        write_keys={KEY: write},
        max_body=256 * 1024,
        max_events=200,
    )
    redis = servers.client_for(embedded_url)
    with TestClient(create_app(config)) as client:
        yield Served(client, redis, read, write)
    for ns in (read, write):
        with bitstat.connect(embedded_url, namespace=ns) as st_:
            st_.drop()
    redis.close()


json_values = st.recursive(
    values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=12,
)
raw_bytes = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [b"", b"[", b"{", b"[" * 5000, b"\xff\xfe[\x00]\x00", b"\xef\xbb\xbf[]", b"null", b"1e999"]
    ),
)


def query_string(pairs: list[tuple[str, str]], raw: list[str]) -> str:
    def q(text: str) -> str:  # a lone surrogate goes as the bytes it would be: invalid UTF-8
        return quote(text.encode("utf-8", "surrogatepass"), safe="")

    encoded = [f"{q(n)}={q(v)}" for n, v in pairs]
    return "&".join(encoded + raw)


PARAMS = {e.path: [p.name for p in e.params] for e in (*ENDPOINTS, DASHBOARD)}
PARAMS.update({"/v1/span": ["namespace", "event"], "/v1/namespaces": []})
PARAMS.update({path: [] for path in ("/metrics", "/grafana/", "/healthz", "/readyz")})
ANY_NAME = sorted({name for names in PARAMS.values() for name in names})
param_values = st.one_of(
    time_texts,
    st.sampled_from(["visit", "purchase", "country", "item", "amount", "ip", "week", "month"]),
    st.sampled_from(["country:NL", "platform:", ":x", "2025-11", "2025-10-01", "3", "0", "-1"]),
    st.integers(-(10**20), 10**20).map(str),
    texts,
)


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    """A path and its parameters, mostly its own (repeated at times), now and then any."""
    path = draw(st.sampled_from(sorted(PARAMS)))
    own = PARAMS[path] or ANY_NAME
    names = st.one_of(st.sampled_from(own), st.sampled_from(own), st.sampled_from(ANY_NAME), texts)
    return path, draw(st.lists(st.tuples(names, param_values), max_size=7))


@FUZZ
@given(
    query=queries(),
    raw=st.lists(
        st.sampled_from(["%ED%A0%80=x", "event=%ED%A0%80", "%", "a=%zz", ";", "&&", "=", "x"]),
        max_size=2,
    ),
)
def test_any_query_string_is_answered(
    served: Served, query: tuple[str, list[tuple[str, str]]], raw: list[str]
) -> None:
    path, pairs = query
    pairs = [("namespace", served.read), *pairs] if path.startswith("/v1/") else pairs
    served.check(served.client.get(f"{path}?{query_string(pairs, raw)}", headers=AUTH))


def unchanged_unless_ok(served: Served, send: Any) -> Any:
    """Send; an answer other than 200 must have written nothing."""
    before = snapshot(served.redis, served.write)
    answer = send()
    served.check(answer)
    if answer.status_code != 200:
        assert snapshot(served.redis, served.write) == before, answer.text
    return answer


CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8", "text/plain"]


@FUZZ
@given(
    body=st.one_of(
        st.lists(events(), max_size=6).map(lambda b: json.dumps(b, allow_nan=True).encode()),
        events().map(lambda ev: json.dumps(ev, allow_nan=True).encode()),
        json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
        raw_bytes,
    ),
    content_type=st.sampled_from(CONTENT_TYPES),
    key=st.one_of(st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=126))),
)
def test_any_body_to_v1_track_is_answered_and_all_or_nothing(
    served: Served, body: bytes, content_type: str | None, key: str | None
) -> None:
    headers = {"Authorization": f"Bearer {WRITE}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if key is not None:
        headers["Idempotency-Key"] = key
    answer = unchanged_unless_ok(
        served, lambda: served.client.post("/v1/track", content=body, headers=headers)
    )
    if answer.status_code == 200:
        got = answer.json()
        sent = json.loads(body)
        count = len(sent) if isinstance(sent, list) else 1
        # a key met before names a batch recorded before: nothing more is recorded
        assert got["recorded"] + len(got["rejected"]) == count or (
            key is not None and got["recorded"] == 0
        )


def encoded(body: bytes, how: str) -> tuple[bytes, dict[str, str]]:
    if how == "gzip":
        return gzip.compress(body), {"Content-Encoding": "gzip"}
    if how == "deflate":
        return zlib.compress(body), {"Content-Encoding": "deflate"}
    if how == "bogus":
        return body, {"Content-Encoding": "br"}
    if how == "cut":
        return gzip.compress(body)[:-5], {"Content-Encoding": "gzip"}
    return body, {}


message_ids = st.one_of(st.sampled_from(["m1", "m2", "m3"]), st.uuids().map(str))


def corrupt(draw: st.DrawFn, msg: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A field or two (or one of its own) of a good message holding anything."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        msg[draw(st.sampled_from([*names, "x"]))] = draw(json_values)
    return msg


@st.composite
def segment_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A message of any type, as Segment and RudderStack send it, a field or two broken."""
    kind = draw(st.sampled_from(["track", "page", "screen", "identify", "group", "alias"]))
    msg: dict[str, Any] = {
        "type": kind,
        "userId": draw(st.sampled_from(["u1", "u2", 7])),
        "event": draw(st.sampled_from(["visit", "buy"])),
        "messageId": draw(message_ids),
        "timestamp": draw(st.sampled_from(["2025-11-04T10:00:00Z", "2025-11-05T10:00:00+01:00"])),
        "properties": {"country": "NL", "amount": 3},
    }
    extras = {
        "anonymousId": "a1",
        "sentAt": "2025-11-04T10:00:05Z",
        "context": {"traits": {"a": 1}, "os": {"name": "ios"}},
        "traits": {"plan": "pro"},
        "groupId": "g1",
        "previousId": "a1",
    }
    msg.update({k: v for k, v in extras.items() if draw(st.booleans())})
    return corrupt(draw, msg, [*msg, "writeKey", "originalTimestamp"])


ROUTE_TYPES = {"/v1/track": "track", "/v1/t": "track", "/v1/page": "page", "/v1/a": "alias"}
ROUTE_TYPES |= {"/v1/identify": "identify", "/v1/group": "group", "/v1/alias": "alias"}
ROUTE_TYPES |= {"/v1/s": "screen"}
SEGMENT_PATHS = ["/v1/batch", "/v1/b", "/v1/import", "/v1/track", "/v1/t", "/v1/page", "/v1/a"]
SEGMENT_PATHS += ["/v1/identify", "/v1/group", "/v1/alias", "/v1/s"]


@FUZZ
@given(
    path=st.sampled_from(SEGMENT_PATHS),
    body=st.one_of(
        st.lists(segment_messages(), max_size=4).map(lambda b: {"batch": b, "sentAt": DAY_T}),
        segment_messages(),
        json_values,
    ),
    how=st.sampled_from(["", "", "gzip", "deflate", "bogus", "cut"]),
    auth=st.sampled_from(["basic", "body", "none", "bearer"]),
)
def test_any_segment_request_is_answered_and_all_or_nothing(
    served: Served, path: str, body: Any, how: str, auth: str
) -> None:
    kind = ROUTE_TYPES.get(path)
    if kind is not None and isinstance(body, dict) and isinstance(body.get("type"), str):
        body = {**body, "type": kind}  # mostly the route's own type: one message, recorded
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    elif auth == "bearer":
        headers["Authorization"] = f"Bearer {WRITE}"
    elif auth == "body" and isinstance(body, dict):
        body = {**body, "writeKey": KEY}
    raw, more = encoded(json.dumps(body, allow_nan=True).encode(), how)
    send = lambda: served.client.post(path, content=raw, headers={**headers, **more})  # noqa: E731
    unchanged_unless_ok(served, send)


DAY_T = "2025-11-04T10:00:10Z"


@st.composite
def posthog_events(draw: st.DrawFn) -> dict[str, Any]:
    """A captured event as posthog's SDKs send it, a field or two broken."""
    ev: dict[str, Any] = {
        "event": draw(st.sampled_from(["visit", "$identify", "$create_alias", "$pageview"])),
        "distinct_id": draw(st.sampled_from(["u1", "u2", 5])),
        "uuid": draw(message_ids),
        "properties": {"country": "NL", "$anon_distinct_id": "a1", "alias": "a2"},
    }
    when = draw(st.sampled_from(["timestamp", "offset", None]))
    if when == "timestamp":
        ev["timestamp"] = draw(st.sampled_from(["2025-11-04T10:00:00Z", "2025-11-04T12:00+02:00"]))
    elif when == "offset":
        ev["offset"] = draw(st.sampled_from([10, 1.5]))
    if draw(st.booleans()):
        ev["$set"] = {"plan": "pro"}
    return corrupt(draw, ev, [*ev, "api_key", "token", "sent_at"])


POSTHOG_PATHS = ["/batch/", "/e/", "/capture", "/i/v0/e/", "/i/v1/analytics/events"]


@FUZZ
@given(
    path=st.sampled_from(POSTHOG_PATHS),
    body=st.one_of(
        st.lists(posthog_events(), max_size=4).map(lambda b: {"api_key": KEY, "batch": b}),
        posthog_events().map(lambda ev: {**ev, "api_key": KEY}),
        st.lists(posthog_events(), max_size=3),
        json_values,
    ),
    shape=st.sampled_from(["json", "gzip-js", "base64-form", "form", "gzip", "lz64", "garbage"]),
    bearer=st.booleans(),
)
def test_any_posthog_request_is_answered_and_all_or_nothing(
    served: Served, path: str, body: Any, shape: str, bearer: bool
) -> None:
    text = json.dumps(body, allow_nan=True).encode()
    query, headers = "", {"Content-Type": "application/json"}
    if shape == "gzip-js":
        query, text = "?compression=gzip-js", gzip.compress(text)
    elif shape == "gzip":
        text, headers["Content-Encoding"] = gzip.compress(text), "gzip"
    elif shape == "base64-form":
        query = "?compression=base64"
        text = b"data=" + quote(base64.b64encode(text).decode()).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif shape == "form":
        text = b"data=" + quote(text.decode("utf-8", "surrogatepass"), safe="").encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif shape == "lz64":
        query = "?compression=lz64"
    elif shape == "garbage":
        query, text = "?compression=base64", b"data=%%%not base64"
    if bearer:
        headers["Authorization"] = f"Bearer {KEY}"
    send = lambda: served.client.post(path + query, content=text, headers=headers)  # noqa: E731
    unchanged_unless_ok(served, send)


@FUZZ
@given(
    path=st.sampled_from(["/grafana/query", "/grafana/search", "/grafana/metrics"]),
    targets=st.lists(
        st.fixed_dictionaries(
            {
                "target": st.one_of(
                    st.sampled_from(
                        [
                            "unique:visit",
                            "total:visit",
                            "counts:visit:country",
                            "sums:purchase:amount",
                            "top:purchase:item",
                            "stickiness:visit",
                            "lifecycle:visit",
                            "funnel:visit,signup,purchase",
                            "retention:signup:purchase",
                        ]
                    ),
                    texts,
                    json_values,
                )
            },
            optional={
                "payload": st.one_of(
                    st.dictionaries(
                        st.sampled_from(
                            [
                                "by",
                                "where",
                                "limit",
                                "within",
                                "period",
                                "periods",
                                "kind",
                                "steps",
                                "event",
                                "prop",
                                "namespace",
                            ]
                        ),
                        st.one_of(param_values, json_values),
                        max_size=3,
                    ),
                    json_values.map(json.dumps),
                ),
                "type": st.sampled_from(["table", "timeserie", 3]),
                "hide": st.booleans(),
            },
        ),
        max_size=3,
    ),
    span=st.one_of(
        st.just({"from": "2025-10-01T00:00:00Z", "to": "2025-11-30T23:00:00Z"}),
        st.fixed_dictionaries({"from": time_texts, "to": time_texts}),
        json_values,
    ),
    interval=st.one_of(st.none(), st.integers(-1, 10**12), json_values),
)
def test_any_grafana_request_is_answered(
    served: Served, path: str, targets: list[Any], span: Any, interval: Any
) -> None:
    body = {"targets": targets, "range": span, "intervalMs": interval, "target": "visit"}
    headers = {**AUTH, "X-Bitstat-Namespace": served.read}
    answer = served.client.post(path, content=json.dumps(body, allow_nan=True), headers=headers)
    served.check(answer)


@FUZZ
@given(actor=st.one_of(texts, st.sampled_from(NASTY), st.integers(-5, 10**20).map(str)))
def test_any_actor_to_forget_is_answered(served: Served, actor: str) -> None:
    actor = quote(actor.encode("utf-8", "surrogatepass"), safe="") or "x"
    answer = served.client.delete(
        f"/v1/actors/{actor}?namespace={served.write}",
        headers={"Authorization": f"Bearer {WRITE}"},
    )
    served.check(answer)
