"""Redis users, as a careful operator sets them up: a password in the URL is never shown (errors,
the CLI's output), on a server of the module's own with ACL users."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

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
