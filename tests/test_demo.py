"""`bitstat demo` as a newcomer runs it: no URL, a fresh data dir, an embedded server started.

It runs in-process through click's CliRunner and as a real `python -m bitstat` subprocess; a
second run must record nothing. The demo's numbers are checked against the sample's own rows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import bitstat
from bitstat import demo, embedded
from bitstat.cli import main

SECTIONS = (
    "Totals, 1 Dec 2010 to 9 Dec 2011",
    "Per month",
    "Top 10 items",
    "Revenue per country (top 10)",
    "Retention of the",
    "Time: loading",
    "Redis memory used:",
)
ENV_VARS = ("BITSTAT_URL", "BITSTAT_NAMESPACE", "BITSTAT_DATA")


@pytest.fixture(scope="module")
def sample() -> demo.Sample:
    return demo.Sample.read()


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh data dir; the embedded server the demo starts there is stopped afterwards."""
    path = tmp_path_factory.mktemp("bitstat-data")
    yield path
    embedded.stop(path)


def newcomer_env(data_dir: Path) -> dict[str, str | None]:
    """No URL, no namespace: only BITSTAT_DATA, pointing at a fresh dir."""
    env: dict[str, str | None] = dict.fromkeys(ENV_VARS)
    env["BITSTAT_DATA"] = str(data_dir)
    env["COLUMNS"] = "80"
    return env


def run_subprocess(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update({k: v for k, v in newcomer_env(data_dir).items() if v is not None})
    return subprocess.run(
        [sys.executable, "-m", "bitstat", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_summary(output: str) -> None:
    for section in SECTIONS:
        assert section in output, f"missing {section!r} in:\n{output}"
    assert "White Hanging Heart T-light Holder" in output
    assert "United Kingdom" in output
    assert re.search(r"bitstat --namespace demo\S* serve", output)  # (to see it on the dashboard)


def test_demo_in_process_then_again(
    data_dir: Path, sample: demo.Sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)  # CliRunner's env only adds; be sure
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--namespace", namespace], env=newcomer_env(data_dir))
    assert first.exit_code == 0, first.output
    assert f"Recorded {len(sample.rows):,} new events." in first.output
    # rich wraps long lines at the terminal width: compare with whitespace squeezed out
    assert f"embedded server, data in {data_dir}" in " ".join(first.output.split())
    assert_summary(first.output)

    second = runner.invoke(main, ["demo", "--namespace", namespace], env=newcomer_env(data_dir))
    assert second.exit_code == 0, second.output
    assert "already loaded: 0 new events" in second.output
    assert "events/s)," in first.output and "events/s read)," in second.output  # (none recorded)
    assert_summary(second.output)
    # the tables of both runs are the same, only the timings differ
    tables = [o.split("Totals,")[1].split("Time:")[0] for o in (first.output, second.output)]
    assert tables[0] == tables[1]


def test_demo_as_a_subprocess_then_again(data_dir: Path, sample: demo.Sample) -> None:
    first = run_subprocess(data_dir, "demo")
    assert first.returncode == 0, first.stderr
    assert "into namespace demo" in first.stdout
    assert f"Recorded {len(sample.rows):,} new events." in first.stdout
    assert_summary(first.stdout)
    assert (data_dir / "bitstat.url").exists()  # the embedded server lives in the data dir

    second = run_subprocess(data_dir, "demo")
    assert second.returncode == 0, second.stderr
    assert "already loaded: 0 new events" in second.stdout


def test_summary_matches_the_sample_rows(embedded_url: str, namespace: str) -> None:
    sample = demo.Sample.read()
    st = bitstat.connect(embedded_url, namespace=namespace, schema=demo.SCHEMA)
    loaded = demo.load(st, sample.events(), "test", batch_size=7_000)
    assert (loaded.recorded, loaded.rejected) == (len(sample.rows), [])
    start, end = sample.span()
    assert (start, end) == (date(2010, 12, 1), date(2011, 12, 9))
    s = demo.summarise(st, start, end, sample.items)

    buys = [r for r in sample.rows if not r["InvoiceNo"].startswith("C")]
    customers: dict[str, set[str]] = {}
    for r in buys:
        if r["CustomerID"]:
            customers.setdefault(r["InvoiceDate"][:7], set()).add(r["CustomerID"])
    assert [(m.label, m.customers) for m in s.months] == [
        (month, len(ids)) for month, ids in sorted(customers.items())
    ]
    assert [m.lines for m in s.months] == list(Counter(r["InvoiceDate"][:7] for r in buys).values())
    assert s.purchases == len(buys)
    assert s.cancels == len(sample.rows) - len(buys)
    assert s.invoices == len({r["InvoiceNo"] for r in buys})
    assert s.customers == len({r["CustomerID"] for r in buys if r["CustomerID"]})
    expected_items = Counter(r["StockCode"] for r in buys)
    ranked = sorted(expected_items.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [(code, n) for code, _, n in s.top_items] == ranked
    assert s.top_items[0][1] == "WHITE HANGING HEART T-LIGHT HOLDER"
    cohort = customers["2010-12"]
    assert s.cohort == "2010-12" and s.cohort_size == len(cohort)
    assert s.retention == [
        (month, len(cohort & ids)) for month, ids in sorted(customers.items())[1:]
    ]
    assert s.countries[0].name == "United Kingdom"
    uk = [r for r in buys if r["Country"] == "United Kingdom"]
    assert s.countries[0].lines == len(uk)
    assert s.countries[0].customers == len({r["CustomerID"] for r in uk if r["CustomerID"]})
    st.close()


def test_retail_event_mapping() -> None:
    row = {
        "InvoiceNo": "C536379",
        "StockCode": "D",
        "Quantity": "-1",
        "InvoiceDate": "2010-12-01 09:41:00",
        "UnitPrice": "27.5",
        "CustomerID": "14527.0",
        "Country": "United Kingdom",
    }
    event = demo.retail_event(row)
    assert event["event"] == "cancel"
    assert event["customer"] == 14527
    assert event["amount"] == -27.5
    assert event["time"].isoformat() == "2010-12-01T09:41:00"  # naive: the schema's zone applies
    anonymous = demo.retail_event({**row, "InvoiceNo": "536380", "CustomerID": ""})
    assert anonymous["event"] == "purchase" and "customer" not in anonymous
    cents = demo.retail_event({**row, "Quantity": "3", "UnitPrice": "0.1"})
    assert cents["amount"] == 0.3


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    paths = list(_commands(main))
    assert ("demo",) in paths
    for path in paths:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example:" in result.output, f"bitstat {' '.join(path)} --help has no example"
        example = result.output.split("Example:")[1]
        assert f"bitstat {' '.join(path)}".strip() in example


def test_python_dash_m_bitstat_works(tmp_path: Path) -> None:
    result = run_subprocess(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: bitstat" in result.stdout and "demo" in result.stdout


def test_errors_are_messages_not_tracebacks(data_dir: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(main, ["--url", "redis://127.0.0.1:1", "demo"])
    assert refused.exit_code == 1
    assert "Error: connecting to redis://127.0.0.1:1: cannot reach the server" in refused.output
    assert "Traceback" not in refused.output

    url = embedded.ensure_server(data_dir)
    bitstat.connect(url, namespace="taken", schema=bitstat.Schema()).close()
    clash = runner.invoke(main, ["--url", url, "demo", "--namespace", "taken"])
    assert clash.exit_code == 1
    assert "already holds data with another schema" in clash.output
    assert "--namespace" in clash.output
