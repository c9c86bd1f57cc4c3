"""What `bitstat ingest` tells its user about lines it could not record, and about events that
some periods keep nothing of: the words and the numbers, in the text report and in JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import bitstat
from test_cli import Cli, make_namespace


@pytest.fixture
def shop(embedded_url: str) -> Iterator[Cli]:
    """A fresh namespace with the default schema stored."""
    cli = Cli(embedded_url, make_namespace())
    bitstat.connect(embedded_url, namespace=cli.namespace, schema=bitstat.Schema()).close()
    yield cli
    with cli.stats() as st:
        st.drop()


GOOD = '{"event": "visit", "user": 1, "time": "2026-11-02T10:00:00", "country": "NL"}'
CUT = ", where the line ends (is it cut short?)"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        # cut short after a value: the error is where the line ends, not at "column 1"
        (GOOD[:-1], f"invalid JSON: Expecting ',' delimiter at column {len(GOOD)}{CUT}"),
        (GOOD[:-1] + " ", f"invalid JSON: Expecting ',' delimiter at column {len(GOOD) + 1}{CUT}"),
        # cut short inside a string: the column where the string starts
        (GOOD[:50], f"invalid JSON: Unterminated string starting at column {GOOD.index('2026')}"),
        (GOOD + "}", f"invalid JSON: Extra data at column {len(GOOD) + 1}"),
        ("visit,1", "invalid JSON: Expecting value at column 1"),
        ('{"event": "visit" "user": 1}', "invalid JSON: Expecting ',' delimiter at column 19"),
    ],
)
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_bad_json_line_is_reported_at_its_column(
    shop: Cli, tmp_path: Path, line: str, reason: str, newline: str
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(newline.join([GOOD, line, GOOD.replace('"user": 1', '"user": 2')]).encode())
    result = shop("ingest", str(path), "--no-progress")
    assert result.exit_code == 2, result.output
    rejected = [r for r in result.stdout.splitlines() if r.startswith(f"  {path}:")]
    assert rejected == [f"  {path}:2: {reason}"], result.stdout
    assert "Recorded 2 events" in result.stdout


def test_a_bad_line_in_the_json_report(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(GOOD + "\n" + GOOD[:-1] + "\n")
    report = json.loads(shop("ingest", str(path), "--format", "json", "--no-progress").stdout)
    assert report["rejected"] == [
        {
            "file": str(path),
            "line": 2,
            "reason": f"invalid JSON: Expecting ',' delimiter at column {len(GOOD)}{CUT}",
        }
    ]


def test_a_json_array_error_has_its_line_and_column(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(f'[\n  {GOOD},\n  {{"event": "visit" "user": 1}},\n  {GOOD}\n]\n')
    result = shop("ingest", str(path), "--no-progress")
    assert result.exit_code == 2, result.output
    assert (
        f"  {path}:3: invalid JSON: Expecting ',' delimiter at column 21;"
        " the rest of the file is not read"
    ) in result.stdout
    cut = tmp_path / "cut.json"
    cut.write_text(f"[\n  {GOOD},\n  {GOOD[:-1]}")
    result = shop("ingest", str(cut), "--no-progress")
    assert (
        f"  {cut}:3: invalid JSON: Expecting ',' delimiter at column {len(GOOD) + 2},"
        " where the file ends (is it cut short?); the rest of the file is not read"
    ) in result.stdout
