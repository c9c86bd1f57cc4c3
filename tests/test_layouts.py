"""Namespaces written by an earlier layout keep answering: what they stored is read as it is,
and moved to the new layout as it is met again, never counted twice."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import bitstat
import servers
from bitstat.keys import Keys
from model import Model

SETTINGS: dict[str, Any] = {"ids": "map", "periods": ("day", "month"), "unique": ["ip"]}
DAY = "2026-11-20"


def visits(ips: list[str], hour: int = 9) -> list[dict[str, Any]]:
    t = f"{DAY}T{hour:02d}:00:00Z"
    return [
        {"event": "visit", "user": f"u{i % 7}", "time": t, "ip": ip} for i, ip in enumerate(ips)
    ]


def to_one_hash(client: servers.Client, st: bitstat.Stats, ips: list[str]) -> str:
    """Rewrite the value ids as the layout before buckets kept them: one hash per property."""
    keys = Keys(st.namespace)
    old = keys.value_ids("visit", "ip")
    for ip in ips:
        bucket = keys.value_bucket("visit", "ip", ip)
        found = client.hget(bucket, ip)
        assert found is not None
        client.hset(old, ip, found)
        client.hdel(bucket, ip)
    return old


@pytest.mark.parametrize("batch", [5, 400], ids=["numbered-by-the-write", "numbered-first"])
def test_value_ids_in_the_one_hash_of_before_are_found_and_moved(
    server_url: str, redis_client: servers.Client, batch: int
) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    st = bitstat.connect(server_url, namespace=ns, schema=bitstat.Schema(**SETTINGS))
    model = Model(**SETTINGS)
    first = [f"10.0.{i // 256}.{i % 256}" for i in range(batch)]
    events = visits(first)
    assert st.track_many(events).recorded == model.track_many(events)[0]
    old = to_one_hash(redis_client, st, first)

    # a new process (no ids remembered) sends old values again, and new ones
    st.close()
    st = bitstat.connect(server_url, namespace=ns)
    again = first[: batch // 2] + [f"192.168.{i // 256}.{i % 256}" for i in range(batch)]
    events = visits(again, hour=10)
    assert st.track_many(events).recorded == model.track_many(events)[0]
    for lo in (DAY, "2026-11"):
        assert st.distinct("visit", "ip", lo) == model.distinct("visit", "ip", lo) == 2 * batch
    # the values met again moved to their buckets, with the ids they had
    assert redis_client.hlen(old) == batch - batch // 2
    st.drop()
    st.close()
