"""The Segment HTTP Tracking API of `bitstat serve`, spoken by the real SDKs.

`segment-analytics-python` and `rudder-sdk-python` send tracks, pages, screens, identifies,
groups and aliases to a server started here; the answers are compared with the reference
model fed the events the calls mean (docs/ingest.md, the mapping tables). Re-sent messages
(same messageId) count once; a wrong write key records nothing.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

import bitstat
from bitstat.web import ServerConfig, ingest
from bitstat.web.config import write_keys_from_env
from bitstat.web.posthog import event_time as posthog_event_time
from bitstat.web.segment import event_time
from model import Model
from webserver import running

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RULES: dict[str, Any] = {
    "count": ["plan", "context.os.name", "name", "groupId"],
    "sum": ["amount", "amount by plan"],
    "top": ["item"],
    "segment": ["plan"],
}
FIRST = datetime(2025, 11, 3, tzinfo=UTC)
EVENTS = ("purchase", "page", "screen", "identify", "group", "alias", "signup")


def calls(seed: int, n: int = 240) -> list[dict[str, Any]]:
    """SDK calls of a small product: who, what, when, with which properties and context."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for k in range(n):
        user = f"user-{rnd.randrange(30)}" if rnd.random() < 0.7 else None
        anon = f"anon-{rnd.randrange(40):04x}" if user is None or rnd.random() < 0.3 else None
        when = FIRST + timedelta(days=rnd.randrange(20), hours=rnd.randrange(1, 23))
        call: dict[str, Any] = {
            "kind": rnd.choice(["track", "track", "page", "screen", "identify", "group", "alias"]),
            "user_id": user,
            "anonymous_id": anon,
            "timestamp": when,
            "message_id": f"m-{seed}-{k}",
            "context": {"os": {"name": rnd.choice(["iOS", "Android", "Linux"])}},
        }
        if call["kind"] == "track":
            call["event"] = rnd.choice(["purchase", "signup"])
            call["properties"] = {"plan": rnd.choice(["free", "pro"]), "item": f"sku-{k % 5}"}
            if call["event"] == "purchase":
                call["properties"]["amount"] = round(rnd.uniform(1, 50), 2)
        elif call["kind"] in ("page", "screen"):
            call["name"] = rnd.choice(["Home", "Pricing", "Docs"])
            call["properties"] = {"plan": rnd.choice(["free", "pro"])}
        elif call["kind"] == "identify":
            call["traits"] = {"plan": rnd.choice(["free", "pro"])}
        elif call["kind"] == "group":
            call["group_id"] = f"org-{rnd.randrange(4)}"
            call["traits"] = {"plan": "team"}
        else:  # alias: a user id is required
            call["user_id"] = call["user_id"] or f"user-{rnd.randrange(30)}"
            call["previous_id"] = f"anon-{rnd.randrange(40):04x}"
        out.append(call)
    return out


def expected(call: dict[str, Any]) -> dict[str, Any]:
    """The bitstat event a call means, written from the mapping table of docs/ingest.md."""
    kind = call["kind"]
    props: dict[str, Any] = {}
    if kind == "track":
        name = call["event"]
        props = dict(call["properties"])
    elif kind in ("page", "screen"):
        name = kind
        props = {**call["properties"], "name": call["name"]}
    elif kind == "identify":
        name, props = "identify", dict(call["traits"])
    elif kind == "group":
        name, props = "group", {**call["traits"], "groupId": call["group_id"]}
    else:
        name, props = "alias", {"previousId": call["previous_id"]}
    actor = call["user_id"] if call["user_id"] is not None else call["anonymous_id"]
    return {
        "event": name,
        "user": actor,
        "time": call["timestamp"],
        "context.os.name": call["context"]["os"]["name"],
        **props,
    }


def link(model: Model, sent: list[dict[str, Any]]) -> None:
    """The ids the calls link (docs/identity.md): identify with both ids, alias."""
    for call in sent:
        if call["kind"] == "alias":
            model.alias(call["previous_id"], call["user_id"])
        elif call["kind"] == "identify" and call["user_id"] and call["anonymous_id"]:
            model.alias(call["anonymous_id"], call["user_id"])


def send(client: Any, call: dict[str, Any]) -> None:
    """Make the call with an SDK client (Segment's and RudderStack's have the same methods)."""
    common = {
        "timestamp": call["timestamp"],
        "message_id": call["message_id"],
        "context": json.loads(json.dumps(call["context"])),  # the SDK writes into it
    }
    who = {"user_id": call["user_id"], "anonymous_id": call["anonymous_id"]}
    kind = call["kind"]
    if kind == "track":
        client.track(event=call["event"], properties=call["properties"], **who, **common)
    elif kind in ("page", "screen"):
        method = getattr(client, kind)
        method(name=call["name"], properties=call["properties"], **who, **common)
    elif kind == "identify":
        client.identify(traits=call["traits"], **who, **common)
    elif kind == "group":
        client.group(group_id=call["group_id"], traits=call["traits"], **who, **common)
    else:
        client.alias(previous_id=call["previous_id"], user_id=call["user_id"], **common)


