"""What `bitstat ingest` tells its user about lines it could not record, and about events that
some periods keep nothing of: the words and the numbers, in the text report and in JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import bitstat
from bitstat import TrackResult
from test_cli import Cli, jsonl, make_namespace


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


def test_expired_periods_are_reported_per_period(
    embedded_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI side: what `track_many` says expired is summed over batches and files and said
    per period, in the schema's order, with that period's retention."""
    cli = Cli(embedded_url, make_namespace())
    schema = bitstat.Schema(periods=("hour", "day", "week"), expire={"day": "60d", "hour": "14d"})
    bitstat.connect(embedded_url, namespace=cli.namespace, schema=schema).close()
    track_many = bitstat.Stats.track_many

    def said_expired(self: bitstat.Stats, events: Any, *args: Any, **kw: Any) -> TrackResult:
        events = list(events)
        done = track_many(self, events, *args, **kw)
        # the CLI hands ISO text to the library as it is
        old = [e for e in events if datetime.fromisoformat(e["time"]) < datetime(2026, 11, 1)]
        older = [e for e in old if datetime.fromisoformat(e["time"]) < datetime(2026, 9, 1)]
        done.expired = {"day": len(older), "hour": len(old)}
        done.expired = {p: n for p, n in done.expired.items() if n}
        return done

    monkeypatch.setattr(bitstat.Stats, "track_many", said_expired)
    times = ["2026-08-30T10:00:00"] * 2 + ["2026-10-05T10:00:00"] * 1500 + ["2026-11-20"] * 3
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(jsonl([{"event": "visit", "user": i, "time": t} for i, t in enumerate(times)]))
    second.write_text(jsonl([{"event": "visit", "user": 7, "time": "2026-10-01T00:00:00"}]))
    try:
        result = cli("ingest", str(first), str(second), "--batch-size", "400", "--no-progress")
        assert result.exit_code == 0, result.output
        said = result.stdout.splitlines()
        assert said[-2:] == [
            "1,503 events older than the hour retention (2w): no hour buckets kept for them.",
            "2 events older than the day retention (60d): no day buckets kept for them.",
        ], result.stdout
        report = json.loads(cli("ingest", str(second), "-f", "json", "--batch-size", "400").stdout)
        assert report["expired"] == {}  # recorded before: nothing expired this time
        with cli.stats() as st:
            st.drop()
        bitstat.connect(embedded_url, namespace=cli.namespace, schema=schema).close()
        report = json.loads(
            cli("ingest", str(first), str(second), "-f", "json", "--batch-size", "7").stdout
        )
        assert report["expired"] == {"hour": 1503, "day": 2}
        assert [f["expired"] for f in report["files"]] == [{"hour": 1502, "day": 2}, {"hour": 1}]
    finally:
        with cli.stats() as st:
            st.drop()


