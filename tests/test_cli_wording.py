"""The CLI's sentences about a number of things agree with the number: `1 event was`, `2 events
were`, `1 actor set`; a quoted name goes after its noun (`event 'buy'`), with no article to
agree with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import bitstat
from bitstat import TrackResult
from bitstat.cli import output
from bitstat.identity import Aliased, Forgotten
from test_cli import Cli, make_namespace
from test_cli_ingest_report import shop

__all__ = ["shop"]  # the fixture (a namespace with the default schema: integer ids), by name

ONE = {"event": "buy", "user": 1, "time": "2026-11-02"}


def test_one_event_recorded_before(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(ONE) + "\n")
    shop.ok("ingest", str(path))
    assert shop.ok("ingest", str(path), "--no-progress").splitlines()[-1] == (
        "Nothing new: the 1 event was recorded by an earlier run"
        " (same data, same options, same batch ids)."
    )
    two = tmp_path / "two.jsonl"
    two.write_text(json.dumps(ONE) + "\n" + json.dumps({**ONE, "user": 2}) + "\n")
    shop.ok("ingest", str(two))
    assert shop.ok("ingest", str(two), "--no-progress").splitlines()[-1] == (
        "Nothing new: the 2 events were recorded by an earlier run"
        " (same data, same options, same batch ids)."
    )


def test_one_file_left_unread(shop: Cli, tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("not json\n")
    second.write_text(json.dumps(ONE) + "\n")
    result = shop("ingest", str(first), str(second), "--max-rejects", "0", "--no-progress")
    assert result.exit_code == 3, result.output
    assert result.stderr.splitlines()[1] == (
        "That is the 1st rejected line, past --max-rejects 0: reading stopped there, and the"
        f" 1 file after {first} was not read."
    )


def test_one_event_older_than_a_retention(
    embedded_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = Cli(embedded_url, make_namespace())
    schema = bitstat.Schema(periods=("hour", "day"), expire={"hour": "14d"})
    bitstat.connect(embedded_url, namespace=cli.namespace, schema=schema).close()
    track_many = bitstat.Stats.track_many

    def said_expired(self: bitstat.Stats, *args: Any, **kw: Any) -> TrackResult:
        done = track_many(self, *args, **kw)
        done.expired = {"hour": 1}
        return done

    monkeypatch.setattr(bitstat.Stats, "track_many", said_expired)
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(ONE) + "\n")
    try:
        assert cli.ok("ingest", str(path), "--no-progress").splitlines()[-1] == (
            "1 event older than the hour retention (2w): no hour buckets kept for it."
        )
    finally:
        with cli.stats() as st:
            st.drop()


def test_one_actor_set(shop: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        bitstat.Stats, "alias", lambda self, anon, user: Aliased(anon, user, "merged", moved=1)
    )
    monkeypatch.setattr(
        bitstat.Stats,
        "forget",
        lambda self, actor: Forgotten(actor, ids=[actor], removed=1, scanned=5, kept=["totals"]),
    )
    assert (
        shop.ok("alias", "anon-1", "user-1") == "merged: 1 actor set moved from anon-1 to user-1\n"
    )
    assert shop.ok("forget", "user-1") == (
        "Erased user-1: taken out of 1 actor set.\nKept (aggregates without identity): totals.\n"
    )


def test_an_event_is_named_after_its_noun(shop: Cli) -> None:
    with shop.stats() as st:
        st.track_many([ONE])
    for args, said in [
        (["sums", "buy", "amount", "2026-11"], "no sum 'amount' is recorded for event 'buy'"),
        (["top", "buy", "item", "2026-11"], "no top of 'item' is recorded for event 'buy'"),
        (["unique", "buy", "2026-11", "--where", "plan=pro"], "no segment 'plan' is recorded"),
        (["total", "bye", "2026-11"], "no event 'bye' is recorded in namespace"),
    ]:
        result = shop(*args)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: {said}"), result.stderr
        assert " an '" not in result.stderr and " a '" not in result.stderr


def test_ordinals() -> None:
    numbers = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112, 1001]
    assert [output.ordinal(n) for n in numbers] == [
        *("1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd"),
        *("101st", "111th", "112th", "1,001st"),
    ]
