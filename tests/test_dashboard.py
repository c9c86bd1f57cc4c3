"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): it loads from a
real server holding the shop's known events, draws every chart, and shows the API's numbers.

Screenshots go to test-artifacts/ (kept for a person to look at). The static report of
`bitstat report` is opened from disk with the network cut off, and draws the same numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import bitstat
from bitstat.web import ServerConfig
from browser import ARGS, CHROMIUM, LAPTOP  # noqa: F401 (imported by the other modules)
from webserver import SHOP, running, shop_stats

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
VIEW = {"event": "purchase", "start": "2025-10-01", "end": "2025-11-30", "period": "week"}


@pytest.fixture(scope="module")
def shop(embedded_url: str) -> Iterator[bitstat.Stats]:
    with shop_stats(embedded_url, "dash") as st:
        yield st


@pytest.fixture(scope="module")
def server(embedded_url: str, shop: bitstat.Stats) -> Iterator[str]:
    config = ServerConfig(url=embedded_url, namespace=shop.namespace, refresh_seconds=1)
    with running(config) as base:
        yield base


def hash_of(view: dict[str, str]) -> str:
    return "#" + "&".join(f"{k}={v}" for k, v in view.items())


def ready(pg: Any, after: int = 0) -> Any:
    """Wait for a drawing newer than `after`; return what the page drew from."""
    pg.wait_for_function(f"Number(document.body.dataset.ready || 0) > {after}", timeout=15_000)
    return pg.evaluate("window.bitstat.data")


def drawn_with(pg: Any, key: str, value: str) -> Any:
    """Wait for a drawing whose answer has `key` == `value` (a live refresh of the view before
    may come first, so a count of drawings is not enough); return that answer."""
    pg.wait_for_function(
        "([k, v]) => window.bitstat && window.bitstat.data && window.bitstat.data[k] === v",
        arg=[key, value],
        timeout=15_000,
    )
    return pg.evaluate("window.bitstat.data")


def chart_data(pg: Any, canvas: str) -> dict[str, Any]:
    data: dict[str, Any] = pg.evaluate(
        """id => { const c = window.bitstat.charts[id];
                   return {labels: c.data.labels, sets: c.data.datasets.map(d => d.data)}; }""",
        canvas,
    )
    return data


