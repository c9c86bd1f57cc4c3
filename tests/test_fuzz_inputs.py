"""Every parser of outside input, fed anything (hypothesis): it answers or refuses with a
BitstatError saying why, never another exception, and a refused event leaves nothing behind.

Outside input: events as a caller or an HTTP body gives them (any JSON value, names and values
holding `{`, `}`, `:`, `*`, newlines, lone surrogates, huge text), time strings, actor ids,
durations and windows, and the JSON lines and CSV rows of `bitstat ingest`. The HTTP side
(bodies and query strings of every route) is fuzzed in tests/test_web_fuzz.py.
"""

from __future__ import annotations

import csv
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitstat
import servers
from bitstat import periods
from bitstat.analysis import parse_within
from bitstat.cli import main
from bitstat.cli.read import Decoder, FieldMap, csv_record
from bitstat.errors import BitstatError
from bitstat.events import canonical_id, int_actor
from bitstat.keys import Keys
from bitstat.schema import parse_duration

SCHEMA = bitstat.Schema(
    ids="map",
    timezone="Europe/Amsterdam",
    count=["country", "country~platform"],
    sum=["amount", "amount by country"],
    top=["item"],
    unique=["ip"],
    approx=["visitor"],
    segment=["country"],
)
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
COUNTER = itertools.count()

# text that has broken key names, scripts or encoders somewhere
NASTY = [
    "\ud800",
    "a\udc00b",
    "{x}",
    "}{",
    "a:b",
    "*",
    "?[",
    "\n",
    "a\r\nb",
    "%41",
    "~",
    "=",
    "\x00",
    " ",
    "é",
    "😀",
    "x" * 300,
    "'; return redis.call('FLUSHALL') --",
    "]]",
]
texts = st.one_of(
    st.sampled_from(NASTY), st.text(st.characters(exclude_categories=()), min_size=1, max_size=6)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
)
TIMES = ["2026-11-20T10:00:00", "2026-11-21", "2026-11-22T23:59:59+05:00", 1795000000]


FIELDS = {
    "event": ["buy", "visit"],
    "time": TIMES,
    "user": ["u1", "u2", 3, "0"],
    "country": ["NL", "DE"],
    "platform": ["ios", "web"],
    "amount": [1, 2.5, -3],
    "item": ["sku-1", "sku-2"],
    "ip": ["10.0.0.1", "10.0.0.2"],
    "visitor": ["v1", "v2"],
}


