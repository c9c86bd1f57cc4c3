"""Rule families keep hours only where `Schema.hourly` names them; unique actors and totals
always do. A namespace stored before `hourly` existed kept every family per hour, and still
answers per hour."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

import bitstat
import servers
from bitstat.keys import Keys

RULES = {
    "count": ["country"],
    "sum": ["amount"],
    "top": ["item"],
    "unique": ["session"],
    "segment": ["plan"],
}
PERIODS = ("hour", "day", "week", "month", "year")
EVENTS = [
    {"event": "buy", "user": u, "time": datetime(2026, 11, 3, h, 30), "country": c, "plan": p,
     "amount": a, "item": i, "session": f"s{u}{h}"}
    for u, h, c, p, a, i in [
        (1, 9, "NL", "pro", 10.0, "tea"),
        (2, 9, "DE", "free", 5.0, "tea"),
        (1, 14, "NL", "pro", 2.5, "cake"),
        (3, 14, "NL", "free", 1.0, "tea"),
    ]
]  # fmt: skip


def keys_of(client: servers.Client, namespace: str) -> list[str]:
    found = [
        k.decode()
        for pattern in ("{" + namespace + "}*", "{" + namespace + ":*")
        for k in client.scan_iter(match=pattern, count=1000)
    ]
    return sorted(found)


def test_by_default_only_unique_actors_and_totals_keep_hours(
    server_url: str, redis_client: servers.Client, namespace: str
) -> None:
    schema = bitstat.Schema(periods=PERIODS, **RULES)
    assert schema.hourly == ()
    with bitstat.connect(server_url, namespace=namespace, schema=schema) as st:
        st.track_many(EVENTS)
        hour_keys = [k for k in keys_of(redis_client, namespace) if "2026-11-03T" in k]
        # an hour keeps its actors and its event total, nothing of the rule families
        assert hour_keys and all(":a:buy:2026-11-03T" in k or ":m:" in k for k in hour_keys)
        assert not any("plan=" in k for k in hour_keys)
        assert st.unique("buy", "2026-11-03T09") == 2
        assert st.total("buy", "2026-11-03T14") == 2
        assert st.counts("buy", "country", "2026-11-03") == {"NL": 3, "DE": 1}
        assert st.unique("buy", "2026-11-03", plan="pro") == 1
        assert st.sums("buy", "amount", "2026-11-03") == 18.5
        for ask in (
            lambda: st.counts("buy", "country", "2026-11-03T09"),
            lambda: st.sums("buy", "amount", "2026-11-03T09", "2026-11-03T14"),
            lambda: st.top("buy", "item", datetime(2026, 11, 3, 9), "2026-11-04"),
            lambda: st.distinct("buy", "session", "2026-11-03", datetime(2026, 11, 3, 14)),
            lambda: st.unique("buy", "2026-11-03T14", plan="pro"),
            lambda: st.actors("buy", plan="pro").hour(2026, 11, 3, 9),
        ):
            with pytest.raises(bitstat.QueryError, match="kept per day, not per hour"):
                ask()


def test_families_named_in_hourly_keep_hours(server_url: str, namespace: str) -> None:
    schema = bitstat.Schema(periods=PERIODS, hourly=["count", "segment"], **RULES)
    with bitstat.connect(server_url, namespace=namespace, schema=schema) as st:
        st.track_many(EVENTS)
        assert st.counts("buy", "country", "2026-11-03T14") == {"NL": 2}
        assert st.unique("buy", "2026-11-03T14", plan="pro") == 1
        assert st.actors("buy", plan="free").hour(2026, 11, 3, 9).count() == 1
        with pytest.raises(bitstat.QueryError, match="sums are kept per day"):
            st.sums("buy", "amount", "2026-11-03T14")


def test_a_schema_stored_before_hourly_keeps_every_family_per_hour(
    server_url: str, redis_client: servers.Client, namespace: str
) -> None:
    """What an earlier version stored: no `hourly` key, hour keys of every family."""
    old_layout = bitstat.Schema(periods=PERIODS, hourly="all", **RULES)
    with bitstat.connect(server_url, namespace=namespace, schema=old_layout) as st:
        st.track_many(EVENTS)
    key = Keys(namespace).schema
    stored = json.loads(redis_client.get(key))
    del stored["hourly"]
    redis_client.set(key, json.dumps(stored))
    with bitstat.connect(server_url, namespace=namespace) as st:
        assert st.schema.hourly == ("count", "sum", "top", "unique", "approx", "segment")
        assert st.counts("buy", "country", "2026-11-03T14") == {"NL": 2}
        assert st.sums("buy", "amount", "2026-11-03T09") == 15.0
        assert st.unique("buy", "2026-11-03T09", plan="free") == 1
    # today's default differs from what is stored: said, not silently applied
    with pytest.raises(bitstat.SchemaError, match="hourly"):
        bitstat.connect(
            server_url, namespace=namespace, schema=bitstat.Schema(periods=PERIODS, **RULES)
        )


def test_hourly_is_checked() -> None:
    assert bitstat.Schema(periods=PERIODS, hourly="all").hourly == (
        "count", "sum", "top", "unique", "approx", "segment"
    )  # fmt: skip
    assert bitstat.Schema(periods=PERIODS, hourly=["top", "count"]).hourly == ("count", "top")
    with pytest.raises(bitstat.SchemaError, match="not rule families"):
        bitstat.Schema(periods=PERIODS, hourly=["counts"])
    with pytest.raises(bitstat.SchemaError, match="'hour' is not in periods"):
        bitstat.Schema(hourly=["count"])
    schema = bitstat.Schema(periods=PERIODS, hourly=["segment"])
    assert bitstat.Schema.from_json(schema.to_json()) == schema
    assert "hourly" not in bitstat.Schema().to_dict()  # without hours there is nothing to say
