"""Redis users, as a careful operator sets them up: a password in the URL is never shown (errors,
the CLI's output, `bitstat serve`'s banner and log), nor a token or write key; the ACL rules of
docs/operations.md#redis-users open every door of bitstat, and each command they name is one
bitstat calls; a refusal says what is missing. On a server of the module's own, and on the
session's cluster."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import bitstat
import bitstat.aio
import servers
from bitstat.cli import main as cli
from bitstat.cli.main import Settings
from bitstat.store import ACL_NEEDS
from bitstat.web import ServerConfig, create_app
from faultservers import Server

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent

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


# the ACL rules of the docs, and what a test does as their user


def documented_rules() -> list[str]:
    """The `ACL SETUSER` lines of docs/operations.md: the user's, then a cluster's additions."""
    text = (ROOT / "docs" / "operations.md").read_text("utf-8")
    return re.findall(r"^ACL SETUSER .*$", text, re.M)


def set_user(client: Any, rule: str, namespace: str, *more: str) -> None:
    """A documented rule set on the server, for `namespace` (the docs' `shop`), `more` added."""
    words = rule.replace("{shop", "{" + namespace).replace(">PASSWORD", f">{PASSWORD}").split()
    assert words[:2] == ["ACL", "SETUSER"] and words[2] == "bitstat-shop"
    client.execute_command(*words, *more)


def refused(client: Any, user: str) -> set[tuple[str, str]]:
    """What the server's ACL refused `user`, as (reason, object)."""
    log = client.acl_log()
    return {(str(e["reason"]), str(e["object"])) for e in log if e["username"] == user}


# a script's call of a command named in its text, or chosen of two as it runs
CALL = re.compile(r"redis\.p?call\(['\"]([A-Za-z_]+)")
CHOSEN = re.compile(r"redis\.p?call\([^'\",]* and '([A-Z_]+)' or '([A-Z_]+)'")


def script_commands() -> set[str]:
    """The commands bitstat's Lua scripts call, in ACL's spelling (lower case)."""
    found: set[str] = set()
    for script in (ROOT / "src" / "bitstat" / "scripts").glob("*.lua"):
        text = script.read_text("utf-8")
        named, chosen = CALL.findall(text), CHOSEN.findall(text)
        assert len(named) + len(chosen) == len(re.findall(r"redis\.p?call\(", text)), script
        found |= set(named) | {c for pair in chosen for c in pair}
    return {c.lower() for c in found}


T = datetime(2026, 11, 3, 12, tzinfo=UTC)
SCHEMA = bitstat.Schema(
    ids="map",
    periods=("day", "week", "month", "year"),
    count=["country"],
    sum=["amount"],
    top=["item"],
    unique=["ip"],
    approx=["session"],
    segment=["country"],
)


def every_door(url: str, namespace: str, tmp_path: Path) -> dict[str, Any]:
    """Every way in to bitstat, as the user of `url`: connect, each write, each read, alias,
    forget, asyncio, the CLI, `bitstat serve` (its SDK routes too) and drop. The answers."""
    import pandas as pd

    buy = {"event": "buy", "time": T, "amount": 2, "item": "x", "country": "DE"}
    with bitstat.connect(url, namespace=namespace, schema=SCHEMA) as st:
        st.track("visit", user="u1", time=T, country="NL", ip="1.1.1.1", session="s1")
        st.track_many([{**buy, "user": f"u{i}"} for i in range(3)], batch_id="b1")
        with st.tracker() as tracker:
            tracker.track({"event": "visit", "user": "u2", "time": T, "ip": "2.2.2.2"})
        st.track_frame(pd.DataFrame({"event": ["visit"], "user": ["u3"], "time": [T]}))
        st.alias("anon-1", "u1")
        # a period added, an expiry set: both reach the keys already written
        st.configure(replace(SCHEMA, periods=("hour", *SCHEMA.periods), expire={"day": "3650d"}))
        month = st.actors("visit").month(2026, 11)
        answers: dict[str, Any] = {
            "unique": st.unique("visit", "2026-11"),
            "total": st.total("visit", "2026-11"),
            "series": st.series("visit", "2026-11-02", "2026-11-03", by="day"),
            "counts": st.counts("buy", "country", "2026-11"),
            "sums": st.sums("buy", "amount", "2026-11"),
            "top": st.top("buy", "item", "2026-11"),
            "distinct": [st.distinct("visit", p, "2026-11") for p in ("ip", "session")],
            "both": sorted((month & st.actors("buy", country="DE").month(2026, 11)).ids()),
            "funnel": st.funnel(["visit", "buy"], "2026-11-01", "2026-11-30"),
            "retention": [
                (row.cohort, row.size, row.counts)
                for row in st.retention("visit", "buy", start="2026-11-02", periods=1).rows
            ],
            "stickiness": st.stickiness("visit", "2026-11-01", "2026-11-03"),
            "events": st.events(),
        }
        answers["forgotten"] = st.forget("u2").removed > 0

    async def on_asyncio() -> int:
        async with await bitstat.aio.connect(url, namespace=namespace) as st:
            await st.track_many([{"event": "visit", "user": "u4", "time": T}])
            return await st.unique("visit", "2026-11")

    answers["aio"] = asyncio.run(on_asyncio())
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"event": "visit", "user": "u5", "time": "2026-11-03T12:00:00Z"}\n')
    given = ["--url", url, "--namespace", namespace]
    runner = CliRunner()
    answers["cli"] = [
        runner.invoke(cli, [*given, "ingest", str(lines)]).exit_code,
        runner.invoke(cli, [*given, "unique", "visit", "2026-11"]).output,
    ]
    config = ServerConfig(url=url, namespace=namespace, write_keys={"wk": namespace})
    with TestClient(create_app(config)) as client:
        event = {"event": "visit", "distinct_id": "u6", "timestamp": "2026-11-03T12:00:00Z"}
        answers["http"] = [
            client.get("/readyz").json(),
            client.post(
                "/v1/track", json={"event": "visit", "user": "u7", "time": T.isoformat()}
            ).json()["recorded"],
            client.post("/capture/?token=wk", json=event).status_code,
            client.get("/v1/unique", params={"event": "visit", "start": "2026-11"}).json(),
            client.delete("/v1/actors/u7").json()["found"],
            "bitstat_redis_up 1" in client.get("/metrics").text,
        ]
    with bitstat.connect(url, namespace=namespace) as st:
        answers["dropped"] = st.drop() > 0
    return answers


