"""Files as real exports make them, given to `bitstat ingest`: every line is recorded once, or
rejected with its line number and a reason, or the file is refused before anything is
recorded; none is dropped without a word."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from test_cli import Cli
from test_cli_csv_header import recorded, rejected
from test_cli_ingest_report import shop

__all__ = ["shop"]  # the fixture (a namespace with the default schema: integer ids), by name


def visit(user: int) -> str:
    return f'{{"event": "visit", "user": {user}, "time": "2026-11-02"}}'


@pytest.mark.parametrize(
    ("text", "line", "closed"),
    [
        (f"[{visit(1)},\n {visit(2)}]\n{visit(3)}\n{visit(4)}\n", 3, 2),  # JSON lines after it
        (f"[{visit(1)}, {visit(2)}][{visit(3)}]", 1, 1),  # two arrays, as `cat a.json b.json`
        (f"\n[\n{visit(1)},\n{visit(2)}\n]\n\n  [{visit(3)}]\n", 7, 5),
    ],
)
def test_text_after_a_json_array_is_rejected_not_dropped(
    shop: Cli, tmp_path: Path, text: str, line: int, closed: int
) -> None:
    path = tmp_path / "export.json"
    assert rejected(shop, path, text) == [
        f"  {path}:{line}: invalid JSON: text after the array, which closed on line {closed}"
        " (a file holds one array); the rest of the file is not read"
    ]
    assert recorded(shop) == {1, 2}


def test_blank_text_after_a_json_array_is_fine(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(f"[{visit(1)}, {visit(2)}]\n\n \t\r\n")
    result = shop("ingest", str(path), "--no-progress")
    assert result.exit_code == 0, result.output
    assert recorded(shop) == {1, 2}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_csv_cell_of_megabytes_is_read_as_a_json_value_is(
    shop: Cli, tmp_path: Path, workers: str
) -> None:
    """A cell over the csv module's 128 KiB stopped the run ('field larger than field limit'),
    with the batches before it recorded; a JSON line's value of any length was read."""
    path = tmp_path / "export.csv"
    long = "x" * (1 << 20)
    path.write_text(
        "event,user,time,note\n"
        "visit,1,2026-11-02,short\n"
        f"visit,2,2026-11-02,{long}\n"  # a property the schema keeps nothing of: recorded
        f'visit,3,2026-11-02,"{long}\n{long}"\n'
        "visit,4,2026-11-02,short\n"
    )
    result = shop("ingest", str(path), "--workers", workers, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{path}: 4 records: 4 recorded, 0 rejected\n")
    assert recorded(shop) == {1, 2, 3, 4}


@pytest.mark.parametrize("newline", ["\n", "\r\n", ""])
def test_a_quote_never_closed_is_rejected_not_read_as_one_event(
    shop: Cli, tmp_path: Path, newline: str
) -> None:
    """The csv module reads a quote never closed to the end of the file as one cell, and gave
    the lines after it as one good row: 4 lines, '2 records: 2 recorded, 0 rejected'."""
    path = tmp_path / "export.csv"
    lines = ["event,user,time,note", "visit,1,2026-11-02,a", 'visit,2,2026-11-02,"oops']
    lines += ["visit,3,2026-11-02,b", "visit,4,2026-11-02,c"]
    assert rejected(shop, path, "\n".join(lines) + newline) == [
        f"  {path}:3: a quote opened in this row is never closed: lines 3 to 5 (the end of the"
        " file) were read as one cell"
    ]
    assert recorded(shop) == {1}
    last = tmp_path / "last.csv"
    assert rejected(shop, last, "\n".join(lines[:3]) + newline) == [
        f"  {last}:3: a quote opened in this row is never closed (the file ends on this line)"
    ]


def test_a_row_a_stray_quote_ran_over_lines_says_so(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    text = (
        "event,user,time,note\n"
        'visit,"1,2026-11-02,a\nvisit,2,2026-11-02,b\nvisit,3,2026-11-02,"c\n'
        'visit,4,2026-11-02,"two\nlines"\n'  # a quoted cell over two lines: a good row
    )
    assert rejected(shop, path, text) == [
        f"  {path}:2: 2 fields, but the header has 4 (the row runs from line 2 to line 4: a"
        " quote closed too late?)"
    ]
    assert recorded(shop) == {4}


def test_a_quote_never_closed_in_the_header_refuses_the_file(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text('\nevent,user,"time\nvisit,1,2026-11-02\n')
    result = shop("ingest", str(path), "--no-progress")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"Error: {path}: a quote opened in the header (line 2) is never closed, so the whole"
        " file was read as its last column; nothing of this file was recorded\n"
    )


LATIN1 = "line {line} is not UTF-8 text (byte 0xe9): bitstat reads UTF-8 (a spreadsheet's export"
LATIN1 += " may be Windows-1252 or Latin-1: convert it first, e.g. iconv -f WINDOWS-1252 -t UTF-8)"


CITY = '{"event": "visit", "user": 2, "time": "2026-11-02", "city": "Orléans"}'


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("export.csv", "event,user,time,city\n" + "visit,1,2026-11-02,Paris\n" * 3),
        ("export.tsv.gz", "event\tuser\ttime\tcity\n" + "visit\t1\t2026-11-02\tParis\n" * 3),
        ("export.json", "[\n" + f"{visit(1)},\n" * 3),
    ],
)
def test_a_file_in_latin_1_is_refused_before_anything_is_recorded(
    shop: Cli, tmp_path: Path, name: str, text: str
) -> None:
    """It stopped at the first byte that is not UTF-8, with the batches before it recorded (and
    recorded again once the file was converted: new data), 'near line 1' for a CSV file."""
    good = tmp_path / "good.jsonl"
    good.write_text(visit(7) + "\n")
    path = tmp_path / name
    if name.endswith(".json"):
        text += CITY + "\n]\n"
    else:
        sep = "," if name.endswith(".csv") else "\t"
        text += sep.join(["visit", "2", "2026-11-02", "Orléans"]) + "\n"
    data = text.encode("latin-1")  # line 5 holds the é
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    result = shop("ingest", str(good), str(path), "--batch-size", "2", "--no-progress")
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: {path}: {LATIN1.format(line=5)}; nothing was recorded\n"
    assert recorded(shop) == set()
    path.write_bytes(text.encode())  # converted: every line recorded, once
    assert shop("ingest", str(good), str(path), "--no-progress").exit_code == 0
    assert recorded(shop) == {1, 2, 7}


