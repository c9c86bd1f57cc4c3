"""The Python examples of docs/ingest.md and of the SDK section of docs/http.md, run as written
(in a process each, as a user would) against a server started here: what they send is recorded."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bitstat
from bitstat.web import ServerConfig
from webserver import running

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "ingest.md"
HTTP_SECTION = "## From the Segment, RudderStack and PostHog SDKs"
EXAMPLE_HOST = "http://127.0.0.1:8600"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def http_block() -> str:
    page = (ROOT / "docs" / "http.md").read_text()
    section = page.split(HTTP_SECTION, 1)[1].split("\n#", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "the SDK section of docs/http.md has no Python example"
    return found.group(1)


@pytest.fixture
def server(embedded_url: str, namespace: str) -> Iterator[tuple[str, bitstat.Stats]]:
    schema = bitstat.Schema(ids="map", count=["plan", "$current_url", "$set.plan"], sum=["amount"])
    st = bitstat.connect(embedded_url, namespace=namespace, schema=schema)
    config = ServerConfig(url=embedded_url, write_token="w", write_keys={"wk_shop": namespace})
    with running(config) as base:
        yield base, st
    st.close()


def test_there_is_an_example_per_python_sdk() -> None:
    blocks = python_blocks()
    assert [re.search(r"^(?:from|import) (\w+)", b, re.M).group(1) for b in blocks] == [  # type: ignore[union-attr]
        "segment",
        "rudderstack",
        "posthog",
    ]
    assert all(EXAMPLE_HOST in block for block in blocks)


@pytest.mark.parametrize("n", range(4))
def test_an_example_records_what_it_sends(server: tuple[str, bitstat.Stats], n: int) -> None:
    base, st = server
    code = (python_blocks()[n] if n < 3 else http_block()).replace(EXAMPLE_HOST, base)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    today = datetime.now(UTC)
    days = [(today + timedelta(days=d)).date().isoformat() for d in (-1, 1)]
    assert st.total("purchase", *days) == 1
    assert st.counts("purchase", "plan", *days) == {"pro": 1}
    assert st.sums("purchase", "amount", *days) == 19.5
    if n == 2:
        assert st.counts("$set", "$set.plan", *days) == {"pro": 1}
        assert st.counts("$pageview", "$current_url", *days) == {"https://x/docs": 1}
