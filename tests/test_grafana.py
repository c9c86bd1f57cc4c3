"""The Grafana data source (/grafana/: the simple JSON / JSON API plugins' protocol) on a real
server: every answer is the Python API's answer, in Grafana's shapes."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import bitstat
from bitstat.periods import parse_label
from bitstat.web import ServerConfig, create_app
from webserver import SHOP, shop_events

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

AMS = ZoneInfo("Europe/Amsterdam")
# November 2025 in Amsterdam, as Grafana sends a range: UTC instants
NOV = {"from": "2025-10-31T23:00:00.000Z", "to": "2025-11-30T22:59:59.999Z"}
NOV_LOCAL = ("2025-11-01", "2025-11-30")
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def shop(embedded_url: str) -> Iterator[bitstat.Stats]:
    st = bitstat.connect(embedded_url, namespace=f"gf-{uuid.uuid4().hex[:8]}", schema=SHOP)
    assert not st.track_many(shop_events()).rejected
    yield st
    st.drop()
    st.close()


@pytest.fixture(scope="module")
def client(embedded_url: str, shop: bitstat.Stats) -> Iterator[TestClient]:
    config = ServerConfig(url=embedded_url, namespace=shop.namespace, read_token="r-secret")
    with TestClient(create_app(config), headers={"Authorization": "Bearer r-secret"}) as c:
        yield c


def ms(label_start: datetime) -> int:
    return int(label_start.replace(tzinfo=AMS).timestamp() * 1000)


def query(client: TestClient, *targets: dict[str, Any], interval: int = DAY_MS) -> Any:
    body = {"range": NOV, "intervalMs": interval, "targets": list(targets)}
    answer = client.post("/grafana/query", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_save_and_test(client: TestClient, shop: bitstat.Stats) -> None:
    answer = client.get("/grafana/")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "namespace": shop.namespace}


def test_search_lists_what_the_schema_records(client: TestClient) -> None:
    found = client.post("/grafana/search", json={"target": ""}).json()
    for target in (
        "unique:visit",
        "total:purchase",
        "counts:visit:country~platform",
        "sums:purchase:amount",
        "top:purchase:item",
        "lifecycle:signup",
    ):
        assert target in found
    narrowed = client.post("/grafana/search", json={"target": "purchase"}).json()
    assert narrowed and all("purchase" in t for t in narrowed)
    labelled = client.post("/grafana/metrics", json={}).json()
    assert {"label": "unique:visit", "value": "unique:visit"} in labelled


def test_unique_per_day_is_a_time_series(client: TestClient, shop: bitstat.Stats) -> None:
    (series,) = query(client, {"target": "unique:visit", "refId": "A", "type": "timeserie"})
    expected = shop.series("visit", *NOV_LOCAL, by="day")
    assert series["target"] == "unique:visit"
    assert series["datapoints"] == [[v, ms(datetime.fromisoformat(lb))] for lb, v in expected]
    assert series["datapoints"][0][1] == 1_761_951_600_000  # 2025-11-01 00:00 in Amsterdam


def test_the_bucket_follows_grafanas_interval(client: TestClient, shop: bitstat.Stats) -> None:
    (weekly,) = query(client, {"target": "total:visit"}, interval=7 * DAY_MS)
    expected = shop.series("visit", *NOV_LOCAL, by="week", metric="total")
    assert [v for v, _ in weekly["datapoints"]] == [v for _, v in expected]
    (monthly,) = query(client, {"target": "total:visit", "payload": {"by": "month"}})
    assert monthly["datapoints"] == [[shop.total("visit", *NOV_LOCAL), ms(datetime(2025, 11, 1))]]


def test_a_segment_filters_the_series(client: TestClient, shop: bitstat.Stats) -> None:
    target = {"target": "unique:visit", "payload": {"where": {"country": "NL"}}}
    (series,) = query(client, target)
    expected = shop.series("visit", *NOV_LOCAL, by="day", country="NL")
    assert [v for v, _ in series["datapoints"]] == [v for _, v in expected]


def test_counts_top_and_sums_are_tables(client: TestClient, shop: bitstat.Stats) -> None:
    counts, top, total, by = query(
        client,
        {"target": "counts:visit:country~platform", "type": "table"},
        {"target": "top:purchase:item", "payload": {"limit": 3}},
        {"target": "sums:purchase:amount"},
        {"target": "sums:purchase:amount", "data": {"by": "country"}},
    )
    assert counts["type"] == "table"
    assert counts["columns"] == [
        {"text": "country", "type": "string"},
        {"text": "platform", "type": "string"},
        {"text": "count", "type": "number"},
    ]
    expected = shop.counts("visit", "country~platform", *NOV_LOCAL)
    assert {(c, p): n for c, p, n in counts["rows"]} == expected
    assert [(v, n) for _, v, n in top["rows"]] == shop.top("purchase", "item", *NOV_LOCAL, 3)
    assert total["rows"] == [[pytest.approx(shop.sums("purchase", "amount", *NOV_LOCAL))]]
    expected_by = shop.sums("purchase", "amount", *NOV_LOCAL, by="country")
    assert dict(map(tuple, by["rows"])) == pytest.approx(expected_by)


def test_funnel_retention_stickiness(client: TestClient, shop: bitstat.Stats) -> None:
    funnel, retention, sticky = query(
        client,
        {"target": "funnel:visit,signup,purchase", "payload": {"within": "10d"}},
        {"target": "retention:signup:purchase", "payload": {"periods": 4}},
        {"target": "stickiness:visit"},
    )
    steps = shop.funnel(["visit", "signup", "purchase"], *NOV_LOCAL, within="10d")
    assert [row[:2] for row in funnel["rows"]] == [list(s) for s in steps]
    table = shop.retention("signup", "purchase", NOV["from"], 4)
    assert retention["rows"] == [[r.cohort, r.size, *r.counts] for r in table.rows]
    assert [c["text"] for c in retention["columns"]] == ["cohort", "size", "0", "1", "2", "3"]
    assert dict(map(tuple, sticky["rows"])) == shop.stickiness("visit", *NOV_LOCAL)


def test_lifecycle_as_four_series_or_a_table(client: TestClient, shop: bitstat.Stats) -> None:
    payload = {"period": "week"}
    series = query(client, {"target": "lifecycle:visit", "payload": payload})
    life = shop.lifecycle("visit", "2025-10-27", 5, "week")
    assert [s["target"] for s in series] == [
        f"lifecycle:visit {c}" for c in ("new", "returning", "resurrecting", "dormant")
    ]
    starts = [ms(parse_label(p.period).start) for p in life]
    assert series[0]["datapoints"] == [[p.new, t] for p, t in zip(life, starts, strict=True)]
    assert [v for v, _ in series[3]["datapoints"]] == [p.dormant for p in life]
    (table,) = query(client, {"target": "lifecycle:visit", "type": "table", "payload": payload})
    assert [row[0] for row in table["rows"]] == [p.period for p in life]
    assert table["columns"][1] == {"text": "start", "type": "time"}
    assert table["rows"][0][1] == ms(datetime(2025, 10, 27))


def test_errors_say_what_is_wrong(client: TestClient, embedded_url: str) -> None:
    bad = client.post("/grafana/query", json={"range": NOV, "targets": [{"target": "nope:x"}]})
    assert bad.status_code == 400 and "unknown target kind" in bad.json()["message"]
    unknown = client.post(
        "/grafana/query", json={"range": NOV, "targets": [{"target": "unique:never"}]}
    )
    assert unknown.status_code == 404 and "never" in unknown.json()["message"]
    assert client.post("/grafana/query", json={"targets": []}).status_code == 400
    assert client.post("/grafana/query", content=b"{no").status_code == 400
    anonymous = client.post("/grafana/search", json={}, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert client.get("/grafana/", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_namespace_from_a_header(client: TestClient, embedded_url: str) -> None:
    other = bitstat.connect(embedded_url, namespace=f"gf2-{uuid.uuid4().hex[:8]}")
    try:
        other.track("ping", user=1, time="2025-11-03T10:00:00")
        headers = {"X-Bitstat-Namespace": other.namespace}
        assert client.post("/grafana/search", json={}, headers=headers).json() == [
            "unique:ping",
            "total:ping",
            "stickiness:ping",
            "lifecycle:ping",
        ]
        body = {"range": NOV, "targets": [{"target": "total:ping", "payload": {"by": "month"}}]}
        answer = client.post("/grafana/query", json=body, headers=headers).json()
        # a UTC namespace: the range reaches back into October 31st
        assert answer[0]["datapoints"] == [[0, 1_759_276_800_000], [1, 1_761_955_200_000]]
    finally:
        other.drop()
        other.close()


@pytest.mark.parametrize(
    "target",
    [
        "total:visit",
        "counts:visit:country",
        "top:purchase:item",
        "sums:purchase:amount",
    ],
)
def test_a_segment_where_none_can_apply_is_a_400(client: TestClient, target: str) -> None:
    """The library takes no segment filter for event totals or property tallies: a `where`
    there is refused, not answered as if it were not given."""
    body = {"range": NOV, "targets": [{"target": target, "payload": {"where": {"country": "NL"}}}]}
    answer = client.post("/grafana/query", json=body)
    assert answer.status_code == 400, answer.text
    kind = target.partition(":")[0]
    assert answer.json()["message"] == (
        f"{target!r}: a `where` segment filter applies to"
        f" unique, stickiness, funnel, retention and lifecycle targets only, not to {kind}"
    )


def test_a_segment_filters_every_kind_that_counts_actors(
    client: TestClient, shop: bitstat.Stats
) -> None:
    nl = {"where": {"country": "NL"}}
    sticky, funnel, retention = query(
        client,
        {"target": "stickiness:visit", "payload": nl},
        {"target": "funnel:visit,purchase", "payload": nl},
        {"target": "retention:signup:purchase", "payload": {**nl, "periods": 4}},
    )
    assert dict(map(tuple, sticky["rows"])) == shop.stickiness("visit", *NOV_LOCAL, country="NL")
    steps = shop.funnel(["visit", "purchase"], *NOV_LOCAL, country="NL")
    assert [row[:2] for row in funnel["rows"]] == [list(s) for s in steps]
    table = shop.retention("signup", "purchase", NOV["from"], 4, country="NL")
    assert retention["rows"] == [[r.cohort, r.size, *r.counts] for r in table.rows]
    unfiltered = shop.retention("signup", "purchase", NOV["from"], 4)
    assert [r.size for r in table.rows] != [r.size for r in unfiltered.rows]
    # lifecycle: the /v1 route and the CLI took a segment, Grafana's target answered 400
    (life,) = query(client, {"target": "lifecycle:visit", "type": "table", "payload": nl})
    want = shop.lifecycle("visit", "2025-10-27", 5, "week", country="NL")
    assert [row[:1] + row[2:] for row in life["rows"]] == [
        [p.period, p.new, p.returning, p.resurrecting, p.dormant] for p in want
    ]
    assert want != shop.lifecycle("visit", "2025-10-27", 5, "week")


@pytest.fixture
def other(embedded_url: str) -> Iterator[bitstat.Stats]:
    """A second namespace (UTC), with one event the shop has not."""
    st = bitstat.connect(embedded_url, namespace=f"gf3-{uuid.uuid4().hex[:8]}")
    st.track_many([{"event": "ping", "user": u, "time": "2025-11-03T10:00:00"} for u in (1, 2)])
    yield st
    st.drop()
    st.close()


def test_each_target_asks_its_own_namespace(
    client: TestClient, shop: bitstat.Stats, other: bitstat.Stats
) -> None:
    """A panel may mix namespaces: a target's payload names its own, the others keep the data
    source's, whichever comes first."""
    month = {"by": "month"}
    ping = {"target": "unique:ping", "payload": {**month, "namespace": other.namespace}}
    visit = {"target": "unique:visit", "payload": month}
    # (a UTC namespace: the range reaches back into October 31st)
    expected_ping = [v for _, v in other.series("ping", NOV["from"], NOV["to"], by="month")]
    expected_visit = [shop.unique("visit", *NOV_LOCAL)]
    for targets in ((ping, visit), (visit, ping)):
        answers = {a["target"]: [v for v, _ in a["datapoints"]] for a in query(client, *targets)}
        assert answers == {"unique:ping": expected_ping, "unique:visit": expected_visit}


