"""The cohort form of bitstat.compat.bitmapist: its vendored Tom Select, inlined and offline.

bitmapist's own tests (tests/bitmapist_upstream/test_cohort.py) check that the library is
inlined or left out; these check that the vendored files are the npm package's, that inlining
them cannot break the page, and, in a real Chromium with the network cut off, that the four
event selects become searchable ones which still submit the same values.
"""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import pytest

from bitstat.compat.bitmapist import cohort
from browser import CHROMIUM

EVENTS = [("Active", "active"), ("Played a song", "song:play"), "---", ("Signed up", "signup")]
EVENT_SELECTS = ["select1", "select1b", "select2", "select2b"]
VENDOR = resources.files("bitstat.compat.bitmapist").joinpath("vendor", "tom-select")

browser_only = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)",
)


class Selects(HTMLParser):
    """The name and class of every <select>, and the option values of each."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: dict[str, str | None] = {}
        self.options: dict[str, list[str]] = {}
        self._current = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "select":
            self._current = found["name"] or ""
            self.classes[self._current] = found.get("class")
            self.options[self._current] = []
        elif tag == "option":
            self.options[self._current].append(found.get("value") or "")


def selects_of(page_html: str) -> Selects:
    parser = Selects()
    parser.feed(page_html)
    return parser


def test_the_vendored_files_are_the_npm_package_s() -> None:
    """Byte for byte what `npm pack tom-select@2.3.1` holds, as SOURCE.md records."""
    source = VENDOR.joinpath("SOURCE.md").read_text(encoding="utf-8")
    sums = dict(re.findall(r"^\| `([^`]+)` \| `[^`]+` \| `([0-9a-f]{64})` \|$", source, re.M))
    assert set(sums) == {"tom-select.complete.min.js", "tom-select.min.css", "LICENSE"}
    for name, expected in sums.items():
        assert hashlib.sha256(VENDOR.joinpath(name).read_bytes()).hexdigest() == expected, name
    assert "Apache License" in VENDOR.joinpath("LICENSE").read_text(encoding="utf-8")


def test_the_inlined_assets_cannot_close_their_tags_or_reach_the_network() -> None:
    css, js = cohort.tom_select_assets()
    assert js.startswith("/**\n* Tom Select v2.3.1\n")
    assert "</style" not in css.lower() and "</script" not in js.lower()
    for text in (css, js):
        assert "sourceMappingURL" not in text
        assert not re.search(r"https?:|//cdn|@import|url\(", text)
    assert cohort.tom_select_assets() is cohort.tom_select_assets()  # read once


def test_the_four_event_selects_are_tagged_and_no_other() -> None:
    page_html = cohort.render_html_form("/cohort", EVENTS, select2="song:play")
    found = selects_of(page_html)
    tagged = {name for name, cls in found.classes.items() if cls == cohort.EVENT_SELECT_CLASS}
    assert tagged == set(EVENT_SELECTS)
    assert set(found.classes) - tagged == {"time_group", "as_percent", "num_results", "num_of_rows"}
    assert found.options["select1"] == ["active", "song:play", "", "signup"]
    assert found.options["select1b"] == ["", "active", "song:play", "", "signup"]
    assert 'value="song:play" selected="selected"' in page_html


def test_the_library_comes_before_nothing_but_the_form() -> None:
    """Styles first, then the form, then ~50 KB of script, then the initializer."""
    page_html = cohort.render_html_form("/", EVENTS)
    at = [page_html.index(s) for s in ("Tom Select v2.3.1", "<form", "new TomSelect")]
    assert page_html.index(".ts-control") < at[1] < at[0] < at[2]
    assert page_html.count("<script>") == 2


def test_without_assets_the_form_and_its_initializer_remain() -> None:
    with_assets = cohort.render_html_form("/", EVENTS)
    without = cohort.render_html_form("/", EVENTS, include_assets=False)
    css, js = cohort.tom_select_assets()
    assert css not in without and js not in without
    assert (
        with_assets.replace(f"<style>{css}</style>\n", "").replace(f"<script>{js}</script>\n", "")
        == without
    )
    assert len(without) < 4_000 < 50_000 < len(with_assets)


def test_names_and_labels_are_escaped() -> None:
    evil = [('<b>"x"</b>', '"><script>alert(1)</script>')]
    page_html = cohort.render_html_form('/a"b', evil, include_assets=False)
    assert "<script>alert(1)" not in page_html and "<b>" not in page_html
    assert 'action="/a&quot;b"' in page_html
    assert selects_of(page_html).options["select1"] == ['"><script>alert(1)</script>']


def open_offline(page: Any, body: str) -> list[str]:
    """Show `body` in the page with the network cut: every request is recorded and refused."""
    asked: list[str] = []

    def refuse(route: Any) -> None:
        asked.append(route.request.url)
        route.abort()

    page.route("**/*", refuse)
    page.set_content(
        f"<!doctype html><html><head><title>cohort</title></head><body>{body}</body></html>"
    )
    return asked


def wait_for_state(page: Any, select: str, predicate: str) -> None:
    """Wait until `predicate` holds of the select's Tom Select (`ts`); if it never does, fail
    with what Tom Select's state was, not a bare timeout."""
    ts = f"document.querySelector('select[name={select}]').tomselect"
    try:
        page.wait_for_function(
            f"(() => {{ const ts = {ts}; return {predicate}; }})()", timeout=15_000
        )
    except Exception as exc:  # Playwright's TimeoutError: say what the page held instead
        state = page.evaluate(
            f"""(() => {{ const ts = {ts}; return {{
                focused: ts.isFocused, open: ts.isOpen, inputHidden: ts.isInputHidden,
                locked: ts.isLocked, typed: ts.control_input.value, items: ts.items,
                shown: [...ts.dropdown_content.querySelectorAll('.option')].map(o => o.textContent),
                active: document.activeElement && document.activeElement.outerHTML.slice(0, 120),
            }}; }})()"""
        )
        raise AssertionError(f"{predicate} never held on {select}: {state}") from exc


