"""The security rules of the HTTP API (docs/security.md), a test or a few per rule:

1. tokens and write keys are compared in constant time, on every route that takes one; the
   write token is refused in the query, which proxies log;
2. the read token reads, the write token (or a write key) writes, on every route: neither
   opens the other side, and every route of the app is classified here;
3. every write route bounds its body, its body once inflated, and its count of events; a
   large body is parsed (in one of two slots) only once a valid key is seen;
4. no name reaches a key or a script as anything but data: events, properties, values and
   namespaces holding `{`, `}`, `:`, `*`, newlines, Lua or huge text are stored apart and read
   back as sent;
5. CORS is off unless origins are listed; pages of other origins cannot write;
6. answers carry nosniff, cannot be framed, and the dashboard runs under a CSP: a hostile event
   name is shown as text, in the live dashboard and in a report;
7. tokens that could never match (empty, spaces, non-ASCII) are refused when configured.

Run on the embedded server (the rules are the HTTP layer's; the library's escaping is tested
on every backend elsewhere).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hmac
import json
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import bitstat
import servers
from bitstat.cli import main
from bitstat.cli import web as cli_web
from bitstat.errors import BitstatError
from bitstat.keys import Keys
from bitstat.web import ServerConfig, check_bind, create_app, grafana, ingest, report, segment
from bitstat.web import config as web_config
from bitstat.web.browsers import same_origin
from browser import CHROMIUM
from webserver import running

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

READ, WRITE, SDK_KEY = "read-token-1", "write-token-1", "wk-shop-1"
DAY = "2025-11-04"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def guarded(embedded_url: str, namespace: str) -> Iterator[TestClient]:
    """A server with both tokens and one SDK write key, small limits."""
    config = ServerConfig(
        url=embedded_url,
        namespace=namespace,
        read_token=READ,
        write_token=WRITE,
        write_keys={SDK_KEY: namespace},
        max_body=64 * 1024,
        max_events=50,
        cors_origins=(),
    )
    with TestClient(create_app(config)) as client:
        yield client
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        st.drop()


# 1 and 2: every route, by kind

OPEN = {"/", "/openapi.json", "/healthz", "/readyz", "/static"}
SEGMENT = {r.path for r in segment.routes(None, None)[0]} | {"/v1/track"}  # type: ignore[arg-type]


def kind_of(path: str, methods: set[str]) -> str:
    """How a route is guarded: open, read (the read token), write (the write token), sdk
    (a write key or the write token, as the SDKs send it), posthog (the same, PostHog's way)."""
    if path in OPEN:
        return "open"
    if path in ("/v1/track", "/v1/actors/{actor:path}"):
        return "write"
    if path in SEGMENT:
        return "sdk"
    if path.startswith(("/batch", "/capture", "/e", "/i/")):
        return "posthog"
    if "GET" in methods or path.startswith(grafana.PREFIX):
        return "read"
    raise AssertionError(f"route {path} is not classified: say here how it is guarded")


def request_to(client: TestClient, path: str, methods: set[str], credential: str | None) -> Any:
    """A request to the route, carrying `credential` the way its clients send one."""
    concrete = path.replace("{actor:path}", "u-1")
    kind = kind_of(path, methods)
    if kind == "sdk":
        headers = basic(credential) if credential else {}
        body = {"type": "track", "userId": "u1", "event": "e", "timestamp": DAY}
        if path in ("/v1/batch", "/v1/import", "/v1/b"):
            body = {"batch": [body]}
        elif path != "/v1/track":
            body = {"userId": "u1", "event": "e", "groupId": "g", "previousId": "p"}
        return client.post(concrete, json=body, headers=headers)
    if kind == "posthog":
        event = {"event": "e", "distinct_id": "u1", "timestamp": DAY}
        if path.startswith("/i/v1/"):
            return client.post(
                concrete, json={"batch": [event]}, headers=bearer(credential) if credential else {}
            )
        body = {**event, "api_key": credential} if credential else event
        return client.post(concrete, json=body)
    headers = bearer(credential) if credential else {}
    if "DELETE" in methods:
        return client.delete(concrete, headers=headers)
    if "POST" in methods:
        body: Any = {"event": "e", "user": 1, "time": DAY} if kind == "write" else {}
        return client.post(concrete, json=body, headers=headers)
    return client.get(concrete, headers=headers)


def routes(client: TestClient) -> list[tuple[str, set[str]]]:
    app: Any = client.app
    return [(r.path, set(getattr(r, "methods", None) or {"GET"})) for r in app.routes]


def test_every_route_takes_its_own_side_only(guarded: TestClient) -> None:
    own = {"read": [READ], "write": [WRITE], "sdk": [SDK_KEY, WRITE], "posthog": [SDK_KEY, WRITE]}
    seen = set()
    for path, methods in routes(guarded):
        kind = kind_of(path, methods)
        seen.add(kind)
        if kind == "open":
            continue
        other = WRITE if kind == "read" else READ
        for credential in (None, other, "not-a-token"):
            answer = request_to(guarded, path, methods, credential)
            assert answer.status_code == 401, (path, credential, answer.text)
        for credential in own[kind]:
            answer = request_to(guarded, path, methods, credential)
            assert answer.status_code != 401, (path, credential, answer.text)
            assert answer.status_code < 500, (path, answer.text)
    assert seen == {"open", "read", "write", "sdk", "posthog"}


def test_the_open_routes_hold_no_data(guarded: TestClient) -> None:
    """The page, the API description, the probes and static files answer without a token;
    none of them tells an event, a namespace or a count."""
    for path in ("/", "/openapi.json", "/healthz", "/readyz", "/static/dashboard.js"):
        answer = guarded.get(path)
        assert answer.status_code == 200, path
    assert guarded.get("/readyz").json() == {"status": "ready"}
    # the metrics tell how many events arrive: the read token's, like the data
    assert guarded.get("/metrics").status_code == 401
    assert "bitstat_events_total" in guarded.get("/metrics", headers=bearer(READ)).text


def test_every_token_and_key_is_compared_in_constant_time(
    guarded: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for path, methods in routes(guarded):
        if kind_of(path, methods) == "open":
            continue
        compared.clear()
        assert request_to(guarded, path, methods, "wrong-token").status_code == 401, path
        assert any(b"wrong-token" in pair for pair in compared), f"{path}: no compare_digest"
    # and nothing in the web layer compares a token or a key with == or !=
    import ast
    import inspect

    from bitstat import web

    for module in (web.app, web.auth, web.grafana, web.ingest, web.metrics, web.posthog):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
            ):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                secret = [n for n in names if "token" in n.lower() or n.lower().endswith("key")]
                assert not secret, f"{module.__name__}: {ast.unparse(node)}"


def test_a_write_key_writes_only_its_own_namespace(guarded: TestClient, namespace: str) -> None:
    """An SDK key names its namespace; nothing in the request can send its events elsewhere."""
    message = {"type": "track", "userId": "u1", "event": "e", "timestamp": DAY}
    other = f"{namespace}-other"
    answer = guarded.post(
        f"/v1/batch?namespace={other}",
        json={"batch": [message]},
        headers={**basic(SDK_KEY), "X-Bitstat-Namespace": other},
    )
    assert answer.json()["recorded"] == 1
    ask = {"event": "e", "start": DAY}
    assert guarded.get("/v1/unique", params=ask, headers=bearer(READ)).json() == {"unique": 1}
    elsewhere = guarded.get("/v1/unique", params={**ask, "namespace": other}, headers=bearer(READ))
    assert elsewhere.status_code == 404  # nothing was recorded there


def test_the_write_token_is_refused_in_the_query(
    guarded: TestClient, embedded_url: str, namespace: str
) -> None:
    """A reverse proxy logs the query: the write token (which also erases actors and writes
    to any namespace) sent as `?writeKey=` or `?token=` was taken, and so written to its log.
    It is refused with a 400 that says to send it in the Authorization header, before the body
    is read; in a header or the body it is taken, and a write key may still come in the query
    (sendBeacon cannot set a header)."""
    message = {"type": "track", "userId": "u1", "event": "e", "timestamp": DAY}
    event = {"event": "e", "distinct_id": "u1", "timestamp": DAY}
    refused = [
        guarded.post(f"/v1/batch?writeKey={WRITE}", json={"batch": [message]}),
        guarded.post(f"/beacon/v1/batch?writeKey={WRITE}", json={"batch": [message]}),
        guarded.post(f"/v1/t?writeKey={WRITE}", json=message, headers=basic(SDK_KEY)),
        guarded.post(f"/capture/?token={WRITE}", json=event),
        guarded.post(f"/e/?token={WRITE}", json={**event, "api_key": SDK_KEY}),
        guarded.post(f"/i/v1/analytics/events?token={WRITE}", json=[event]),
    ]
    for answer in refused:
        assert answer.status_code == 400, answer.text
        said = answer.json()
        assert said["code"] == "token_in_query"
        assert "in the Authorization header" in said.get("message", said.get("detail"))
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        assert st.events() == []
    taken = [
        guarded.post("/v1/batch", json={"batch": [message]}, headers=basic(WRITE)),
        guarded.post("/v1/batch", json={"batch": [message], "writeKey": WRITE}),
        guarded.post("/capture/", json={**event, "api_key": WRITE}),
        guarded.post("/i/v1/analytics/events", json=[event], headers=bearer(WRITE)),
        guarded.post(f"/beacon/v1/batch?writeKey={SDK_KEY}", json={"batch": [message]}),
        guarded.post(f"/capture/?token={SDK_KEY}", json=event),
    ]
    assert [a.status_code for a in taken] == [200] * len(taken), [a.text for a in taken]


# 3: limits on every write route


# (path, credentials, body limit, the status past it: Segment's API answers 400, others 413)
WRITE_ROUTES = [
    ("/v1/track", bearer(WRITE), 64 * 1024, 413),
    ("/v1/batch", basic(SDK_KEY), 64 * 1024, 400),
    ("/v1/t", basic(SDK_KEY), segment.MAX_MESSAGE, 400),
    ("/batch/", {}, 64 * 1024, 413),
    ("/i/v1/analytics/events", bearer(SDK_KEY), 64 * 1024, 413),
    ("/grafana/query", bearer(READ), grafana.MAX_BODY, 413),
]


@pytest.mark.parametrize(("path", "headers", "limit", "status"), WRITE_ROUTES)
def test_a_body_past_the_limit_is_refused_declared_or_streamed(
    guarded: TestClient, path: str, headers: dict[str, str], limit: int, status: int
) -> None:
    body = b"[" + b" " * limit + b"]"
    answer = guarded.post(path, content=body, headers=headers)
    assert answer.status_code == status, answer.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(limit // 4096 + 2):
            yield b" " * 4096

    answer = guarded.post(path, content=chunks(), headers=headers)
    assert answer.status_code == status, answer.text


BOMB_SIZE = 30 * 1024 * 1024  # inflates a thousandfold: under every raw limit, over any inflated


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/batch", {**basic(SDK_KEY), "Content-Encoding": "gzip"}),
        ("/v1/track", {**basic(SDK_KEY), "Content-Encoding": "gzip"}),
        ("/v1/t", {**basic(SDK_KEY), "Content-Encoding": "gzip"}),
        ("/batch/", {"Content-Encoding": "gzip"}),
        ("/batch/?compression=gzip-js", {}),
        ("/e/", {"Content-Encoding": "deflate"}),
    ],
)
def test_a_gzip_bomb_is_refused_by_its_inflated_size(
    guarded: TestClient, path: str, headers: dict[str, str]
) -> None:
    """30 MB of spaces in a 30 KB body: inflated only up to the limit, then refused."""
    inflated = b'{"batch": [' + b" " * BOMB_SIZE + b"]}"
    pack = zlib.compress if headers.get("Content-Encoding") == "deflate" else gzip.compress
    body = pack(inflated, 9)
    assert len(body) < segment.MAX_MESSAGE
    answer = guarded.post(path, content=body, headers=headers)
    assert answer.status_code in (400, 413), answer.text
    assert "once inflated" in answer.text or "larger than" in answer.text, answer.text


