"""The answer of `GET /v1/dashboard` (what the page draws from) where a part cannot be answered.

Each card's part fails on its own, with its own error; the view as a whole fails only when
the event it shows was never recorded, so that the page says so once, naming `event`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import bitstat
from bitstat import aio, record
from bitstat.aio import AsyncStats
from bitstat.web import ServerConfig
from bitstat.web import dashboard as board
from bitstat.web.params import read
from webserver import SHOP, running, shop_events


@pytest.fixture(scope="module")
def shop(embedded_url: str) -> Iterator[bitstat.Stats]:
    st = bitstat.connect(embedded_url, namespace=f"view-{uuid.uuid4().hex[:8]}", schema=SHOP)
    assert not st.track_many(shop_events(visitors=150)).rejected
    yield st
    st.drop()
    st.close()


@pytest.fixture(scope="module")
def server(embedded_url: str, shop: bitstat.Stats) -> Iterator[str]:
    with running(ServerConfig(url=embedded_url, namespace=shop.namespace)) as base:
        yield base


def dashboard(base: str, **query: Any) -> httpx.Response:
    return httpx.get(f"{base}/v1/dashboard", params=query, timeout=60)


def test_cohorts_and_lifecycle_do_not_hang_on_the_series(server: str) -> None:
    """A series that cannot be drawn (too many days) says so in its card; the retention and
    lifecycle cards still show the range's last 12 days rather than "no periods"."""
    answer = dashboard(server, event="purchase", start="2010-01-01", end="2025-11-30", period="day")
    assert answer.status_code == 200, answer.text
    view = answer.json()
    for part in ("series_unique", "series_total"):
        assert "more than 5000 days" in view[part]["error"]
    days = [f"2025-11-{d}" for d in range(19, 31)]
    assert [row["cohort"] for row in view["retention"]["rows"]] == days
    assert [row["period"] for row in view["lifecycle"]["lifecycle"]] == days
    assert view["unique"]["unique"] > 0  # the rest of the view is drawn


def test_the_cohorts_are_the_last_buckets_of_the_range(server: str) -> None:
    """Fewer buckets than 12: every one, from the one holding the start (a partial week)."""
    view = dashboard(server, event="purchase", start="2025-10-01", end="2025-11-30", period="week")
    weeks = [row["period"] for row in view.json()["series_unique"]["series"]]
    assert weeks[0] == "2025-W40" and len(weeks) == 9
    assert [row["cohort"] for row in view.json()["retention"]["rows"]] == weeks


@pytest.mark.parametrize(
    ("start", "period", "cohorts"),
    [
        ("2020-01-01", "year", [str(y) for y in range(2020, 2026)]),
        ("2025-01-01", "month", [f"2025-{m:02d}" for m in range(1, 12)]),
    ],
)
def test_a_range_ending_after_the_data_shows_the_cohorts_of_the_data(
    server: str, shop: bitstat.Stats, start: str, period: str, cohorts: list[str]
) -> None:
    """A range asked to end in 2099 showed the cohorts 2088 to 2099 in the retention and
    lifecycle cards, all empty, and none of the data's; they end with the event's last day."""
    view = dashboard(server, event="purchase", start=start, end="2099-12-31", period=period)
    assert view.status_code == 200, view.text
    rows = view.json()["retention"]["rows"]
    assert [row["cohort"] for row in rows] == cohorts
    assert [row["period"] for row in view.json()["lifecycle"]["lifecycle"]] == cohorts
    last = shop.retention("purchase", "purchase", cohorts[-1], periods=1, period=period)
    assert rows[-1]["size"] == last.rows[0].size > 0