EVERY_DOOR = {
    "unique": 3,
    "total": 3,
    "series": [("2026-11-02", 0), ("2026-11-03", 3)],
    "counts": {"DE": 3},
    "sums": 6.0,
    "top": [("x", 3)],
    "distinct": [2, 1],
    "both": ["u1", "u2"],
    "funnel": [("visit", 3), ("buy", 2)],
    "retention": [("2026-W45", 3, [2])],
    "stickiness": {1: 3, 2: 0, 3: 0},
    "events": ["buy", "visit"],
    "forgotten": True,
    "aio": 3,
    "cli": [0, "4\n"],
    "http": [{"status": "ready"}, 1, 200, {"unique": 6}, True, True],
    "dropped": True,
}


def test_the_documented_acl_rule_opens_every_door_and_names_only_what_is_used(
    acl_server: Server, tmp_path: Path
) -> None:
    rule = documented_rules()[0]
    admin = acl_server.client()
    set_user(admin, rule, "shop")
    admin.acl_log_reset()
    admin.config_resetstat()
    admin.script_flush()  # (the user loads them: a server restarted since, SCRIPT FLUSH)
    url = f"redis://bitstat-shop:{PASSWORD}@127.0.0.1:{acl_server.port}/0"
    assert every_door(url, "shop", tmp_path) == EVERY_DOOR
    # refused only what bitstat goes on without (docs: "each refusal is an entry of ACL LOG")
    assert refused(admin, "bitstat-shop") == {("command", "client|setinfo"), ("command", "info")}
    # and nothing more than needed: each command of the rule is one bitstat called, or one a
    # script of it calls (some on paths no test here takes)
    named = {w[1:] for w in rule.split() if w.startswith("+")}
    called = {name.removeprefix("cmdstat_") for name in admin.info("commandstats")}
    assert script_commands() <= named
    assert named - called - script_commands() == set()
    admin.close()


def test_the_documented_rules_open_a_cluster_and_a_refusal_says_what_is_missing(
    cluster: servers.Cluster,
) -> None:
    user_rule, cluster_rule = documented_rules()
    ns = f"acl-{uuid.uuid4().hex[:8]}"
    nodes = [cluster.node(i) for i in range(cluster.masters)]
    url = f"redis+cluster://bitstat-shop:{PASSWORD}@127.0.0.1:{cluster.ports[0]}"
    try:
        for node in nodes:  # (a cluster's users are each node's own)
            node.acl_log_reset()
            set_user(node, user_rule, ns)
            set_user(node, cluster_rule, ns)
        with bitstat.connect(url, namespace=ns, schema=bitstat.Schema(ids="map")) as st:
            events = [{"event": "visit", "user": f"u{i}", "time": T} for i in range(50)]
            assert st.track_many(events).recorded == 50
            assert st.unique("visit", "2026-11") == 50
            assert st.forget("u7").ids == ["u7"]
            assert st.unique("visit", "2026-11") == 49
            assert st.drop() > 0
        seen = set().union(*(refused(node, "bitstat-shop") for node in nodes))
        assert seen == {("command", "client|setinfo"), ("command", "info")}
        # without what the cluster's rule adds, the client says which command it lacks, not
        # redis-py's "Cluster mode is not enabled on this node"
        for node in nodes:
            node.execute_command("ACL", "SETUSER", "bitstat-shop", "-cluster|slots")
        for connecting in (bitstat.connect, bitstat.aio.connect):
            with pytest.raises(bitstat.ConnectionError) as caught:
                opened = connecting(url, namespace=ns)
                if asyncio.iscoroutine(opened):
                    asyncio.run(opened)
            assert str(caught.value) == (
                f"connecting to redis+cluster://bitstat-shop:***@127.0.0.1:{cluster.ports[0]}:"
                f" User bitstat-shop has no permissions to run the 'cluster|slots' command;"
                f" {ACL_NEEDS}"
            )
    finally:
        for node in nodes:
            node.execute_command("ACL", "DELUSER", "bitstat-shop")
            node.close()


