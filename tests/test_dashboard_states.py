"""What the dashboard shows when its data changes under it, in Debian's headless Chromium.

Switching to a namespace without events, or a load that fails, leaves nothing of the earlier
view on the page; an error about one part of the view (an event never recorded, buckets that
have expired) shows in the card it concerns instead of zeros; the "Sum of" tile is the total
the library answers, also for events that lack the breakdown's label.

Screenshots go to $BITSTAT_SHOTS (default test-artifacts/) for a person to look at.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bitstat
from bitstat.web import ServerConfig
from test_dashboard import (
    ARTIFACTS,
    LAPTOP,
    VIEW,
    chart_data,
    drawn_with,
    hash_of,
    ready,
)
from webserver import SHOP, running, shop_events, shop_stats

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
SHOTS = Path(os.environ.get("BITSTAT_SHOTS", ARTIFACTS))
DASH = "\N{EN DASH}"  # what a tile shows without a number
TILES = ("unique", "total", "ratio", "distinct", "sum")
LABELS = ("Unique actors", "Events", "Events per actor", "Distinct values", "Sum")
CHARTS = (
    "chart-unique",
    "chart-total",
    "chart-counts",
    "chart-top",
    "chart-sums",
    "chart-funnel",
    "chart-lifecycle",
)
# every part of a dashboard answer that a card or a tile draws
PARTS = (
    "unique",
    "total",
    "series_unique",
    "series_total",
    "counts",
    "top",
    "sums",
    "sum_total",
    "distinct",
    "funnel",
    "retention",
    "lifecycle",
)
CHOICES = ("prop", "rule", "steps", "within")  # what a part carries besides its data or error
EXPIRED = "hour buckets before 2025-11-16 have expired (hour keys are kept 14 days)"


def shoot(pg: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / name), full_page=True)


@pytest.fixture(scope="module")
def shop(embedded_url: str) -> Iterator[bitstat.Stats]:
    with shop_stats(embedded_url, "dash") as st:
        yield st


@pytest.fixture(scope="module")
def quiet(embedded_url: str) -> Iterator[bitstat.Stats]:
    """A namespace with the shop's schema stored and no events yet."""
    st = bitstat.connect(embedded_url, namespace=f"quiet-{uuid.uuid4().hex[:8]}", schema=SHOP)
    yield st
    st.drop()
    st.close()


@pytest.fixture(scope="module")
def server(embedded_url: str, shop: bitstat.Stats) -> Iterator[str]:
    config = ServerConfig(url=embedded_url, namespace=shop.namespace, refresh_seconds=0)
    with running(config) as base:
        yield base


def board(pg: Any) -> dict[str, Any]:
    """Everything the board shows: tiles, notes, chart data, card texts, retention cells."""
    shown: dict[str, Any] = pg.evaluate(
        """charts => {
          const text = (sel) => Array.from(document.querySelectorAll(sel))
            .filter((e) => !e.hidden).map((e) => e.textContent.trim()).filter(Boolean);
          const drawn = {};
          for (const id of charts) {
            const c = window.bitstat.charts[id];
            drawn[id] = c && {labels: c.data.labels, sets: c.data.datasets.map((d) => d.data)};
          }
          return {
            tiles: Object.fromEntries(["unique", "total", "ratio", "distinct", "sum"].map(
              (n) => [n, document.getElementById("kpi-" + n).textContent])),
            labels: text(".tile .label"),
            notes: text(".tile .note"),
            empties: Object.fromEntries(Array.from(document.querySelectorAll("p.empty"))
              .map((p) => [p.id, p.hidden ? null : p.textContent])),
            titles: text(".card h2"),
            retention: document.getElementById("retention").textContent.trim(),
            cells: document.querySelectorAll("#retention td").length,
            charts: drawn,
          };
        }""",
        list(CHARTS),
    )
    return shown


