"""Redis users, as a careful operator sets them up: a password in the URL is never shown (errors,
the CLI's output, `bitstat serve`'s banner and log), nor a token or write key; on a server of
the module's own with ACL users."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import bitstat
import bitstat.aio
from bitstat.cli import main as cli
from bitstat.cli.main import Settings
from faultservers import Server

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(Path(tmp_path_factory.mktemp("acl"))).start()
    client = started.client()
    client.acl_setuser("ada", enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"],
                       commands=["+@all"])  # fmt: skip
    client.close()
    yield started
    started.stop()


@pytest.mark.parametrize(
    "address",
    [
        "redis://ada:{pw}-not@127.0.0.1:{port}/0",  # refused credentials
        "redis://ada@127.0.0.1:{port}/0?password={pw}-not",
        "redis://ada:{pw}@127.0.0.1:1/0",  # nothing listens
        "redis+cluster://ada:{pw}@127.0.0.1:1",
        "unknown://ada:{pw}@127.0.0.1:1",
    ],
)
def test_a_password_in_the_url_is_never_in_a_connection_error(
    acl_server: Server, address: str
) -> None:
    url = address.format(pw=PASSWORD, port=acl_server.port)
    with pytest.raises(bitstat.ConnectionError) as blocking:
        bitstat.connect(url, namespace="n", timeout=5)
    with pytest.raises(bitstat.ConnectionError) as on_asyncio:
        asyncio.run(bitstat.aio.connect(url, namespace="n", timeout=5))
    for said in (str(blocking.value), str(on_asyncio.value)):
        assert PASSWORD not in said
        assert "ada:***@" in said or "password=***" in said


def test_the_cli_never_shows_the_password(acl_server: Server) -> None:
    url = f"redis://ada:{PASSWORD}@127.0.0.1:{acl_server.port}/0"
    assert Settings(url, "n", None).server() == f"redis://ada:***@127.0.0.1:{acl_server.port}/0"
    result = CliRunner().invoke(cli, ["--url", url.replace(PASSWORD, PASSWORD + "x"), "events"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: connecting to redis://ada:***@127.0.0.1:{acl_server.port}/0: the server refused"
        " the credentials: invalid username-password pair or user is disabled.\n"
    )


def test_serve_shows_no_password_token_or_write_key_at_debug(acl_server: Server) -> None:
    url = f"redis://ada:{PASSWORD}@127.0.0.1:{acl_server.port}/0"
    secrets = {
        "BITSTAT_READ_TOKEN": "read-tok-0a1b2c",
        "BITSTAT_WRITE_TOKEN": "write-tok-3d4e5f",
        "BITSTAT_WRITE_KEYS": "wk-6a7b8c=served",
    }
    command = [sys.executable, "-m", "bitstat", "--url", url, "--namespace", "served", "serve"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--log-level", "debug"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **secrets},
    )
    assert process.stdout is not None
    try:
        banner = process.stdout.readline()
        port = re.search(r"127\.0\.0\.1:([0-9]+)/", banner)
        assert port is not None, banner
        base = f"http://127.0.0.1:{port[1]}"
        event = {"event": "visit", "distinct_id": "d1", "timestamp": "2026-11-03T10:00:00Z"}
        sent = [
            httpx.post(f"{base}/capture/?token=wk-6a7b8c", json=event),
            httpx.post(f"{base}/e/?%74oken=wk-6a7b8c&ver=1", json=event),
            httpx.post(f"{base}/beacon/v1/batch?writeKey=wk-6a7b8c", json={"batch": []}),
            httpx.get(f"{base}/v1/events", headers={"Authorization": "Bearer read-tok-0a1b2c"}),
            httpx.get(f"{base}/v1/events", headers={"Authorization": "Bearer write-tok-3d4e5f"}),
        ]
        assert [r.status_code for r in sent] == [200, 200, 200, 200, 401]
    finally:
        process.terminate()
        stuck = threading.Timer(60, process.kill)  # (read() waits for the process's end)
        stuck.start()
        output = process.stdout.read()
        stuck.cancel()
        process.wait()
    said = banner + output
    for secret in (PASSWORD, *secrets.values(), "wk-6a7b8c"):
        assert secret not in said
    assert f"data: redis://ada:***@127.0.0.1:{acl_server.port}/0, namespace 'served'" in said
    for line in ("/capture/?token=***", "/e/?%74oken=***&ver=1", "/beacon/v1/batch?writeKey=***"):
        assert f'"POST {line} HTTP/1.1" 200 OK' in said