def test_a_user_that_may_only_read_is_told_reads_write_too(acl_server: Server) -> None:
    admin = acl_server.client()
    with bitstat.connect(acl_server.url, namespace="ro") as st:
        st.track_many([{"event": "visit", "user": 1, "time": T}])
    admin.execute_command(
        "ACL", "SETUSER", "reader", "on", f">{PASSWORD}", "resetkeys", "%R~{ro}*", "%R~{ro:*",
        "-@all", "+@read", "+eval", "+evalsha", "+script|load", "+script|exists", "+ping",
    )  # fmt: skip
    url = f"redis://reader:{PASSWORD}@127.0.0.1:{acl_server.port}/0"
    with bitstat.connect(url, namespace="ro") as st, pytest.raises(bitstat.ServerError) as caught:
        st.unique("visit", "2026-11")
    said = str(caught.value)
    assert said.endswith(f": No permissions to access a key; {ACL_NEEDS}"), said
    assert (caught.value.transient, caught.value.refused) == (False, True)
    admin.close()


def test_a_batch_whose_wait_is_refused_after_its_writes_may_have_landed(
    acl_server: Server,
) -> None:
    admin = acl_server.client()
    set_user(admin, documented_rules()[0], "shop")  # (no +wait: durability="replicated" needs it)
    url = f"redis://bitstat-shop:{PASSWORD}@127.0.0.1:{acl_server.port}/0?durability=replicated"
    with bitstat.connect(url, namespace="shop") as st:
        with pytest.raises(bitstat.BatchError) as caught:
            st.track_many([{"event": "wait", "user": 1, "time": T}], batch_id="w-1")
        assert caught.value.may_have_landed  # (the script ran before WAIT was refused)
        assert "no permissions to run the 'wait' command" in str(caught.value)
        assert "some or all of it may have been recorded" in str(caught.value)
    with bitstat.connect(acl_server.url, namespace="shop") as st:
        assert st.total("wait", "2026-11") == 1
        again = st.track_many([{"event": "wait", "user": 1, "time": T}], batch_id="w-1")
        assert (again.recorded, st.total("wait", "2026-11")) == (0, 1)  # under its id: once
        st.drop()
    admin.close()


def test_consume_with_the_documented_keys_and_a_refusal_as_one_line(acl_server: Server) -> None:
    admin = acl_server.client()
    stream = f"orders-{uuid.uuid4().hex[:6]}"
    admin.xadd(stream, {"data": '{"event": "order", "user": 1, "time": "2026-11-03T12:00:00Z"}'})
    rule = documented_rules()[0]
    streams = ["+xreadgroup", "+xack", "+xautoclaim", "+xclaim", "+xgroup|create", "+xpending"]
    set_user(admin, rule, "shop", f"~{stream}", *streams)
    url = f"redis://bitstat-shop:{PASSWORD}@127.0.0.1:{acl_server.port}/0"
    consume = ["--url", url, "--namespace", "shop", "consume", stream, "--stop-when-idle", "0.2"]
    result = CliRunner().invoke(cli, [*consume, "--block", "100"])
    assert (result.exit_code, result.output) == (
        1,
        f"Error: consuming the stream {stream!r}: the server answered with an error:"
        f" No permissions to access a key; {ACL_NEEDS}\n",
    )
    notes = f"~{stream}:bitstat-batches:*"  # (the docs' pattern of the stream's notes)
    set_user(admin, rule, "shop", f"~{stream}", notes, *streams)
    result = CliRunner().invoke(cli, [*consume, "--block", "100"])
    assert result.output.splitlines()[-1] == (
        '{"recorded": 1, "rejected": 0, "batches": 1, "taken_again": 0}'
    )
    admin.close()