def assert_blank(shown: dict[str, Any]) -> None:
    """Nothing of a drawn view is left: no number, no chart point, no cell, no range."""
    assert shown["tiles"] == dict.fromkeys(TILES, DASH)
    assert shown["labels"] == [
        "Unique actors",
        "Events",
        "Events per actor",
        "Distinct values",
        "Sum",
    ]
    assert shown["notes"] == []
    for id_, drawn in shown["charts"].items():
        if drawn is not None:
            assert drawn["labels"] == [], id_
            assert all(s == [] for s in drawn["sets"]), id_
    assert shown["cells"] == 0 and shown["retention"] == ""
    assert all(text is None for text in shown["empties"].values()), shown["empties"]
    assert not any("2025" in t or "purchase" in t for t in shown["titles"]), shown["titles"]


def switch_namespace(pg: Any, name: str) -> Any:
    """Type another namespace; return the answer the page then draws."""
    before = pg.evaluate("window.bitstat.renders")
    pg.fill("#namespace", name)
    pg.press("#namespace", "Enter")
    return ready(pg, before)


def test_switching_to_a_namespace_without_events_leaves_nothing_of_the_last(
    page: Any, server: str, shop: bitstat.Stats, quiet: bitstat.Stats
) -> None:
    page.goto(f"{server}/{hash_of({'namespace': shop.namespace, **VIEW})}")
    ready(page)
    drawn = board(page)
    assert drawn["tiles"]["unique"] != DASH and drawn["cells"] > 0  # a full board first
    assert sum(drawn["charts"]["chart-total"]["sets"][0]) > 0

    data = switch_namespace(page, quiet.namespace)
    assert data["namespace"] == quiet.namespace and data["event"] is None
    assert (
        page.inner_text("#message") == f"No events recorded in namespace “{quiet.namespace}” yet."
    )
    shoot(page, "dashboard-switched-to-empty.png")
    assert_blank(board(page))
    assert page.eval_on_selector("#event", "s => s.options.length") == 0

    # and back: the shop's view is drawn again in full
    data = switch_namespace(page, shop.namespace)
    assert data["namespace"] == shop.namespace and data["event"] is not None
    assert page.is_hidden("#message")
    assert board(page)["cells"] > 0


def test_a_failed_load_leaves_nothing_of_the_last_view(
    page: Any, server: str, page_errors: list[str]
) -> None:
    page.goto(f"{server}/{hash_of(VIEW)}")
    ready(page)
    assert board(page)["cells"] > 0
    page.evaluate("location.hash = '#event=purchase&start=2025-11-31'")
    page.wait_for_selector("#message:not([hidden])")
    assert "start" in page.inner_text("#message")
    page.wait_for_function("window.bitstat.data === null")
    shoot(page, "dashboard-failed-load.png")
    assert_blank(board(page))
    assert page.get_attribute("#start", "class") == "bad"
    assert page_errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]
    page_errors.clear()

    # a good view again: drawn, and the control is no longer marked
    page.evaluate(f"location.hash = '{hash_of(VIEW)}'")
    page.wait_for_function("window.bitstat.data !== null")
    assert page.is_hidden("#message")
    assert not page.get_attribute("#start", "class")
    assert board(page)["cells"] > 0


def answer_with(route: Any, change: Any) -> None:
    """Fulfil a dashboard request with the server's own answer, changed by `change`."""
    real = route.fetch()
    body = real.json()
    change(body)
    route.fulfill(response=real, body=json.dumps(body))


