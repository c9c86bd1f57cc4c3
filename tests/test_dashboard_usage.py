"""The dashboard as a person uses it, in Debian's headless Chromium: changing the period redraws
the charts as a fresh page would draw them.

Screenshots go to $BITSTAT_SHOTS (default test-artifacts/) for a person to look at.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bitstat
from bitstat.web import ServerConfig
from test_dashboard import ARTIFACTS, VIEW, hash_of, ready
from webserver import SHOP, running, shop_events

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
SHOTS = Path(os.environ.get("BITSTAT_SHOTS", ARTIFACTS))


def shoot(pg: Any, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / name), full_page=full_page)


@pytest.fixture(scope="module")
def shop(embedded_url: str) -> Iterator[bitstat.Stats]:
    st = bitstat.connect(embedded_url, namespace=f"use-{uuid.uuid4().hex[:8]}", schema=SHOP)
    assert not st.track_many(shop_events()).rejected
    yield st
    st.drop()
    st.close()


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
