"""`bitstat ingest` reads its next batch while the server writes the last parts of the current
one (`record.MEANWHILE`): the same events, rejected lines (in order), report and --max-rejects
stop as when it reads each batch once the one before is in. The tests lower PART_MIN so that
batches of a few dozen events of two names go in parts, and check that reading ahead
happened."""

from __future__ import annotations

import json
import random
import re
from contextvars import ContextVar
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import bitstat
from bitstat import record
from bitstat.cli import ingest as cli_ingest
from test_cli import Cli, make_namespace

DAY = "2026-11-02"


def line(n: int, kind: str) -> str:
    event = ("visit", "buy")[n % 2]
    if kind == "library":  # a text id where the namespace takes integers
        return json.dumps({"event": event, "user": f"u-{n}", "time": f"{DAY}T10:00:00"})
    text = json.dumps({"event": event, "user": n, "time": f"{DAY}T10:00:00"})
    return text[:-1] if kind == "reader" else text  # reader: cut short, invalid JSON


def file_of(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    kinds = rng.choices(["good", "reader", "library"], [0.8, 0.1, 0.1], k=n)
    path.write_text("".join(line(k, kind) + "\n" for k, kind in enumerate(kinds, 1)))
    return path


@pytest.fixture
def cli(embedded_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(record, "PART_MIN", 8)
    made: list[Cli] = []

    def fresh() -> Cli:
        c = Cli(embedded_url, make_namespace())
        bitstat.connect(embedded_url, namespace=c.namespace, schema=bitstat.Schema()).close()
        made.append(c)
        return c

    yield fresh
    for c in made:
        with c.stats() as st:
            st.drop()


def ingest(cli: Cli, path: Path, tmp: Path, *options: str) -> tuple[int, dict[str, Any], str]:
    rejects = tmp / f"rejects-{cli.namespace}.txt"
    result = cli(
        "ingest", str(path), "--no-progress", "-f", "json", "--rejects", str(rejects), *options
    )
    said = json.loads(result.stdout)
    del said["seconds"]
    return result.exit_code, said, rejects.read_text()


def read_ahead_counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many batches were read while the server wrote another (counted in the list)."""
    early = [0]
    real = cli_ingest.ReadAhead.read

    def read(self: cli_ingest.ReadAhead) -> None:
        early[0] += record.MEANWHILE.get() is not None
        real(self)

    monkeypatch.setattr(cli_ingest.ReadAhead, "read", read)
    return early


def no_read_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ingest sets a variable the library does not read: no batch read early."""
    off: ContextVar[Any] = ContextVar("off", default=None)
    monkeypatch.setattr(cli_ingest, "record", SimpleNamespace(MEANWHILE=off))


def totals(cli: Cli) -> tuple[int, int]:
    with cli.stats() as st:
        known = st.events()
        visits, buys = (st.total(e, DAY) if e in known else 0 for e in ("visit", "buy"))
        return visits, buys


@pytest.mark.parametrize("options", [[], ["--sort-window", "60"]])
def test_reading_ahead_records_and_rejects_what_reading_in_turn_does(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str]
) -> None:
    path = file_of(tmp_path / "events.jsonl", 400, seed=3)
    early = read_ahead_counted(monkeypatch)
    ahead = cli()
    got = ingest(ahead, path, tmp_path, "--batch-size", "20", *options)
    assert early[0] >= 5  # batches were read while the server wrote the one before
    no_read_ahead(monkeypatch)
    early[0] = 0
    in_turn = cli()
    want = ingest(in_turn, path, tmp_path, "--batch-size", "20", *options)
    assert early[0] == 0
    assert got == want and got[0] == 2  # exit status 2: lines rejected
    assert totals(ahead) == totals(in_turn) != (0, 0)


@pytest.mark.parametrize("limit", [0, 5, 17])
def test_max_rejects_stops_where_reading_in_turn_stops(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """A batch read early past the limit is not recorded: the run stops after the batch it
    was read during, as when it is read after that one."""
    path = file_of(tmp_path / "events.jsonl", 600, seed=7)
    options = ["--batch-size", "20", "--max-rejects", str(limit)]
    early = read_ahead_counted(monkeypatch)
    ahead = cli()
    got = ingest(ahead, path, tmp_path, *options)
    no_read_ahead(monkeypatch)
    in_turn = cli()
    want = ingest(in_turn, path, tmp_path, *options)
    assert got == want and got[0] == cli_ingest.EXIT_STOPPED
    assert totals(ahead) == totals(in_turn)
    assert early[0] >= (1 if limit else 0)


def test_a_batch_read_early_and_never_recorded_leaves_the_id_counts_alone(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch's text id (rejected) stops the run at --max-rejects 0; the second batch,
    read early and never recorded, is all text ids: they made the report's hint about text ids
    (found by review, 2026-12-08)."""
    lines = [
        {"event": ("visit", "buy")[n % 2], "user": "u-x" if n == 5 else n, "time": f"{DAY}T10"}
        for n in range(1, 21)
    ]
    lines += [
        {"event": ("visit", "buy")[n % 2], "user": f"u-{n}", "time": f"{DAY}T10"}
        for n in range(21, 41)
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    options = ["--no-progress", "--batch-size", "20", "--max-rejects", "0"]
    early = read_ahead_counted(monkeypatch)
    ahead = cli()("ingest", str(path), *options)
    assert early[0] == 1
    no_read_ahead(monkeypatch)
    in_turn = cli()("ingest", str(path), *options)

    def said(output: str) -> str:  # (less the time it took)
        return re.sub(r" in [0-9.]+ s \([0-9,]+ events/s\)", "", output)

    assert (ahead.exit_code, said(ahead.output)) == (in_turn.exit_code, said(in_turn.output))
    assert "text actor id" not in ahead.output and "Stopped at" in ahead.output