def test_more_events_than_max_events_is_refused_and_records_nothing(
    guarded: TestClient, embedded_url: str, namespace: str
) -> None:
    events = [{"event": "e", "user": i, "time": DAY} for i in range(51)]
    track = guarded.post("/v1/track", json=events, headers=bearer(WRITE))
    assert track.status_code == 413 and "50 a request" in track.json()["error"]
    messages = [{"type": "track", "userId": f"u{i}", "event": "e"} for i in range(51)]
    batch = guarded.post("/v1/batch", json={"batch": messages}, headers=basic(SDK_KEY))
    assert batch.status_code == 400 and batch.json()["code"] == "payload_too_large"  # Segment's
    captured = [{"event": "e", "distinct_id": f"u{i}"} for i in range(51)]
    posthog = guarded.post("/batch/", json={"api_key": SDK_KEY, "batch": captured})
    assert posthog.status_code == 413
    v1 = guarded.post("/i/v1/analytics/events", json=captured, headers=bearer(SDK_KEY))
    assert v1.status_code == 413
    # each one rejected would be a line of the answer: 50 of them are answered, and listed
    answer = guarded.post("/v1/track", json=[1] * 50, headers=bearer(WRITE)).json()
    assert answer["recorded"] == 0 and len(answer["rejected"]) == 50
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        assert st.events() == []


