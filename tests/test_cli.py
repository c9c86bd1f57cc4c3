"""The `bitstat` command line, run as a user runs it, against the session's embedded server.

Commands run in-process through click's CliRunner (and a few as real `python -m bitstat`
subprocesses). Ingest is checked for every input format, exactly-once re-runs, line numbers of
rejected lines, exit statuses and --strict; every query in every output format is checked
against the Python API's answer on the same data; a docs test checks that each command has
help with an example and a place in docs/cli.md, and runs that page's query examples.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import bitstat
from bitstat import demo, embedded
from bitstat.cli import main
from bitstat.cli.output import cell, tidy

ROOT = Path(__file__).resolve().parent.parent
ENV_VARS = ("BITSTAT_URL", "BITSTAT_NAMESPACE", "BITSTAT_DATA")
NOW = "2026-12-31"  # retention and lifecycle: every period of the data has begun
SCHEMA = bitstat.Schema(
    count=["country", "country~platform"],
    sum=["amount", "amount by country"],
    top=["item"],
    unique=["ip"],
    segment=["country"],
)
COLUMNS = ["event", "user", "time", "country", "platform", "item", "amount", "ip"]


def shop_events(n: int = 600, seed: int = 7) -> list[dict[str, Any]]:
    """Events of November 2026 with every property the schema records."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(
            {
                "event": rng.choice(["visit", "visit", "signup", "purchase"]),
                "user": rng.randrange(80),
                "time": f"2026-11-{rng.randint(1, 28):02d}T{rng.randrange(24):02d}:"
                f"{rng.randrange(60):02d}:00",
                "country": rng.choice(["NL", "DE", "FR"]),
                "platform": rng.choice(["ios", "web"]),
                "item": f"sku-{rng.randrange(8)}",
                "amount": round(rng.uniform(1, 50), 2),
                "ip": f"10.0.0.{rng.randrange(30)}",
            }
        )
    return out


EVENTS = shop_events()