def test_a_part_that_fails_shows_its_error_in_its_own_card(page: Any, server: str) -> None:
    """A 400 about one part (buckets expired, an unknown funnel step) reads in its card; the
    tiles say it too instead of showing a number or a dash alone."""

    def expire_everything(body: dict[str, Any]) -> None:
        for part in PARTS:
            # as dashboard.py answers a failed part: what was asked for, and the error
            asked = {k: v for k, v in (body.get(part) or {}).items() if k in CHOICES}
            body[part] = {**asked, "error": EXPIRED}

    page.route("**/v1/dashboard?*", lambda route: answer_with(route, expire_everything))
    page.goto(f"{server}/{hash_of(VIEW)}")
    ready(page)
    shoot(page, "dashboard-part-errors.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
    shown = board(page)
    assert shown["tiles"] == dict.fromkeys(TILES, DASH)
    # each tile whose part failed says why (the ratio has no part of its own)
    assert shown["notes"] == [EXPIRED] * 4
    for card in ("unique", "total", "counts", "top", "sums", "funnel", "lifecycle"):
        assert shown["empties"][f"empty-{card}"] == EXPIRED, card
    assert shown["retention"] == EXPIRED
    for id_, drawn in shown["charts"].items():
        assert drawn is not None and all(s == [] for s in drawn["sets"]), id_


def test_an_event_never_recorded_reads_as_an_error_naming_the_event(
    page: Any, server: str, page_errors: list[str]
) -> None:
    """The library answers 404 {"error", "parameter": "event"} for such an event: the banner says
    so, the board keeps nothing of the last view, the event picker is marked."""
    page.goto(f"{server}/{hash_of(VIEW)}")
    ready(page)
    error = "no event 'purchse' is recorded in this namespace; did you mean 'purchase'?"

    def not_found(route: Any) -> None:
        if "event=purchse" not in route.request.url:
            route.continue_()
            return
        route.fulfill(
            status=404,
            content_type="application/json",
            body=json.dumps({"error": error, "parameter": "event"}),
        )

    page.route("**/v1/dashboard?*", not_found)
    page.evaluate("location.hash = '#event=purchse'")
    page.wait_for_function("window.bitstat.data === null")
    assert page.inner_text("#message") == f"{error} (event)"
    assert page.get_attribute("#event", "class") == "bad"
    assert_blank(board(page))
    # the picker still offers the namespace's events, so the typo can be mended there
    assert "purchase" in page.eval_on_selector_all("#event option", "os => os.map(o => o.value)")
    assert page_errors == [
        "Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]
    page_errors.clear()


def test_the_sum_tile_is_the_total_also_of_events_without_the_label(
    browser: Any, embedded_url: str
) -> None:
    """`amount by country` leaves out purchases without a country; the tile must not."""
    st = bitstat.connect(embedded_url, namespace=f"sums-{uuid.uuid4().hex[:8]}", schema=SHOP)
    events = shop_events(seed=11, visitors=120)
    for n, e in enumerate(e for e in events if e["event"] == "purchase"):
        if n % 3 == 0:
            del e["country"]  # a third of the purchases carry no country
    context = browser.new_context(viewport=LAPTOP, bypass_csp=True)  # see browser.py
    pg = context.new_page()
    try:
        assert not st.track_many(events).rejected
        rng = ("purchase", "amount", VIEW["start"], VIEW["end"])
        total = st.sums(*rng)
        by_country = st.sums(*rng, by="country")
        assert isinstance(total, float) and isinstance(by_country, dict)
        assert sum(by_country.values()) < total - 1  # the premise: the breakdown misses some
        config = ServerConfig(url=embedded_url, namespace=st.namespace, refresh_seconds=0)
        with running(config) as base:
            pg.goto(f"{base}/{hash_of(VIEW)}")
            data = ready(pg)
            shoot(pg, "dashboard-sum-total.png")
            assert data["sums"]["rule"] == "amount by country"  # the chart is the breakdown
            assert pg.inner_text("#kpi-sum-label") == "Sum of amount"
            assert pg.inner_text("#kpi-sum") == f"{total:,.2f}".rstrip("0").rstrip(".")
            drawn = chart_data(pg, "chart-sums")
            assert dict(zip(drawn["labels"], drawn["sets"][0], strict=True)) == by_country
    finally:
        context.close()
        st.drop()
        st.close()


def test_a_sum_recorded_only_per_label_says_so_in_the_tile(browser: Any, embedded_url: str) -> None:
    """Without a plain `amount` rule no total exists: the tile names what it adds up."""
    schema = bitstat.Schema(ids="map", sum=["amount by country"], count=["country"])
    st = bitstat.connect(embedded_url, namespace=f"sums-{uuid.uuid4().hex[:8]}", schema=schema)
    context = browser.new_context(viewport=LAPTOP, bypass_csp=True)  # see browser.py
    pg = context.new_page()
    try:
        events = [
            {"event": "purchase", "user": f"u{n}", "time": f"2025-11-{1 + n % 28:02d}T10:00"}
            | ({"country": "NL"} if n % 2 else {})
            | {"amount": 10 + n}
            for n in range(40)
        ]
        assert not st.track_many(events).rejected
        by_country = st.sums("purchase", "amount", VIEW["start"], VIEW["end"], by="country")
        assert isinstance(by_country, dict)
        config = ServerConfig(url=embedded_url, namespace=st.namespace, refresh_seconds=0)
        with running(config) as base:
            pg.goto(f"{base}/{hash_of(VIEW)}")
            ready(pg)
            assert pg.inner_text("#kpi-sum-label") == "Sum of amount (with country)"
            value = sum(by_country.values())
            assert pg.inner_text("#kpi-sum") == f"{value:,.2f}".rstrip("0").rstrip(".")
    finally:
        context.close()
        st.drop()
        st.close()


def test_the_period_picker_names_the_period_drawn(page: Any, server: str) -> None:
    """Left on auto, the picker says which period the charts use, also after the range grows."""
    month = {"event": "purchase", "start": "2025-11-01", "end": "2025-11-30"}
    page.goto(f"{server}/{hash_of(month)}")
    assert ready(page)["period"] == "day"
    assert page.eval_on_selector("#period", "s => s.selectedOptions[0].text") == "auto (day)"
    page.click("button[data-days='365']")  # a year: too many days, so weeks
    assert drawn_with(page, "period", "week")["start"] == "2024-12-01"
    assert page.eval_on_selector("#period", "s => s.selectedOptions[0].text") == "auto (week)"
    assert page.inner_text("#title-unique").startswith("Unique actors per week")


def test_every_bar_is_named(page: Any, server: str) -> None:
    """Twelve countries-and-platforms: each bar of the counts chart keeps its label."""
    page.goto(f"{server}/{hash_of({**VIEW, 'count': 'country~platform'})}")
    data = ready(page)
    assert len(data["counts"]["counts"]) >= 12
    shoot(page, "dashboard-counts-12.png")
    for canvas in ("chart-counts", "chart-top", "chart-sums", "chart-funnel"):
        shown = page.evaluate(
            "id => { const c = window.bitstat.charts[id];"
            " return [c.scales.y.ticks.length, c.data.labels.length]; }",
            canvas,
        )
        assert shown[0] == shown[1], (canvas, shown)


def test_a_range_without_events_says_so_in_the_funnel_card(page: Any, server: str) -> None:
    """No event in the range leaves the funnel without default steps: its card says the range is
    empty, as the other cards do, not that the event (recorded on other days) never was."""
    before = {"event": "purchase", "start": "2024-01-01", "end": "2024-01-31"}
    page.goto(f"{server}/{hash_of(before)}")
    data = ready(page)
    assert data["event"] == "purchase" and data["funnel"] is None
    shoot(page, "dashboard-empty-range.png")
    shown = board(page)
    assert shown["empties"]["empty-counts"] == "no data in this range"
    assert shown["empties"]["empty-funnel"] == "no data in this range"
    assert page.input_value("#steps") == ""


def test_a_breakdown_of_negative_sums_shows_the_largest_in_size(
    browser: Any, embedded_url: str
) -> None:
    """Refunds recorded as negative amounts, over 15 countries: the chart's 12 bars were the
    12 nearest zero (the API ranks by value), leaving out the largest refunds."""
    schema = bitstat.Schema(ids="map", sum=["amount by country"])
    st = bitstat.connect(embedded_url, namespace=f"sums-{uuid.uuid4().hex[:8]}", schema=schema)
    context = browser.new_context(viewport=LAPTOP, bypass_csp=True)  # see browser.py
    pg = context.new_page()
    try:
        events = [
            {"event": "refund", "user": f"u{n}", "time": f"2025-11-{1 + n % 28:02d}T10:00"}
            | {"country": f"C{n:02d}", "amount": -10 * (n + 1)}
            for n in range(15)
        ]
        assert not st.track_many(events).rejected
        config = ServerConfig(url=embedded_url, namespace=st.namespace, refresh_seconds=0)
        with running(config) as base:
            pg.goto(f"{base}/{hash_of(VIEW | {'event': 'refund'})}")
            ready(pg)
            drawn = chart_data(pg, "chart-sums")
            assert drawn["labels"] == [f"C{n:02d}" for n in range(14, 2, -1)]
            assert drawn["sets"][0] == [-10 * (n + 1) for n in range(14, 2, -1)]
    finally:
        context.close()
        st.drop()
        st.close()
