"""Small things the CLI prints: an empty event list, a sparkline of nothing but zeros."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

import bitstat
from bitstat.cli import main
from bitstat.cli.output import SPARKS, sparkline
from bitstat.stats import Stats
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


def test_a_retention_table_wider_than_the_terminal_keeps_whole_columns(
    embedded_url: str,
) -> None:
    cli = Cli(embedded_url, make_namespace())
    with cli.stats() as st:
        st.track_many(
            [
                {"event": "visit", "user": u, "time": f"2026-11-{d:02d}"}
                for u in range(6)
                for d in range(1 + u, 29, 2 + u % 3)
            ]
        )
        want = st.retention("visit", "visit", "2026-11-01", 16, "day", now="2026-12-31")
    args = ["--url", cli.url, "--namespace", cli.namespace, "retention", "visit", "visit"]
    args += ["2026-11-01", "--period", "day", "--periods", "16", "--now", "2026-12-31"]
    try:
        for width in (80, 120, 300):
            result = CliRunner().invoke(main, args, env={"COLUMNS": str(width)})
            assert result.exit_code == 0, result.output
            lines = result.stdout.splitlines()
            assert all(len(line.rstrip()) <= width for line in lines), result.stdout
            header = next(line for line in lines if line.startswith("┃ cohort"))
            shown = len(re.findall(r"┃\s+\d+\s", header))
            assert header.split() == ["┃", "cohort", "┃", "size"] + [
                x for i in range(shown) for x in ("┃", str(i))
            ] + ["┃"]
            # every cell shown whole: each cohort's row holds its first `shown` shares
            for row in want.rows:
                cells = [f"{r:.1%}" if r is not None else "" for r in row.rates()[:shown]]
                line = next(x for x in lines if x.startswith(f"│ {row.cohort} "))
                assert [c.strip() for c in line.split("│")[3:-1]] == cells
            note = f"Columns 0 to {shown - 1} of 16 fit in {width} characters"
            if width == 300:
                assert shown == 16 and "fit in" not in result.stdout
            else:
                assert 2 < shown < 16 and note in result.stdout
    finally:
        with cli.stats() as st:
            st.drop()


def test_events_are_one_a_line_whatever_their_names(
    empty: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names recorded before names had to be printable are shown quoted, on their line."""
    monkeypatch.setattr(Stats, "events", lambda self: ["bad\nname", "tab\there", "visit", "ü"])
    assert empty.ok("events").splitlines() == ['"bad\\nname"', '"tab\\there"', "visit", "ü"]
    assert json.loads(empty.ok("events", "-f", "json")) == [
        {"event": n} for n in ["bad\nname", "tab\there", "visit", "ü"]
    ]


def test_a_property_named_like_the_answers_column_keeps_its_values(embedded_url: str) -> None:
    """`bitstat counts e count --format json` printed [{"count": 1}]: the property's column
    and the count shared a name, and the values were lost (found beside the DataFrames' same
    defect); the property's column is `count_`, as in DataFrames."""
    cli = Cli(embedded_url, make_namespace())
    schema = bitstat.Schema(count=["count", "sum~count"], sum=["amount by sum"], top=["count"])
    events = [
        {"event": "e", "user": 1, "time": "2026-11-02", "count": "x", "sum": "a"},
        {"event": "e", "user": 2, "time": "2026-11-02", "count": "x", "sum": "b"},
        {"event": "e", "user": 3, "time": "2026-11-02", "count": "y", "sum": "b", "amount": 2},
    ]
    with bitstat.connect(cli.url, namespace=cli.namespace, schema=schema) as st:
        st.track_many(events)

    def rows(*args: str) -> list[dict[str, object]]:
        result = cli(*args, "2026-11-02", "--format", "json")
        assert result.exit_code == 0, result.output
        answer: list[dict[str, object]] = json.loads(result.stdout)
        return answer

    try:
        counted = [{"count_": "x", "count": 2}, {"count_": "y", "count": 1}]
        assert rows("counts", "e", "count") == counted
        assert rows("top", "e", "count") == counted
        assert rows("counts", "e", "sum~count") == [
            {"sum": "a", "count_": "x", "count": 1},
            {"sum": "b", "count_": "x", "count": 1},
            {"sum": "b", "count_": "y", "count": 1},
        ]
        assert rows("sums", "e", "amount", "--by", "sum") == [{"sum_": "b", "sum": 2}]
    finally:
        with cli.stats() as st:
            st.drop()