def test_grafana_targets_are_bounded_like_the_v1_endpoints(
    guarded: TestClient, embedded_url: str, namespace: str
) -> None:
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        st.track("e", user=1, time=DAY)
    decade = {"from": "2015-01-01T00:00:00Z", "to": "2025-12-31T00:00:00Z"}

    def ask(target: str, payload: dict[str, Any]) -> Any:
        body = {"range": decade, "targets": [{"target": target, "payload": payload}]}
        return guarded.post("/grafana/query", json=body, headers=bearer(READ))

    for target, payload, says in [
        ("unique:e", {"by": "hour"}, "at most 5000 points"),
        ("top:e:p", {"limit": 10**9}, "from 1 to 1000"),
        ("retention:e:e", {"periods": 10**6}, "from 1 to 104"),
        ("stickiness:e", {}, "longer than"),
        ("funnel:e,e,e,e,e,e", {"within": "400d"}, "more than 20000"),
        ("lifecycle:e", {"period": "day"}, "more than 520 periods"),
        ("unique:e", {"where": {"columns": 10**6}}, "cannot be a segment filter"),
        ("unique:e", {"where": ["x"]}, "must be an object"),
    ]:
        answer = ask(target, payload)
        assert answer.status_code == 400, (target, answer.text)
        assert says in answer.json()["error"], (target, answer.text)
    deep = guarded.post("/grafana/query", content=b"[" * 100_000, headers=bearer(READ))
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]