def jsonl(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def json_array(events: list[dict[str, Any]]) -> str:
    """One element per line, so element i starts on line i + 2."""
    return "[\n" + ",\n".join(json.dumps(e) for e in events) + "\n]\n"


def csv_text(events: list[dict[str, Any]], delimiter: str = ",") -> str:
    buf = io.StringIO()
    out = csv.DictWriter(buf, COLUMNS, delimiter=delimiter, lineterminator="\n")
    out.writeheader()
    out.writerows(events)
    return buf.getvalue()


class Cli:
    """Runs `bitstat --url URL --namespace NS ...` in-process, with no BITSTAT_* variables."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None) -> Result:
        env: dict[str, str | None] = dict.fromkeys(ENV_VARS)
        env["COLUMNS"] = "200"  # wide enough that rich never wraps a table
        return self.runner.invoke(
            main,
            ["--url", self.url, "--namespace", self.namespace, *args],
            input=input,
            env=env,
            catch_exceptions=False,
        )

    def ok(self, *args: str, input: str | bytes | None = None) -> str:
        result = self(*args, input=input)
        assert result.exit_code == 0, result.output
        return result.stdout

    def stats(self) -> bitstat.Stats:
        return bitstat.connect(self.url, namespace=self.namespace)


def make_namespace() -> str:
    return f"t-cli-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cli(embedded_url: str, namespace: str) -> Iterator[Cli]:
    """A namespace with the shop schema and nothing recorded."""
    bitstat.connect(embedded_url, namespace=namespace, schema=SCHEMA).close()
    yield Cli(embedded_url, namespace)
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        st.drop()


@pytest.fixture(scope="module")
def loaded(embedded_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A namespace holding EVENTS, loaded with `bitstat ingest`."""
    cli = Cli(embedded_url, make_namespace())
    bitstat.connect(embedded_url, namespace=cli.namespace, schema=SCHEMA).close()
    path = tmp_path_factory.mktemp("loaded") / "events.jsonl"
    path.write_text(jsonl(EVENTS))
    cli.ok("ingest", str(path))
    yield cli
    with cli.stats() as st:
        st.drop()


@pytest.fixture
def stats(loaded: Cli) -> Iterator[bitstat.Stats]:
    with loaded.stats() as st:
        yield st


# ingest


def test_ingest_jsonl_then_again_records_nothing(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl(EVENTS))
    first = cli("ingest", str(path))
    assert first.exit_code == 0, first.output
    assert f"Recorded {len(EVENTS):,} events" in first.stdout
    assert f"{path}: {len(EVENTS):,} records: {len(EVENTS):,} recorded, 0 rejected" in first.stdout
    with cli.stats() as st:
        totals = {e: st.total(e, "2026-11") for e in ("visit", "signup", "purchase")}
    assert totals == {e: sum(1 for x in EVENTS if x["event"] == e) for e in totals}

    second = cli("ingest", str(path))
    assert second.exit_code == 0, second.output
    assert f"Nothing new: the {len(EVENTS):,} events were recorded by an earlier run" in (
        second.stdout
    )
    # the same content from stdin, and gzipped, is the same data: nothing is recorded again
    again = cli("ingest", "-", input=path.read_bytes())
    assert "Nothing new" in again.stdout, again.output
    gz = tmp_path / "copy.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert "Nothing new" in cli.ok("ingest", str(gz))
    with cli.stats() as st:
        assert {e: st.total(e, "2026-11") for e in totals} == totals


FORMATS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
    "events.json": lambda ev: json_array(ev).encode(),
    "events.csv": lambda ev: csv_text(ev).encode(),
    "events.tsv": lambda ev: csv_text(ev, "\t").encode(),
    "events.csv.gz": lambda ev: gzip.compress(csv_text(ev).encode()),
    "events.json.gz": lambda ev: gzip.compress(json_array(ev).encode()),
    "events.gz": lambda ev: gzip.compress(jsonl(ev).encode()),  # found from the content
    "events.txt": lambda ev: json_array(ev).encode(),  # found from the first character
    "-": lambda ev: jsonl(ev).encode(),  # stdin
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_records_the_same(cli: Cli, loaded: Cli, tmp_path: Path, name: str) -> None:
    data = FORMATS[name](EVENTS)
    if name == "-":
        result = cli("ingest", "-", "--batch-size", "250", input=data)
    else:
        (tmp_path / name).write_bytes(data)
        result = cli("ingest", str(tmp_path / name), "--batch-size", "250")
    assert result.exit_code == 0, result.output
    assert f"Recorded {len(EVENTS):,} events" in result.stdout
    with cli.stats() as got, loaded.stats() as want:
        for event in ("visit", "signup", "purchase"):
            assert got.unique(event, "2026-11") == want.unique(event, "2026-11")
            assert got.total(event, "2026-11") == want.total(event, "2026-11")
            assert got.counts(event, "country~platform", "2026-11") == want.counts(
                event, "country~platform", "2026-11"
            )
            assert got.sums(event, "amount", "2026-11") == pytest.approx(
                want.sums(event, "amount", "2026-11")
            )
            assert got.distinct(event, "ip", "2026-11") == want.distinct(event, "ip", "2026-11")
            assert got.series(event, "2026-11-01", "2026-11-28") == want.series(
                event, "2026-11-01", "2026-11-28"
            )


BAD_JSONL = [
    '{"event": "visit", "user": 1, "time": "2026-11-02T10:00:00"}',
    '{"event": "visit", "user": 2, "time": "2026-11-02T11:00:00"}',
    '{"event": "visit", "user": -1}',
    "",
    "[1, 2]",
    '{"event": "visit", "user": 3',
    '{"user": 3}',
    '{"event": "visit", "user": 4, "time": "yesterday"}',
    '{"event": "visit", "user": 5, "time": 1793700000}',
]


def test_rejected_lines_are_reported_with_line_numbers(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(BAD_JSONL) + "\n")
    rejects = tmp_path / "rejects.txt"
    result = cli("ingest", str(path), "--rejects", str(rejects))
    assert result.exit_code == 2, result.output
    out = result.stdout
    assert "Recorded 3 events" in out
    assert f"{path}: 8 records: 3 recorded, 5 rejected" in out
    assert "Rejected 5 lines:" in out
    assert f"{path}:3: user: actor id -1 is outside 0..4294967295" in out
    assert f"{path}:5: not a JSON object but an array" in out
    assert f"{path}:6: invalid JSON: " in out
    assert f"{path}:7: event: missing event name" in out
    assert f"{path}:8: time: " in out
    lines = rejects.read_text().splitlines()
    assert [int(line.split(":")[1]) for line in lines] == [3, 5, 6, 7, 8]
    with cli.stats() as st:
        assert st.total("visit", "2026-11-02") == 2
        assert st.total("visit", "2026-11-03") == 1  # epoch seconds 1793700000

    # the report as JSON carries every rejected line
    report = json.loads(cli("ingest", str(path), "--format", "json").stdout)
    assert report["recorded"] == 0 and report["seen_before"] == 3
    assert [r["line"] for r in report["rejected"]] == [3, 5, 6, 7, 8]


def test_line_numbers_in_long_json_lines_files(cli: Cli, tmp_path: Path) -> None:
    """JSON lines are parsed a thousand at a time; a bad one is still found by its number."""
    events = [{"event": "visit", "user": i, "time": "2026-11-05"} for i in range(2500)]
    lines = [json.dumps(e) for e in events]
    lines[1499] = '{"event": "visit", "user": 1499, "time": "2026-11-05"'  # line 1500
    lines[2299] = '{"event": "visit", "user": "x"}'  # line 2300
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = cli("ingest", str(path), "--batch-size", "700")
    assert result.exit_code == 2
    assert f"{path}:1500: invalid JSON: " in result.stdout
    assert f"{path}:2300: user: " in result.stdout
    with cli.stats() as st:
        assert st.unique("visit", "2026-11-05") == 2498


def test_csv_and_json_array_line_numbers(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "event,user,time,item\n"  # line 1
        "visit,1,2026-11-02T10:00:00,a\n"  # 2
        "visit,2\n"  # 3: too few fields
        'visit,3,2026-11-02T10:00:00,"two\nlines"\n'  # 4-5: one record
        "visit,x,2026-11-02T10:00:00,b\n"  # 6: bad id
        "\n"  # 7: blank
        "visit,17850.0,2026-11-02T10:00:00,c\n"  # 8: a float id from a spreadsheet: 17850
    )
    result = cli("ingest", str(path))
    assert result.exit_code == 2, result.output
    assert f"{path}:3: 2 fields, but the header has 4" in result.stdout
    assert f"{path}:6: user: actor id must be" in result.stdout
    assert "Recorded 3 events" in result.stdout
    with cli.stats() as st:
        assert 17850 in st.actors("visit").day(2026, 11, 2)

    events = [{"event": "visit", "user": i, "time": "2026-11-03"} for i in range(6)]
    events[3]["user"] = "nobody"
    array = tmp_path / "bad.json"
    array.write_text(json_array(events))
    result = cli("ingest", str(array))
    assert result.exit_code == 2
    assert f"{array}:5: user: " in result.stdout  # element 3 starts on line 5
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"event": "visit", "user": 1},\n{"event": oops}\n]')
    result = cli("ingest", str(broken))
    assert result.exit_code == 2
    assert (
        f"{broken}:3: invalid JSON: Expecting value at column 11; the rest of the file is not read"
        in result.stdout
    )


