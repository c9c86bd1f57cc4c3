"""Every parser of outside input, fed anything (hypothesis): it answers or refuses with a
BitstatError saying why, never another exception, and a refused event leaves nothing behind.

Outside input: events as a caller or an HTTP body gives them (any JSON value, names and values
holding `{`, `}`, `:`, `*`, newlines, lone surrogates, huge text), time strings, actor ids,
durations and windows, and the JSON lines and CSV rows of `bitstat ingest`. The HTTP side
(bodies and query strings of every route) is fuzzed in tests/test_web_fuzz.py.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitstat
import servers
from bitstat.keys import Keys

SCHEMA = bitstat.Schema(
    ids="map",
    timezone="Europe/Amsterdam",
    count=["country", "country~platform"],
    sum=["amount", "amount by country"],
    top=["item"],
    unique=["ip"],
    approx=["visitor"],
    segment=["country"],
)
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
COUNTER = itertools.count()

# text that has broken key names, scripts or encoders somewhere
NASTY = [
    "\ud800",
    "a\udc00b",
    "{x}",
    "}{",
    "a:b",
    "*",
    "?[",
    "\n",
    "a\r\nb",
    "%41",
    "~",
    "=",
    "\x00",
    " ",
    "é",
    "😀",
    "x" * 300,
    "'; return redis.call('FLUSHALL') --",
    "]]",
]
texts = st.one_of(
    st.sampled_from(NASTY), st.text(st.characters(exclude_categories=()), min_size=1, max_size=6)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
)
TIMES = ["2026-11-20T10:00:00", "2026-11-21", "2026-11-22T23:59:59+05:00", 1795000000]


FIELDS = {
    "event": ["buy", "visit"],
    "time": TIMES,
    "user": ["u1", "u2", 3, "0"],
    "country": ["NL", "DE"],
    "platform": ["ios", "web"],
    "amount": [1, 2.5, -3],
    "item": ["sku-1", "sku-2"],
    "ip": ["10.0.0.1", "10.0.0.2"],
    "visitor": ["v1", "v2"],
}


@st.composite
def events(draw: st.DrawFn) -> Any:
    """A good event with a field or two (or a new one) holding anything; now and then not a
    mapping at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    ev: dict[Any, Any] = {
        name: draw(st.sampled_from(choices))
        for name, choices in FIELDS.items()
        if name in ("event", "time") or draw(st.booleans())
    }
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([*FIELDS, None]))  # None: a field of its own
        ev[draw(texts) if name is None else name] = draw(st.one_of(texts, values))
    return ev


def snapshot(client: servers.Client, namespace: str) -> dict[bytes, bytes | None]:
    """Every key of the namespace (named without it) and its value, but batch markers (their
    ids are made per call)."""
    ns = Keys(namespace).ns.encode()
    found = [
        k
        for pattern in ("{" + namespace + "}*", "{" + namespace + ":*")
        for k in client.scan_iter(match=pattern, count=1000)
        if b":batch:" not in k
    ]
    return {k.replace(ns, b"N", 1): client.dump(k) for k in found}


def drop(client: servers.Client, namespace: str) -> None:
    for pattern in ("{" + namespace + "}*", "{" + namespace + ":*"):
        for key in list(client.scan_iter(match=pattern, count=1000)):
            client.delete(key)


@pytest.fixture
def embedded_client(embedded_url: str) -> Iterator[servers.Client]:
    client = servers.client_for(embedded_url)
    yield client
    client.close()


@pytest.fixture
def fresh(
    embedded_url: str, embedded_client: servers.Client
) -> Iterator[Callable[[], bitstat.Stats]]:
    """Opens a new namespace with SCHEMA per call; every one is deleted at the end."""
    made: list[bitstat.Stats] = []
    base = f"fz-{uuid.uuid4().hex[:8]}"

    def make() -> bitstat.Stats:
        made.append(
            bitstat.connect(embedded_url, namespace=f"{base}-{next(COUNTER)}", schema=SCHEMA)
        )
        return made[-1]

    yield make
    for st_ in made:
        drop(embedded_client, st_.namespace)
        st_.close()


@FUZZ
@given(batch=st.lists(events(), max_size=8))
def test_track_many_takes_anything_and_keeps_nothing_of_a_rejected_event(
    fresh: Callable[[], bitstat.Stats], embedded_client: servers.Client, batch: list[Any]
) -> None:
    everything, accepted_only = fresh(), fresh()
    result = everything.track_many(batch)
    rejected = [i for i, _ in result.rejected]
    assert result.recorded + len(rejected) == len(batch)
    assert all(isinstance(reason, str) and reason for _, reason in result.rejected)
    kept = [ev for i, ev in enumerate(batch) if i not in rejected]
    again = accepted_only.track_many(kept)
    assert (again.recorded, again.rejected) == (len(kept), [])
    assert snapshot(embedded_client, everything.namespace) == snapshot(
        embedded_client, accepted_only.namespace
    )
