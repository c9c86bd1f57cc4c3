"""The dashboard as a person uses it, in Debian's headless Chromium: changing the period redraws
the charts as a fresh page would draw them; a server, or its Redis, that stops answering is
named, and the page tries again by itself (also when it was down as the page opened); on a
phone the controls scroll away with the page; a screen reader finds every control named and
every chart's numbers in words.

Screenshots go to $BITSTAT_SHOTS (default test-artifacts/) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bitstat
from bitstat.web import ServerConfig
from test_dashboard import ARTIFACTS, VIEW, hash_of, ready
from webserver import running, shop_stats

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
SHOTS = Path(os.environ.get("BITSTAT_SHOTS", ARTIFACTS))
DASH = "\N{EN DASH}"  # between the dates of a range


def shoot(pg: Any, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / name), full_page=full_page)


@pytest.fixture(scope="module")
def shop(embedded_url: str) -> Iterator[bitstat.Stats]:
    with shop_stats(embedded_url, "use") as st:
        yield st


@pytest.fixture(scope="module")
def server(embedded_url: str, shop: bitstat.Stats) -> Iterator[str]:
    config = ServerConfig(url=embedded_url, namespace=shop.namespace, refresh_seconds=0)
    with running(config) as base:
        yield base


DOTS = """id => window.bitstat.charts[id].getDatasetMeta(0).data.map((p) => p.options.radius)"""


def test_a_line_redrawn_with_more_points_drops_its_dots(page: Any, server: str) -> None:
    """Nine weeks have a dot each; the same two months in days (61 points) are drawn as a plain
    line, as a page opened on days draws them, not with the weeks' dots kept on every day."""
    page.goto(f"{server}/{hash_of(VIEW)}")
    before = ready(page)
    assert len(before["series_unique"]["series"]) == 9
    assert set(page.evaluate(DOTS, "chart-unique")) == {2}
    drawn = page.evaluate("window.bitstat.renders")
    page.select_option("#period", "day")
    after = ready(page, drawn)
    assert len(after["series_unique"]["series"]) == 61
    shoot(page, "dashboard-weeks-then-days.png")
    for canvas in ("chart-unique", "chart-total"):
        assert set(page.evaluate(DOTS, canvas)) == {0}, canvas


@pytest.fixture(scope="module")
def live_server(embedded_url: str, shop: bitstat.Stats) -> Iterator[str]:
    """The shop served with the live refresh on, every 10 seconds as `bitstat serve` does."""
    config = ServerConfig(url=embedded_url, namespace=shop.namespace, refresh_seconds=10)
    with running(config) as base:
        yield base


def test_a_server_that_stops_answering_is_named_and_tried_again(
    page: Any, live_server: str, page_errors: list[str]
) -> None:
    """The page said only "Failed to fetch" (the browser's words) when the server stopped; it
    says which server it cannot reach and that it tries again, and draws when it answers."""
    page.clock.install()
    page.goto(f"{live_server}/{hash_of(VIEW)}")
    ready(page)
    page.route("**/v1/**", lambda route: route.abort("connectionrefused"))
    page.clock.run_for(10_500)
    page.wait_for_function("window.bitstat.data === null")
    host = live_server.removeprefix("http://")
    assert page.inner_text("#message") == (
        f"cannot reach the bitstat server at {host} (Failed to fetch); trying again every 10 s"
    )
    shoot(page, "dashboard-server-unreachable.png")
    failed = page.evaluate("window.bitstat.renders")
    page.unroute("**/v1/**")
    page.clock.run_for(10_500)
    assert ready(page, failed)["event"] == "purchase"
    assert page.is_hidden("#message")
    assert set(page_errors) == {"Failed to load resource: net::ERR_CONNECTION_REFUSED"}
    page_errors.clear()