@browser_only
def test_offline_the_event_selects_become_searchable_and_submit_the_same_values(
    page: Any,
) -> None:
    asked = open_offline(page, cohort.render_html_form("/cohort", EVENTS, select1="active"))
    page.wait_for_function("document.querySelectorAll('.ts-wrapper').length === 4")
    enhanced = page.evaluate(
        "[...document.querySelectorAll('select')].filter(s => s.tomselect).map(s => s.name)"
    )
    assert enhanced == EVENT_SELECTS

    # type to filter the second selection, pick the only match
    wrapper = page.locator(".ts-wrapper").nth(2)
    wrapper.locator(".ts-control").click()
    # Tom Select takes the focus a task after the click (a setTimeout); until then it hides its
    # input and drops keys, which a loaded CI machine once hit: wait until it is ready to type
    wait_for_state(page, "select2", "ts.isFocused && ts.isOpen && !ts.isInputHidden")
    wrapper.locator(".ts-control input").press_sequentially("song")
    wait_for_state(page, "select2", "ts.currentResults && ts.currentResults.items.length === 1")
    assert wrapper.locator(".ts-dropdown .option").all_inner_texts() == ["Played a song"]
    wrapper.locator(".ts-control input").press("Enter")

    sent = page.evaluate(
        "Object.fromEntries(new FormData(document.querySelector('form.cohort_form')))"
    )
    assert sent["select1"] == "active"
    assert sent["select2"] == "song:play"
    assert sent["select1b"] == "" and sent["select2b"] == ""
    assert asked == []


@browser_only
def test_a_second_form_without_assets_uses_the_first_one_s_library(page: Any) -> None:
    first = cohort.render_html_form("/a", EVENTS)
    second = cohort.render_html_form("/b", EVENTS, include_assets=False)
    asked = open_offline(page, first + second)
    page.wait_for_function("document.querySelectorAll('.ts-wrapper').length === 8")
    assert page.evaluate("document.querySelectorAll('script').length") == 3
    assert asked == []


@browser_only
def test_without_any_library_the_selects_stay_native_and_the_page_says_why(page: Any) -> None:
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    asked = open_offline(page, cohort.render_html_form("/", EVENTS, include_assets=False))
    page.wait_for_timeout(100)
    assert page.evaluate("document.querySelectorAll('.ts-wrapper').length") == 0
    assert page.evaluate("typeof TomSelect") == "undefined"
    assert any("Tom Select is not loaded" in w for w in warnings)
    assert asked == []