def test_a_namespace_in_a_text_payload(
    client: TestClient, shop: bitstat.Stats, other: bitstat.Stats
) -> None:
    """The JSON API plugin sends the payload as text: its namespace counts all the same."""
    payload = json.dumps({"by": "month", "namespace": other.namespace})
    (series,) = query(client, {"target": "unique:ping", "payload": payload})
    expected = other.series("ping", NOV["from"], NOV["to"], by="month")
    assert [v for v, _ in series["datapoints"]] == [v for _, v in expected]
    listed = client.post("/grafana/metrics", json={"metric": "", "payload": payload}).json()
    assert [m["value"] for m in listed] == [
        f"{k}:ping" for k in ("unique", "total", "stickiness", "lifecycle")
    ]
    bad = {"range": NOV, "targets": [{"target": "unique:ping", "payload": {"namespace": 7}}]}
    answer = client.post("/grafana/query", json=bad)
    assert answer.status_code == 400
    assert answer.json()["message"] == "'unique:ping': the payload's `namespace` must be text"


def test_a_sum_past_the_float_range_is_a_400(client: TestClient, embedded_url: str) -> None:
    """Each bucket's total is kept within +-1e308, a year's may pass the float range: the library
    answers inf, which JSON cannot carry. The target is refused as /v1/sums refuses it."""
    schema = bitstat.Schema(sum=["amount", "amount by country"])
    big = bitstat.connect(embedded_url, namespace=f"gf4-{uuid.uuid4().hex[:8]}", schema=schema)
    try:
        events = [
            {"event": "pay", "user": 1, "time": when, "amount": 9e307, "country": "NL"}
            for when in ("2025-06-01", "2026-06-01")
        ]
        assert not big.track_many(events).rejected
        assert big.sums("pay", "amount", "2025-06-01", "2026-06-30") == float("inf")
        span = {"from": "2025-06-01T00:00:00Z", "to": "2026-06-30T23:59:59Z"}
        whole = {"namespace": big.namespace}
        for target in (
            {"target": "sums:pay:amount", "payload": whole},
            {"target": "sums:pay:amount", "payload": {**whole, "by": "country"}},
        ):
            answer = client.post("/grafana/query", json={"range": span, "targets": [target]})
            assert answer.status_code == 400, answer.text
            assert answer.json()["message"] == (
                "'sums:pay:amount': the sum over this range passes the float range (+-1.8e308):"
                " ask a shorter one"
            )
    finally:
        big.drop()
        big.close()