def test_a_page_opened_while_redis_is_down_draws_when_it_is_back(
    page: Any, live_server: str, page_errors: list[str]
) -> None:
    """Opened while the server could not reach Redis (503), the page said so and stayed so, live
    refresh on, after Redis was back; it tries again and draws."""
    down = "reading {x}:web:namespaces: cannot reach the server: Connection refused."
    answered = []

    def first_down(route: Any) -> None:
        answered.append(route.request.url)
        if len(answered) > 1:
            route.continue_()
        else:
            route.fulfill(
                status=503, content_type="application/json", body=json.dumps({"error": down})
            )

    page.clock.install()
    page.route("**/v1/namespaces", first_down)
    page.goto(f"{live_server}/{hash_of(VIEW)}")
    page.wait_for_selector("#message:not([hidden])")
    assert page.inner_text("#message") == down[:-1] + "; trying again every 10 s"
    page.clock.run_for(10_500)
    assert ready(page)["event"] == "purchase"
    assert page.is_hidden("#message") and len(answered) == 2
    assert page_errors == [
        "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"
    ]
    page_errors.clear()


PHONE = {"width": 390, "height": 844}


def test_on_a_phone_the_controls_scroll_away_with_the_page(browser: Any, server: str) -> None:
    """At 390 px the controls stood 268 px tall and stuck to the top of the screen, over a
    third of every chart scrolled to; they are shorter and scroll away with the page."""
    context = browser.new_context(viewport=PHONE, bypass_csp=True, is_mobile=True, has_touch=True)
    pg = context.new_page()
    try:
        pg.goto(f"{server}/{hash_of(VIEW)}")
        ready(pg)
        assert pg.evaluate("document.querySelector('.bar').offsetHeight") <= PHONE["height"] // 4
        # the funnel's chart scrolled to the top of the screen: the top of the screen is it
        hit = pg.evaluate(
            """() => { const c = document.getElementById("chart-funnel");
                       window.scrollTo(0, c.getBoundingClientRect().top + window.scrollY);
                       const r = c.getBoundingClientRect();
                       return document.elementFromPoint(r.left + r.width / 2, 10).id; }"""
        )
        shoot(pg, "dashboard-phone-scrolled.png", full_page=False)
        assert hit == "chart-funnel"
        assert pg.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()


def test_every_control_has_a_name_and_every_chart_says_what_it_shows(
    page: Any, server: str, shop: bitstat.Stats
) -> None:
    """A screen reader met four nameless controls (the pickers of the counts, top and sum cards,
    the funnel's window) and seven charts it could not read (canvases, outside the page's
    text); each control has a name, and each chart is an image whose label holds its numbers."""
    page.goto(f"{server}/{hash_of(VIEW)}")
    ready(page)
    tree = page.locator("body").aria_snapshot()
    nameless = [line for line in tree.splitlines() if re.match(r"\s*- (combobox|textbox):?$", line)]
    assert not nameless, tree
    for role, name in (
        ("combobox", "Counts by"),
        ("combobox", "Top values of"),
        ("combobox", "Sum of"),
        ("textbox", "Funnel steps"),
        ("textbox", "Funnel window"),
    ):
        assert page.get_by_role(role, name=name, exact=True).count() == 1, name
    labels = page.evaluate(
        "() => Object.fromEntries(Array.from(document.querySelectorAll('canvas'))"
        ".map((c) => [c.id, c.getAttribute('role') + ' ' + c.getAttribute('aria-label')]))"
    )
    assert len(labels) == 7 and all(label.startswith("img ") for label in labels.values())
    counts = shop.counts("purchase", "country", VIEW["start"], VIEW["end"])
    ranked = sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))
    assert labels["chart-counts"] == "img Counts by country. " + "; ".join(
        f"{value}: {count:,}" for value, count in ranked
    )
    weeks = shop.series("purchase", VIEW["start"], VIEW["end"], by="week")
    best = max(weeks, key=lambda pv: pv[1])
    assert labels["chart-unique"].startswith(
        f"img Unique actors per week {VIEW['start']} {DASH} {VIEW['end']}. "
    )
    assert len(weeks) <= 12 and f"{best[0]}: {best[1]:,}" in labels["chart-unique"]
