"""`bitstat serve` start-up, and the probes /healthz and /readyz.

What can fail at start (the server, the address) is told in one line before any banner; with
`--port 0` the banner shows the port bound; /readyz says whether Redis can be used right now.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

import bitstat
import servers
from bitstat.cli import main
from bitstat.web import ServerConfig, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NO_TOKENS = {"BITSTAT_READ_TOKEN": "", "BITSTAT_WRITE_TOKEN": ""}


def _closed_port() -> int:
    """A loopback port nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_serve_with_an_unreachable_server_says_so_in_one_line() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    result = CliRunner().invoke(main, ["--url", url, "serve", "--port", "0"], env=NO_TOKENS)
    assert result.exit_code != 0
    assert result.output.count("\n") == 1, result.output  # one line, no banner, no traceback
    assert result.output.startswith("Error: connecting to ")
    assert "cannot reach the server" in result.output
    assert "bitstat serve:" not in result.output


def test_serve_on_a_busy_port_says_so_in_one_line(embedded_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["--url", embedded_url, "serve", "--port", str(port)], env=NO_TOKENS
        )
    assert result.exit_code != 0
    assert result.output == (
        f"Error: cannot listen on 127.0.0.1:{port}: the address is already in use"
        " (another server? choose another --port)\n"
    )


@pytest.fixture
def served(embedded_url: str, namespace: str) -> Iterator[tuple[str, str]]:
    """(banner, base URL) of `bitstat serve --port 0` running in a process of its own."""
    env = {**os.environ, **NO_TOKENS}
    command = [sys.executable, "-m", "bitstat", "--url", embedded_url, "--namespace", namespace]
    process = subprocess.Popen(
        [*command, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        banner = lines.get(timeout=60)
        match = re.search(r"dashboard http://127\.0\.0\.1:([0-9]+)/", banner)
        assert match is not None, banner
        yield banner, f"http://127.0.0.1:{match.group(1)}"
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_serve_on_port_0_shows_the_port_bound(served: tuple[str, str]) -> None:
    banner, base = served
    assert not base.endswith(":0")
    assert f"API {base}/v1/" in banner
    assert httpx.get(f"{base}/healthz", timeout=30).json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz", timeout=30).json() == {"status": "ready"}


def test_readyz_says_whether_redis_can_be_used(tmp_path: Path) -> None:
    server = servers.EmbeddedServer(tmp_path)
    url = server.start()
    try:
        raw = redis.Redis.from_url(url)
        raw.script_flush()
        with TestClient(create_app(ServerConfig(url=url))) as client:
            shas = [
                s.sha for s in vars(client.app.state.bitstat.store.io).values() if hasattr(s, "sha")
            ]
            assert len(shas) >= 5 and all(raw.script_exists(*shas))  # loaded at start
            raw.script_flush()  # as after a restart: loaded again when asked if ready
            assert client.get("/readyz").json() == {"status": "ready"}
            assert all(raw.script_exists(*shas))
            raw.close()
            server.stop()
            gone = client.get("/readyz")
            assert gone.status_code == 503
            assert gone.json()["status"] == "unavailable"
            assert "cannot reach the server" in gone.json()["error"]
            alive = client.get("/healthz")  # the process still answers
            assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    finally:
        server.stop()


def test_serve_help_names_where_the_sdk_write_keys_come_from() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for said in (
        "BITSTAT_WRITE_KEYS ",
        "BITSTAT_WRITE_KEYS_FILE",
        "--write-keys-file",
        "/v1/batch",
    ):
        assert said in result.output, said
    assert "Segment, RudderStack and PostHog" in result.output


def test_serve_with_a_bad_write_keys_file_says_so_in_one_line(
    embedded_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "keys"
    bad.write_text("wk_shop\n")  # no namespace
    for args, env in [
        (["--write-keys-file", str(bad)], NO_TOKENS),
        ([], {**NO_TOKENS, "BITSTAT_WRITE_KEYS_FILE": str(tmp_path / "missing")}),
        ([], {**NO_TOKENS, "BITSTAT_WRITE_KEYS": "wk_shop"}),
    ]:
        result = CliRunner().invoke(
            main, ["--url", embedded_url, "serve", "--port", "0", *args], env=env
        )
        assert result.exit_code != 0
        assert result.output.count("\n") == 1, result.output  # before the banner
        assert result.output.startswith("Error: ")
        assert "KEY" in result.output or "cannot read" in result.output


def test_serve_takes_write_keys_from_a_file_and_the_environment(
    embedded_url: str, namespace: str, tmp_path: Path
) -> None:
    keys = tmp_path / "write-keys"
    keys.write_text(f"# key namespace\nwk_file  {namespace}-f\n")
    env = {**os.environ, **NO_TOKENS, "BITSTAT_WRITE_KEYS": f"wk_env={namespace}-e"}
    command = [sys.executable, "-m", "bitstat", "--url", embedded_url, "--namespace", namespace]
    process = subprocess.Popen(
        [*command, "serve", "--port", "0", "--write-keys-file", str(keys)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(4)]
        match = re.search(r"dashboard http://127\.0\.0\.1:([0-9]+)/", banner[0])
        assert match is not None, banner
        assert f"  2 SDK write key(s), writing to '{namespace}-e', '{namespace}-f'\n" in banner
        base = f"http://127.0.0.1:{match.group(1)}"
        message = {"userId": "u1", "event": "keyed", "timestamp": "2025-11-02T10:00:00Z"}
        for key in ("wk_file", "wk_env"):
            answer = httpx.post(f"{base}/v1/track", json=message, auth=(key, ""), timeout=30)
            assert answer.status_code == 200 and answer.json()["recorded"] == 1, answer.text
        # with keys and no write token, any other key (or none) is refused
        for auth in (("wk_other", ""), None):
            answer = httpx.post(f"{base}/v1/track", json=message, auth=auth, timeout=30)
            assert answer.status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=60)
    for suffix in ("f", "e"):
        with bitstat.connect(embedded_url, namespace=f"{namespace}-{suffix}") as st:
            assert st.total("keyed", "2025-11-02") == 1
            st.drop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_serve_quietly_with_status_0(
    embedded_url: str, namespace: str, workers: str
) -> None:
    """Ctrl-C is how one stops a server run by hand: it shuts down and exits 0, with one process
    as with several (one process said "Aborted!" and exited 1, several exited 0)."""
    command = [sys.executable, "-m", "bitstat", "--url", embedded_url, "--namespace", namespace]
    process = subprocess.Popen(
        [*command, "serve", "--port", "0", "--workers", workers],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **NO_TOKENS},
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        match = re.search(r"dashboard (http://127\.0\.0\.1:[0-9]+)/", banner)
        assert match is not None, banner
        assert httpx.get(f"{match.group(1)}/readyz", timeout=30).status_code == 200
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "Aborted" not in rest and "Traceback" not in rest, rest