def test_an_event_never_recorded_fails_the_whole_view_naming_it(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library raises UnknownEvent for a name never recorded: the view is not twelve cards
    each saying so, but one error about `event`. An unknown funnel step stays in its card."""
    known = AsyncStats.unique

    async def unique(self: AsyncStats, event: str, *args: Any, **kwargs: Any) -> int:
        if event in ("purchse", "nosuch"):
            raise bitstat.UnknownEvent(event, ["purchase"] if event == "purchse" else [])
        return await known(self, event, *args, **kwargs)

    async def funnel(self: AsyncStats, steps: list[str], *args: Any, **kwargs: Any) -> Any:
        if "nosuch" in steps:
            raise bitstat.UnknownEvent("nosuch")
        return await known_funnel(self, steps, *args, **kwargs)

    known_funnel = AsyncStats.funnel
    monkeypatch.setattr(AsyncStats, "unique", unique)
    monkeypatch.setattr(AsyncStats, "funnel", funnel)
    rng = {"start": "2025-10-01", "end": "2025-11-30"}
    answer = dashboard(server, event="purchse", **rng)
    assert answer.status_code == 404, answer.text
    assert answer.json() == {
        "error": "no event 'purchse' is recorded in this namespace; did you mean 'purchase'?",
        "parameter": "event",
    }

    answer = dashboard(server, event="purchase", step=["visit", "nosuch"], **rng)
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["unique"]["unique"] > 0
    assert view["funnel"]["steps"] == ["visit", "nosuch"]
    assert view["funnel"]["error"] == "no event 'nosuch' is recorded in this namespace"


def test_with_only_end_the_range_is_the_30_days_up_to_it(server: str, shop: bitstat.Stats) -> None:
    for end, start in (("2025-11-15", "2025-10-17"), ("2025-11", "2025-11-01")):
        view = dashboard(server, event="purchase", end=end).json()
        assert (view["start"], view["end"]) == (start, end)
        assert view["unique"] == {"unique": shop.unique("purchase", start, end)}


def test_with_only_start_a_start_after_the_data_is_blamed_on_start(
    server: str, shop: bitstat.Stats
) -> None:
    """The end is then the last day with data: a start after it is what to change."""
    span = shop.span("purchase")
    assert span is not None
    last = span[1].isoformat()
    answer = dashboard(server, event="purchase", start="2025-12-05")
    assert answer.status_code == 400, answer.text
    assert answer.json() == {
        "error": f"start: '2025-12-05' is after the default `end`, {last}: give `end` too",
        "parameter": "start",
    }
    unreadable = dashboard(server, event="purchase", start="soon").json()
    assert unreadable["parameter"] == "start"
    view = dashboard(server, event="purchase", start="2025-11-20").json()
    assert (view["start"], view["end"]) == ("2025-11-20", last)


@pytest.fixture
def recorded(embedded_url: str) -> Iterator[Callable[..., bitstat.Stats]]:
    """Namespaces of a schema's choosing, each with 20 visits, one a day of 2025-11-01..20."""
    opened: list[bitstat.Stats] = []

    def record(**schema: Any) -> bitstat.Stats:
        ns = f"view-{uuid.uuid4().hex[:8]}"
        st = bitstat.connect(embedded_url, namespace=ns, schema=bitstat.Schema(**schema))
        opened.append(st)
        visits = [
            {"event": "visit", "user": u, "time": f"2025-11-{u:02d}T10:00"} for u in range(1, 21)
        ]
        assert not st.track_many(visits).rejected
        return st

    yield record
    for st in opened:
        st.drop()
        st.close()


@pytest.mark.parametrize(
    ("periods", "start", "end", "period"),
    [
        (["day", "week"], "2025-10-22", "2025-11-20", "day"),
        (["week", "month"], "2025-10-20", "2025-11-23", "week"),  # Monday .. Sunday
        (["month"], "2025-10-01", "2025-11-30", "month"),
        (["year"], "2025-01-01", "2025-12-31", "year"),
        (["hour"], "2025-10-22", "2025-11-20", "hour"),
    ],
)
def test_the_default_view_fits_the_periods_the_namespace_records(
    server: str,
    recorded: Callable[..., bitstat.Stats],
    periods: list[str],
    start: str,
    end: str,
    period: str,
) -> None:
    """The last 30 days with data, widened to whole buckets of the finest recorded period of a
    day or more, so that the range is one the namespace can answer; the period is one it keeps."""
    st = recorded(periods=periods)
    answer = dashboard(server, namespace=st.namespace)
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert (view["start"], view["end"], view["period"]) == (start, end, period)
    assert view["unique"] == {"unique": st.unique("visit", start, end)} == {"unique": 20}
    series = st.series("visit", start, end, by=period)
    assert view["series_unique"]["series"] == [{"period": p, "value": v} for p, v in series]
    failed = {name for name, part in view.items() if isinstance(part, dict) and "error" in part}
    # the funnel counts days
    assert failed <= ({"funnel"} if "day" not in st.schema.periods else set())


def test_a_short_range_is_drawn_per_hour_where_hours_are_kept(
    server: str, recorded: Callable[..., bitstat.Stats]
) -> None:
    """At most ~120 points: hours up to 5 days, days beyond."""
    st = recorded(periods=["hour", "day", "week"])
    for end, period in (("2025-11-03", "hour"), ("2025-11-07", "hour"), ("2025-11-08", "day")):
        rng = {"event": "visit", "start": "2025-11-03", "end": end}
        view = dashboard(server, namespace=st.namespace, **rng).json()
        assert view["period"] == period
        series = st.series(**rng, by=period)
        assert view["series_unique"]["series"] == [{"period": p, "value": v} for p, v in series]
    days = recorded()  # no hours: days all the same
    view = dashboard(server, namespace=days.namespace, start="2025-11-03", end="2025-11-03")
    assert view.json()["period"] == "day"


def test_the_defaults_weigh_every_event_not_the_first_twenty(
    server: str, embedded_url: str
) -> None:
    """25 event names: the last one alphabetically is the only one of the last 30 days."""
    st = bitstat.connect(embedded_url, namespace=f"view-{uuid.uuid4().hex[:8]}")
    try:
        early = [{"event": f"e{n:02d}", "user": 1, "time": "2025-10-05"} for n in range(24)]
        late = [{"event": "e24", "user": u, "time": "2025-11-20"} for u in range(5)]
        assert not st.track_many(early + late).rejected
        view = dashboard(server, namespace=st.namespace).json()
        assert (view["start"], view["end"], view["event"]) == ("2025-10-22", "2025-11-20", "e24")
        assert view["unique"] == {"unique": st.unique("e24", "2025-10-22", "2025-11-20")}
        assert view["funnel"]["steps"] == ["e24"]
    finally:
        st.drop()
        st.close()


NEVER = 1e9  # seconds


def default_view(url: str, namespace: str) -> tuple[dict[str, Any], list[Any]]:
    """The dashboard answer with nothing picked, and every request it sent to the server (each
    step of the store is one round trip: a command or a pipeline). No look for other clients'
    queued events or schema on the way: those come by the clock, not by the view."""

    async def run() -> tuple[dict[str, Any], list[Any]]:
        st = await aio.connect(url, namespace=namespace, flush_interval=NEVER)
        sent: list[Any] = []
        take = st._store.take

        async def counted(step: Any) -> Any:
            sent.append(step)
            return await take(step)

        st._store.take = counted  # type: ignore[method-assign]
        try:
            return await board.view(st, read(board.PARAMS, [])), sent
        finally:
            await st.close()

    return asyncio.run(run())


def test_the_defaults_cost_the_same_round_trips_whatever_the_number_of_event_names(
    embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Picking the default range and event read each event name's span and total, one name at
    a time: thousands of round trips a refresh for thousands of names. 2,000 names cost what 20
    do, and the choice is the same as one made from the raw events."""
    monkeypatch.setattr(record, "SCHEMA_TTL", NEVER)
    trips = []
    for names in (20, 2000):
        events = [
            {"event": f"n{i:04d}", "user": u, "time": f"2025-10-{1 + i % 28:02d}T10:00"}
            for i in range(names)
            for u in range(1 + i % 7)
        ]
        busiest = f"n{names // 2 + 3:04d}"  # neither first nor last: its data sets the range
        events += [{"event": busiest, "user": u, "time": "2025-11-20T08:00"} for u in range(50)]
        st = bitstat.connect(embedded_url, namespace=f"view-{uuid.uuid4().hex[:8]}")
        try:
            assert not st.track_many(events).rejected
            default_view(embedded_url, st.namespace)  # (the server learns the scripts)
            view, sent = default_view(embedded_url, st.namespace)
        finally:
            st.drop()
            st.close()
        in_range = Counter(e["event"] for e in events if e["time"] >= "2025-10-22")
        ranked = sorted(in_range, key=lambda n: (-in_range[n], n))
        assert (view["start"], view["end"], view["event"]) == ("2025-10-22", "2025-11-20", busiest)
        assert view["funnel"]["steps"] == ranked[:4] and len(view["events"]) == names
        trips.append(len(sent))
    assert trips[1] == trips[0] < 30, trips  # 6,047 and 94 before
