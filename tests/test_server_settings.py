"""A server that may delete bitstat's keys when full is named at connect(): a warning in the
log, once per server and process (docs/cluster.md, "Server settings that matter").

A policy other than noeviction, with a memory limit, deletes keys once the limit is reached:
answers drawn from them come out low without any error. Managed services often default to
such a policy, so the user is told at once rather than finding out from wrong numbers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

import bitstat
import bitstat.aio as aio
from bitstat import ops
from faultservers import Server

MB = 2**20


@contextmanager
def settings(client: redis.Redis, policy: str, limit: int) -> Iterator[None]:
    """The server's memory policy and limit set for the block, then the defaults again."""
    client.config_set("maxmemory", limit)
    client.config_set("maxmemory-policy", policy)
    try:
        yield
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 0)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]


@pytest.fixture(autouse=True)
def nothing_warned_yet() -> Iterator[None]:
    ops.EVICTION_WARNED.clear()
    yield
    ops.EVICTION_WARNED.clear()


@pytest.mark.parametrize(
    ("policy", "limit", "warned"),
    [
        ("allkeys-lru", 512 * MB, True),
        ("volatile-ttl", 512 * MB, True),  # batch markers and expiring buckets have a TTL
        ("noeviction", 512 * MB, False),
        ("allkeys-lru", 0, False),  # no limit: nothing is ever evicted
    ],
)
def test_connect_warns_of_a_policy_that_evicts_once_per_server(
    fault_server: Server,
    caplog: pytest.LogCaptureFixture,
    namespace: str,
    policy: str,
    limit: int,
    warned: bool,
) -> None:
    client = redis.Redis.from_url(fault_server.url)
    with settings(client, policy, limit), caplog.at_level(logging.WARNING, logger="bitstat"):
        for _ in range(3):  # (a web app may connect per request: told once)
            with bitstat.connect(fault_server.url, namespace=namespace) as st:
                st.track({"event": "visit", "user": 1, "time": "2026-11-02"})
        found = warnings_of(caplog)
    assert len(found) == warned
    if warned:
        assert f"maxmemory-policy is {policy}" in found[0]
        assert "set maxmemory-policy to noeviction" in found[0].lower()
    client.close()


def test_async_connect_warns_too(
    fault_server: Server, caplog: pytest.LogCaptureFixture, namespace: str
) -> None:
    async def connect() -> None:
        st = await aio.connect(fault_server.url, namespace=namespace)
        await st.close()

    client = redis.Redis.from_url(fault_server.url)
    with settings(client, "allkeys-random", 64 * MB), caplog.at_level(logging.WARNING):
        asyncio.run(connect())
    assert ["allkeys-random" in w for w in warnings_of(caplog)] == [True]
    client.close()


def test_a_server_that_refuses_info_is_not_checked_and_connect_works(
    fault_server: Server, caplog: pytest.LogCaptureFixture, namespace: str
) -> None:
    client = redis.Redis.from_url(fault_server.url)
    client.acl_setuser(
        "no-info", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-info"]
    )
    url = fault_server.url.replace("redis://", "redis://no-info:pw@")
    try:
        with (
            settings(client, "allkeys-lru", 512 * MB),
            caplog.at_level(logging.WARNING),
            bitstat.connect(url, namespace=namespace) as st,
        ):
            st.track_many([{"event": "visit", "user": 1, "time": "2026-11-02"}])
            assert st.unique("visit", "2026-11-02") == 1
        assert warnings_of(caplog) == []
    finally:
        client.acl_deluser("no-info")
        client.close()


def test_a_cluster_master_that_evicts_is_named(
    cluster: object, cluster_url: str, caplog: pytest.LogCaptureFixture, namespace: str
) -> None:
    node = cluster.node(2)  # type: ignore[attr-defined]
    # (a limit this test never reaches)
    with settings(node, "volatile-lru", 8192 * MB), caplog.at_level(logging.WARNING):
        bitstat.connect(cluster_url, namespace=namespace).close()
    assert ["volatile-lru" in w for w in warnings_of(caplog)] == [True]
    node.close()


def test_the_warning_names_every_policy_that_evicts() -> None:
    nodes = [("a", "noeviction", 0), ("b", "allkeys-lru", MB), ("c", "volatile-lfu", MB)]
    warning = ops.eviction_warning(nodes)
    assert warning is not None and "allkeys-lru and volatile-lfu" in warning
    assert ops.eviction_warning([("a", "noeviction", MB), ("b", "allkeys-lru", 0)]) is None
