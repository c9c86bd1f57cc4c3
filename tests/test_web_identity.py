"""Identity and erasure over HTTP, on a `bitstat serve` started by the test: the SDKs' own
identify/alias calls (segment-analytics-python, rudder-sdk-python, posthog) merge ids, and
`DELETE /v1/actors/{id}` with the write token erases an actor; answers against the model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from posthog import Posthog
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

import bitstat
from bitstat.web import ServerConfig
from model import Model
from webserver import running

DAY1, DAY2 = datetime(2026, 10, 5, 9, tzinfo=UTC), datetime(2026, 10, 6, 9, tzinfo=UTC)


@pytest.fixture
def server(server_url: str, namespace: str) -> Iterator[tuple[str, bitstat.Stats]]:
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(ids="map"))
    config = ServerConfig(
        url=server_url, namespace=namespace, write_token="token-w", read_token="token-r"
    )
    with running(config) as base:
        yield base, st
    st.drop()
    st.close()


def check(st: bitstat.Stats, model: Model) -> None:
    for event in st.events():
        assert st.unique(event, "2026-10") == model.unique(event, "2026-10"), event
        assert st.total(event, "2026-10") == model.total(event, "2026-10"), event
        got = sorted(map(str, st.actors(event).month(2026, 10).ids()))
        assert got == sorted(map(str, model.actors(event).month(2026, 10).ids())), event
    assert list(st.funnel(["visit", "signup"], "2026-10-05", "2026-10-06", within="3d")) == list(
        model.funnel(["visit", "signup"], "2026-10-05", "2026-10-06", within="3d")
    )


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
def test_segment_identify_and_alias_merge_ids(server: tuple[str, bitstat.Stats], sdk: str) -> None:
    base, st = server
    make = SegmentClient if sdk == "segment" else RudderClient
    errors: list[Any] = []
    client = make(
        write_key="token-w", host=base, sync_mode=True, on_error=lambda e, b: errors.append(e)
    )
    model = Model(ids="map")
    client.track(anonymous_id="anon-1", event="visit", timestamp=DAY1)
    client.track(anonymous_id="anon-2", event="visit", timestamp=DAY1)
    client.identify(user_id="user-1", anonymous_id="anon-1", timestamp=DAY2)
    client.track(user_id="user-1", event="signup", timestamp=DAY2)
    client.alias(previous_id="anon-2", user_id="user-2", timestamp=DAY2)
    client.flush()
    assert errors == []
    model.track_many(
        [
            {"event": "visit", "user": "anon-1", "time": DAY1},
            {"event": "visit", "user": "anon-2", "time": DAY1},
            {"event": "identify", "user": "user-1", "time": DAY2},
        ]
    )
    model.alias("anon-1", "user-1")
    model.track_many(
        [
            {"event": "signup", "user": "user-1", "time": DAY2},
            {"event": "alias", "user": "user-2", "time": DAY2},
        ]
    )
    model.alias("anon-2", "user-2")
    check(st, model)
    assert st.unique("visit", "2026-10") == 2
    assert list(st.funnel(["visit", "signup"], "2026-10-05", None, within="3d"))[1] == (
        "signup",
        1,
    )


def test_posthog_identify_merges_the_anonymous_distinct_id(
    server: tuple[str, bitstat.Stats],
) -> None:
    base, st = server
    errors: list[Any] = []
    client = Posthog("token-w", host=base, sync_mode=True, on_error=lambda e, b: errors.append(e))
    client.capture("visit", distinct_id="anon-ph", timestamp=DAY1)
    client.capture(
        "$identify",
        distinct_id="user-ph",
        properties={"$anon_distinct_id": "anon-ph"},
        timestamp=DAY2,
    )
    client.capture("signup", distinct_id="user-ph", timestamp=DAY2)
    client.alias("user-ph", "device-ph", timestamp=DAY2)  # device-ph joins user-ph
    client.capture("visit", distinct_id="device-ph", timestamp=DAY2)
    client.flush()
    assert errors == []
    model = Model(ids="map")
    model.track_many(
        [
            {"event": "visit", "user": "anon-ph", "time": DAY1},
            {"event": "$identify", "user": "user-ph", "time": DAY2},
        ]
    )
    model.alias("anon-ph", "user-ph")
    model.track_many(
        [
            {"event": "signup", "user": "user-ph", "time": DAY2},
            {"event": "$create_alias", "user": "user-ph", "time": DAY2},
        ]
    )
    model.alias("device-ph", "user-ph")
    model.track({"event": "visit", "user": "device-ph", "time": DAY2})
    check(st, model)
    assert list(st.actors("visit").month(2026, 10).ids()) == ["user-ph"]


def test_delete_actor_with_the_write_token(server: tuple[str, bitstat.Stats]) -> None:
    base, st = server
    st.track_many(
        [
            {"event": "visit", "user": "a/b c", "time": "2026-10-05"},
            {"event": "visit", "user": "keep", "time": "2026-10-05"},
        ]
    )
    url = f"{base}/v1/actors/a%2Fb%20c"
    assert httpx.delete(url).status_code == 401
    assert httpx.delete(url, headers={"Authorization": "Bearer token-r"}).status_code == 401
    assert st.unique("visit", "2026-10-05") == 2
    reply = httpx.delete(url, headers={"Authorization": "Bearer token-w"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["actor"], body["found"], body["ids"], body["kept"]) == (
        "a/b c",
        True,
        ["a/b c"],
        ["event totals"],
    )
    assert list(st.actors("visit").day(2026, 10, 5).ids()) == ["keep"]
    again = httpx.delete(url, headers={"Authorization": "Bearer token-w"}).json()
    assert again["found"] is False
