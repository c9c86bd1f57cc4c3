"""The header of a CSV or TSV file given to `bitstat ingest`: a name given to two columns refuses
the file before anything of it is recorded (which of the two holds the value?); a column without
a name is left out while its cells are empty, and a row with a value in it is rejected; blank
lines before the header are skipped; a row with more or fewer fields than the header is
rejected alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_cli import Cli
from test_cli_ingest_report import shop

__all__ = ["shop"]  # the fixture (a namespace with the default schema: integer ids), by name


def recorded(cli: Cli) -> set[int]:
    """The users whose visit of 2026-11-02 is recorded."""
    with cli.stats() as st:
        if "visit" not in st.events():
            return set()
        return set(st.actors("visit").day(2026, 11, 2).ids())


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_a_column_named_twice_refuses_the_file(
    shop: Cli, tmp_path: Path, delimiter: str, workers: str
) -> None:
    good = tmp_path / "good.csv"
    good.write_text("event,user,time\nvisit,1,2026-11-02\n")
    twice = tmp_path / ("twice.csv" if delimiter == "," else "twice.tsv")
    rows = ["event,user,time,user", "visit,2,2026-11-02,3", "visit,4,2026-11-02,5"]
    twice.write_text("".join(r.replace(",", delimiter) + "\n" for r in rows))
    result = shop("ingest", str(good), str(twice), "--workers", workers, "--no-progress")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"Error: {twice}: the header names 'user' (columns 2 and 4) more than once: give each"
        " column a name of its own (nothing of this file was recorded)\n"
    )
    assert recorded(shop) == {1}  # the file before it is recorded, none of this one


def test_every_name_given_twice_is_told(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("time,event,user,time,user,country,user\nvisit,1,2026-11-02,1,2,NL,3\n")
    result = shop("ingest", str(path), "--strict", "--no-progress")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"Error: {path}: the header names 'time' (columns 1 and 4) and 'user' (columns 3, 5"
        " and 7) more than once: give each column a name of its own (nothing of this file was"
        " recorded)\n"
    )
    assert recorded(shop) == set()


def rejected(cli: Cli, path: Path, text: str) -> list[str]:
    """Ingest `text` from `path`: the lines rejected, as the report lists them."""
    path.write_text(text)
    result = cli("ingest", str(path), "--no-progress")
    assert result.exit_code == 2, result.output
    said = result.stdout.splitlines()
    heading = next(i for i, line in enumerate(said) if line.startswith("Rejected "))
    return said[heading + 1 :]


def test_an_unnamed_column_is_left_out_while_it_is_empty(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    text = (
        "event,,user,time,\n"  # a spreadsheet's export: an empty column, a trailing comma
        "visit,,1,2026-11-02,\n"
        "visit,,2,2026-11-02,oops\n"
        "visit,x,3,2026-11-02,\n"
        "visit,,4,2026-11-02,\n"
    )
    assert rejected(shop, path, text) == [
        f"  {path}:3: column 5 has no name in the header, but holds 'oops'",
        f"  {path}:4: column 2 has no name in the header, but holds 'x'",
    ]
    assert recorded(shop) == {1, 4}


def test_blank_lines_before_the_header_are_skipped(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    text = "\n\nevent,user,time\nvisit,1,2026-11-02\nvisit,x,2026-11-02\n"
    assert rejected(shop, path, text)[0].startswith(f"  {path}:5: user: actor id must be")
    assert recorded(shop) == {1}


def test_a_row_longer_or_shorter_than_the_header_is_rejected_alone(
    shop: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "widths.csv"
    text = (
        "event,user,time\nvisit,1,2026-11-02\nvisit,2,2026-11-02,NL\nvisit,3\nvisit,4,2026-11-02\n"
    )
    assert rejected(shop, path, text) == [
        f"  {path}:3: 4 fields, but the header has 3",
        f"  {path}:4: 2 fields, but the header has 3",
    ]
    assert recorded(shop) == {1, 4}
