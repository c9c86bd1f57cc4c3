"""The real Chromium for the dashboard tests: Debian's binary driven by Playwright (never a
browser Playwright downloads). Its fixtures are registered by conftest.py; a test module that
needs them skips itself when the binary or Playwright is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LAPTOP = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page_errors() -> list[str]:
    """What the page reported as errors; a test that causes some on purpose removes them."""
    return []


@pytest.fixture
def page(browser: Any, page_errors: list[str]) -> Iterator[Any]:
    """A page at laptop size; the test fails if the page reported errors it did not expect.

    The tests wait on JavaScript predicates, evaluated from text, which the dashboard's
    Content-Security-Policy forbids (no eval): here it is bypassed. tests/test_web_security.py
    loads the dashboard under its policy."""
    context = browser.new_context(viewport=LAPTOP, bypass_csp=True)
    pg = context.new_page()
    pg.on("pageerror", lambda exc: page_errors.append(str(exc)))
    pg.on("console", lambda m: page_errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert not page_errors, f"the page reported errors: {page_errors}"