def test_the_hour_a_spring_change_skips_is_no_point(client: TestClient, embedded_url: str) -> None:
    """Amsterdam's clocks went from 02:00 to 03:00 on 2026-03-29: the 02 hour bucket holds no
    event and has no instant of its own (it was given 03:00's, two points at one time)."""
    schema = bitstat.Schema(periods=("hour", "day"), timezone="Europe/Amsterdam")
    st = bitstat.connect(embedded_url, namespace=f"gf4-{uuid.uuid4().hex[:8]}", schema=schema)
    try:
        st.track_many(
            [
                {"event": "ping", "user": u, "time": f"2026-03-29T{h}:30:00+0{o}:00"}
                for u, (h, o) in enumerate([("01", 1), ("03", 2), ("03", 2), ("04", 2)])
            ]
        )
        body = {
            "range": {"from": "2026-03-28T23:00:00.000Z", "to": "2026-03-29T02:59:59.999Z"},
            "intervalMs": 3_600_000,
            "targets": [{"target": "total:ping", "payload": {"namespace": st.namespace}}],
        }
        answer = client.post("/grafana/query", json=body)
        assert answer.status_code == 200, answer.text
        (series,) = answer.json()
        utc_hours = [1_774_738_800_000 + h * 3_600_000 for h in range(4)]  # 23:00Z .. 02:00Z
        values = [0, 1, 2, 1]  # local 00, 01, 03, 04 (no 02)
        assert series["datapoints"] == [list(p) for p in zip(values, utc_hours, strict=True)]
    finally:
        st.drop()
        st.close()


