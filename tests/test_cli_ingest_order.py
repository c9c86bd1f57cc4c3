"""`bitstat ingest --sort-window N`: events read N at a time and cut into batches in time order.

The answers are those of the file in its own order, rejected lines keep their line numbers,
the batch ids are the same with any number of workers (a re-run records nothing), and runs
without the option keep the batch ids of the versions before it.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitstat.cli import ingest_batches
from bitstat.cli.ingest_batches import batches
from bitstat.cli.ingest_rejects import NONE
from bitstat.cli.read import Decoder, FieldMap, Reader, open_source, options_salt
from bitstat.events import time_order
from bitstat.schema import Schema
from test_cli import SCHEMA, Cli, shop_events
from test_cli_ingest_workers import pair, report, same_answers, write

__all__ = ["pair"]  # the fixture, used by name


def mixed_times(n: int, seed: int) -> list[dict[str, Any]]:
    """Shop events out of time order, their times in every form a file holds: naive ISO text,
    text with an offset, epoch seconds; and a few with no time (recorded now)."""
    rng = random.Random(seed)
    events = shop_events(n, seed=seed)
    for i, e in enumerate(events):
        if i % 5 == 1:
            e["time"] = e["time"] + "+01:00"
        elif i % 5 == 2:
            e["time"] = int(datetime.fromisoformat(e["time"]).replace(tzinfo=UTC).timestamp())
        elif i % 97 == 3:
            del e["time"]
    rng.shuffle(events)
    return events


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv"])
def test_sorted_batches_answer_as_the_file_order(
    pair: tuple[Cli, Cli], tmp_path: Path, kind: str
) -> None:
    plain, ordered = pair
    path = tmp_path / f"events.{kind}"
    write(path, kind, mixed_times(900, seed=4))
    status, said = report(plain, path, "--batch-size", "37")
    assert status == 2 and said["rejected"] and said["recorded"] > 800, said
    # the same lines recorded and rejected (with their line numbers), the same answers
    assert (status, said) == report(ordered, path, "--batch-size", "37", "--sort-window", "150")
    same_answers(plain, ordered)

    # batch ids hang on the window, not on the workers: a re-run records nothing twice
    status, again = report(
        ordered, path, "--batch-size", "37", "--sort-window", "150", "--workers", "2"
    )
    assert status == 2 and again["recorded"] == 0
    assert again["seen_before"] == said["recorded"] + said["seen_before"]
    assert again["rejected"] == said["rejected"]
    same_answers(plain, ordered)


def test_two_workers_record_the_sorted_batches_of_one(
    pair: tuple[Cli, Cli], tmp_path: Path
) -> None:
    one, two = pair
    path = tmp_path / "events.jsonl"
    write(path, "jsonl", mixed_times(700, seed=8))
    options = ["--batch-size", "40", "--sort-window", "200"]
    status, single = report(one, path, *options)
    assert status == 2 and single["recorded"] > 600, single
    assert (status, single) == report(two, path, *options, "--workers", "2")
    same_answers(one, two)
    status, again = report(two, path, *options)
    assert again["recorded"] == 0 and again["seen_before"] == single["recorded"]


def cut(
    path: Path, size: int, window: int, raw: bool, schema: Schema = SCHEMA
) -> tuple[list[Any], list[Any]]:
    """The batches, and the lines that make no event with the first line of an event read
    and not handed out yet when each was refused."""
    fields = FieldMap("event", None, None, "time", None)
    source = open_source(str(path), None, options_salt(fields, None, size, window), path.parent)
    reader = Reader(source, fields, SCHEMA.actor)
    bad: list[Any] = []
    cut = batches(
        reader,
        Decoder(fields, schema),
        size,
        lambda line, why, held: bad.append((line, why, held)),
        raw=raw,
        window=window,
    )
    return list(cut), bad


def test_each_window_is_cut_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write(path, "jsonl", shop_events(500, seed=6))  # naive times, out of order; bad lines
    by_line = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            by_line[number] = json.loads(line.lstrip("\ufeff"))
        except ValueError:
            continue
    plain, plain_bad = cut(path, 30, 0, raw=False)
    ordered, bad = cut(path, 30, 120, raw=False)
    assert [b.lines for b in cut(path, 30, 120, raw=True)[0]] == [b.lines for b in ordered]
    # every line once, good or bad; the bad ones as without the window, in line order
    seen = [line for b in ordered for line in b.lines]
    assert sorted(seen) == [line for b in plain for line in b.lines]
    assert [x[:2] for x in bad] == [x[:2] for x in plain_bad] == sorted(x[:2] for x in bad)
    assert len(bad) > 10 and all(len(b.events) == 30 for b in ordered[:-1])
    # held: the first line of an event read and not yet in a batch, when a line was refused
    # or a batch handed out (what --rejects waits for before writing a line)
    for line, _, held in plain_bad:
        waiting = [b.lines[0] for b in plain if b.lines[0] < line < b.lines[-1]]
        assert held == (waiting[0] if waiting else NONE)
    assert all(b.held == NONE for b in plain)
    for first in range(0, len(ordered), 4):
        window = ordered[first : first + 4]
        for k, b in enumerate(window):
            assert b.held == min((min(later.lines) for later in window[k + 1 :]), default=NONE)
    # within a window (4 batches of 30), times ascend; the windows follow the file
    for first in range(0, len(ordered), 4):
        lines = [line for b in ordered[first : first + 4] for line in b.lines]
        times = [by_line[line]["time"] for line in lines]
        assert times == sorted(times)
        assert [e["time"] for b in ordered[first : first + 4] for e in b.events] == times


def test_time_order_reads_every_form_and_puts_the_unreadable_last() -> None:
    times: list[Any] = [
        "2026-11-02T10:00:00Z",
        1_700_000_000,  # 2023-11-14
        None,  # now
        "not a time",
        "2026-11-02T10:30:00+01:00",  # 09:30 UTC: before the first
        datetime(2020, 1, 1, tzinfo=UTC),
        float("nan"),
        10**30,
        1_700_000_000.5,
    ]
    order = time_order(times, "Europe/Amsterdam").tolist()
    assert order == [5, 1, 8, 4, 0, 2, 3, 6, 7]
    # a column that is not all strict ISO text is read one by one, to the same order
    texts = ["2026-11-02 10:00", "2026-11-01T23:00:00.123+00:00", "2026-11-02", "?", ""]
    assert time_order(texts, "UTC").tolist() == [1, 2, 0, 3, 4]
    # every one strict ISO text: read as a column (UTC where an offset is given)
    strict = ["2026-11-02T10:00:00Z", "2026-11-02T10:30:00+01:00", "2026-11-01T23:59:59.5Z"]
    assert time_order(strict, "UTC").tolist() == [2, 1, 0]
    assert time_order([], "UTC").tolist() == []
    assert isinstance(time_order(["2026-11-02T10:00:00Z"], "UTC"), np.ndarray)


def test_a_window_smaller_than_a_batch_is_refused(pair: tuple[Cli, Cli], tmp_path: Path) -> None:
    one, _ = pair
    path = tmp_path / "events.jsonl"
    write(path, "jsonl", shop_events(20))
    result = one("ingest", str(path), "--batch-size", "50", "--sort-window", "10")
    assert result.exit_code == 2
    assert "--sort-window" in result.output and "at least the batch size" in result.output
    with one.stats() as st:
        assert st.events() == []


def test_without_a_window_batch_ids_stay_those_of_earlier_versions() -> None:
    """Files ingested before --sort-window existed: a re-run must find their batch ids."""
    fields = FieldMap("event", None, None, "time", None)
    earlier = json.dumps({**fields.__dict__, "kind": None, "batch": 10_000}, sort_keys=True)
    assert options_salt(fields, None, 10_000) == earlier
    assert options_salt(fields, None, 10_000, 0) == earlier
    assert options_salt(fields, None, 10_000, 50_000) != earlier


@pytest.mark.parametrize("ids", ["int", "map"])
@pytest.mark.parametrize("kind", ["jsonl", "csv"])
@pytest.mark.parametrize(("raw", "window"), [(False, 0), (True, 0), (False, 24), (True, 24)])
def test_chunks_taken_whole_cut_the_batches_record_by_record_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, raw: bool, window: int, ids: str
) -> None:
    """A chunk of records that all make events as they are, sums given as text read, goes in
    whole (`Decoder.many`); a chunk with a line that makes none, a time to read or a text id
    where ids are integers goes record by record. Either way the batches, their lines and
    the refused lines are the same."""
    schema = dataclasses.replace(SCHEMA, ids=ids)
    events: list[Any] = mixed_times(90, seed=11)
    events[20]["time"] = "1763460000"  # epoch text: read one by one
    events[41]["amount"] = "12.5"  # a sum as text: made a number one by one
    events[75]["user"] = "42"  # a text id where ids are integers: made one one by one
    events[60] = [1, 2]  # a line that makes no event (each of these in a chunk of its own)
    path = tmp_path / f"events.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
    else:
        write(path, kind, events[:60])  # (and lines the reader refuses, here and there)
    monkeypatch.setattr("bitstat.cli.read.LINES_AT_ONCE", 7)  # chunks across batches

    def cut_now() -> tuple[list[Any], list[Any]]:
        got, bad = cut(path, 5, window, raw, schema)
        return [(b.events, b.lines, b.held) for b in got], bad

    taken = []
    real = ingest_batches._whole

    def seen(*args: Any) -> Any:
        got = real(*args)
        taken.append(got is not None)
        return got

    monkeypatch.setattr("bitstat.cli.ingest_batches._whole", seen)
    whole = cut_now()
    # (CSV cells are text: an id where ids are integers is read one by one, unless a worker
    # decodes the records)
    assert any(taken) == (kind == "jsonl" or ids == "map" or (raw and not window))
    assert not all(taken)
    with monkeypatch.context() as m:
        m.setattr("bitstat.cli.ingest_batches._whole", lambda *_: None)
        one_by_one = cut_now()
    assert whole == one_by_one
    assert whole[1] and len(whole[0]) > 10  # (lines refused, batches across chunks)
