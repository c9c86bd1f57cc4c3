"""Namespaces written by an earlier layout keep answering: what they stored is read as it is,
and moved to the new layout as it is met again, never counted twice."""

from __future__ import annotations

import uuid
import zlib
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


def recorded(url: str, ips: list[str]) -> tuple[bitstat.Stats, Model]:
    """A new namespace holding visits from `ips`, and the model of it."""
    ns = f"t-{uuid.uuid4().hex[:8]}"
    st = bitstat.connect(url, namespace=ns, schema=bitstat.Schema(**SETTINGS))
    model = Model(**SETTINGS)
    events = visits(ips)
    assert st.track_many(events).recorded == model.track_many(events)[0]
    return st, model


@pytest.mark.parametrize("batch", [5, 400], ids=["numbered-by-the-write", "numbered-first"])
def test_value_ids_in_the_one_hash_of_before_are_found_and_moved(
    server_url: str, redis_client: servers.Client, batch: int
) -> None:
    first = [f"10.0.{i // 256}.{i % 256}" for i in range(batch)]
    st, model = recorded(server_url, first)
    ns = st.namespace
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


def to_4096_buckets(client: servers.Client, st: bitstat.Stats, ips: list[str]) -> int:
    """Rewrite the value ids as bitstat of 2026-12-02 (a00de69) kept them: in 4,096 buckets
    by CRC-32, so a value whose CRC has bit 11 set sits 2,048 buckets further on (and no mark
    of a property whose values began in 2,048 buckets: it wrote none). How many values moved."""
    keys = Keys(st.namespace)
    client.delete(keys.value_layout("visit", "ip"))
    moved = 0
    for ip in ips:
        now = keys.value_bucket("visit", "ip", ip)
        crc = zlib.crc32(ip.encode())
        if crc & 2048:
            found = client.hget(now, ip)
            assert found is not None
            client.hset(keys.value_buckets("visit", "ip") + str(crc % 4096), ip, found)
            client.hdel(now, ip)
            moved += 1
    return moved


@pytest.mark.parametrize("batch", [5, 400], ids=["numbered-by-the-write", "numbered-first"])
def test_value_ids_in_the_4096_buckets_of_before_are_found_and_moved(
    server_url: str, redis_client: servers.Client, batch: int
) -> None:
    """Before: a value of a namespace written with 4,096 value buckets, in one of the upper
    2,048, was not found in its bucket of 2,048 and took a new id: counted twice by distinct
    over a range holding both."""
    first = [f"10.1.{i // 256}.{i % 256}" for i in range(batch)]
    st, model = recorded(server_url, first)
    ns = st.namespace
    assert to_4096_buckets(redis_client, st, first) > 0

    st.close()
    st = bitstat.connect(server_url, namespace=ns)
    again = first + [f"192.168.{i // 256}.{i % 256}" for i in range(batch)]
    events = visits(again, hour=10)
    assert st.track_many(events).recorded == model.track_many(events)[0]
    for lo in (DAY, "2026-11"):
        assert st.distinct("visit", "ip", lo) == model.distinct("visit", "ip", lo) == 2 * batch
    # the values met again moved to their buckets of 2,048, with the ids they had
    keys = Keys(ns)
    assert all(redis_client.hget(keys.value_bucket("visit", "ip", ip), ip) for ip in first)
    st.drop()
    st.close()


@pytest.mark.parametrize("batch", [5, 400], ids=["numbered-by-the-write", "numbered-first"])
def test_a_property_whose_values_began_in_2048_buckets_is_marked_and_answers_alike(
    server_url: str, redis_client: servers.Client, batch: int
) -> None:
    """Its first values mark it (no value of it can be 2,048 buckets further on: a new value
    costs the scripts one call, not two); values numbered before the mark existed (by a version
    of 2026-12-03 to 07, the counter there first) leave it unmarked, and looked for there."""
    first = [f"10.2.{i // 256}.{i % 256}" for i in range(batch)]
    st, model = recorded(server_url, first)
    keys = Keys(st.namespace)
    assert redis_client.get(keys.value_layout("visit", "ip")) == b"2048"
    again = first + [f"172.16.{i // 256}.{i % 256}" for i in range(batch)]
    events = visits(again, hour=11)
    assert st.track_many(events).recorded == model.track_many(events)[0]
    assert st.distinct("visit", "ip", DAY) == model.distinct("visit", "ip", DAY) == 2 * batch
    # a property numbered before the mark: not marked by later values
    redis_client.delete(keys.value_layout("visit", "ip"))
    more = visits([f"192.0.2.{i % 250}" for i in range(batch)], hour=12)
    assert st.track_many(more).recorded == model.track_many(more)[0]
    assert redis_client.get(keys.value_layout("visit", "ip")) is None
    assert st.distinct("visit", "ip", DAY) == model.distinct("visit", "ip", DAY)
    st.drop()
    st.close()