def assert_same(st: bitstat.Stats, model: Model) -> None:
    """Every event's uniques, totals, daily series, counts, sums and top values agree."""
    start, end = "2025-11-01", "2025-11-30"
    for name in EVENTS:
        assert st.unique(name, start, end) == model.unique(name, start, end), name
        assert st.total(name, start, end) == model.total(name, start, end), name
        assert st.series(name, start, end, by="day") == model.series(name, start, end, by="day")
        for prop in ("plan", "context.os.name", "name", "groupId"):
            assert st.counts(name, prop, start, end) == model.counts(name, prop, start, end)
    assert st.sums("purchase", "amount", start, end) == pytest.approx(
        model.sums("purchase", "amount", start, end)
    )
    by_plan = st.sums("purchase", "amount", start, end, by="plan")
    assert by_plan == pytest.approx(model.sums("purchase", "amount", start, end, by="plan"))
    assert st.top("purchase", "item", start, end) == model.top("purchase", "item", start, end)
    assert st.unique("page", start, end, plan="pro") == model.unique("page", start, end, plan="pro")


@pytest.fixture
def server(embedded_url: str, namespace: str) -> Iterator[tuple[str, bitstat.Stats]]:
    """A server whose write key "key-1" writes to `namespace` (stored with RULES, ids="map")."""
    st = bitstat.connect(
        embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map", **RULES)
    )
    config = ServerConfig(
        url=embedded_url,
        namespace="seg-default",
        write_token="token-w",
        read_token="token-r",
        write_keys={"key-1": namespace, "key-2": f"{namespace}-b"},
    )
    with running(config) as base:
        yield base, st
    st.close()


SDKS: dict[str, Callable[..., Any]] = {
    "segment": lambda **kw: SegmentClient(**kw, upload_size=40),
    "rudderstack": lambda **kw: RudderClient(**kw, upload_size=40),
}


@pytest.mark.parametrize("sdk", sorted(SDKS))
@pytest.mark.parametrize("compress", [True, False])
def test_an_sdk_sends_every_message_type_and_the_answers_match_the_model(
    server: tuple[str, bitstat.Stats], sdk: str, compress: bool
) -> None:
    base, st = server
    errors: list[Any] = []
    client = SDKS[sdk](
        write_key="key-1", host=base, gzip=compress, on_error=lambda e, b: errors.append(e)
    )
    sent = calls(seed=1)
    for call in sent:
        send(client, call)
    client.flush()
    assert errors == []
    model = Model(ids="map", **RULES)
    model.track_many([expected(c) for c in sent])
    link(model, sent)
    assert_same(st, model)
    # the SDK sends the same messages again (a retry after a lost answer): nothing changes
    for call in sent[:100]:
        send(client, call)
    client.flush()
    client.shutdown()
    assert errors == []
    assert_same(st, model)


