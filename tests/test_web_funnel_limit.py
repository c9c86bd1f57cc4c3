"""The HTTP API's bound on a funnel's work (/v1/funnel and Grafana's funnel targets) measures
what the library plans: a window longer than the data is cut at the later steps' last recorded
day, and start days are planned in blocks of the window (the days read, not their product with
the window). A funnel refused names what to shorten: the range when it alone is too long, else
`within`. The answers are the library's own (tests/test_analysis.py checks those)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

import bitstat
from bitstat import analysis
from bitstat.web import ServerConfig, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# visits of 1, 2 and 3 in November 2025 (and of 9 in 1971); 1 and 2 buy later, the last
# purchase on 2025-12-20
EVENTS = [
    {"event": "visit", "user": 1, "time": "2025-11-03T10:00:00Z"},
    {"event": "visit", "user": 2, "time": "2025-11-10T10:00:00Z"},
    {"event": "visit", "user": 3, "time": "2025-11-20T10:00:00Z"},
    {"event": "visit", "user": 9, "time": "1971-01-05T10:00:00Z"},
    {"event": "purchase", "user": 2, "time": "2025-11-12T10:00:00Z"},
    {"event": "purchase", "user": 1, "time": "2025-12-20T10:00:00Z"},
]
TEN = ["visit", "purchase"] * 5  # 10 steps: 45 pairs of steps
# from 1971-01-01 to the last purchase, both counted: the longest window a funnel needs there
TO_LAST = (date(2025, 12, 20) - date(1971, 1, 1)).days + 1


@pytest.fixture
def client(embedded_url: str, namespace: str) -> Iterator[TestClient]:
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        assert st.track_many(EVENTS).recorded == len(EVENTS)
        try:
            config = ServerConfig(url=embedded_url, namespace=namespace)
            with TestClient(create_app(config)) as c:
                yield c
        finally:
            st.drop()


def funnel(client: TestClient, steps: list[str], **query: str) -> tuple[int, Any]:
    answer = client.get("/v1/funnel", params={"step": steps, **query})
    return answer.status_code, answer.json()


def grafana(client: TestClient, steps: list[str], lo: str, hi: str, within: str) -> Any:
    target = {"target": f"funnel:{','.join(steps)}", "payload": {"within": within}}
    body = {"range": {"from": lo, "to": hi}, "targets": [target]}
    answer = client.post("/grafana/query", json=body)
    return answer.status_code, answer.json()


def test_a_window_longer_than_the_data_is_cut_as_the_library_cuts_it(client: TestClient) -> None:
    """A year of start days with a window of "ever" (36500d) was refused, blaming `start`
    ("365 start days x 36500 window days x 1 later steps is more than 20000"), though the
    library plans it to the last purchase: 365 + 353 days."""
    done = [{"step": "visit", "actors": 3}, {"step": "purchase", "actors": 2}]
    assert funnel(client, ["visit", "purchase"], start="2025", within="36500d") == (
        200,
        {"funnel": done},
    )
    number = ("actors", "conversion", "from_previous")
    assert grafana(client, ["visit", "purchase"], "2025-01-01", "2025-12-31", "36500d") == (
        200,
        [
            {
                "type": "table",
                "columns": [
                    {"text": "step", "type": "string"},
                    *({"text": name, "type": "number"} for name in number),
                ],
                "rows": [["visit", 3, 1.0, 1.0], ["purchase", 2, 2 / 3, 2 / 3]],
            }
        ],
    )
    # a year of 365 days, a 90-day window: 454 days read, not 365 x 90 (it blamed `start`)
    assert funnel(client, ["visit", "purchase"], start="2025", within="90d") == (
        200,
        {"funnel": [{"step": "visit", "actors": 3}, {"step": "purchase", "actors": 2}]},
    )


def test_a_window_too_long_names_within(client: TestClient, namespace: str) -> None:
    """Visits of January 1971, purchases up to 2025: a window of 30000 days is cut to the
    TO_LAST days the data needs, still more than the bound allows; `within` is what to
    shorten (the range alone reads 31 days), not `start`."""
    error = (
        f"within: 31 start days and a {TO_LAST}-day window (of the 30000 asked: the later"
        f" steps were recorded up to its last day) read {30 + TO_LAST} days for the pair of"
        f" steps: {30 + TO_LAST} is more than 20000; shorten the window (at most 19970 days"
        " here)"
    )
    assert TO_LAST == 20078
    steps = ["visit", "purchase"]
    assert funnel(client, steps, start="1971-01", within="30000d") == (
        400,
        {"error": error, "parameter": "within"},
    )
    said = f"'funnel:visit,purchase' (namespace {namespace!r}): {error}"
    assert grafana(client, steps, "1971-01-01", "1971-01-31", "30000d") == (
        400,
        {"error": said, "message": said},
    )
    # as many days as the bound allows: answered (user 9 never bought)
    assert funnel(client, steps, start="1971-01", within="19970d") == (
        200,
        {"funnel": [{"step": "visit", "actors": 1}, {"step": "purchase", "actors": 0}]},
    )


def test_a_range_too_long_names_it(client: TestClient) -> None:
    """Ten steps over two years: the range alone (731 days x 45 pairs of steps) is too much,
    whatever the window; 731 x 1 x 9 passed the old bound, for about 40,000 set operations."""
    error = (
        "end: 731 start days and a 1-day window read 731 days for each of 45 pairs of steps:"
        " 32895 is more than 20000; shorten the range"
    )
    query = {"start": "2024-01-01", "end": "2025-12-31", "within": "1d"}
    assert funnel(client, TEN, **query) == (400, {"error": error, "parameter": "end"})


def test_the_bound_measures_the_program_the_library_plans() -> None:
    """funnel_work bounds the set operations of funnel_program: at most 5 a unit."""

    def operations(starts: int, window: int, steps: int) -> int:
        days = [(f"d{x}",) for x in range(starts + window - 1)]
        code = analysis.funnel_program([f"s{i}" for i in range(steps)], days, starts, window, None)
        found, i = 0, 0
        while i < len(code.code):
            op = code.code[i]
            width = {"count": 2, "diff": 4}.get(str(op))
            if width is None:  # or, and, xor, andcount: name, dest, n, n sources
                width = 3 + int(code.code[i + 2])
            found += op != "count"
            i += width
        return found

    for steps in (1, 2, 3, 5, 10):
        for starts in (1, 7, 30, 61, 365):
            for window in (1, 7, 30, 60, 400):
                work = analysis.funnel_work(starts, window, steps)
                assert operations(starts, window, steps) <= 5 * work, (starts, window, steps)
    assert analysis.funnel_work(365, 90, 2) == 454
    assert analysis.funnel_work(731, 1, 10) == 731 * 45
