"""`bitstat ingest` and the lines it rejects: memory holds the first 1,000 of them and the
counts, not all of them; --rejects FILE gets every one, in line order, with any number of
workers; --max-rejects N stops reading with exit status 3, having recorded whole batches only,
which a plain-Python reference predicts, and a re-run records the rest exactly once."""

from __future__ import annotations

import json
import os
import random
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bitstat
from bitstat.cli import ingest_rejects
from bitstat.cli.ingest import EXIT_STOPPED
from bitstat.cli.ingest_rejects import SAMPLE
from bitstat.cli.output import ordinal
from test_cli import Cli, make_namespace
from test_cli_ingest_report import shop

__all__ = ["shop"]  # the fixture (a namespace with the default schema: integer ids), by name

DAY = "2026-11-02"


# a line of each kind: an event recorded, a line the reader refuses, an event the library rejects
def good(n: int) -> str:
    return json.dumps({"event": "visit", "user": n, "time": f"{DAY}T10:00:00"})


def reader_bad(n: int) -> str:
    return good(n)[:-1]  # cut short: invalid JSON


def library_bad(n: int) -> str:
    return json.dumps({"event": "visit", "user": f"5eda92d8-{n:04x}", "time": f"{DAY}T10:00:00"})


LINE = {"good": good, "reader": reader_bad, "library": library_bad}


def write(path: Path, kinds: list[str], users: int = 0) -> Path:
    """A line of each kind, line n's user `users + n`."""
    path.write_text("".join(LINE[kind](users + n) + "\n" for n, kind in enumerate(kinds, 1)))
    return path


def mixed(n: int, seed: int, bad: float = 0.3) -> list[str]:
    """`n` lines: good ones, with runs of bad ones of both kinds (long runs too)."""
    rng = random.Random(seed)
    kinds: list[str] = []
    while len(kinds) < n:
        if rng.random() < bad:
            kinds += [rng.choice(["reader", "library"])] * rng.choice([1, 1, 2, 5, 40])
        else:
            kinds += ["good"] * rng.choice([1, 3, 10])
    return kinds[:n]


