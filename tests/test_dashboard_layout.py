"""The dashboard's layout in Debian's headless Chromium: the retention heat map, its widest case
(12 cohorts of 12 columns, four-digit cohort sizes, day labels), fits its card on a 1280 px
laptop screen and scrolls inside its card on a narrow one, never widening the page.

Screenshots go to $BITSTAT_SHOTS (default test-artifacts/) for a person to look at.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import bitstat
from bitstat.web import ServerConfig
from test_dashboard import ARTIFACTS, hash_of, ready
from webserver import running

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
SHOTS = Path(os.environ.get("BITSTAT_SHOTS", ARTIFACTS))
FIRST = datetime(2025, 9, 1)  # a Monday: 12 whole ISO weeks up to 2025-11-23
WEEKS = 12
END = (FIRST + timedelta(weeks=WEEKS, days=-1)).date().isoformat()


def visits(seed: int = 3, per_week: int = 1_050) -> Iterator[dict[str, Any]]:
    """`per_week` new actors a week, each coming back in a later week now and then."""
    rnd = random.Random(seed)
    for n in range(WEEKS * per_week):
        week = n // per_week
        for later in range(week, WEEKS):
            if later == week or rnd.random() < 0.12 + 0.02 * (n % 7):
                day = FIRST + timedelta(weeks=later, days=rnd.randrange(7), hours=rnd.randrange(24))
                yield {"event": "visit", "user": n, "time": day.isoformat()}


@pytest.fixture(scope="module")
def server(embedded_url: str) -> Iterator[str]:
    st = bitstat.connect(
        embedded_url, namespace=f"layout-{uuid.uuid4().hex[:8]}", schema=bitstat.Schema()
    )
    try:
        assert not st.track_many(visits()).rejected
        config = ServerConfig(url=embedded_url, namespace=st.namespace, refresh_seconds=0)
        with running(config) as base:
            yield base
    finally:
        st.drop()
        st.close()


def heat_map(browser: Any, base: str, view: dict[str, str], width: int, shot: str) -> Any:
    """Open `view` at `width` x 800; return the boxes of the page, the card and the heat map."""
    context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        pg.goto(f"{base}/{hash_of(view)}")
        data = ready(pg)
        assert len(data["retention"]["rows"]) == 12
        pg.locator("#retention").scroll_into_view_if_needed()
        SHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SHOTS / shot))
        boxes = pg.evaluate(
            """() => {
              const box = document.getElementById("retention");
              const edge = (e) => { const r = e.getBoundingClientRect();
                                    return {left: r.left, right: r.right}; };
              const before = {page: document.documentElement.scrollWidth,
                              card: edge(box.closest(".card")), box: edge(box),
                              table: edge(box.querySelector("table")),
                              scroll: [box.scrollWidth, box.clientWidth]};
              box.scrollLeft = box.scrollWidth;  // as far right as a person can scroll it
              const cells = box.querySelectorAll("thead th");
              return {...before, last: edge(cells[cells.length - 1]),
                      cohort: edge(box.querySelector("tbody td.cohort"))};
            }"""
        )
        pg.screenshot(path=str(SHOTS / shot.replace(".png", "-scrolled.png")))
    finally:
        context.close()
    assert not errors, errors
    return boxes


@pytest.mark.parametrize("period", ["week", "day"])
def test_the_heat_map_fits_its_card_on_a_laptop_screen(
    browser: Any, server: str, period: str
) -> None:
    view = {"event": "visit", "start": "2025-09-01", "end": END, "period": period}
    b = heat_map(browser, server, view, 1280, f"retention-1280-{period}.png")
    assert b["page"] <= 1280
    assert b["card"]["right"] <= 1280
    # the whole table shows in its card: nothing to scroll to, no column cut off
    assert b["scroll"][0] <= b["scroll"][1], b
    assert b["box"]["left"] >= b["card"]["left"] and b["box"]["right"] <= b["card"]["right"]
    assert b["table"]["right"] <= b["box"]["right"], b


@pytest.mark.parametrize("width", [480, 900])
def test_the_heat_map_scrolls_inside_its_card_on_a_narrow_screen(
    browser: Any, server: str, width: int
) -> None:
    view = {"event": "visit", "start": "2025-09-01", "end": END, "period": "day"}
    b = heat_map(browser, server, view, width, f"retention-{width}-day.png")
    assert b["page"] <= width, "no sideways scrolling of the page"
    assert b["card"]["right"] <= width
    assert b["box"]["left"] >= b["card"]["left"] and b["box"]["right"] <= b["card"]["right"]
    # scrolled to its end, the last column shows inside the card, the cohorts still beside it
    assert b["last"]["right"] <= b["box"]["right"] + 0.5, b
    assert b["cohort"]["left"] >= b["box"]["left"] - 0.5, b


def test_the_time_axis_labels_stand_apart(browser: Any, server: str) -> None:
    """A year of weeks: the labels Chart.js keeps on the time axis do not run together."""
    view = {"event": "visit", "start": "2024-12-02", "end": END, "period": "week"}
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    pg = context.new_page()
    try:
        pg.goto(f"{server}/{hash_of(view)}")
        assert len(ready(pg)["series_unique"]["series"]) > 50
        SHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SHOTS / "series-year-of-weeks.png"))
        gaps = pg.evaluate(
            """() => ["chart-unique", "chart-total"].map((id) => {
              const c = window.bitstat.charts[id], x = c.scales.x;
              c.ctx.save();
              c.ctx.font = Chart.helpers.toFont(x.options.ticks.font).string;
              const ends = x.ticks.map((t, i) => {
                const w = c.ctx.measureText(t.label).width;
                const at = x.getPixelForTick(i);
                return [at - w / 2, at + w / 2];
              });
              c.ctx.restore();
              return ends.slice(1).map(([left], i) => left - ends[i][1]);
            })"""
        )
    finally:
        context.close()
    for drawn in gaps:
        assert len(drawn) >= 3, "a few labels are kept"
        assert min(drawn) >= 8, f"labels {min(drawn):.1f} px apart"