@st.composite
def events(draw: st.DrawFn) -> Any:
    """A good event with a field or two (or a new one) holding anything; now and then not a
    mapping at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    ev: dict[Any, Any] = {
        name: draw(st.sampled_from(choices))
        for name, choices in FIELDS.items()
        if name in ("event", "time") or draw(st.booleans())
    }
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([*FIELDS, None]))  # None: a field of its own
        ev[draw(texts) if name is None else name] = draw(st.one_of(texts, values))
    return ev


def snapshot(client: servers.Client, namespace: str) -> dict[bytes, bytes | None]:
    """Every key of the namespace (named without it) and its value, but batch markers (their
    ids are made per call) and the token made with the namespace."""
    ns = Keys(namespace).ns.encode()
    made = Keys(namespace).made.encode()
    found = [
        k
        for pattern in ("{" + namespace + "}*", "{" + namespace + ":*")
        for k in client.scan_iter(match=pattern, count=1000)
        if b":batch:" not in k and k != made
    ]
    pipe = client.pipeline(transaction=False)
    for key in found:
        pipe.dump(key)
    return {k.replace(ns, b"N", 1): v for k, v in zip(found, pipe.execute(), strict=True)}


def drop(client: servers.Client, namespace: str) -> None:
    for pattern in ("{" + namespace + "}*", "{" + namespace + ":*"):
        for key in list(client.scan_iter(match=pattern, count=1000)):
            client.delete(key)


@pytest.fixture
def embedded_client(embedded_url: str) -> Iterator[servers.Client]:
    client = servers.client_for(embedded_url)
    yield client
    client.close()


@pytest.fixture
def fresh(
    embedded_url: str, embedded_client: servers.Client
) -> Iterator[Callable[[], bitstat.Stats]]:
    """Opens a new namespace with SCHEMA per call; every one is deleted at the end."""
    made: list[bitstat.Stats] = []
    base = f"fz-{uuid.uuid4().hex[:8]}"

    def make() -> bitstat.Stats:
        made.append(
            bitstat.connect(embedded_url, namespace=f"{base}-{next(COUNTER)}", schema=SCHEMA)
        )
        return made[-1]

    yield make
    for st_ in made:
        drop(embedded_client, st_.namespace)
        st_.close()


@FUZZ
@given(batch=st.lists(events(), max_size=8))
def test_track_many_takes_anything_and_keeps_nothing_of_a_rejected_event(
    fresh: Callable[[], bitstat.Stats], embedded_client: servers.Client, batch: list[Any]
) -> None:
    everything, accepted_only = fresh(), fresh()
    result = everything.track_many(batch)
    rejected = [i for i, _ in result.rejected]
    assert result.recorded + len(rejected) == len(batch)
    assert all(isinstance(reason, str) and reason for _, reason in result.rejected)
    kept = [ev for i, ev in enumerate(batch) if i not in rejected]
    again = accepted_only.track_many(kept)
    assert (again.recorded, again.rejected) == (len(kept), [])
    assert snapshot(embedded_client, everything.namespace) == snapshot(
        embedded_client, accepted_only.namespace
    )


def answers_or_refuses(call: Callable[[], Any]) -> None:
    """`call()` returns, or raises a BitstatError (which says why); nothing else."""
    try:
        call()
    except BitstatError as exc:
        assert str(exc)


TZ = ZoneInfo("Europe/Amsterdam")
PERIODS = ("hour", "day", "week", "month", "year")
# text near the shapes bitstat reads: ISO dates and times, week and month labels, epochs
time_texts = st.one_of(
    st.text(alphabet="0123456789-:TWZ+. zt", max_size=26),
    st.from_regex(r"\A[0-9]{4}(-W?[0-9]{1,2}(-[0-9]{1,2}([T ][0-9]{1,2}(:[0-9]{2}){0,2})?)?)?\Z"),
    st.sampled_from(
        ["2026-W53", "2026-W00", "2026-02-29", "0000-01-01", "9999-12-31T23", "10000", "1969"]
    ),
    texts,
)


@FUZZ
@given(value=st.one_of(time_texts, values), other=time_texts)
def test_times_are_read_or_refused(value: Any, other: str) -> None:
    answers_or_refuses(lambda: periods.parse_time(value, TZ))
    answers_or_refuses(lambda: periods.resolve_range(value, None, TZ, PERIODS))
    answers_or_refuses(lambda: periods.resolve_range(other, value, TZ, ("day", "week")))
    if isinstance(value, str):
        answers_or_refuses(lambda: periods.parse_label(value))


@FUZZ
@given(value=st.one_of(values, time_texts))
def test_ids_durations_and_windows_are_read_or_refused(value: Any) -> None:
    answers_or_refuses(lambda: canonical_id(value))
    answers_or_refuses(lambda: int_actor(value, "user", 2**32))
    answers_or_refuses(lambda: parse_duration(value))
    answers_or_refuses(lambda: parse_within(value))


# bitstat ingest: JSON lines and CSV rows, any of them bad


def ingest(url: str, namespace: str, path: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        main,
        [
            "--url",
            url,
            "--namespace",
            namespace,
            "ingest",
            path,
            "--format",
            "json",
            "--no-progress",
        ],
    )
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 2), result.output  # 2: some lines were rejected
    return result.exit_code, json.loads(result.stdout)


def accepted(report: dict[str, Any], lines: int) -> set[int]:
    """The line numbers (1-based) the report did not reject, checked to account for all."""
    refused = {r["line"] for r in report["rejected"]}
    assert all(r["reason"] for r in report["rejected"])
    assert report["recorded"] + len(refused) == lines
    return set(range(1, lines + 1)) - refused


json_lines = st.one_of(
    events().map(lambda ev: json.dumps(ev, ensure_ascii=True, allow_nan=True)),
    events().map(lambda ev: json.dumps(ev, ensure_ascii=False, allow_nan=True)),
    st.text(st.characters(exclude_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")).filter(
        str.strip
    ),
    st.sampled_from(['{"event": "buy"', "[1, 2]", '"text"', "null", "{}", '{"a": NaN}']),
)


@FUZZ
@given(lines=st.lists(json_lines, min_size=1, max_size=6))
def test_ingest_json_lines_records_the_good_lines_and_only_them(
    fresh: Callable[[], bitstat.Stats],
    embedded_url: str,
    embedded_client: servers.Client,
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
) -> None:
    cli_ns, lib_ns = fresh(), fresh()
    path = tmp_path_factory.mktemp("jsonl") / "events.jsonl"
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass"))
    _, report = ingest(embedded_url, cli_ns.namespace, str(path))
    good = accepted(report, len(lines))
    decode = Decoder(FieldMap(), SCHEMA)
    records = [decode(json.loads(lines[n - 1])) for n in sorted(good)]
    assert lib_ns.track_many(records).rejected == []
    assert snapshot(embedded_client, cli_ns.namespace) == snapshot(
        embedded_client, lib_ns.namespace
    )


COLUMNS = list(FIELDS)
cells = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from([s for s in NASTY if "\ud800" not in s and "\udc00" not in s]),
)


@st.composite
def csv_rows(draw: st.DrawFn) -> list[str]:
    """A good row with a cell or two holding anything; now and then a cell too many or few."""
    row = [
        str(draw(st.sampled_from(FIELDS[c]))) if draw(st.integers(0, 3)) else "" for c in COLUMNS
    ]
    row[0], row[1] = str(draw(st.sampled_from(FIELDS["event"]))), str(FIELDS["time"][0])
    for _ in range(draw(st.integers(0, 2))):
        row[draw(st.integers(0, len(row) - 1))] = draw(cells)
    change = draw(st.integers(0, 9))
    if change == 0:
        row.append(draw(cells))
    elif change == 1:
        row.pop()
    return row


@FUZZ
@given(rows=st.lists(csv_rows(), min_size=1, max_size=6))
def test_ingest_csv_rows_records_the_good_rows_and_only_them(
    fresh: Callable[[], bitstat.Stats],
    embedded_url: str,
    embedded_client: servers.Client,
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[list[str]],
) -> None:
    cli_ns, lib_ns = fresh(), fresh()
    path = tmp_path_factory.mktemp("csv") / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    _, report = ingest(embedded_url, cli_ns.namespace, str(path))
    # a row's line is where it starts (a quoted cell may hold newlines): read back the same way
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        starts = []
        line = reader.line_num + 1
        for _ in reader:
            starts.append(line)
            line = reader.line_num + 1
    refused = {r["line"] for r in report["rejected"]}
    assert report["recorded"] + len(refused) == len(rows)
    decode = Decoder(FieldMap(), SCHEMA)
    records = [
        decode(csv_record(COLUMNS, row))
        for row, start in zip(rows, starts, strict=True)
        if start not in refused
    ]
    assert lib_ns.track_many(records).rejected == []
    assert snapshot(embedded_client, cli_ns.namespace) == snapshot(
        embedded_client, lib_ns.namespace
    )