def test_a_range_in_epoch_milliseconds(client: TestClient) -> None:
    """Grafana's ${__from} and ${__to} are epoch milliseconds, as Infinity and templated bodies
    send a range: they were refused ('ISO times'), or as text read as an ISO date ('month must
    be in 1..12')."""
    (expected,) = query(client, {"target": "unique:visit"})
    start, end = 1_761_951_600_000, 1_764_543_599_999  # NOV, as Grafana's picker sends it
    for span in (
        {"from": start, "to": end},
        {"from": str(start), "to": str(end)},
        {"from": float(start), "to": NOV["to"]},
    ):
        body = {"range": span, "intervalMs": DAY_MS, "targets": [{"target": "unique:visit"}]}
        answer = client.post("/grafana/query", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == [expected]
    for span in ({"from": True, "to": end}, {"from": [start], "to": end}, {"to": end}):
        answer = client.post("/grafana/query", json={"range": span, "targets": []})
        assert answer.status_code == 400
        assert answer.json()["message"] == (
            "the query needs range.from and range.to: ISO times, or epoch milliseconds"
            " (${__from} and ${__to})"
        )
    huge = {"range": {"from": 1e300, "to": end}, "targets": [{"target": "unique:visit"}]}
    answer = client.post("/grafana/query", json=huge)
    assert answer.status_code == 400
    assert answer.json()["message"] == "the range's 1e+300 is no time as epoch milliseconds"


def test_an_error_names_its_target_and_namespace(client: TestClient, shop: bitstat.Stats) -> None:
    """A panel of several targets, one naming an event the namespace has not: the 404 said
    'no event ... in this namespace', not which target, nor which namespace it asked."""
    targets = [
        {"target": "unique:visit", "refId": "A"},
        {"target": "total:vist", "refId": "B"},
    ]
    answer = client.post("/grafana/query", json={"range": NOV, "targets": targets})
    assert answer.status_code == 404
    assert answer.json()["message"] == (
        f"'total:vist' (namespace {shop.namespace!r}): no event 'vist' is recorded in this"
        " namespace; did you mean 'visit'?"
    )
    counts = {"target": "counts:visit:colour", "payload": {"namespace": shop.namespace}}
    answer = client.post("/grafana/query", json={"range": NOV, "targets": [counts]})
    assert answer.status_code == 400
    assert answer.json()["message"].startswith(
        f"'counts:visit:colour' (namespace {shop.namespace!r}): no count of 'colour'"
    )