def test_a_wrong_write_key_is_401_and_records_nothing(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    errors: list[Any] = []
    client = SegmentClient(
        write_key="not-a-key", host=base, on_error=lambda e, b: errors.append(e), max_retries=0
    )
    for call in calls(seed=2, n=20):
        send(client, call)
    client.flush()
    client.shutdown()
    assert errors and all(getattr(e, "status", None) == 401 for e in errors)
    assert all(e.code == "unauthorized" for e in errors)
    assert st.events() == []
    message = {"type": "track", "userId": "u1", "event": "x"}
    for auth in (("not-a-key", ""), None):
        answer = httpx.post(f"{base}/v1/batch", json={"batch": [message]}, auth=auth)
        assert answer.status_code == 401
        assert answer.json()["success"] is False and answer.json()["code"] == "unauthorized"
    assert st.events() == []


def test_each_write_key_writes_to_its_namespace_and_the_token_to_the_default(
    server: tuple[str, bitstat.Stats], embedded_url: str, namespace: str
) -> None:
    base, _ = server
    for key, count in (("key-1", 1), ("key-2", 2), ("token-w", 3)):
        batch = [
            {"type": "track", "userId": f"u{i}", "event": "hit", "messageId": f"{key}-{i}"}
            for i in range(count)
        ]
        answer = httpx.post(f"{base}/v1/batch", json={"batch": batch}, auth=(key, ""))
        assert answer.status_code == 200, answer.text
        assert answer.json()["recorded"] == count
    for ns, count in ((namespace, 1), (f"{namespace}-b", 2), ("seg-default", 3)):
        with bitstat.connect(embedded_url, namespace=ns) as other:
            assert other.total("hit", "2020-01-01", "2099-12-31") == count, ns
    with bitstat.connect(embedded_url, namespace="seg-default") as default:
        default.drop()
    with bitstat.connect(embedded_url, namespace=f"{namespace}-b") as other:
        other.drop()


def _post(base: str, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, auth=("key-1", ""), **kw)


def test_a_bad_message_is_named_and_the_rest_of_its_batch_is_recorded(
    server: tuple[str, bitstat.Stats],
) -> None:
    base, st = server
    good = {"type": "track", "userId": "u1", "event": "ok", "timestamp": "2025-11-04T10:00:00Z"}
    batch = [
        {**good, "messageId": "a"},
        {"type": "track", "event": "ok", "messageId": "b"},  # nobody did it
        {**good, "messageId": "c", "timestamp": "last tuesday"},
        {**good, "messageId": "d", "type": "purchase"},
        {**good, "messageId": "e", "event": None},
        {**good, "messageId": "f", "properties": {"amount": "lots"}},  # a sum that is no number
        "not a message",
        {**good, "messageId": "h", "userId": "u2"},
    ]
    st.configure(bitstat.Schema(ids="map", events={"ok": {"sum": ["amount"]}}))
    answer = _post(base, "/v1/batch", {"batch": batch})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True and body["recorded"] == 2
    rejected = {r["index"]: r for r in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 5, 6]
    assert rejected[1]["field"] == "userId or anonymousId" and rejected[1]["messageId"] == "b"
    assert rejected[2]["field"] == "timestamp" and "last tuesday" in rejected[2]["reason"]
    assert rejected[3]["field"] == "type" and "'purchase'" in rejected[3]["reason"]
    assert rejected[4]["field"] == "event"
    assert rejected[5]["field"] == "properties.amount" and "lots" in rejected[5]["reason"]
    assert "JSON object" in rejected[6]["reason"]
    assert st.unique("ok", "2025-11-04") == 2


def test_sizes_past_the_limits_are_400_with_segments_error_shape(
    server: tuple[str, bitstat.Stats], embedded_url: str
) -> None:
    base, st = server
    big = [
        {"type": "track", "userId": f"u{i}", "event": "x", "properties": {"p": "y" * 1000}}
        for i in range(520)
    ]
    # Segment's API answers 400 Bad Request past its limits (its docs, "Max Request Size"), as
    # does bitstat: the SDKs log it and drop the batch rather than retry it. A batch is held
    # to the server's --max-body (RudderStack's SDKs send 4 MB), a single message to 32 KB
    small = ServerConfig(url=embedded_url, namespace=st.namespace, max_events=3, max_body=256_000)
    with running(small) as limited:
        answer = _post(limited, "/v1/batch", {"batch": big})
        assert answer.status_code == 400
        assert answer.json() == {
            "success": False,
            "code": "payload_too_large",
            "message": answer.json()["message"],
        }
        assert "256,000" in answer.json()["message"]
        # the limit holds for the inflated body: a small gzip body can hold a large batch
        packed = gzip.compress(json.dumps({"batch": big}).encode())
        assert len(packed) < 256_000
        answer = httpx.post(
            f"{limited}/v1/batch",
            content=packed,
            auth=("key-1", ""),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert answer.status_code == 400 and answer.json()["code"] == "payload_too_large"
        # a batch of more messages than the server takes (--max-events): 400 too
        answer = _post(limited, "/v1/batch", {"batch": big[:4]})
        assert answer.status_code == 400 and answer.json()["code"] == "payload_too_large"
        assert "4 messages" in answer.json()["message"]
    single = {"userId": "u1", "event": "x", "properties": {"p": "y" * 40_000}}
    answer = _post(base, "/v1/track", single)
    assert answer.status_code == 400 and answer.json()["code"] == "payload_too_large"
    assert "32,768" in answer.json()["message"]
    # the other single-message routes hold a message to 32 KB too
    answer = _post(base, "/v1/identify", {"userId": "u1", "traits": {"p": "y" * 40_000}})
    assert answer.status_code == 400 and answer.json()["code"] == "payload_too_large"
    assert st.events() == []


def test_rudderstacks_sdk_sends_batches_and_messages_past_segments_sizes(
    server: tuple[str, bitstat.Stats],
) -> None:
    """rudder-sdk-python fills a batch up to 4 MB and sends messages up to 4 MB, as
    RudderStack takes them: a batch past Segment's 500 KB was refused whole (the SDK dropped
    all of it) and a message past 32 KB in a batch was rejected."""
    base, st = server
    errors: list[Any] = []
    client = RudderClient(
        write_key="key-1",
        host=base,
        upload_size=100,
        max_retries=0,
        on_error=lambda e, b: errors.append(e),
    )
    sent = [
        {
            "kind": "track",
            "user_id": f"user-{k % 7}",
            "anonymous_id": None,
            "timestamp": FIRST + timedelta(hours=k),
            "message_id": f"big-{k}",
            "context": {"os": {"name": "Linux"}},
            "event": "purchase",
            "properties": {
                "plan": ["free", "pro"][k % 2],
                "item": f"sku-{k % 3}",
                "amount": k,
                "note": "x" * (40_000 if k == 5 else 8_000),  # 100 of them: 800 KB
            },
        }
        for k in range(100)
    ]
    for _ in range(2):  # sent again, same ids: counted once
        for call in sent:
            send(client, call)
        client.flush()
    client.shutdown()
    assert errors == []
    model = Model(ids="map", **RULES)
    model.track_many([expected(c) for c in sent])
    start, end = "2025-11-01", "2025-11-30"
    for ask in ("unique", "total", "series"):
        assert getattr(st, ask)("purchase", start, end) == getattr(model, ask)(
            "purchase", start, end
        )
    for prop in ("plan", "context.os.name"):
        assert st.counts("purchase", prop, start, end) == model.counts("purchase", prop, start, end)
    assert st.sums("purchase", "amount", start, end) == model.sums("purchase", "amount", start, end)
    assert st.top("purchase", "item", start, end) == model.top("purchase", "item", start, end)


def test_the_clock_skew_of_the_device_is_taken_out(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    now = datetime.now(UTC)
    # a device whose clock is 2 days and 1 hour fast: it says it sent the batch then
    fast = timedelta(days=2, hours=1)
    happened = datetime(2025, 11, 10, 0, 30, tzinfo=UTC)  # the device says 2025-11-12T01:30
    message = {
        "type": "track",
        "anonymousId": "a1",
        "event": "skewed",
        "originalTimestamp": (happened + fast).isoformat(),
        "messageId": "s1",
    }
    sent_at = (now + fast).isoformat()
    answer = _post(base, "/v1/batch", {"batch": [message], "sentAt": sent_at})
    assert answer.json()["recorded"] == 1
    # without sentAt the device's time is taken as it is: a server library's historical import
    plain = {**message, "messageId": "s2", "event": "as-is"}
    plain["timestamp"] = plain.pop("originalTimestamp")
    assert _post(base, "/v1/batch", {"batch": [plain]}).json()["recorded"] == 1
    # the message's own sentAt wins over the batch's
    own = {**message, "messageId": "s3", "event": "own", "sentAt": (now + fast).isoformat()}
    assert (
        _post(base, "/v1/batch", {"batch": [own], "sentAt": now.isoformat()}).json()["recorded"]
        == 1
    )
    assert st.total("skewed", "2025-11-10") == 1
    assert st.total("own", "2025-11-10") == 1
    assert st.total("as-is", "2025-11-12") == 1
    # no time at all: the time received
    _post(base, "/v1/track", {"userId": "u", "event": "now", "messageId": "s4"})
    around = (now - timedelta(days=1)).date(), (now + timedelta(days=1)).date()
    assert st.total("now", *map(str, around)) == 1


def test_single_message_routes_take_their_type(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    at = {"timestamp": "2025-11-05T12:00:00Z"}
    for path, body in [
        ("/v1/track", {"userId": "u1", "event": "signup", "properties": {"plan": "pro"}}),
        ("/v1/page", {"userId": "u1", "name": "Home"}),
        ("/v1/screen", {"anonymousId": "a9", "name": "Feed"}),
        ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}),
        ("/v1/group", {"userId": "u1", "groupId": "org-1"}),
        ("/v1/alias", {"userId": "u1", "previousId": "a9"}),
    ]:
        answer = _post(base, path, {**body, **at, "messageId": path})
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json() == {"success": True, "recorded": 1, "duplicates": 0, "rejected": []}
        again = _post(base, path, {**body, **at, "messageId": path}).json()
        assert again["recorded"] == 0 and again["duplicates"] == 1
    day = "2025-11-05"
    assert st.counts("signup", "plan", day) == {"pro": 1}
    assert st.counts("page", "name", day) == {"Home": 1}
    assert st.counts("screen", "name", day) == {"Feed": 1}
    assert st.counts("identify", "plan", day) == {"pro": 1}
    assert st.counts("group", "groupId", day) == {"org-1": 1}
    assert 0 < st.unique("alias", day) == st.total("alias", day) == 1
    # a message of another type sent to a single route is named as such
    wrong = _post(base, "/v1/page", {"userId": "u1", "type": "track", "event": "x"})
    assert wrong.status_code == 400
    assert wrong.json()["field"] == "type" and "/v1/page" in wrong.json()["message"]
    missing = _post(base, "/v1/group", {"userId": "u1"})
    assert missing.status_code == 400 and missing.json()["field"] == "groupId"


def test_v1_track_takes_both_shapes(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    at = "2025-11-06T09:00:00Z"
    # Segment's track message: the write key in the body (no Authorization header)
    segment = {"writeKey": "key-1", "userId": "u1", "event": "both", "timestamp": at}
    answer = httpx.post(f"{base}/v1/track", json=segment)
    assert answer.status_code == 200 and answer.json()["success"] is True
    # gzip: Segment's
    packed = gzip.compress(json.dumps({**segment, "userId": "u2"}).encode())
    answer = httpx.post(
        f"{base}/v1/track",
        content=packed,
        auth=("key-1", ""),
        headers={"Content-Encoding": "gzip"},
    )
    assert answer.json()["recorded"] == 1
    # bitstat's own event, with the write token: as before
    own = {"event": "both", "user": "u3", "time": at}
    answer = httpx.post(
        f"{base}/v1/track?namespace={st.namespace}",
        json=own,
        headers={"Authorization": "Bearer token-w"},
    )
    assert answer.json() == {"recorded": 1, "rejected": []}
    # without a token, bitstat's shape is told apart and refused as before
    answer = httpx.post(f"{base}/v1/track", json=own)
    assert answer.status_code == 401 and "Bearer" in answer.json()["error"]
    assert st.unique("both", "2025-11-06") == 3


def test_a_namespace_without_a_schema_takes_text_ids(embedded_url: str, namespace: str) -> None:
    with running(ServerConfig(url=embedded_url, namespace=namespace)) as base:
        message = {
            "userId": "ada@example.com",
            "event": "hello",
            "messageId": "1",
            "timestamp": "2025-11-07T08:00:00Z",
        }
        answer = httpx.post(f"{base}/v1/track", json=message)  # an open server: any key
        assert answer.json()["recorded"] == 1, answer.text
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        assert st.schema.ids == "map"
        assert list(st.actors("hello").day(2025, 11, 7).ids()) == ["ada@example.com"]
        st.drop()


def test_a_namespace_with_integer_ids_says_why_text_ids_are_rejected(
    embedded_url: str, namespace: str
) -> None:
    bitstat.connect(embedded_url, namespace=namespace, schema=bitstat.Schema()).close()
    with running(ServerConfig(url=embedded_url, namespace=namespace)) as base:
        answer = httpx.post(f"{base}/v1/track", json={"userId": "ada", "event": "x"})
        assert answer.status_code == 400
        assert answer.json()["field"] == "userId or anonymousId"
        assert "ids='map'" in answer.json()["message"]
        answer = httpx.post(f"{base}/v1/track", json={"userId": "42", "event": "x"})
        assert answer.json()["recorded"] == 1


def test_on_a_cluster_a_message_counts_once_however_it_is_batched(
    cluster_url: str, namespace: str
) -> None:
    st = bitstat.connect(cluster_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    messages = [
        {
            "type": "track",
            "userId": f"user-{n}",
            "event": "spread",
            "messageId": f"c-{n}",
            "timestamp": "2025-11-08T10:00:00Z",
        }
        for n in range(300)
    ]
    with running(ServerConfig(url=cluster_url, namespace=namespace)) as base:
        first = _post(base, "/v1/batch", {"batch": messages[:200]}).json()
        assert first["recorded"] == 200
        # re-sent in other batches, mixed with new messages, and alone
        second = _post(base, "/v1/batch", {"batch": messages[100:300]}).json()
        assert (second["recorded"], second["duplicates"]) == (100, 100)
        alone = _post(base, "/v1/track", messages[5]).json()
        assert (alone["recorded"], alone["duplicates"]) == (0, 1)
    assert st.total("spread", "2025-11-08") == st.unique("spread", "2025-11-08") == 300
    st.drop()
    st.close()


def test_a_batch_cut_off_before_its_messages_are_marked_counts_once_when_the_sdk_retries(
    server: tuple[str, bitstat.Stats], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, st = server
    mark = ingest.mark
    failures: list[int] = []

    async def lost_once(store: Any, markers: list[str], ttl: int) -> None:
        if not failures:  # recorded, then the connection went before the markers were set
            failures.append(len(markers))
            raise bitstat.ConnectionError("marking the messages recorded: gone")
        await mark(store, markers, ttl)

    monkeypatch.setattr(ingest, "mark", lost_once)
    errors: list[Any] = []
    client = SegmentClient(
        write_key="key-1", host=base, upload_size=100, on_error=lambda e, b: errors.append(e)
    )
    sent = calls(seed=5, n=60)
    for call in sent:
        send(client, call)
    client.flush()
    client.shutdown()
    assert failures == [60] and errors == []  # answered 503 once; the SDK sent the batch again
    model = Model(ids="map", **RULES)
    model.track_many([expected(c) for c in sent])
    link(model, sent)
    assert_same(st, model)


def _browser(
    base: str, path: str, body: dict[str, Any], *, basic: bool = True, **headers: str
) -> httpx.Response:
    """What analytics.js (analytics-next 1.84, seen in Chromium) sends: JSON as text/plain, the
    write key in the body and as Basic auth `KEY:`; older releases send no Authorization."""
    sent = {"Content-Type": "text/plain", **headers}
    if basic:
        key = base64.b64encode(f"{body['writeKey']}:".encode()).decode()
        sent["Authorization"] = f"Basic {key}"
    return httpx.post(f"{base}{path}", content=json.dumps(body), headers=sent)


def test_the_browser_clients_requests(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    now = datetime.now(UTC)
    fast = timedelta(hours=30)  # the visitor's clock
    happened = datetime(2025, 11, 9, 20, tzinfo=UTC)

    def message(kind: str, n: int, **fields: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "anonymousId": f"b-{n % 2}",
            "messageId": f"ajs-next-{n}",
            "timestamp": (happened + fast).isoformat(),
            "sentAt": (now + fast).isoformat(),
            "context": {"os": {"name": "Mac OS"}, "page": {"path": "/docs"}},
            "writeKey": "key-1",
            **fields,
        }

    answers = [
        _browser(base, "/v1/t", message("track", 1, event="signup", properties={"plan": "pro"})),
        _browser(base, "/v1/p", message("page", 2, name="Docs", properties={})),
        _browser(base, "/v1/i", message("identify", 3, traits={"plan": "pro"})),
        _browser(base, "/v1/g", message("group", 4, groupId="org-9")),
        _browser(base, "/v1/a", message("alias", 5, userId="u-1", previousId="b-1")),
        _browser(
            base,
            "/v1/b",
            {
                "batch": [message("track", n, event="signup") for n in (6, 7)],
                "sentAt": (now + fast).isoformat(),
                "writeKey": "key-1",
            },
        ),
        _browser(base, "/v1/track", message("track", 8, event="signup"), basic=False),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["success"] is True and answer.json()["rejected"] == []
    day = "2025-11-09"  # the visitor's clock said the 11th
    assert st.total("signup", day) == 4
    assert st.unique("signup", day) == 2
    assert st.counts("signup", "context.os.name", day) == {"Mac OS": 4}
    assert st.counts("page", "name", day) == {"Docs": 1}
    assert st.counts("group", "groupId", day) == {"org-9": 1}
    assert st.total("identify", day) == st.total("alias", day) == 1
    # a single-message route that is not the message's type says so
    wrong = _browser(base, "/v1/p", message("track", 9, event="x"))
    assert wrong.status_code == 400 and wrong.json()["field"] == "type"


def test_rudderstacks_javascript_sdk_sends_by_beacon(server: tuple[str, bitstat.Stats]) -> None:
    """rudder-sdk-js with `useBeacon` posts `/beacon/v1/batch?writeKey=KEY`, a text/plain body
    `{"batch": [...]}` whose messages carry their own sentAt, and no Authorization: it was a
    404, and sendBeacon never tells the page that nothing was recorded."""
    base, st = server
    now = datetime.now(UTC)
    fast = timedelta(hours=30)  # the visitor's clock
    happened = datetime(2025, 11, 9, 20, tzinfo=UTC)
    batch = [
        {
            "type": "track",
            "event": "beacon-signup",
            "anonymousId": f"rs-{n % 2}",
            "messageId": f"rs-beacon-{n}",
            "originalTimestamp": (happened + fast).isoformat(),
            "sentAt": (now + fast).isoformat(),
            "properties": {"plan": ["free", "pro"][n % 2]},
        }
        for n in range(3)
    ]
    for _ in range(2):  # sent again (the queue's retry): counted once
        answer = httpx.post(
            f"{base}/beacon/v1/batch?writeKey=key-1",
            content=json.dumps({"batch": batch}).encode(),
            headers={"Content-Type": "text/plain"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["rejected"] == []
    day = "2025-11-09"  # the visitor's clock said the 11th
    assert st.total("beacon-signup", day) == 3
    assert st.unique("beacon-signup", day) == 2
    assert st.counts("beacon-signup", "plan", day) == {"free": 2, "pro": 1}
    wrong = httpx.post(f"{base}/beacon/v1/batch?writeKey=nope", json={"batch": batch})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"


def _preflight_allows(base: str, path: str, origin: str, asked: str) -> set[str]:
    """The headers the server's answer to a browser's preflight of a POST allows."""
    preflight = httpx.options(
        f"{base}{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": asked,
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    return {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}


def test_a_page_of_a_listed_origin_sends_as_analytics_js_does(
    embedded_url: str, namespace: str
) -> None:
    """analytics.js on the shop's own site posting to the stats server: its Authorization
    header (and X-Retry-Count when it sends an event again) makes the browser ask first."""
    shop = "https://shop.example"
    st = bitstat.connect(embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    config = ServerConfig(url=embedded_url, write_keys={"wk_shop": namespace}, cors_origins=(shop,))
    asked = "authorization,content-type,x-retry-count"
    with running(config) as base:
        for path in ("/v1/t", "/v1/b"):
            assert set(asked.split(",")) <= _preflight_allows(base, path, shop, asked)
        message = {
            "type": "track",
            "event": "signup",
            "anonymousId": "b-1",
            "messageId": "ajs-next-retried",
            "timestamp": "2025-11-09T20:00:00Z",
            "writeKey": "wk_shop",
        }
        for attempt in ("", "1"):  # the first try, and the retry after a lost answer
            extra = {"X-Retry-Count": attempt} if attempt else {}
            answer = _browser(base, "/v1/t", message, Origin=shop, **extra)
            assert answer.status_code == 200, answer.text
            assert answer.headers["access-control-allow-origin"] == shop
    assert st.total("signup", "2025-11-09") == 1
    st.drop()
    st.close()


def test_a_page_of_a_listed_origin_sends_as_rudderstacks_javascript_sdk_does(
    embedded_url: str, namespace: str
) -> None:
    """rudder-sdk-js posts each message to /v1/<type> with Basic auth and an `AnonymousId`
    header (base64 of the id): a preflight that did not allow that header made the browser
    send nothing at all."""
    shop = "https://shop.example"
    st = bitstat.connect(embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    config = ServerConfig(url=embedded_url, write_keys={"wk_shop": namespace}, cors_origins=(shop,))
    asked = "anonymousid,authorization,content-type"
    with running(config) as base:
        assert set(asked.split(",")) <= _preflight_allows(base, "/v1/track", shop, asked)
        message = {
            "type": "track",
            "event": "signup",
            "anonymousId": "rs-1",
            "messageId": "rs-xhr-1",
            "originalTimestamp": "2025-11-09T20:00:00Z",
        }
        answer = httpx.post(
            f"{base}/v1/track",
            json=message,
            auth=("wk_shop", ""),
            headers={
                "Origin": shop,
                "AnonymousId": base64.b64encode(b"rs-1").decode(),
                "Content-Type": "application/json;charset=UTF-8",
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == shop
    assert st.total("signup", "2025-11-09") == 1
    st.drop()
    st.close()


def test_write_keys_come_from_the_environment_and_a_file(tmp_path: Any) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# key namespace\nwk_shop shop\n\nwk_blog  blog  # the blog\n")
    found = write_keys_from_env(
        {
            "BITSTAT_WRITE_KEYS": "wk_app=app, wk_shop=shop",
            "BITSTAT_WRITE_KEYS_FILE": str(keys_file),
        }
    )
    assert found == {"wk_app": "app", "wk_shop": "shop", "wk_blog": "blog"}
    assert write_keys_from_env({}) == {}
    for env, said in [
        ({"BITSTAT_WRITE_KEYS": "wk_app"}, "expected KEY=NAMESPACE"),
        ({"BITSTAT_WRITE_KEYS": "k=a,k=b"}, "names two namespaces"),
        ({"BITSTAT_WRITE_KEYS_FILE": str(tmp_path / "none")}, "cannot read"),
        ({"BITSTAT_WRITE_KEYS": "wk_shop=other", "BITSTAT_WRITE_KEYS_FILE": str(keys_file)}, "two"),
    ]:
        with pytest.raises(bitstat.BitstatError, match=said):
            write_keys_from_env(env)


def test_a_server_reads_its_write_keys_from_the_environment(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITSTAT_WRITE_KEYS", f"wk_env={namespace}")
    bitstat.connect(embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map")).close()
    with running(ServerConfig(url=embedded_url, namespace="seg-unused")) as base:
        message = {"userId": "u", "event": "env", "timestamp": "2025-11-02T10:00:00Z"}
        assert httpx.post(f"{base}/v1/track", json=message, auth=("wk_env", "")).status_code == 200
        assert httpx.post(f"{base}/v1/track", json=message, auth=("other", "")).status_code == 401
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        assert st.total("env", "2025-11-02") == 1
        st.drop()


def test_messages_without_an_id_are_recorded_each_time_they_come(
    server: tuple[str, bitstat.Stats],
) -> None:
    base, st = server
    plain = {"type": "track", "userId": "u1", "event": "tap", "timestamp": "2025-11-11T09:00:00Z"}
    with_id = {**plain, "messageId": "t-1"}
    for _ in range(2):  # the same body twice: the message with an id counts once
        answer = _post(base, "/v1/batch", {"batch": [plain, plain, with_id]}).json()
        assert answer["rejected"] == []
    assert st.total("tap", "2025-11-11") == 5


def test_the_event_time_is_segments_timestamp_to_the_millisecond() -> None:
    """Segment: timestamp = receivedAt - (sentAt - originalTimestamp), with the message's own
    sentAt before the batch's, originalTimestamp before timestamp; no sentAt: the device's
    time as it is; no time: receivedAt."""
    received = datetime(2025, 11, 10, 12, 0, 0, tzinfo=UTC).timestamp()
    device = "2025-11-12T13:30:00.250+01:00"  # 12:30:00.250 UTC, a clock 2 days fast
    sent = "2025-11-12T12:00:05.000Z"  # the device's clock when it sent, 5 s after
    skew = datetime(2025, 11, 12, 12, 0, 5, tzinfo=UTC) - datetime(2025, 11, 10, 12, tzinfo=UTC)
    happened = datetime(2025, 11, 12, 12, 30, 0, 250_000, tzinfo=UTC) - skew
    at = partial(event_time, received=received)
    assert at({"originalTimestamp": device}, sent) == happened.timestamp()
    assert at({"originalTimestamp": device, "timestamp": "2020-01-01T00:00:00Z"}, sent) == (
        happened.timestamp()
    )
    assert at({"timestamp": device, "sentAt": sent}, "2030-01-01T00:00:00Z") == happened.timestamp()
    assert at({"timestamp": device}, None) == datetime.fromisoformat(device).timestamp()
    assert at({}, sent) == received
    with pytest.raises(ingest.Invalid, match="sentAt"):
        at({"timestamp": device}, "yesterday")


def test_a_null_sent_at_is_no_sent_at() -> None:
    """A message's `"sentAt": null` says nothing, as a null `timestamp` says nothing: the
    batch's sentAt takes the skew out, where the null made the device's clock be taken as it
    was (a phone two days fast recorded two days ahead)."""
    received = datetime(2025, 11, 10, 12, 0, 0, tzinfo=UTC).timestamp()
    device, sent = "2025-11-12T12:00:00Z", "2025-11-12T12:00:05Z"
    assert event_time({"timestamp": device, "sentAt": None}, sent, received) == received - 5
    happened = posthog_event_time({"timestamp": device, "sent_at": None}, sent, received, True)
    assert happened == received - 5


def test_a_batchs_context_is_merged_into_each_messages(server: tuple[str, bitstat.Stats]) -> None:
    """Segment merges a batch's `context` into each message's, the message's own winning
    (analytics-go sends its library there): a schema's `context.*` fields read the merge."""
    base, st = server
    st.configure(bitstat.Schema(ids="map", count=["context.library.name", "context.os.name"]))
    at = "2025-11-12T10:00:00Z"
    batch = {
        "context": {"library": {"name": "analytics-go", "version": "3.3"}, "os": {"name": "Linux"}},
        "batch": [
            {"type": "track", "userId": "u1", "event": "go", "messageId": "g1", "timestamp": at},
            {
                "type": "track",
                "userId": "u2",
                "event": "go",
                "messageId": "g2",
                "timestamp": at,
                "context": {"os": {"name": "Darwin"}},
            },
            {
                "type": "track",
                "userId": "u3",
                "event": "go",
                "messageId": "g3",
                "timestamp": at,
                "context": {"library": {"name": "custom"}},
            },
        ],
    }
    answer = _post(base, "/v1/batch", batch)
    assert answer.json()["recorded"] == 3, answer.text
    day = "2025-11-12"
    assert st.counts("go", "context.library.name", day) == {"analytics-go": 2, "custom": 1}
    assert st.counts("go", "context.os.name", day) == {"Linux": 2, "Darwin": 1}
    wrong = _post(base, "/v1/batch", {**batch, "context": "linux"})
    assert wrong.status_code == 400 and wrong.json()["field"] == "context"


def test_batches_sent_at_once_that_share_a_message_count_it_once(
    server: tuple[str, bitstat.Stats],
) -> None:
    """An SDK that re-batches its queue while a timed-out request still runs, or two of its
    processes: each request read no marker for the shared message before the other marked it,
    so both recorded it (28 pairs of 30)."""
    import asyncio

    base, st = server
    auth = {"Authorization": "Basic " + base64.b64encode(b"key-1:").decode()}

    def message(k: int, n: int) -> dict[str, Any]:
        return {
            "type": "track",
            "event": f"race{k}",
            "userId": f"user-{n}",
            "messageId": f"race-{k}-{n}",
            "timestamp": "2025-11-08T10:00:00Z",
        }

    async def pairs() -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            recorded = []
            for k in range(12):
                answers = await asyncio.gather(
                    client.post(
                        "/v1/batch", json={"batch": [message(k, 0), message(k, 1)]}, headers=auth
                    ),
                    client.post(
                        "/v1/batch", json={"batch": [message(k, 1), message(k, 2)]}, headers=auth
                    ),
                    client.post("/v1/track", json=message(k, 1), headers=auth),
                )
                recorded.append(sum(a.json()["recorded"] for a in answers))
            return recorded

    recorded = asyncio.run(pairs())
    assert recorded == [3] * 12
    assert [st.total(f"race{k}", "2025-11-08") for k in range(12)] == [3] * 12


def test_a_batch_id_that_looks_like_a_hold_holds_no_message(
    server: tuple[str, bitstat.Stats],
) -> None:
    """A request's hold on a message id was the batch marker of "hold:<id>": a caller's batch
    id of that form held the message for the marker's life (7 days of 503s)."""
    base, st = server
    st.track_many([{"event": "other", "user": "u"}], batch_id="hold:held-1")
    message = {"type": "track", "event": "e", "userId": "u", "messageId": "held-1"}
    answer = _post(base, "/v1/track", message)
    assert answer.status_code == 200 and answer.json()["recorded"] == 1


def test_holds_whose_release_failed_are_released_once_the_server_answers(
    server: tuple[str, bitstat.Stats], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release lost to a short outage left the holds for their whole life (90 s of 503s to
    the SDK's retries), the server's append-only file keeping them."""
    base, st = server
    release = ingest._release
    failed: list[int] = []

    async def lost_once(store: Any, holds: list[str], token: str) -> None:
        if not failed:
            failed.append(len(holds))
            raise bitstat.ConnectionError("releasing the messages' ids: gone")
        await release(store, holds, token)

    monkeypatch.setattr(ingest, "_release", lost_once)
    message = {"type": "track", "event": "e", "userId": "u", "messageId": "released-1"}
    first = _post(base, "/v1/track", message)
    assert first.json()["recorded"] == 1 and failed == [1]
    again = _post(base, "/v1/track", message)  # held until released
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert st.total("e", datetime.now(UTC).date().isoformat()) == 1