def test_no_expired_line_without_expired_events(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(GOOD + "\n")
    result = shop("ingest", str(path), "--no-progress")
    assert result.stdout.splitlines()[-1].startswith("Recorded 1 event in")
    report = json.loads(shop("ingest", str(path), "-f", "json").stdout)
    assert report["expired"] == {} and report["files"][0]["expired"] == {}


def test_text_ids_in_an_int_namespace_end_with_a_hint(shop: Cli, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event,user,time\n"
        "visit,5eda92d8-64ac-5db9-d707-107e855c3844,2026-11-02\n"
        "visit,bob@example.com,2026-11-02\n"
        "visit,-3,2026-11-02\n"  # a bad integer, not a text id
        "visit,17850.0,2026-11-02\n"  # an integer id as a spreadsheet writes it
    )
    result = shop("ingest", str(path), "--no-progress")
    assert result.exit_code == 2, result.output
    assert "Recorded 1 event in" in result.stdout
    hint = (
        "note: 2 events had a text actor id (such as '5eda92d8-64ac-5db9-d707-107e855c3844'),"
        ' but this namespace takes integer ids (ids = "int"); text ids need a schema with'
        ' ids = "map", stored before any event is recorded (see bitstat schema set --help)'
    )
    assert " ".join(result.stderr.split()) == hint

    # a stray text id among integer ones is a typo: the line's reason says enough
    stray = tmp_path / "stray.csv"
    stray.write_text(
        "event,user,time\nvisit,1,2026-11-02\nvisit,2,2026-11-02\nvisit,x,2026-11-03\n"
    )
    result = shop("ingest", str(stray), "--no-progress")
    assert result.exit_code == 2 and result.stderr == "", result.output

    mapped = Cli(shop.url, make_namespace())
    bitstat.connect(
        mapped.url, namespace=mapped.namespace, schema=bitstat.Schema(ids="map")
    ).close()
    try:
        result = mapped("ingest", str(path), "--no-progress")
        assert result.exit_code == 0 and result.stderr == "", result.output
        assert "Recorded 4 events in" in result.stdout
    finally:
        with mapped.stats() as st:
            st.drop()


def test_expired_periods_end_to_end(embedded_url: str, tmp_path: Path) -> None:
    """The library's own count: events a month and three weeks old keep no hour buckets with
    hour = "14d", an hour-old one does; days are kept for all three."""
    cli = Cli(embedded_url, make_namespace())
    schema = bitstat.Schema(periods=("hour", "day", "month"), expire={"hour": "14d"})
    bitstat.connect(embedded_url, namespace=cli.namespace, schema=schema).close()
    now = datetime.now(UTC)
    times = [now - timedelta(days=30), now - timedelta(days=21), now - timedelta(hours=1)]
    path = tmp_path / "backfill.jsonl"
    path.write_text(jsonl([{"event": "visit", "user": 1, "time": t.isoformat()} for t in times]))
    try:
        result = cli("ingest", str(path), "--no-progress")
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[-1] == (
            "2 events older than the hour retention (2w): no hour buckets kept for them."
        )
        with cli.stats() as st:
            assert st.total("visit", times[0].date(), times[2].date()) == 3
        again = json.loads(cli("ingest", str(path), "-f", "json").stdout)
        assert again["expired"] == {} and again["seen_before"] == 3
        with cli.stats() as st:
            st.drop()
        bitstat.connect(embedded_url, namespace=cli.namespace, schema=schema).close()
        report = json.loads(cli("ingest", str(path), "-f", "json").stdout)
        assert report["expired"] == {"hour": 2}
    finally:
        with cli.stats() as st:
            st.drop()


def test_a_rerun_gives_its_rate_as_events_read(shop: Cli, tmp_path: Path) -> None:
    """A run that finds some batches recorded before reads them all the same: its rate is of
    the events read, and says so (it gave 346,529 events/s for 150,000 recorded in 4.33 s)."""
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    lines = [GOOD.replace('"user": 1', f'"user": {u}') for u in range(30)]
    old.write_text("\n".join(lines[:20]) + "\n")
    new.write_text("\n".join(lines[20:]) + "\n")
    first = shop("ingest", str(old), "--no-progress")
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[-1].endswith(" events/s)."), first.stdout
    again = shop("ingest", str(old), str(new), "--no-progress")
    assert again.exit_code == 0, again.output
    done = again.stdout.splitlines()[-1]
    assert done.startswith("Recorded 10 events in "), again.stdout
    assert done.endswith(" events/s read, 30 events in all)."), done


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_a_number_of_too_many_digits_is_a_rejected_line(
    shop: Cli, tmp_path: Path, kind: str
) -> None:
    """A JSON number past Python's 4,300 digits made `json` raise a bare ValueError: ingest
    ended with a traceback. It is a line rejected as invalid JSON, at the number."""
    lines = [GOOD, GOOD.replace('"user": 1', '"user": ' + "9" * 5000), GOOD.replace("1,", "2,")]
    path = tmp_path / f"big.{kind}"
    path.write_text("\n".join(lines) + "\n" if kind == "jsonl" else "[" + ",\n".join(lines) + "]")
    result = shop("ingest", str(path), "--no-progress")
    assert result.exit_code == 2, result.output
    said = " ".join(result.stdout.split())
    assert f"{path}:2: invalid JSON: a number of 5,000 digits; at most 4,300 are read" in said
    assert f"Recorded {2 if kind == 'jsonl' else 1} event" in said  # (an array stops there)