def api(base: str, path: str, **query: Any) -> Any:
    answer = httpx.get(f"{base}/v1/{path}", params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def label(value: Any) -> str:
    return " · ".join(value) if isinstance(value, list) else str(value)


def test_the_dashboard_draws_the_api_numbers(page: Any, server: str) -> None:
    page.goto(f"{server}/{hash_of(VIEW)}")
    ready(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    rng = {k: VIEW[k] for k in ("event", "start", "end")}

    unique, total = api(server, "unique", **rng)["unique"], api(server, "total", **rng)["total"]
    assert page.inner_text("#kpi-unique") == f"{unique:,}"
    assert page.inner_text("#kpi-total") == f"{total:,}"
    assert page.inner_text("#kpi-ratio") == f"{total / unique:,.2f}".rstrip("0").rstrip(".")
    for metric, canvas in (("unique", "chart-unique"), ("total", "chart-total")):
        series = api(server, "series", **rng, by="week", metric=metric)["series"]
        drawn = chart_data(page, canvas)
        assert drawn["labels"] == [r["period"] for r in series]
        assert drawn["sets"] == [[r["value"] for r in series]]
        assert sum(drawn["sets"][0]) > 0

    counts = api(server, "counts", **rng, prop="country")["counts"][:12]
    assert chart_data(page, "chart-counts") == {
        "labels": [label(r["value"]) for r in counts],
        "sets": [[r["count"] for r in counts]],
    }
    top = api(server, "top", **rng, prop="item")["top"]
    assert chart_data(page, "chart-top") == {
        "labels": [r["value"] for r in top],
        "sets": [[r["count"] for r in top]],
    }
    sums = api(server, "sums", **rng, prop="amount", by="country")["sums"]
    assert chart_data(page, "chart-sums")["sets"] == [[r["sum"] for r in sums]]
    total_sum = api(server, "sums", **rng, prop="amount")["sum"]
    assert page.inner_text("#kpi-sum") == f"{total_sum:,.2f}".rstrip("0").rstrip(".")

    steps = ["visit", "purchase", "signup"]  # the range's events, most frequent first
    funnel = api(server, "funnel", step=steps, start=VIEW["start"], end=VIEW["end"])["funnel"]
    assert chart_data(page, "chart-funnel")["sets"] == [[r["actors"] for r in funnel]]
    assert page.input_value("#steps") == ", ".join(steps)

    weeks = [r["period"] for r in api(server, "series", **rng, by="week")["series"]]
    # cells after the end of the range, or after the clock, stay empty
    clock = datetime.now(SHOP.tz).replace(tzinfo=None, microsecond=0)
    now = min(datetime(2025, 11, 30, 23, 59, 59), clock).isoformat()
    cohorts = api(
        server,
        "retention",
        first_event="purchase",
        return_event="purchase",
        start=weeks[0],
        periods=len(weeks),
        period="week",
        now=now,
    )["rows"]
    cells = page.eval_on_selector_all(
        "#retention tbody tr",
        "rows => rows.map(r => Array.from(r.querySelectorAll('td')).slice(2)"
        ".map(td => td.dataset.count === undefined ? null : Number(td.dataset.count)))",
    )
    assert cells == [row["counts"] for row in cohorts]
    assert any(c for row in cells for c in row[1:]), "someone should come back"

    lifecycle = api(
        server,
        "lifecycle",
        event="purchase",
        start=weeks[0],
        periods=len(weeks),
        period="week",
        now=now,
    )["lifecycle"]
    drawn = chart_data(page, "chart-lifecycle")
    assert drawn["labels"] == [r["period"] for r in lifecycle]
    assert drawn["sets"][0] == [r["new"] for r in lifecycle]
    assert drawn["sets"][3] == [-r["dormant"] for r in lifecycle]


def test_the_dashboard_follows_its_controls_and_refreshes_itself(
    page: Any, server: str, shop: bitstat.Stats, page_errors: list[str]
) -> None:
    page.goto(f"{server}/{hash_of(VIEW)}")
    first = ready(page)
    assert first["event"] == "purchase"
    page.select_option("#event", "signup")
    drawn = drawn_with(page, "event", "signup")
    assert drawn["event"] == "signup" and "event=signup" in page.url
    signups = api(server, "unique", event="signup", start=VIEW["start"], end=VIEW["end"])
    assert page.inner_text("#kpi-unique") == f"{signups['unique']:,}"

    # live: new events show up without a reload (refresh every second here)
    before = api(server, "total", event="signup", start=VIEW["start"], end=VIEW["end"])["total"]
    posted = httpx.post(
        f"{server}/v1/track",
        params={"namespace": shop.namespace},
        json=[
            {"event": "signup", "user": f"late-{i}", "time": "2025-11-30T12:00:00"}
            for i in range(5)
        ],
    )
    assert posted.json() == {"recorded": 5, "rejected": []}
    page.wait_for_function(
        f"document.getElementById('kpi-total').textContent === '{before + 5:,}'", timeout=10_000
    )

    # a period picked by hand, and a bad one: the page says what is wrong
    page.select_option("#period", "month")
    drawn = drawn_with(page, "period", "month")
    assert drawn["period"] == "month"
    assert [r["period"] for r in drawn["series_unique"]["series"]] == ["2025-10", "2025-11"]
    page.goto(f"{server}/#event=signup&start=2025-11-31")
    page.wait_for_selector("#message:not([hidden])")
    assert "start" in page.inner_text("#message")
    # (once, or again at each refresh of the page, every second, on a slow machine)
    assert page_errors
    assert set(page_errors) == {
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    }
    # left, so that no refresh asks again between this and the page's own check (a CI run on
    # a loaded machine met one there)
    page.goto("about:blank")
    page_errors.clear()


def test_the_dashboard_asks_for_the_read_token(
    browser: Any, embedded_url: str, shop: bitstat.Stats
) -> None:
    config = ServerConfig(
        url=embedded_url, namespace=shop.namespace, read_token="let-me-read", write_token="w"
    )
    context = browser.new_context(viewport=LAPTOP, bypass_csp=True)  # see browser.py
    pg = context.new_page()
    try:
        with running(config) as base:
            pg.goto(f"{base}/{hash_of(VIEW)}")
            pg.wait_for_selector("#token-dialog[open]")
            pg.fill("#token-input", "let-me-read")
            pg.click("#token-save")
            data = ready(pg)
            assert data["unique"] == api_with(base, "let-me-read", "unique", VIEW)
            pg.reload()  # the token is remembered
            ready(pg)
    finally:
        context.close()


def api_with(base: str, token: str, path: str, view: dict[str, str]) -> Any:
    query = {k: view[k] for k in ("event", "start", "end")}
    answer = httpx.get(
        f"{base}/v1/{path}", params=query, headers={"Authorization": f"Bearer {token}"}
    )
    return answer.json()


def test_the_static_report_draws_offline(
    browser: Any, embedded_url: str, shop: bitstat.Stats, server: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    args = ["--url", embedded_url, "--namespace", shop.namespace, "report", "--out", str(out)]
    args += ["--event", "purchase", "--start", VIEW["start"], "--end", VIEW["end"]]
    # a process of its own, as a person runs it (Playwright's loop holds this thread)
    result = subprocess.run(
        [sys.executable, "-m", "bitstat", *args, "--period", "week"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}")
    html = out.read_text()
    assert "<script src=" not in html and "stylesheet" not in html  # nothing left to fetch
    context = browser.new_context(viewport=LAPTOP, offline=True, bypass_csp=True)
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    pg = context.new_page()
    try:
        pg.goto(out.as_uri())
        data = ready(pg)
        pg.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        assert requests == [out.as_uri()]
        live = json.loads(httpx.get(f"{server}/v1/dashboard", params=VIEW).text)
        for part in (
            "unique",
            "total",
            "series_unique",
            "counts",
            "top",
            "sums",
            "funnel",
            "retention",
            "lifecycle",
        ):
            assert data[part] == live[part], part
        assert pg.inner_text("#kpi-unique") == f"{data['unique']['unique']:,}"
        assert chart_data(pg, "chart-unique")["sets"] == [
            [r["value"] for r in live["series_unique"]["series"]]
        ]
    finally:
        context.close()


def test_a_narrow_window_still_reads(page: Any, server: str) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server}/{hash_of(VIEW)}")
    ready(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, "no sideways scrolling on a laptop screen"
    page.screenshot(path=str(ARTIFACTS / "dashboard-1280.png"))
    assert os.path.getsize(ARTIFACTS / "dashboard-1280.png") > 10_000
