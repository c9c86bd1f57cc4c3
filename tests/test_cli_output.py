"""Small things the CLI prints: an empty event list, a sparkline of nothing but zeros."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bitstat.cli_output import SPARKS, sparkline
from test_cli import Cli, make_namespace


@pytest.fixture
def empty(embedded_url: str) -> Iterator[Cli]:
    cli = Cli(embedded_url, make_namespace())
    yield cli
    with cli.stats() as st:
        st.drop()


def test_events_of_an_empty_namespace_says_so(empty: Cli) -> None:
    result = empty("events")
    assert result.exit_code == 0
    assert result.stdout == ""  # a script reading names gets none
    assert result.stderr == f"No events are recorded in namespace {empty.namespace!r}.\n"
    for fmt, shown in (("json", "[]\n"), ("csv", "event\n")):
        result = empty("events", "--format", fmt)
        assert (result.stdout, result.stderr) == (shown, "")
    with empty.stats() as st:
        st.track("visit", user=1, time="2026-11-02")
    result = empty("events")
    assert (result.stdout, result.stderr) == ("visit\n", "")


def test_a_sparkline_of_zeros_lies_flat() -> None:
    assert sparkline([0, 0, 0]) == SPARKS[0] * 3
    assert sparkline([0.0] * 24) == SPARKS[0] * 24
    assert sparkline([5, 5]) == SPARKS[3] * 2  # equal values: half way up
    assert sparkline([0, 7, 14]) == SPARKS[0] + SPARKS[4] + SPARKS[7]
    assert sparkline([]) == ""


def test_series_of_zeros_shows_a_flat_line(empty: Cli) -> None:
    with empty.stats() as st:
        st.track("visit", user=1, time="2026-11-02")
    table = empty.ok("series", "visit", "2026-11-05", "2026-11-07")
    assert table.splitlines()[-1] == f"{SPARKS[0] * 3}  min 0, max 0"