def test_only_the_first_20_rejects_are_shown(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text(jsonl([{"event": "visit", "user": "x"}] * 25))
    result = cli("ingest", str(path))
    assert result.exit_code == 2
    assert "Rejected 25 lines (the first 20):" in result.stdout
    assert f"{path}:20: " in result.stdout and f"{path}:21: " not in result.stdout
    assert "Write them all to a file with --rejects FILE." in result.stdout
    rejects = tmp_path / "all.txt"
    result = cli("ingest", str(path), "--rejects", str(rejects))
    assert len(rejects.read_text().splitlines()) == 25
    assert f"All rejected lines are in {rejects}." in result.stdout


def test_strict_stops_at_the_first_bad_line_and_records_nothing(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(jsonl(EVENTS[:100]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl([*EVENTS[100:104], {"event": "visit", "user": -5}, *EVENTS[104:110]]))
    result = cli("ingest", "--strict", "--batch-size", "3", str(good), str(bad))
    assert result.exit_code == 1
    assert f"{bad}:5: user: actor id " in result.output
    assert "nothing was recorded" in result.output
    with cli.stats() as st:
        assert st.events() == []
    # unreadable lines stop it too
    broken = tmp_path / "broken.jsonl"
    broken.write_text(jsonl(EVENTS[:3]) + "{oops\n")
    result = cli("ingest", "--strict", str(broken))
    assert result.exit_code == 1 and f"{broken}:4: invalid JSON" in result.output
    # a clean file goes in as usual
    assert "Recorded 100 events" in cli.ok("ingest", "--strict", str(good))


def test_csv_columns_mapped_with_options(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "order,customer,ordered_at,country,amount\n"
        "1,10,22/11/2026 09:30,NL,9.5\n"
        "2,11,22/11/2026 10:30,DE,20\n"
        "3,10,23/11/2026 10:30,NL,\n"
        "4,12,31/11/2026 10:30,NL,1\n"  # no such day
    )
    result = cli(
        "ingest", str(path), "--event-name", "purchase", "--actor", "customer",
        "--time", "ordered_at", "--time-format", "%d/%m/%Y %H:%M",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "Recorded 3 events" in result.stdout
    assert f"{path}:5: time: '31/11/2026 10:30' does not match --time-format" in result.stdout
    with cli.stats() as st:
        assert st.unique("purchase", "2026-11-22") == 2
        assert st.unique("purchase", "2026-11-23") == 1
        assert st.sums("purchase", "amount", "2026-11") == 29.5
        assert st.counts("purchase", "country", "2026-11") == {"NL": 2, "DE": 1}

    missing = cli("ingest", str(path))
    assert missing.exit_code == 2  # a usage error
    assert "has no 'event' column" in missing.output and "--event-name" in missing.output
    both = cli("ingest", str(path), "--event", "order", "--event-name", "x")
    assert both.exit_code == 2 and "not both" in both.output
    no_actor = cli("ingest", str(path), "--event-name", "visit", "--time", "ordered_at",
                   "--time-format", "%d/%m/%Y %H:%M")  # fmt: skip
    assert "has no 'user' column: its events are recorded without an actor" in no_actor.stderr


@pytest.mark.parametrize(
    ("time_format", "value", "day"),
    [
        ("epoch", "1795000000", "2026-11-18"),
        ("epoch-ms", "1795000000123", "2026-11-18"),
        (None, "1795000000", "2026-11-18"),
        (None, "2026-11-18T23:30:00-02:00", "2026-11-19"),
        ("%Y%m%d", "20261118", "2026-11-18"),
    ],
)
def test_time_formats(
    cli: Cli, tmp_path: Path, time_format: str | None, value: str, day: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"event,user,time\nvisit,1,{value}\n")
    options = ["--time-format", time_format] if time_format else []
    assert "Recorded 1 event in" in cli.ok("ingest", str(path), *options)
    with cli.stats() as st:
        assert st.total("visit", day) == 1


def test_bad_time_format_option(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("event,user,time\nvisit,1,2026-11-18\n")
    result = cli("ingest", str(path), "--time-format", "dd/mm/yyyy")
    assert result.exit_code == 2 and "strptime format" in result.output


# queries, in every format, against the Python API


def rows(*pairs: tuple[str, Any]) -> dict[str, Any]:
    return dict(pairs)


def ranked(d: dict[Any, Any]) -> list[tuple[Any, Any]]:
    return sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))


SCALARS: dict[str, tuple[list[str], Callable[[bitstat.Stats], Any]]] = {
    "unique": (["unique", "visit", "2026-11"], lambda st: st.unique("visit", "2026-11")),
    "unique --where": (
        ["unique", "visit", "2026-11-01", "2026-11-14", "--where", "country=NL"],
        lambda st: st.unique("visit", "2026-11-01", "2026-11-14", country="NL"),
    ),
    "total": (
        ["total", "purchase", "2026-W46"],
        lambda st: st.total("purchase", "2026-W46"),
    ),
    "distinct": (
        ["distinct", "visit", "ip", "2026-11-01", "2026-11-10"],
        lambda st: st.distinct("visit", "ip", "2026-11-01", "2026-11-10"),
    ),
    "sums": (
        ["sums", "purchase", "amount", "2026-11"],
        lambda st: st.sums("purchase", "amount", "2026-11"),
    ),
}


@pytest.mark.parametrize("case", list(SCALARS))
def test_scalar_queries_in_every_format(loaded: Cli, stats: bitstat.Stats, case: str) -> None:
    args, api = SCALARS[case]
    want = api(stats)
    assert want  # the data makes every answer non-trivial
    assert loaded.ok(*args).strip() == cell(want)
    assert json.loads(loaded.ok(*args, "--format", "json")) == tidy(want)
    name, value = loaded.ok(*args, "--format", "csv").splitlines()
    assert name == args[0] if args[0] != "sums" else name == "sum"
    assert float(value) == pytest.approx(want)


TABLES: dict[str, tuple[list[str], Callable[[bitstat.Stats], list[dict[str, Any]]]]] = {
    "series": (
        ["series", "visit", "2026-11-01", "2026-11-10"],
        lambda st: [
            rows(("day", d), ("unique", v))
            for d, v in st.series("visit", "2026-11-01", "2026-11-10")
        ],
    ),
    "series --by week --where": (
        ["series", "visit", "2026-11", "--by", "week", "--metric", "unique", "-w", "country=DE"],
        lambda st: [
            rows(("week", d), ("unique", v))
            for d, v in st.series("visit", "2026-11", by="week", country="DE")
        ],
    ),
    "series total": (
        ["series", "purchase", "2026-11", "--by", "week", "--metric", "total"],
        lambda st: [
            rows(("week", d), ("total", v))
            for d, v in st.series("purchase", "2026-11", by="week", metric="total")
        ],
    ),
    "counts": (
        ["counts", "visit", "country", "2026-11"],
        lambda st: [
            rows(("country", k), ("count", n))
            for k, n in ranked(st.counts("visit", "country", "2026-11"))
        ],
    ),
    "counts compound": (
        ["counts", "visit", "platform~country", "2026-11-01", "2026-11-07"],
        lambda st: [
            rows(("platform", k[0]), ("country", k[1]), ("count", n))
            for k, n in ranked(st.counts("visit", "platform~country", "2026-11-01", "2026-11-07"))
        ],
    ),
    "sums --by": (
        ["sums", "purchase", "amount", "2026-11", "--by", "country"],
        lambda st: [
            rows(("country", k), ("sum", v))
            for k, v in ranked(st.sums("purchase", "amount", "2026-11", by="country"))  # type: ignore[arg-type]
        ],
    ),
    "top": (
        ["top", "purchase", "item", "2026-11", "--limit", "3"],
        lambda st: [
            rows(("item", k), ("count", n))
            for k, n in st.top("purchase", "item", "2026-11", limit=3)
        ],
    ),
    "events": (["events"], lambda st: [rows(("event", e)) for e in st.events()]),
    "funnel": (
        ["funnel", "visit,signup,purchase", "2026-11-01", "2026-11-14", "--within", "7d"],
        lambda st: funnel_rows(
            st.funnel(["visit", "signup", "purchase"], "2026-11-01", "2026-11-14")
        ),
    ),
    "funnel --where": (
        ["funnel", "visit,purchase", "2026-11", "--where", "country=FR", "--within", "2w"],
        lambda st: funnel_rows(
            st.funnel(["visit", "purchase"], "2026-11", within="2w", country="FR")
        ),
    ),
    "stickiness": (
        ["stickiness", "visit", "2026-11-01", "2026-11-14"],
        lambda st: [
            rows(("days", d), ("actors", n))
            for d, n in st.stickiness("visit", "2026-11-01", "2026-11-14").items()
        ],
    ),
    "lifecycle": (
        ["lifecycle", "visit", "2026-10-26", "--periods", "6", "--now", NOW],
        lambda st: [p.as_dict() for p in st.lifecycle("visit", "2026-10-26", 6, now=NOW)],
    ),
    "lifecycle --where": (
        [
            "lifecycle",
            "visit",
            "2026-10-26",
            "--periods",
            "6",
            "--now",
            NOW,
            "--where",
            "country=FR",
        ],
        lambda st: [
            p.as_dict() for p in st.lifecycle("visit", "2026-10-26", 6, now=NOW, country="FR")
        ],
    ),
}


def funnel_rows(answer: list[tuple[str, int]]) -> list[dict[str, Any]]:
    out, first, previous = [], answer[0][1], answer[0][1]
    for step, n in answer:
        out.append(
            rows(
                ("step", step),
                ("actors", n),
                ("of_first", n / first),
                ("of_previous", n / previous),
            )
        )
        previous = n
    return out


def table_has_rows(output: str, expected: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> None:
    """Each expected row is a line of the table holding its cells in order."""
    lines = output.splitlines()
    for row in expected:
        cells = [re.escape(cell(v)) for k, v in row.items() if k not in skip]
        pattern = re.compile(r"\W\s*" + r"\s*\W\s*".join(cells) + r"\s*\W")
        assert any(pattern.search(line) for line in lines), f"no row {row} in:\n{output}"


@pytest.mark.parametrize("case", list(TABLES))
def test_table_queries_in_every_format(loaded: Cli, stats: bitstat.Stats, case: str) -> None:
    args, api = TABLES[case]
    want = api(stats)
    assert want
    assert json.loads(loaded.ok(*args, "--format", "json")) == tidy(want)
    got_csv = list(csv.DictReader(io.StringIO(loaded.ok(*args, "--format", "csv"))))
    assert got_csv == [{k: "" if v is None else str(tidy(v)) for k, v in r.items()} for r in want]
    table = loaded.ok(*args)
    if args[0] == "events":
        assert table.split() == [r["event"] for r in want]
    else:
        table_has_rows(table, want, skip=("of_first", "of_previous"))
    if args[0] == "series":
        sparkline = table.splitlines()[-1]
        assert len(sparkline.split()[0]) == len(want) and set(sparkline.split()[0]) <= set(
            "▁▂▃▄▅▆▇█"
        )


def test_retention_in_every_format(loaded: Cli, stats: bitstat.Stats) -> None:
    args = ["retention", "visit", "purchase", "2026-11-02", "--periods", "3", "--now", NOW]
    want = stats.retention("visit", "purchase", "2026-11-02", 3, now=NOW)
    assert json.loads(loaded.ok(*args, "--format", "json")) == tidy(want.as_dicts())
    assert loaded.ok(*args, "--format", "csv") == want.to_csv()
    assert loaded.ok(*args, "--format", "csv", "--rates") == want.to_csv(rates=True)
    table = loaded.ok(*args)
    assert "purchase after visit, weekly cohorts (first time)" in table
    for row in want.rows:
        shares = [f"{r:.1%}" for r in row.rates() if r is not None]
        table_has_rows(table, [{"cohort": row.cohort, "size": row.size, **dict(enumerate(shares))}])
    recurring = stats.retention(
        "visit", "visit", "2026-11", 2, "month", "recurring", now=NOW, country="NL"
    )
    got = loaded.ok(
        "retention", "visit", "visit", "2026-11", "--periods", "2", "--period", "month",
        "--kind", "recurring", "--now", NOW, "--where", "country=NL", "-f", "json",
    )  # fmt: skip
    assert json.loads(got) == tidy(recurring.as_dicts())


def test_query_in_every_format(loaded: Cli, stats: bitstat.Stats) -> None:
    want = stats.query("purchase", "2026-11-01", "2026-11-14")
    got = json.loads(loaded.ok("query", "purchase", "2026-11-01", "2026-11-14", "-f", "json"))
    assert (got["event"], got["total"], got["unique"]) == (
        "purchase",
        want["total"],
        want["unique"],
    )
    assert got["distinct"] == want["distinct"]
    assert {r["country"]: r["count"] for r in got["counts"]["country"]} == want["counts"]["country"]
    assert {
        (r["country"], r["platform"]): r["count"] for r in got["counts"]["country~platform"]
    } == want["counts"]["country~platform"]
    assert got["sums"]["amount"] == tidy(want["sums"]["amount"])
    assert {r["country"]: r["sum"] for r in got["sums"]["amount by country"]} == tidy(
        want["sums"]["amount by country"]
    )
    assert [(r["item"], r["count"]) for r in got["top"]["item"]] == want["top"]["item"]

    table = loaded.ok("query", "purchase", "2026-11-01", "2026-11-14")
    assert re.search(rf"total\s+{cell(want['total'])}\n", table)
    assert re.search(rf"unique\s+{cell(want['unique'])}\n", table)
    for title in ("counts country", "counts country~platform", "sum amount by country", "top item"):
        assert title in table
    table_has_rows(table, [{"item": k, "count": n} for k, n in want["top"]["item"]])

    lines = list(csv.reader(io.StringIO(loaded.ok("query", "purchase", "2026-11-01", "2026-11-14",
                                                  "-f", "csv"))))  # fmt: skip
    assert lines[0] == ["metric", "property", "key", "value"]
    assert ["total", "", "", str(want["total"])] in lines
    assert ["counts", "country~platform", "NL~ios", str(want["counts"]["country~platform"][
        ("NL", "ios")])] in lines  # fmt: skip
    assert ["distinct", "ip", "", str(want["distinct"]["ip"])] in lines


def test_query_days(loaded: Cli, stats: bitstat.Stats) -> None:
    want = stats.query_days("visit", 3, "2026-11-12")
    got = json.loads(
        loaded.ok("query", "visit", "--days", "3", "--until", "2026-11-12", "-f", "json")
    )
    assert [d["day"] for d in got] == ["2026-11-10", "2026-11-11", "2026-11-12"]
    assert [(d["total"], d["unique"], d["distinct"]) for d in got] == [
        (d["total"], d["unique"], d["distinct"]) for d in want
    ]
    table = loaded.ok("query", "visit", "--days", "3", "--until", "2026-11-12")
    table_has_rows(
        table, [{"day": d["day"], "total": d["total"], "unique": d["unique"]} for d in want]
    )
    rows_ = list(csv.DictReader(io.StringIO(loaded.ok("query", "visit", "--days", "3", "--until",
                                                      "2026-11-12", "-f", "csv"))))  # fmt: skip
    assert {r["day"] for r in rows_} == {d["day"] for d in want}
    assert loaded("query", "visit").exit_code == 2  # neither a range nor --days
    assert loaded("query", "visit", "2026-11", "--days", "2").exit_code == 2


def test_query_errors_are_messages(loaded: Cli) -> None:
    for args, message in [
        (["unique", "visit", "2026-11", "--where", "platform=ios"], "no segment 'platform'"),
        (["unique", "visit", "2026-11", "--where", "country"], "expected PROP=VALUE"),
        (["counts", "visit", "item", "2026-11"], "no count of 'item'"),
        (["total", "visit", "November"], "cannot read 'November' as a time"),
        (["series", "visit", "2026-11", "--by", "hour"], "'hour' buckets are not recorded"),
    ]:
        result = loaded(*args)
        assert result.exit_code in (1, 2), result.output
        assert message in result.output
        assert "Traceback" not in result.output


# schema and server


def test_schema_show_and_set(cli: Cli, tmp_path: Path) -> None:
    shown = cli.ok("schema", "show")
    assert 'count = ["country", "country~platform"]' in shown
    assert json.loads(cli.ok("schema", "show", "--format", "json")) == SCHEMA.to_dict()

    fresh = Cli(cli.url, make_namespace())
    toml = tmp_path / "shop.toml"
    toml.write_text(
        'actor = "customer"\nids = "map"\ntimezone = "Europe/Amsterdam"\n'
        'periods = ["hour", "day", "week", "month", "year"]\n'
        'count = ["country"]\nsum = ["amount by country"]\n'
        '[expire]\nhour = "14d"\n[events."sign up"]\nsegment = ["country"]\n'
    )
    assert "Stored the schema of namespace" in fresh.ok("schema", "set", str(toml))
    want = bitstat.Schema(
        actor="customer", ids="map", timezone="Europe/Amsterdam",
        periods=("hour", "day", "week", "month", "year"), count=["country"],
        sum=["amount by country"], expire={"hour": "14d"},
        events={"sign up": {"segment": ["country"]}},
    )  # fmt: skip
    with fresh.stats() as st:
        assert st.schema == want
    # what `show` prints, `set` takes back; so does JSON, from a file or stdin
    again = tmp_path / "again.toml"
    again.write_text(fresh.ok("schema", "show"))
    assert '[events."sign up"]' in again.read_text() and 'hour = "2w"' in again.read_text()
    other = Cli(cli.url, make_namespace())
    other.ok("schema", "set", str(again))
    third = Cli(cli.url, make_namespace())
    third.ok("schema", "set", "-", input=fresh.ok("schema", "show", "-f", "json"))
    for c in (other, third):
        with c.stats() as st:
            assert st.schema == want
        with c.stats() as st:
            st.drop()
    with fresh.stats() as st:
        st.drop()

    bad = tmp_path / "bad.toml"
    bad.write_text("count = [\n")
    result = cli("schema", "set", str(bad))
    assert result.exit_code == 1 and "not valid TOML" in result.output
    bad.write_text('colour = "blue"\n')
    result = cli("schema", "set", str(bad))
    assert result.exit_code == 1 and "unknown schema keys ['colour']" in result.output


def test_server_start_status_stop(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runner = CliRunner()
    env: dict[str, str | None] = dict.fromkeys(ENV_VARS)

    def run(*args: str) -> Result:
        return runner.invoke(main, ["--data-dir", str(data_dir), "server", *args], env=env)

    try:
        status = run("status")
        assert status.exit_code == 1 and "No embedded server is running" in status.output
        started = run("start")
        assert started.exit_code == 0, started.output
        assert "Embedded server running at unix://" in started.output
        status = run("status")
        assert status.exit_code == 0 and f"data in {data_dir}" in status.output
        info = json.loads(run("status", "--format", "json").output)
        assert info["running"] is True and info["data_dir"] == str(data_dir)
        assert info["url"] == embedded.ensure_server(data_dir)
        assert run("start").exit_code == 0  # already running: found, not started twice
        stopped = run("stop")
        assert stopped.exit_code == 0 and "Stopped the embedded server" in stopped.output
        assert "No embedded server was running" in run("stop").output
        assert json.loads(run("status", "-f", "json").output) == {
            "running": False,
            "data_dir": str(data_dir),
        }
    finally:
        embedded.stop(data_dir)


# real processes


def python_m_bitstat(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return subprocess.run(
        [sys.executable, "-m", "bitstat", *args],
        input=input,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_as_subprocesses(cli: Cli) -> None:
    common = ("--url", cli.url, "--namespace", cli.namespace)
    bad = [*EVENTS[:50], {"event": "visit", "user": "x"}]
    done = python_m_bitstat(*common, "ingest", "-", input=jsonl(bad))
    assert done.returncode == 2, done.stderr
    assert "Recorded 50 events" in done.stdout and "<stdin>:51: user: " in done.stdout
    again = python_m_bitstat(*common, "ingest", "-", "--no-progress", input=jsonl(bad))
    assert again.returncode == 2 and "Nothing new" in again.stdout and again.stderr == ""
    with cli.stats() as st:
        want = st.unique("visit", "2026-11")
    # BITSTAT_URL and BITSTAT_NAMESPACE stand in for the options
    env = {"BITSTAT_URL": cli.url, "BITSTAT_NAMESPACE": cli.namespace}
    got = python_m_bitstat("unique", "visit", "2026-11", "--format", "json", env=env)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == want
    failed = python_m_bitstat("total", "visit", "nope", env=env)
    assert failed.returncode == 1 and failed.stderr.startswith("Error: ")


# docs


def command_paths(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*path, name))


CLI_DOC = ROOT / "docs" / "cli.md"


EXAMPLE_LINE = re.compile(r"(BITSTAT_\w+=\S+ )*(bitstat|zcat) ")


def test_every_command_has_help_with_examples_kept_in_lines() -> None:
    runner = CliRunner()
    paths = list(command_paths(main))
    for expected in ("ingest", "unique", "retention", "schema set", "server status"):
        assert tuple(expected.split()) in paths
    for path in paths:
        result = runner.invoke(main, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, result.output
        name = " ".join(("bitstat", *path))
        assert "Example:" in result.output, f"{name} --help has no example"
        example = result.output.split("Example:")[-1].split("\nOptions:")[0]
        commands = [line.strip() for line in example.splitlines() if line.strip()]
        # `\b` keeps each example on a line of its own instead of one rewrapped paragraph
        assert commands and all(EXAMPLE_LINE.match(c) for c in commands), result.output
        assert any(c.startswith(name) for c in commands), f"no `{name}` example:\n{result.output}"


def test_every_command_is_in_the_docs() -> None:
    page = CLI_DOC.read_text("utf-8")
    for path in command_paths(main):
        name = " ".join(("bitstat", *path))
        assert re.search(rf"{re.escape(name)}\b", page), f"`{name}` is not in docs/cli.md"


def doc_examples() -> list[tuple[str, str]]:
    """(command, output) of each `$ bitstat ...` in the "Asking questions" blocks of docs/cli.md."""
    part = CLI_DOC.read_text("utf-8").split("\n## Asking questions\n")[1].split("\n## ")[0]
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", part, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            else:
                examples[-1][1].append(line)
    return [
        (command, "\n".join(output))
        for command, output in examples
        if command.startswith("bitstat ") and "bitstat demo" not in command
    ]


def test_doc_examples_print_what_the_page_shows(embedded_url: str) -> None:
    """The query examples of docs/cli.md, run on the demo sample: the same output, line for line."""
    examples = doc_examples()
    assert len(examples) >= 15
    namespace = make_namespace()
    sample = demo.Sample.read()
    with bitstat.connect(embedded_url, namespace=namespace, schema=demo.SCHEMA) as st:
        demo.load(st, sample.events(), "readme")
    runner = CliRunner()
    env = {"BITSTAT_URL": embedded_url, "BITSTAT_NAMESPACE": namespace, "COLUMNS": "80"}
    try:
        for command, shown in examples:
            result = runner.invoke(main, shlex.split(command)[1:], env=env)
            assert result.exit_code == 0, f"$ {command}\n{result.output}"
            got = "\n".join(line.rstrip() for line in result.stdout.rstrip("\n").splitlines())
            assert got == shown, f"$ {command}: docs/cli.md shows\n{shown}\nbut it prints\n{got}"
    finally:
        with bitstat.connect(embedded_url, namespace=namespace) as st:
            st.drop()


def test_ingest_a_tsv_file_then_the_same_data_from_stdin_records_nothing_twice(
    cli: Any, tmp_path: Any
) -> None:
    """docs/cli.md: "loading the same data again with the same options, gzipped or not, from a
    file or stdin, records nothing twice". A .tsv file is read as TSV by its extension; stdin
    has none, and its TSV was read as CSV unless told `--input-format tsv` (another option,
    so other batch ids: every event twice; found by a review on 2026-12-06). Its first line
    of tabs now says TSV."""
    path = tmp_path / "events.tsv"
    path.write_text(csv_text(EVENTS, delimiter="\t"))
    first = json.loads(cli.ok("ingest", str(path), "--no-progress", "--format", "json"))
    assert first["recorded"] == len(EVENTS)
    again = json.loads(
        cli.ok("ingest", "-", "--no-progress", "--format", "json", input=path.read_bytes())
    )
    with cli.stats() as st:
        total = sum(st.total(e, "2026-11-01", "2026-11-30") for e in st.events())
    assert (again["recorded"], total) == (0, len(EVENTS))