@pytest.mark.parametrize(
    ("encoding", "told", "iconv"),
    [
        ("utf-16", "is UTF-16 text (it starts with a byte order mark)", "UTF-16"),
        ("utf-32", "is UTF-32 text (it starts with a byte order mark)", "UTF-32"),
        ("utf-16-le", "looks like UTF-16LE text (NUL bytes between its characters)", "UTF-16LE"),
        ("utf-16-be", "looks like UTF-16BE text (NUL bytes between its characters)", "UTF-16BE"),
    ],
)
@pytest.mark.parametrize("name", ["events.jsonl", "export.csv"])
def test_utf_16_and_32_are_refused_saying_so(
    shop: Cli, tmp_path: Path, name: str, encoding: str, told: str, iconv: str
) -> None:
    """UTF-16 JSON lines were read in part (json reads UTF-16 bytes): 3 events gave '4 records:
    3 recorded, 1 rejected', a line 4 the file has not; a CSV file: 'byte 0xff', no word of why."""
    path = tmp_path / name
    lines = [visit(u) for u in (1, 2, 3)] if name.endswith(".jsonl") else ["event,user,time"]
    path.write_bytes("".join(line + "\n" for line in lines).encode(encoding))
    result = shop("ingest", str(path), "--no-progress")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"Error: {path} {told}: bitstat reads UTF-8 (convert it first, e.g. iconv -f {iconv}"
        " -t UTF-8); nothing was recorded\n"
    )
    assert recorded(shop) == set()


def test_a_json_line_that_is_not_utf_8_is_rejected_alone(shop: Cli, tmp_path: Path) -> None:
    """JSON lines are read line by line: a log's damaged line does not refuse the file."""
    path = tmp_path / "events.jsonl"
    damaged = visit(2).replace("visit", "vis\xe9t").encode("latin-1")
    path.write_bytes(b"\n".join([visit(1).encode(), damaged, visit(3).encode()]) + b"\n")
    result = shop("ingest", str(path), "--no-progress")
    assert result.exit_code == 2, result.output
    assert f"  {path}:2: not UTF-8 text\n" in result.stdout
    assert recorded(shop) == {1, 3}
