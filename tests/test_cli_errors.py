"""A query naming an event the namespace never recorded: exit 1 and one line on stderr that names
the event and the namespace, from every query and analysis command."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import bitstat
from bitstat.stats import Stats
from test_cli import EVENTS, SCHEMA, Cli, make_namespace

# each command naming the event "nosuch", and the Stats method that answers it
COMMANDS: dict[str, tuple[list[str], str]] = {
    "unique": (["unique", "nosuch", "2026-11"], "unique"),
    "total": (["total", "nosuch", "2026-11"], "total"),
    "series": (["series", "nosuch", "2026-11"], "series"),
    "counts": (["counts", "nosuch", "country", "2026-11"], "counts"),
    "sums": (["sums", "nosuch", "amount", "2026-11"], "sums"),
    "top": (["top", "nosuch", "item", "2026-11"], "top"),
    "distinct": (["distinct", "nosuch", "ip", "2026-11"], "distinct"),
    "query": (["query", "nosuch", "2026-11"], "query"),
    "query --days": (["query", "nosuch", "--days", "3"], "query_days"),
    "funnel": (["funnel", "visit,nosuch", "2026-11"], "funnel"),
    "retention": (["retention", "nosuch", "visit", "2026-11-02"], "retention"),
    "retention (returning)": (["retention", "visit", "nosuch", "2026-11-02"], "retention"),
    "stickiness": (["stickiness", "nosuch", "2026-11"], "stickiness"),
    "lifecycle": (["lifecycle", "nosuch", "2026-11-02"], "lifecycle"),
}


@pytest.fixture(scope="module")
def shop(embedded_url: str) -> Iterator[Cli]:
    """A namespace holding the shop's events (visit, signup, purchase)."""
    cli = Cli(embedded_url, make_namespace())
    with bitstat.connect(embedded_url, namespace=cli.namespace, schema=SCHEMA) as st:
        st.track_many(EVENTS[:100])
    yield cli
    with cli.stats() as st:
        st.drop()


def raise_unknown(suggestions: list[str]) -> Any:
    def method(self: Stats, *args: Any, **kwargs: Any) -> Any:
        raise bitstat.UnknownEvent("nosuch", suggestions)

    return method


def one_error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return str(lines[0])


@pytest.mark.parametrize("case", list(COMMANDS))
def test_an_unknown_event_is_one_line_naming_it_and_the_namespace(
    shop: Cli, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    args, method = COMMANDS[case]
    monkeypatch.setattr(Stats, method, raise_unknown(["visit"]))
    line = one_error_line(shop(*args))
    assert line == (
        f"Error: no event 'nosuch' is recorded in namespace {shop.namespace!r};"
        " did you mean 'visit'?"
    )


def test_with_no_close_name_the_recorded_events_are_listed(
    shop: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Stats, "unique", raise_unknown([]))
    line = one_error_line(shop("unique", "nosuch", "2026-11"))
    assert line == (
        f"Error: no event 'nosuch' is recorded in namespace {shop.namespace!r};"
        " it records purchase, signup, visit"
    )


def test_many_recorded_events_are_cut_short(
    embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = Cli(embedded_url, make_namespace())
    names = [f"event-{i:02d}" for i in range(12)]
    with cli.stats() as st:
        st.track_many([{"event": n, "user": 1, "time": "2026-11-02"} for n in names])
    try:
        monkeypatch.setattr(Stats, "total", raise_unknown([]))
        line = one_error_line(cli("total", "nosuch", "2026-11"))
        assert line.endswith(f"it records {', '.join(names[:8])} and 4 more (bitstat events)"), line
    finally:
        with cli.stats() as st:
            st.drop()


def test_a_mistyped_namespace_is_suspected(
    embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = Cli(embedded_url, make_namespace())
    monkeypatch.setattr(Stats, "unique", raise_unknown([]))
    line = one_error_line(empty("unique", "nosuch", "2026-11"))
    assert line == (
        f"Error: no event 'nosuch' is recorded in namespace {empty.namespace!r},"
        " nor any other event: is the namespace right (--namespace)?"
    )


@pytest.mark.parametrize("case", list(COMMANDS))
def test_an_unknown_event_from_the_library(shop: Cli, case: str) -> None:
    """No monkeypatching: the library raises UnknownEvent for a name never recorded."""
    args, _ = COMMANDS[case]
    line = one_error_line(shop(*args))
    assert line.startswith(f"Error: no event 'nosuch' is recorded in namespace {shop.namespace!r}")


def test_a_typo_gets_the_close_name_and_a_known_event_without_data_is_zero(shop: Cli) -> None:
    line = one_error_line(shop("unique", "vist", "2026-10"))
    assert line.endswith("did you mean 'visit'?"), line
    assert shop.ok("unique", "visit", "2026-10").strip() == "0"  # recorded, not in October
    assert shop.ok("total", "purchase", "2025").strip() == "0"
