"""Files at paths the user gives the CLI (--rejects, report --out, a schema file, input files,
--write-keys-file): a path that cannot be read or written is one line, `Error: cannot write
PATH: reason`, exit status 1, not a traceback; an output path is opened before the work, so a
bad one fails at once, and a command that fails leaves no file behind and an old one as it was."""

from __future__ import annotations

import errno
import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bitstat.cli import main
from bitstat.web import report as web_report
from test_cli import Cli
from test_cli_ingest_report import shop

__all__ = ["shop"]  # the fixture (a namespace with the default schema: integer ids), by name

EVENTS = '{"event": "visit", "user": 1, "time": "2026-11-02"}\n{"event": "visit", "user": -1}\n'
NO_TOKENS = {"BITSTAT_READ_TOKEN": "", "BITSTAT_WRITE_TOKEN": "", "BITSTAT_WRITE_KEYS": ""}


def one_error(result: Any) -> str:
    """The one line a failed command printed (on stderr, with nothing on stdout)."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    return str(result.stderr)


def refusing(monkeypatch: pytest.MonkeyPatch, method: str, path: Path) -> None:
    """`Path.<method>` of `path` fails as an unreadable file does (tests may run as root,
    whom file modes do not stop); other paths are read as usual."""
    real: Callable[..., Any] = getattr(Path, method)

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, refuse)


def test_rejects_in_a_missing_directory_fails_before_anything_is_recorded(
    shop: Cli, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(EVENTS)
    rejects = tmp_path / "missing" / "rejects.txt"
    result = shop("ingest", str(events), "--rejects", str(rejects), "--no-progress")
    assert one_error(result) == f"Error: cannot write {rejects}: No such file or directory\n"
    with shop.stats() as st:
        assert st.events() == []


def test_rejects_replaces_an_old_file_and_takes_dev_null(shop: Cli, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(EVENTS)
    rejects = tmp_path / "rejects.txt"
    rejects.write_text("an old run's rejected lines, longer than this run's\n" * 20)
    assert shop("ingest", str(events), "--rejects", str(rejects)).exit_code == 2
    assert rejects.read_text() == f"{events}:2: user: actor id -1 is outside 0..4294967295\n"
    assert shop("ingest", str(events), "--rejects", os.devnull).exit_code == 2


def test_report_to_a_missing_directory_fails_before_the_queries(
    shop: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def queries(*args: Any) -> str:
        raise AssertionError("the report's queries ran")

    monkeypatch.setattr(web_report, "build", queries)
    out = tmp_path / "missing" / "report.html"
    result = shop("report", "--out", str(out))
    assert one_error(result) == f"Error: cannot write {out}: No such file or directory\n"
    below_a_file = tmp_path / "events.jsonl" / "report.html"
    (tmp_path / "events.jsonl").write_text(EVENTS)
    result = shop("report", "--out", str(below_a_file))
    assert one_error(result) == f"Error: cannot write {below_a_file}: Not a directory\n"


def test_a_failed_report_leaves_no_file_and_an_old_one_as_it_was(shop: Cli, tmp_path: Path) -> None:
    with shop.stats() as st:
        st.track("visit", user=1, time="2026-11-02")
    new, old = tmp_path / "new.html", tmp_path / "old.html"
    old.write_text("an old report")
    for out in (new, old):
        result = shop("report", "--out", str(out), "--event", "vist")
        assert one_error(result).startswith("Error: no event 'vist' is recorded in namespace")
    assert not new.exists()
    assert old.read_text() == "an old report"
    old.write_text("an old report, " * 100_000)  # longer than the new one: replaced, not appended
    result = shop("report", "--out", str(old), "--event", "visit")
    assert result.exit_code == 0, result.output
    page = old.read_text()
    assert page.startswith("<!doctype html>") and "an old report" not in page
    assert result.stdout == f"wrote {old} ({len(page.encode()) // 1024} KiB)\n"


def test_an_unreadable_schema_file(
    shop: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "schema.toml"
    path.write_text('actor = "user"\n')
    refusing(monkeypatch, "read_bytes", path)
    result = shop("schema", "set", str(path))
    assert one_error(result) == f"Error: cannot read {path}: Permission denied\n"


def test_unreadable_and_broken_input_files(
    shop: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(EVENTS.encode())[:-12])
    result = shop("ingest", str(cut), "--no-progress")
    assert one_error(result) == (
        f"Error: cannot read {cut}:"
        " Compressed file ended before the end-of-stream marker was reached\n"
    )
    path = tmp_path / "events.jsonl"
    path.write_text(EVENTS)
    refusing(monkeypatch, "open", path)
    result = shop("ingest", str(path), "--no-progress")
    assert one_error(result) == f"Error: cannot read {path}: Permission denied\n"
    with shop.stats() as st:
        assert st.events() == []


def test_a_write_keys_file_that_is_not_text(embedded_url: str, tmp_path: Path) -> None:
    keys = tmp_path / "write-keys"
    keys.write_bytes(b"wk_\xff shop\n")
    for args, env in [
        (["--write-keys-file", str(keys)], NO_TOKENS),
        ([], {**NO_TOKENS, "BITSTAT_WRITE_KEYS_FILE": str(keys)}),
    ]:
        result = CliRunner().invoke(
            main, ["--url", embedded_url, "serve", "--port", "0", *args], env=env
        )
        assert one_error(result) == (
            f"Error: cannot read {keys}: not UTF-8 text ('utf-8' codec can't decode byte 0xff"
            " in position 3: invalid start byte)\n"
        )


def test_the_message_names_the_path_as_given(
    shop: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path is told as the user typed it."""
    monkeypatch.chdir(tmp_path)
    Path("events.jsonl").write_text(EVENTS)
    result = shop("ingest", "events.jsonl", "--rejects", "nowhere/rejects.txt")
    assert (
        one_error(result) == "Error: cannot write nowhere/rejects.txt: No such file or directory\n"
    )


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        ("event;user;time", "one column holding semicolons"),
        ("event|user|time", "one column holding bars"),
        ("event , user", None),  # (two columns, their names with spaces: shown quoted)
    ],
)
def test_a_header_without_the_event_column_shows_its_columns_and_separator(
    shop: Cli, tmp_path: Path, header: str, hint: str | None
) -> None:
    """A spreadsheet's export with ';' was refused listing 'columns: event;user;time', with no
    word of the separator; names with spaces were listed unquoted ('event ,  user')."""
    path = tmp_path / "export.csv"
    path.write_text(f"{header}\nvisit;1;2026-11-02\n")
    result = shop("ingest", str(path), "--no-progress")
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    columns = ", ".join(repr(c) for c in header.split(","))
    assert f"has no 'event' column (columns: {columns});" in said
    assert (hint in said) if hint else ("Its header is one column" not in said)