def run_json(cli: Cli, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("ingest", *args, "--no-progress", "-f", "json")
    said = json.loads(result.stdout)
    del said["seconds"]
    return result.exit_code, said


def recorded_visits(cli: Cli) -> int:
    with cli.stats() as st:
        if "visit" not in st.events():
            return 0
        total = st.total("visit", DAY)
        assert st.unique("visit", DAY) == total  # one event a user: none recorded twice
        return total


def test_the_json_report_lists_the_first_1000_and_counts_every_one(
    shop: Cli, tmp_path: Path
) -> None:
    kinds = ["good"] * 5 + ["reader", "library"] * 1500 + ["good"] * 5
    path = write(tmp_path / "events.jsonl", kinds)
    status, said = run_json(shop, str(path), "--batch-size", "100")
    assert status == 2
    assert said["recorded"] == 10
    bad = [n for n, kind in enumerate(kinds, 1) if kind != "good"]
    assert len(said["rejected"]) == SAMPLE == 1000
    assert [r["line"] for r in said["rejected"]] == bad[:SAMPLE]
    assert said["rejected"][0]["reason"].startswith("invalid JSON: ")
    assert said["rejected"][1]["reason"].startswith("user: ")
    assert said["rejected_total"] == 3000 and said["rejected_cut"] is True
    assert said["files"][0]["rejected"] == 3000 and said["stopped"] is None

    text = shop("ingest", str(path), "--no-progress", "--batch-size", "100").stdout.splitlines()
    assert "Rejected 3,000 lines (the first 20):" in text
    assert [t.split(":")[1] for t in text if t.startswith(f"  {path}:")] == [
        str(n) for n in bad[:20]
    ]

    # under the cap: every line, and nothing cut
    few = write(tmp_path / "few.jsonl", ["good", "reader", "good", "library"])
    status, said = run_json(shop, str(few))
    assert [r["line"] for r in said["rejected"]] == [2, 4]
    assert said["rejected_total"] == 2 and said["rejected_cut"] is False


def test_the_first_1000_span_files_in_their_order(shop: Cli, tmp_path: Path) -> None:
    first = write(tmp_path / "a.jsonl", ["reader"] * 700 + ["good"] * 3)
    second = write(tmp_path / "b.jsonl", ["good", "library"] * 400)
    status, said = run_json(shop, str(first), str(second), "--workers", "2", "--batch-size", "7")
    assert status == 2 and said["rejected_total"] == 1100
    expected = [(str(first), n) for n in range(1, 701)]
    expected += [(str(second), n) for n in range(2, 601, 2)]
    assert [(r["file"], r["line"]) for r in said["rejected"]] == expected


def _peak(cli: Cli, *args: str) -> tuple[int, dict[str, Any]]:
    tracemalloc.start()
    try:
        said = run_json(cli, *args)[1]
        return tracemalloc.get_traced_memory()[1], said
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_rejected_lines(shop: Cli, tmp_path: Path) -> None:
    """A file of nothing but bad lines (the wrong schema: text ids in an int namespace, and
    lines the reader refuses) takes no more memory at 40,000 lines than at 8,000, with
    --rejects FILE getting all of them."""
    peaks = []
    for n in (8_000, 40_000):
        path = write(tmp_path / f"bad-{n}.jsonl", ["reader", "reader", "library"] * (n // 3))
        rejects = tmp_path / f"rejects-{n}.txt"
        peak, said = _peak(shop, str(path), "--rejects", str(rejects), "--batch-size", "2000")
        assert said["rejected_total"] == n // 3 * 3 and len(said["rejected"]) == SAMPLE
        assert len(rejects.read_text().splitlines()) == n // 3 * 3
        peaks.append(peak)
    # holding every (line, reason) took ~200 bytes a line: 6 MB more for the bigger file
    assert peaks[1] - peaks[0] < 1_000_000, peaks


@pytest.mark.parametrize(
    "options",
    [["--batch-size", "10"], ["--batch-size", "10", "--sort-window", "40"]],
)
def test_the_spool_holds_only_the_lines_that_wait(
    shop: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str]
) -> None:
    """The reader's rejected lines wait in the spool only while an earlier line can still be
    rejected: once written out, they leave it (on a /tmp in memory, a spool of every bad
    line of the file was memory again)."""
    sizes: list[int] = []
    refused = ingest_rejects._LineOrder.refused

    def watched(order: Any, line: int, why: str, held: int) -> None:
        refused(order, line, why, held)
        order._spool_in.flush()
        sizes.append(os.fstat(order._spool_in.fileno()).st_size)

    monkeypatch.setattr(ingest_rejects._LineOrder, "refused", watched)
    kinds = (["good"] + ["reader"] * 2) * 3000  # a batch of 10 events spans 30 lines
    path = write(tmp_path / "events.jsonl", kinds)
    rejects = tmp_path / "rejects.txt"
    status, said = run_json(shop, str(path), "--rejects", str(rejects), *options)
    assert status == 2 and said["rejected_total"] == 6000 and said["recorded"] == 3000
    written = [int(r.split(":")[1]) for r in rejects.read_text().splitlines()]
    assert written == [n for n, kind in enumerate(kinds, 1) if kind == "reader"]
    assert len(sizes) == 6000
    entry = len(json.dumps([len(kinds), said["rejected"][0]["reason"]])) + 1
    # the 2 x 40 lines of a window at most (not the file's 6,000)
    assert max(sizes) <= 80 * entry, (max(sizes), entry)


@pytest.mark.parametrize(
    "options",
    [
        ["--batch-size", "20"],
        ["--batch-size", "20", "--workers", "2"],
        ["--batch-size", "20", "--sort-window", "60"],
        ["--batch-size", "20", "--sort-window", "60", "--workers", "2"],
    ],
)
def test_the_rejects_file_holds_every_line_in_order(
    embedded_url: str, tmp_path: Path, options: list[str]
) -> None:
    kinds = {
        "a.jsonl": mixed(1500, seed=1),
        "b.jsonl": ["reader"] * 300 + ["good"] + ["reader"] * 300,
        "c.jsonl": ["good"] + ["library"] * 130 + mixed(700, seed=2),
    }
    files = [write(tmp_path / name, lines) for name, lines in kinds.items()]
    wanted = [
        (str(path), n)
        for path, lines in zip(files, kinds.values(), strict=True)
        for n, kind in enumerate(lines, 1)
        if kind != "good"
    ]
    cli = Cli(embedded_url, make_namespace())
    bitstat.connect(embedded_url, namespace=cli.namespace, schema=bitstat.Schema()).close()
    try:
        rejects = tmp_path / "rejects.txt"
        status, said = run_json(cli, *map(str, files), "--rejects", str(rejects), *options)
        assert status == 2
        written = rejects.read_text().splitlines()
        assert [(r.split(":")[0], int(r.split(":")[1])) for r in written] == wanted
        assert said["rejected_total"] == len(wanted)
        assert [f"{r['file']}:{r['line']}: {r['reason']}" for r in said["rejected"]] == written[
            :SAMPLE
        ]
        # the same lines and reasons as one process in file order gives
        plain = tmp_path / "plain.txt"
        with cli.stats() as st:
            st.drop()
        bitstat.connect(embedded_url, namespace=cli.namespace, schema=bitstat.Schema()).close()
        cli("ingest", *map(str, files), "--rejects", str(plain), "--no-progress")
        assert plain.read_text() == rejects.read_text()
    finally:
        with cli.stats() as st:
            st.drop()


@dataclass(frozen=True)
class Expected:
    recorded: int  # events recorded
    rejected: int  # lines rejected
    stop: int | None  # the line --max-rejects stops at


def reference(kinds: list[str], size: int, limit: int | None) -> Expected:
    """What ingest does with a file of these lines, `size` events a batch, --max-rejects
    `limit`, in one process: the reader counts a line it refuses at once; the library's
    rejections count when their batch (all of it) is recorded; past the limit no further batch
    is recorded, and the events read since the last one are not."""
    recorded = rejected = 0
    batch: list[tuple[int, str]] = []

    def over() -> bool:
        return limit is not None and rejected > limit

    for n, kind in [*enumerate(kinds, 1), (0, "end")]:
        if kind == "reader":
            rejected += 1
            if over():
                return Expected(recorded, rejected, n)
            continue
        if kind != "end":
            batch.append((n, kind))
        if batch and (len(batch) == size or kind == "end"):
            recorded += sum(k == "good" for _, k in batch)
            stop = None
            for line, k in batch:
                rejected += k == "library"
                if k == "library" and over() and stop is None:
                    stop = line
            if stop is not None:
                return Expected(recorded, rejected, stop)
            batch = []
    return Expected(recorded, rejected, None)


def test_the_reference_stops_where_it_should() -> None:
    kinds = ["good"] * 3 + ["reader"] + ["good"] * 3 + ["library"] * 2 + ["good"] * 5
    assert reference(kinds, 4, None) == Expected(11, 3, None)
    assert reference(kinds, 4, 0) == Expected(0, 1, 4)  # the first 3 events: never a batch
    # batches: lines 1-3 and 5, then 6-9 (recorded whole), whose line 8 is rejected line 2
    assert reference(kinds, 4, 1) == Expected(6, 3, 8)
    assert reference(kinds, 4, 2) == Expected(6, 3, 9)
    assert reference(kinds, 4, 3) == Expected(11, 3, None)


@pytest.mark.parametrize(
    ("kinds", "limit"),
    [
        (mixed(600, seed=5), 0),
        (mixed(600, seed=5), 7),
        (mixed(600, seed=6), 25),
        (["good"] * 95 + ["library"] + ["good"] * 50 + ["reader"] * 5, 0),  # the library's
        (["reader"] * 5000, 10),  # the wrong file: stops at once, not at its end
    ],
)
def test_max_rejects_stops_where_the_reference_does(
    shop: Cli, tmp_path: Path, kinds: list[str], limit: int
) -> None:
    path = write(tmp_path / "events.jsonl", kinds)
    want = reference(kinds, 10, limit)
    assert want.stop is not None  # each case stops
    rejects = tmp_path / "rejects.txt"
    options = ["--batch-size", "10", "--max-rejects", str(limit)]
    result = shop("ingest", str(path), *options, "--rejects", str(rejects), "--no-progress")
    assert result.exit_code == EXIT_STOPPED == 3, result.output
    assert f"Recorded {want.recorded:,} event" in result.stdout
    assert f" recorded, {want.rejected:,} rejected" in result.stdout
    reason = "invalid JSON: " if kinds[want.stop - 1] == "reader" else "user: "
    said = " ".join(result.stderr.split())
    assert said.startswith(f"Stopped at {path}:{want.stop}: {reason}"), result.stderr
    assert (
        f"That is the {ordinal(limit + 1)} rejected line, past --max-rejects {limit}:"
        " reading stopped there." in said
    )
    assert recorded_visits(shop) == want.recorded
    written = rejects.read_text().splitlines()
    assert len(written) == want.rejected
    assert [int(r.split(":")[1]) for r in written] == sorted(int(r.split(":")[1]) for r in written)

    # the same run again: the same batches (recorded before), the same stop
    status, again = run_json(shop, str(path), *options)
    assert status == 3 and again["recorded"] == 0 and again["seen_before"] == want.recorded
    assert again["rejected_total"] == want.rejected
    assert again["stopped"] == {
        "max_rejects": limit,
        "file": str(path),
        "line": want.stop,
        "reason": again["stopped"]["reason"],
    }

    # without the limit the same file records the rest, once
    status, rest = run_json(shop, str(path), "--batch-size", "10")
    everything = kinds.count("good")
    assert rest["recorded"] == everything - want.recorded and rest["stopped"] is None
    assert recorded_visits(shop) == everything


def test_max_rejects_counts_are_exact_in_json(shop: Cli, tmp_path: Path) -> None:
    kinds = mixed(900, seed=9)
    path = write(tmp_path / "events.jsonl", kinds)
    want = reference(kinds, 25, 30)
    status, said = run_json(shop, str(path), "--batch-size", "25", "--max-rejects", "30")
    assert status == 3
    assert said["recorded"] == want.recorded and said["rejected_total"] == want.rejected
    assert said["stopped"]["line"] == want.stop and said["stopped"]["max_rejects"] == 30
    assert said["files"][0]["rejected"] == want.rejected
    assert said["files"][0]["recorded"] == want.recorded


def test_max_rejects_leaves_the_next_files_unread(shop: Cli, tmp_path: Path) -> None:
    first = write(tmp_path / "a.jsonl", ["good"] * 30 + ["reader"] * 3 + ["good"] * 30)
    second = write(tmp_path / "b.jsonl", ["good"] * 10, users=100)
    third = write(tmp_path / "c.jsonl", ["good"] * 10, users=200)
    files = [str(first), str(second), str(third)]
    result = shop("ingest", *files, "--max-rejects", "2", "--batch-size", "20", "--no-progress")
    assert result.exit_code == 3
    said = " ".join(result.stderr.split())
    assert f"Stopped at {first}:33: invalid JSON: " in said
    assert f"reading stopped there, and the 2 files after {first} were not read." in said
    assert "recorded (20 events by this run, 0 by an earlier one), the rest not at all" in said
    assert "with a higher --max-rejects, or none, to record the rest: nothing is recorded" in said
    assert recorded_visits(shop) == 20  # the batch of lines 1-20; 21-30 waited for more
    status, said_json = run_json(shop, *files, "--batch-size", "20")
    assert status == 2 and said_json["recorded"] == 40 + 10 + 10
    assert said_json["seen_before"] == 20 and recorded_visits(shop) == 80


def test_max_rejects_with_two_workers(shop: Cli, tmp_path: Path) -> None:
    """Lines the reader refuses stop two workers where they stop one (the batches handed out
    before are recorded whole); the library's rejections come back as workers finish, so
    with them a few more batches may be recorded: always whole ones, from the file's start."""
    kinds = mixed(3000, seed=12, bad=0.1)
    only_reader = [k if k != "library" else "good" for k in kinds]
    path = write(tmp_path / "reader.jsonl", only_reader)
    want = reference(only_reader, 30, 12)
    options = ["--batch-size", "30", "--max-rejects", "12", "--workers", "2"]
    status, said = run_json(shop, str(path), *options)
    assert status == 3 and said["stopped"]["line"] == want.stop
    assert said["recorded"] == want.recorded == recorded_visits(shop)
    assert said["rejected_total"] == want.rejected

    with shop.stats() as st:
        st.drop()
    bitstat.connect(shop.url, namespace=shop.namespace, schema=bitstat.Schema()).close()
    path = write(tmp_path / "both.jsonl", kinds)
    status, said = run_json(shop, str(path), *options)
    assert status == 3
    # whole batches from the start: the events of the first k batches, k at least the one
    # that went past the limit
    events = [k for k in kinds if k != "reader"]
    prefixes = [events[: 30 * k].count("good") for k in range(len(events) // 30 + 2)]
    least = reference(kinds, 30, 12).recorded
    assert said["recorded"] in prefixes and said["recorded"] >= least, (said, least)
    assert said["recorded"] == recorded_visits(shop)
    status, rest = run_json(shop, str(path), "--batch-size", "30", "--workers", "2")
    assert rest["seen_before"] == said["recorded"]
    assert recorded_visits(shop) == kinds.count("good")


def test_the_stop_message_with_workers_says_later_batches_may_be_in(
    shop: Cli, tmp_path: Path
) -> None:
    """With workers, batches taken before the stop are recorded whole, later ones too: the
    message says so (it said "the rest not at all")."""
    path = write(tmp_path / "both.jsonl", mixed(600, seed=13, bad=0.1))
    options = ["--batch-size", "30", "--max-rejects", "3", "--no-progress"]
    alone = shop("ingest", str(path), *options)
    assert alone.exit_code == 3 and "the rest not at all.\n" in alone.stderr
    with shop.stats() as st:
        st.drop()
    bitstat.connect(shop.url, namespace=shop.namespace, schema=bitstat.Schema()).close()
    two = shop("ingest", str(path), *options, "--workers", "2")
    assert two.exit_code == 3
    assert "the rest not at all but whole batches the workers had taken already." in two.stderr


def test_a_rejects_file_that_is_an_input_is_refused_before_anything(
    shop: Cli, tmp_path: Path
) -> None:
    """--rejects naming one of the files to record would empty it before it is read."""
    path = write(tmp_path / "events.jsonl", ["good", "reader", "good"])
    before = path.read_text()
    result = shop("ingest", str(path), "--rejects", str(path), "--no-progress")
    assert result.exit_code == 2 and "--rejects" in result.stderr
    assert path.read_text() == before and recorded_visits(shop) == 0