LARGE = 1_200  # messages of a body over 64 KiB in every shape below


def _large(shape: str, key: str) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of a request of over 64 KiB in one of the SDKs' shapes, its key
    `key` where that shape carries it."""
    messages = [
        {"type": "track", "userId": f"u{i}", "event": "big", "timestamp": DAY} for i in range(LARGE)
    ]
    events = [{"event": "big", "distinct_id": f"u{i}", "timestamp": DAY} for i in range(LARGE)]
    text = json.dumps
    if shape == "segment basic":
        return "/v1/batch", text({"batch": messages}).encode(), basic(key)
    if shape == "segment body":  # analytics.js, a page: no header it can keep secret
        return "/v1/batch", text({"batch": messages, "writeKey": key}).encode(), {}
    if shape == "segment none":
        return "/v1/batch", text({"batch": messages}).encode(), {}
    if shape == "posthog body":  # posthog-python, posthog-node
        return "/batch/", text({"api_key": key, "batch": events}).encode(), {}
    if shape == "posthog v1":
        return "/i/v1/analytics/events", text(events).encode(), bearer(key)
    if shape == "posthog-js gzip":  # the key in each event's properties, a gzip body
        marked = [{**e, "properties": {"token": key}} for e in events]
        return "/e/?compression=gzip-js", gzip.compress(text(marked).encode()), {}
    assert shape == "posthog-js base64"  # a form `data=` of base64, with an escaped key
    data = text([{**e, "properties": {"token": key}} for e in events]).replace("/", "\\/")
    body = b"data=" + base64.b64encode(data.encode())
    return "/e/?compression=base64", body, {"Content-Type": "application/x-www-form-urlencoded"}


LARGE_SHAPES = [
    "segment basic",
    "segment body",
    "segment none",
    "posthog body",
    "posthog v1",
    "posthog-js gzip",
    "posthog-js base64",
]


def test_a_large_body_takes_a_parsing_slot_only_with_a_valid_key(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests at a time parse a body over 64 KiB. A body without a valid key took a slot
    to be parsed before its key was checked, so clients with no key could keep both busy and
    every SDK's large batch waited. With both slots taken (two batches of a valid key, held
    while they are recorded), a large body without a valid key is answered 401 at once, its
    key in a header, in its body or nowhere; the two held are then answered in full."""
    inside, release = [0], threading.Event()
    real = ingest.record_once

    async def held(*args: Any, **kwargs: Any) -> Any:
        inside[0] += 1
        while not release.is_set():
            await asyncio.sleep(0.01)
        return await real(*args, **kwargs)

    monkeypatch.setattr(ingest, "record_once", held)
    config = ServerConfig(
        url=embedded_url,
        namespace=namespace,
        read_token=READ,
        write_token=WRITE,
        write_keys={SDK_KEY: namespace},
    )
    holders: list[httpx.Response] = []
    with running(config) as base:

        def hold() -> None:
            path, body, headers = _large("segment basic", SDK_KEY)
            holders.append(httpx.post(f"{base}{path}", content=body, headers=headers, timeout=60))

        threads = [threading.Thread(target=hold) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            give_up = time.monotonic() + 30
            while inside[0] < 2 and time.monotonic() < give_up:
                time.sleep(0.01)
            assert inside[0] == 2  # both slots are taken
            for shape in LARGE_SHAPES:
                path, body, headers = _large(shape, "wrong-key")
                answer = httpx.post(f"{base}{path}", content=body, headers=headers, timeout=5)
                assert answer.status_code == 401, (shape, answer.text)
        finally:
            release.set()
            for thread in threads:
                thread.join(timeout=60)
    assert [a.json()["recorded"] for a in holders] == [LARGE, LARGE]


@pytest.mark.parametrize("shape", [s for s in LARGE_SHAPES if s != "segment none"])
def test_a_large_body_with_a_valid_key_is_recorded(
    embedded_url: str, namespace: str, shape: str
) -> None:
    """A large body's key is looked for in its text before it is parsed: wherever the SDKs
    put it (a header, the body, each event's properties; gzip, base64, `\\/` escaped), the
    body is taken."""
    config = ServerConfig(
        url=embedded_url,
        namespace=namespace,
        read_token=READ,
        write_token=WRITE,
        write_keys={"wk/shop-1": namespace},
    )
    path, body, headers = _large(shape, "wk/shop-1")
    with TestClient(create_app(config)) as client:
        answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        assert st.unique("big", DAY) == LARGE
        st.drop()


def test_a_large_body_whose_key_comes_after_many_strings_so_named_is_recorded(
    embedded_url: str, namespace: str
) -> None:
    """posthog-python sends `{"batch": [...], "sentAt": ..., "api_key": KEY}`, the key last.
    Events carrying a property named `token` (a session or coupon token) of more than 100
    values put that many strings so named before it, and only the first 100 were compared
    with the keys: the batch was refused 401, which the SDK does not send again."""
    config = ServerConfig(
        url=embedded_url,
        namespace=namespace,
        write_token=WRITE,
        write_keys={SDK_KEY: namespace},
    )
    events = [
        {"event": "big", "distinct_id": f"u{i}", "properties": {"token": f"t{i}"}}
        for i in range(LARGE)
    ]
    body = {"batch": events, "sentAt": f"{DAY}T12:00:00+00:00", "api_key": SDK_KEY}
    for event in events:
        event["timestamp"] = f"{DAY}T10:00:00+00:00"
    with TestClient(create_app(config)) as client:
        answer = client.post("/batch/", content=json.dumps(body).encode())
    assert answer.status_code == 200, answer.text
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        assert st.unique("big", DAY) == LARGE
        st.drop()


# 4: no key or script injection from any name


NAMES = [
    "a}b{c",
    "{tag}",
    "x:y:*",
    "*",
    "?[a-z]",
    "line\nbreak",
    "'); redis.call('FLUSHALL') --",
    "]]..redis.call('DEL', KEYS[1])..[[",
    "%41~=",
    "émoji 😀",
    "v" * 1_000,
]


def every_key(client: servers.Client) -> set[bytes]:
    return set(client.scan_iter(count=1000))


def test_names_and_values_reach_redis_as_data_only(embedded_url: str, namespace: str) -> None:
    schema = bitstat.Schema(
        ids="map", count=["kind"], top=["item"], unique=["ip"], segment=["kind"], sum=["n by kind"]
    )
    hostile_namespace = namespace + "}{:*"
    config = ServerConfig(url=embedded_url, namespace=namespace)
    client = servers.client_for(embedded_url)
    before = every_key(client)
    sent: list[dict[str, Any]] = []
    for i, text in enumerate(NAMES):
        short = text[:200]  # names are at most 200 characters, values longer
        sent.append(
            {
                "event": short if short.isprintable() else f"e{i}",
                "user": text,
                "time": DAY,
                "kind": text,
                "item": text,
                "ip": text,
                "n": 1,
            }
        )
    try:
        with TestClient(create_app(config)) as c:
            for ns in (namespace, hostile_namespace):
                bitstat.connect(embedded_url, namespace=ns, schema=schema).close()
                answer = c.post(f"/v1/track?namespace={_q(ns)}", json=sent)
                assert answer.json() == {"recorded": len(NAMES), "rejected": []}
                for ev in sent:
                    ask = {"namespace": ns, "event": ev["event"], "start": DAY}
                    got = c.get("/v1/unique", params={**ask, "where": f"kind:{ev['kind']}"})
                    assert got.json() == {"unique": 1}, ev["event"]
                    counts = c.get("/v1/counts", params={**ask, "prop": "kind"}).json()
                    assert counts == {"counts": [{"value": ev["kind"], "count": 1}]}
                    top = c.get("/v1/top", params={**ask, "prop": "item"}).json()
                    assert top == {"top": [{"value": ev["item"], "count": 1}]}
                    sums = c.get("/v1/sums", params={**ask, "prop": "n", "by": "kind"}).json()
                    assert sums == {"sums": [{"value": ev["kind"], "sum": 1.0}]}
                    assert c.get("/v1/distinct", params={**ask, "prop": "ip"}).json() == {
                        "distinct": 1
                    }
                names = c.get("/v1/events", params={"namespace": ns}).json()["events"]
                assert names == sorted(ev["event"] for ev in sent)
                gone = c.delete(f"/v1/actors/{_q(NAMES[0])}", params={"namespace": ns})
                assert gone.json()["found"] is True
            # every new key is a key of one of the two namespaces: its hash tag (what Redis
            # hashes: from the first { to the next }) is the namespace, escaped, or starts with
            # it and a colon; the escaped text holds no {, } or :, so the tag cannot stretch
            escaped = {Keys(ns).ns.encode() for ns in (namespace, hostile_namespace)}
            new = every_key(client) - before
            assert new
            for key in new:
                assert key.startswith(b"{"), key
                tag = key[1 : key.index(b"}")]
                assert tag.split(b":")[0] in escaped, key
            assert before <= every_key(client)  # nothing of anyone else's is gone
    finally:
        for ns in (namespace, hostile_namespace):
            with bitstat.connect(embedded_url, namespace=ns) as st:
                st.drop()
        client.close()


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@pytest.mark.parametrize(
    ("ns", "says"),
    [("a\nb", "unprintable"), ("n" * 201, "201 characters long"), ("\u2028", "unprintable")],
)
def test_an_unusable_namespace_is_a_400_naming_it(guarded: TestClient, ns: str, says: str) -> None:
    answer = guarded.get(
        "/v1/events", params={"namespace": ns}, headers=bearer(READ)
    )  # a read; a write the same
    assert answer.status_code == 400 and answer.json()["parameter"] == "namespace"
    assert says in answer.json()["error"]
    write = guarded.post(
        f"/v1/track?namespace={_q(ns)}", json={"event": "e", "user": 1}, headers=bearer(WRITE)
    )
    assert write.status_code == 400 and write.json()["parameter"] == "namespace"


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/batch", {"writeKey": "\ud800", "batch": []}, {}),
        ("/batch/", {"api_key": "\ud800", "batch": []}, {}),
        ("/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "e",
                                  "messageId": "m\udc00"}]}, basic(SDK_KEY)),
        ("/e/", {"api_key": SDK_KEY, "event": "e", "distinct_id": "u", "uuid": "\udc00"}, {}),
        ("/e/", {"api_key": SDK_KEY, "event": "e", "distinct_id": "\udc00"}, {}),
        ("/v1/track", [{"event": "e", "user": 1, "time": DAY, "p": "\udc00"}], bearer(WRITE)),
        ("/grafana/search", {"target": "\udc00"}, bearer(READ)),
    ],
)  # fmt: skip
def test_lone_surrogates_anywhere_are_answered_not_500(
    guarded: TestClient, path: str, body: Any, headers: dict[str, str]
) -> None:
    """JSON may hold a lone surrogate (`"\\ud800"`), which no UTF-8 text can: in a key, an
    id or an echoed value it is refused or escaped, never a 500."""
    raw = json.dumps(body).encode()  # ASCII, with \\udc00 escapes
    answer = guarded.post(
        path, content=raw, headers={**headers, "Content-Type": "application/json"}
    )
    assert answer.status_code < 500, answer.text
    answer.json()  # valid JSON, even when it echoes the text


