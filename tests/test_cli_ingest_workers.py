"""`bitstat ingest --workers N`: the same batches, batch ids, answers and report as one worker,
in every input format; a re-run with any N records nothing; Ctrl-C stops every process and a
re-run records the rest once. And the reader under it: a JSON array is streamed, not read whole.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bitstat
from bitstat.cli import read as cli_read
from bitstat.cli.read import Decoder, FieldMap, _JsonArray
from test_cli import SCHEMA, Cli, csv_text, json_array, jsonl, make_namespace, shop_events

START, END = "2026-11-01", "2026-11-30"


@pytest.fixture
def pair(embedded_url: str) -> Iterator[tuple[Cli, Cli]]:
    """Two fresh namespaces with the shop schema: one for --workers 1, one for more."""
    clis = (Cli(embedded_url, make_namespace()), Cli(embedded_url, make_namespace()))
    for cli in clis:
        bitstat.connect(embedded_url, namespace=cli.namespace, schema=SCHEMA).close()
    yield clis
    for cli in clis:
        with cli.stats() as st:
            st.drop()


def answers(cli: Cli) -> dict[str, Any]:
    """Every kind of answer the shop schema records, per event name, over November."""
    out: dict[str, Any] = {}
    with cli.stats() as st:
        for name in st.events():
            out[name] = {
                "total": st.total(name, START, END),
                "unique": st.unique(name, START, END),
                "unique NL": st.unique(name, START, END, country="NL"),
                "counts": st.counts(name, "country~platform", START, END),
                "sums": st.sums(name, "amount", START, END, by="country"),
                "top": st.top(name, "item", START, END, limit=20),
                "distinct": st.distinct(name, "ip", START, END),
            }
    return out


def same_answers(one: Cli, two: Cli) -> None:
    first, second = answers(one), answers(two)
    for said in first.values():
        # batches are added in another order: sums equal up to rounding
        said["sums"] = pytest.approx(said["sums"], rel=1e-12)
    assert second == first


def report(cli: Cli, path: Path, *options: str) -> tuple[int, dict[str, Any]]:
    result = cli("ingest", str(path), "--no-progress", "-f", "json", *options)
    said = json.loads(result.stdout)
    del said["seconds"]
    return result.exit_code, said


def with_bad_lines(events: list[dict[str, Any]]) -> list[Any]:
    """The events with, every so often, a line the reader refuses or the library rejects."""
    rng = random.Random(11)
    out: list[Any] = []
    for e in events:
        out.append(e)
        if rng.random() < 0.06:
            out.append(rng.choice([{**e, "user": -1}, {**e, "user": "x"}, [1, 2], "text"]))
    return out


def write(path: Path, kind: str, events: list[dict[str, Any]]) -> None:
    items = with_bad_lines(events)
    if kind in ("csv", "tsv"):
        rows = [e if isinstance(e, dict) else {"event": str(e)} for e in items]
        text = csv_text(rows, "\t" if kind == "tsv" else ",")
        lines = text.splitlines(keepends=True)
        lines[5] = "visit,1\n"  # too few fields
        path.write_text("".join(lines))
        return
    if kind == "json":
        path.write_text(json_array(items).replace(", ", ",\n  "))  # elements over many lines
        return
    lines = [json.dumps(e) for e in items]
    lines[3] = lines[3][:-1]  # invalid JSON
    text = "\ufeff" + "\n".join(lines) + "\n\n"  # a byte order mark first, a blank line last
    if kind == "jsonl.gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "json", "csv", "tsv"])
def test_two_workers_answer_and_report_as_one(
    pair: tuple[Cli, Cli], tmp_path: Path, kind: str
) -> None:
    one, two = pair
    path = tmp_path / f"events.{kind}"
    write(path, kind, shop_events(900, seed=3))
    status, single = report(one, path, "--batch-size", "37")
    assert status == 2 and single["rejected"] and single["recorded"] > 800, single
    assert (status, single) == report(two, path, "--batch-size", "37", "--workers", "2")
    same_answers(one, two)

    # the same batch ids, whatever the number of workers: nothing is recorded twice
    status, again = report(one, path, "--batch-size", "37", "--workers", "3")
    assert status == 2 and again["recorded"] == 0
    assert again["seen_before"] == single["recorded"] + single["seen_before"]
    assert again["rejected"] == single["rejected"]
    assert report(two, path, "--batch-size", "37")[1] == again
    same_answers(one, two)


def test_time_format_refusals_with_workers(pair: tuple[Cli, Cli], tmp_path: Path) -> None:
    """The parent decides which lines make events before a worker decodes them: a time that
    does not match --time-format is refused there, so batches are the same as with one."""
    one, two = pair
    rng = random.Random(5)
    lines = ["kind,customer,when,country,item"]
    for i in range(400):
        when = f"{rng.randint(1, 28):02d}/11/2026 {rng.randrange(24):02d}:00"
        if i % 23 == 0:
            when = rng.choice(["2026-11-02", "yesterday", "31/02/2026 10:00"])
        lines.append(f"visit,{rng.randrange(50)},{when},{rng.choice(['NL', 'DE'])},sku-{i % 5}")
    path = tmp_path / "orders.csv"
    path.write_text("\n".join(lines) + "\n")
    options = ["--event", "kind", "--actor", "customer", "--time", "when", "--batch-size", "9"]
    options += ["--time-format", "%d/%m/%Y %H:%M"]
    status, single = report(one, path, *options)
    assert status == 2 and len(single["rejected"]) == 18, single
    assert (status, single) == report(two, path, *options, "--workers", "2")
    same_answers(one, two)


def test_the_text_id_hint_with_workers(embedded_url: str, tmp_path: Path) -> None:
    cli = Cli(embedded_url, make_namespace())
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl([{"event": "visit", "user": f"u-{i}"} for i in range(30)]))
    try:
        result = cli("ingest", str(path), "--no-progress", "--workers", "2", "--batch-size", "4")
        assert result.exit_code == 2
        assert "30 events had a text actor id (such as 'u-0')" in " ".join(result.stderr.split())
    finally:
        with cli.stats() as st:
            st.drop()


def test_workers_option(pair: tuple[Cli, Cli], tmp_path: Path) -> None:
    one, _ = pair
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl(shop_events(50)))
    assert one("ingest", str(path), "--workers", "auto").exit_code == 0
    for bad in ("0", "-1", "many"):
        result = one("ingest", str(path), "--workers", bad)
        assert result.exit_code == 2 and "--workers" in result.output, result.output


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_stops_every_worker_and_a_rerun_records_the_rest(
    embedded_url: str, tmp_path: Path, stop: str
) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM to the main
    process (as a service manager sends it) stops every worker and removes the temporary
    files (SIGTERM left them, killing the process where it stood); a re-run records the rest."""
    cli = Cli(embedded_url, make_namespace())
    schema = bitstat.Schema(ids="map", count=["country"], top=["item"], segment=["country"])
    bitstat.connect(embedded_url, namespace=cli.namespace, schema=schema).close()
    events = [
        {**e, "user": f"user-{e['user']}-{i % 997}"} for i, e in enumerate(shop_events(40_000))
    ]
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl(events))
    command = [sys.executable, "-m", "bitstat", "--url", cli.url, "--namespace", cli.namespace]
    command += ["ingest", str(path), "--workers", "2", "--batch-size", "500", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITSTAT_")}
    temp = tmp_path / "tmp"
    temp.mkdir()
    env["TMPDIR"] = str(temp)
    # a session of its own: Ctrl-C in a terminal reaches every process of the group
    run = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        with cli.stats() as st:
            deadline = time.monotonic() + 60
            while not st.events() and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        assert run.poll() is None, "the run ended before it could be interrupted"
        assert list(temp.glob("bitstat-ingest-*"))  # (its spool, while it runs)
        if stop == "ctrl-c":
            os.killpg(run.pid, signal.SIGINT)
        else:
            os.kill(run.pid, signal.SIGTERM)
        _, stderr = run.communicate(timeout=30)
        assert run.returncode == 130, stderr
        assert stderr.decode().endswith(
            "Interrupted: the batches recorded so far stay recorded. Run the same command again"
            " to record the rest: nothing is recorded twice.\n"
        ), stderr
        assert not list(temp.glob("bitstat-ingest-*"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(run.pid, 0)  # a worker of the group still runs
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("workers still run after Ctrl-C")

        said = json.loads(cli.ok("ingest", str(path), "--batch-size", "500", "-f", "json"))
        assert 0 < said["seen_before"] < len(events)
        assert said["recorded"] + said["seen_before"] == len(events)
        with cli.stats() as st:
            totals = Counter(e["event"] for e in events)
            assert {name: st.total(name, START, END) for name in totals} == dict(totals)
            for name in totals:
                users = {e["user"] for e in events if e["event"] == name}
                assert st.unique(name, START, END) == len(users)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        with cli.stats() as st:
            st.drop()


# the reader: Decoder.refusal and the streamed JSON array


@pytest.mark.parametrize(
    "fields",
    [
        FieldMap(),
        FieldMap(time_format="epoch"),
        FieldMap(time_format="epoch-ms", time="ts"),
        FieldMap(time_format="%Y-%m-%d", time="ts", event="ts"),
        FieldMap(time_format="%Y-%m-%d", time="ts", actor="ts", event_name="x"),
    ],
)
def test_refusal_is_what_decoding_says(fields: FieldMap) -> None:
    rng = random.Random(2)
    values = [None, 17, 1.5e9, "1795339800", "2026-11-02", "02/11/2026", "x", True, float("nan")]
    for _ in range(300):
        record = {
            k: rng.choice(values) for k in ("event", "user", "time", "ts") if rng.random() < 0.8
        }
        before = dict(record)
        decoded = Decoder(fields, SCHEMA)(dict(record))
        refused = Decoder(fields, SCHEMA).refusal(record)
        assert refused == (decoded if isinstance(decoded, str) else None)
        assert record == before


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(6 if depth < 2 else 4)
    if kind == 0:
        return rng.choice([rng.randrange(-(10**12), 10**12), rng.random() * 1e30, -2.5e-7])
    if kind == 1:
        return "".join(
            rng.choice('ab"\\\n\u00e9\U0001f600 ,]}[{') for _ in range(rng.randrange(12))
        )
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.randrange(10)
    if kind == 4:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}": _value(rng, depth + 1) for i in range(rng.randrange(4))}


def _elements(text: str, chunk: int, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setattr(cli_read, "CHUNK", chunk)
    return list(_JsonArray(io.BytesIO(text.encode()), "x").items())


def test_a_json_array_is_read_the_same_in_any_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Elements, their lines, their raw text and every error are the same whether the text
    comes in one piece or a few characters at a time (elements and numbers cut anywhere)."""
    rng = random.Random(7)
    for _ in range(400):
        items = [
            {"event": "e", "v": _value(rng)} if rng.random() < 0.8 else _value(rng)
            for _ in range(rng.randrange(12))
        ]
        text = json.dumps(items, indent=rng.choice([None, 1]), ensure_ascii=rng.random() < 0.5)
        broken = rng.random() < 0.5
        if broken:  # cut short, or a character too many or too few
            at = rng.randrange(len(text))
            text = rng.choice(
                [
                    text[:at],
                    text[:at] + rng.choice('",]}{x:\n') + text[at:],
                    text[:at] + text[at + 1 :],
                ]
            )
        whole = _elements(text, 1 << 20, monkeypatch)
        assert _elements(text, rng.choice([1, 2, 3, 5, 8]), monkeypatch) == whole, text
        if not broken:
            assert [r if isinstance(r, dict) else None for _, r, _ in whole] == [
                x if isinstance(x, dict) else None for x in items
            ]
            assert all(json.loads(raw) == r for _, r, raw in whole if raw is not None)


def test_a_json_array_is_never_held_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A minified array (one line) of 2 MB read in chunks of 4 KiB: the buffer stays near a
    few chunks, and an error near the end still has its line and column."""
    element = json.dumps({"event": "visit", "user": 1, "note": "x" * 150}, separators=(",", ":"))
    count = 2_000_000 // len(element)
    text = "[" + ",".join([element] * count) + ',{"event": oops}]'
    monkeypatch.setattr(cli_read, "CHUNK", 4096)
    array = _JsonArray(io.BytesIO(text.encode()), "x")
    largest, seen = 0, []
    for line, record, _ in array.items():
        largest = max(largest, len(array.buf))
        seen.append((line, record))
    assert largest < 3 * 4096 + len(element)
    assert len(seen) == count + 1 and all(r == json.loads(element) for _, r in seen[:-1])
    column = text.index("oops") + 1
    assert seen[-1] == (
        1,
        f"invalid JSON: Expecting value at column {column}; the rest of the file is not read",
    )