HUGE = "9" * 5_000  # an integer of more digits than Python converts (4,300)


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/track", f'{{"event": "e", "user": {HUGE}}}', bearer(WRITE)),
        ("/v1/track", f'[{{"event": "e", "user": 1, "n": {HUGE}}}]', bearer(WRITE)),
        ("/v1/batch", f'{{"batch": [{{"type": "track", "userId": {HUGE}, "event": "e"}}]}}',
         basic(SDK_KEY)),
        ("/batch/", f'{{"api_key": "{SDK_KEY}", "batch": [{{"event": "e", "distinct_id": 1,'
                    f' "n": {HUGE}}}]}}', {}),
        ("/grafana/query", f'{{"targets": [], "n": {HUGE}}}', bearer(READ)),
    ],
)  # fmt: skip
def test_an_integer_too_long_to_read_is_malformed_json(
    guarded: TestClient, path: str, body: str, headers: dict[str, str]
) -> None:
    """json.loads refuses an integer of more than 4,300 digits with a bare ValueError (not a
    JSONDecodeError): it was a 500 on every ingest route, and Python's advice to a client."""
    answer = guarded.post(
        path, content=body.encode(), headers={**headers, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert "a number of 5,000 digits; at most 4,300 are read" in answer.text
    assert "sys.set_int_max_str_digits" not in answer.text


def test_an_integer_too_long_to_read_in_a_large_body_is_malformed_json(
    embedded_url: str, namespace: str
) -> None:
    """A body over 64 KiB is parsed in pieces, off the event loop: the same answer."""
    events = ",".join(['{"event": "e", "user": 1, "p": "' + "x" * 1_000 + '"}'] * 100)
    body = f'[{events}, {{"event": "e", "user": {HUGE}}}]'.encode()
    with TestClient(create_app(ServerConfig(url=embedded_url, namespace=namespace))) as c:
        answer = c.post("/v1/track", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "malformed JSON: a number of 5,000 digits" in answer.json()["error"]


# 5: CORS and writes from pages of other origins


def test_cors_is_off_unless_configured(guarded: TestClient, embedded_url: str) -> None:
    page = {"Origin": "https://evil.example"}
    preflight = guarded.options(
        "/v1/track",
        headers={**page, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    read = guarded.get("/v1/events", headers={**page, **bearer(READ)})
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
    # a page may not write, even with a key it found: no simple-request CSRF either
    for path, body, headers in [
        ("/v1/track", b'{"event": "e", "user": 1}', {}),
        ("/e/", json.dumps({"api_key": SDK_KEY, "event": "e", "distinct_id": "u"}).encode(), {}),
        ("/v1/t", json.dumps({"writeKey": SDK_KEY, "userId": "u", "event": "e"}).encode(), {}),
    ]:
        answer = guarded.post(
            path, content=body, headers={**page, **headers, "Content-Type": "text/plain"}
        )
        assert answer.status_code == 403, (path, answer.text)
        assert "not listed" in answer.json()["error"]
    assert guarded.delete("/v1/actors/1", headers={**page, **bearer(WRITE)}).status_code == 403
    # the server's own pages, and clients that are not browsers, write as before
    own = guarded.post(
        "/v1/track",
        json={"event": "e", "user": 1, "time": DAY},
        headers={"Origin": "http://testserver", **bearer(WRITE)},
    )
    assert own.status_code == 200 and "access-control-allow-origin" not in own.headers
    assert (
        guarded.post(
            "/v1/track", json={"event": "e", "user": 2, "time": DAY}, headers=bearer(WRITE)
        ).json()["recorded"]
        == 1
    )


def test_listed_origins_may_call_the_api(embedded_url: str, namespace: str) -> None:
    shop = "https://shop.example"
    config = ServerConfig(
        url=embedded_url,
        namespace=namespace,
        write_keys={SDK_KEY: namespace},
        cors_origins=(shop + "/", "http://localhost:3000"),
    )
    with TestClient(create_app(config)) as c:
        preflight = c.options(
            "/i/v0/e/",
            headers={
                "Origin": shop,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == shop
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "Content-Type" in preflight.headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in preflight.headers
        # posthog-js from the shop's page: a simple request, answered for the page to read
        sent = c.post(
            "/i/v0/e/?compression=base64",
            content=b"data="
            + base64.b64encode(
                json.dumps({"api_key": SDK_KEY, "event": "e", "distinct_id": "u1"}).encode()
            ),
            headers={"Origin": shop, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert sent.status_code == 200 and sent.json()["recorded"] == 1
        assert sent.headers["access-control-allow-origin"] == shop
        assert "Origin" in sent.headers["vary"]
        assert (
            c.post(
                "/e/", json={"event": "e"}, headers={"Origin": "https://shop.example.evil"}
            ).status_code
            == 403
        )
    with TestClient(create_app(ServerConfig(url=embedded_url, cors_origins=("*",)))) as c:
        anyone = c.get("/healthz", headers={"Origin": "https://a.example"})
        assert anyone.headers["access-control-allow-origin"] == "https://a.example"
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        st.drop()


def test_cors_origins_are_checked_and_read_from_the_environment(
    embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bad in ("shop.example", "ftp://shop.example", "https://shop.example/path", "null"):
        with pytest.raises(BitstatError, match="CORS origin"):
            ServerConfig(cors_origins=(bad,))
    assert ServerConfig(cors_origins=("HTTPS://Shop.Example:443",)).cors_origins == (
        "https://shop.example",
    )
    monkeypatch.setenv(web_config.CORS_ORIGINS_ENV, "https://a.example, https://b.example")
    with TestClient(create_app(ServerConfig(url=embedded_url))) as c:
        answer = c.get("/healthz", headers={"Origin": "https://b.example"})
        assert answer.headers["access-control-allow-origin"] == "https://b.example"
    result = CliRunner().invoke(
        main, ["--url", embedded_url, "serve", "--cors-origin", "shop.example"]
    )
    assert result.exit_code != 0 and "CORS origin 'shop.example'" in result.output


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://testserver", "testserver", True),
        ("https://stats.example.com", "stats.example.com", True),
        ("https://stats.example.com", "stats.example.com:443", True),
        ("http://127.0.0.1:8600", "127.0.0.1:8600", True),
        ("http://[::1]:8600", "[::1]:8600", True),
        ("http://127.0.0.1:8600", "127.0.0.1:8601", False),
        ("http://evil.example", "127.0.0.1:8600", False),
        ("null", "127.0.0.1:8600", False),
        ("http://a.example", None, False),
        ("http://a.example:99999", "a.example", False),
    ],
)
def test_a_page_is_the_servers_own_when_its_origin_names_the_host(
    origin: str, host: str | None, same: bool
) -> None:
    assert same_origin(origin, host) is same


def test_the_cli_limits_match_the_servers() -> None:
    assert cli_web.MAX_EVENTS == web_config.DEFAULT_MAX_EVENTS


# 6: headers and the dashboard under its policy


def test_answers_say_nosniff_and_refuse_frames(guarded: TestClient) -> None:
    for path, headers in [("/v1/events", bearer(READ)), ("/v1/events", {}), ("/", {})]:
        answer = guarded.get(path, headers=headers)
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    policy = guarded.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


HOSTILE = '<img src=x onerror="window.__owned=1">'


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing")
def test_a_hostile_event_name_is_text_in_the_dashboard(
    browser: Any, embedded_url: str, namespace: str
) -> None:
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        st.track(HOSTILE, user=1, time=DAY)
        st.track(HOSTILE, user=2, time="2025-11-05")
    errors: list[str] = []
    try:
        with running(ServerConfig(url=embedded_url, namespace=namespace)) as base:
            context = browser.new_context()  # the page's own policy, not bypassed
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{base}/#event={_q(HOSTILE)}&start=2025-11-01&end=2025-11-30")
            page.locator("#kpi-unique").filter(has_text="2").wait_for(timeout=15_000)
            assert page.locator("#event option").first.text_content() == HOSTILE
            assert page.evaluate("window.__owned") is None
            assert page.locator("img[src=x]").count() == 0
            context.close()
    finally:
        with bitstat.connect(embedded_url, namespace=namespace) as st:
            st.drop()
    assert errors == []  # a script the policy refused would show here


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.inside = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.inside = tag == "script"
        if self.inside:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.scripts[-1] += data


def test_a_report_keeps_hostile_names_inside_its_data() -> None:
    name = "</script><!--<script>alert(1)</script>"
    page = report.render({"events": [name], "event": name, "namespace": "n"})
    parser = _Scripts()
    parser.feed(page)
    assert len(parser.scripts) == 3  # the chart library, the data, the dashboard
    data = parser.scripts[1]
    assert data.startswith("window.BITSTAT_REPORT = ") and data.endswith(";")
    assert json.loads(data.removeprefix("window.BITSTAT_REPORT = ")[:-1])["data"]["event"] == name


# 7: tokens that could never guard


@pytest.mark.parametrize("token", ["", " ", "two words", "pässword", "tab\there"])
def test_a_token_that_cannot_be_sent_is_refused(token: str) -> None:
    with pytest.raises(BitstatError, match="token"):
        ServerConfig(read_token="r", write_token=token)
    with pytest.raises(BitstatError, match="token"):
        ServerConfig(read_token=token)


def test_both_tokens_are_needed_beyond_loopback() -> None:
    check_bind("0.0.0.0", ServerConfig(read_token="r", write_token="w"))
    with pytest.raises(BitstatError):
        check_bind("0.0.0.0", ServerConfig(read_token="r"))
