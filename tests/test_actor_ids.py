"""Actor ids in every form a caller holds them (ints, numpy's integers, digit text), anywhere in
the 64-bit range and spread over many id shards: recorded, counted and tested as one actor."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import bitstat
from bitstat.keys import SHARD_SIZE
from bitstat.web import ServerConfig, create_app

with warnings.catch_warnings():  # (starlette's TestClient warns of httpx on import)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

T = "2026-11-10T10:00:00Z"
BIG = 2**63 - 1  # the largest max_id a schema takes
# ids at shard edges, past 2^32, around 2^53 (where a double loses integers) and at the top
IDS = [0, SHARD_SIZE - 1, SHARD_SIZE, 3 * SHARD_SIZE + 1, 2**32, 2**53 + 1, 2**62 + 3, BIG]


@contextmanager
def opened(server_url: str, namespace: str, **schema: Any) -> Iterator[bitstat.Stats]:
    """A namespace of the schema, dropped when the test is done with it."""
    st = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(**schema))
    try:
        yield st
    finally:
        st.drop()
        st.close()


def test_numpy_integer_ids_are_the_actors_of_their_value(server_url: str, namespace: str) -> None:
    """A DataFrame's rows hold np.int64 (or uint64, int32) ids: one actor with the int."""
    forms = [np.int64, np.uint64, np.int32]
    events = [
        {"event": "e", "user": forms[i % 3](u) if u < 2**31 else np.uint64(u), "time": T}
        for i, u in enumerate(IDS)
    ]
    too_big = {"event": "e", "user": np.uint64(BIG) + np.uint64(1), "time": T}
    with opened(server_url, namespace, max_id=BIG) as st:
        res = st.track_many([*events, too_big])
        assert res.recorded == len(IDS)
        assert [i for i, _ in res.rejected] == [len(IDS)]  # past max_id, said so
        assert "outside 0..9223372036854775807" in res.rejected[0][1]
        st.track("e", user=np.int64(5), time=T)
        day = st.actors("e").day(2026, 11, 10)
        assert list(day.ids()) == sorted([*IDS, 5])
        assert all(np.uint64(u) in day and u in day for u in IDS)
        assert np.int64(6) not in day


def test_numpy_integer_ids_are_one_actor_with_their_int_and_text_in_a_map(
    server_url: str, namespace: str
) -> None:
    with opened(server_url, namespace, ids="map") as st:
        st.track_many([{"event": "e", "user": u, "time": T} for u in (np.int64(42), 42, "42")])
        st.track("e", user=np.uint64(2**64 - 1), time=T)
        day = st.actors("e").day(2026, 11, 10)
        assert sorted(day.ids()) == [42, 2**64 - 1]
        assert np.int64(42) in day and np.uint64(2**64 - 1) in day and np.int8(7) not in day


LONG = "1" * 5000  # more digits than Python's int() reads (sys.get_int_max_str_digits: 4,300)


def test_an_id_of_more_digits_than_python_reads_is_rejected_alone(
    server_url: str, namespace: str
) -> None:
    """It raised int()'s ValueError out of track_many: the whole batch lost, not one event."""
    batch = [{"event": "e", "user": u, "time": T} for u in (1, LONG, 10**5000, "0" * 5000 + "7")]
    with opened(server_url, namespace) as st:
        res = st.track_many(batch)
        assert res.recorded == 2
        assert dict(res.rejected) == {
            1: "user: actor id of 5,000 digits is outside 0..4294967295",
            2: "user: actor id of more than 4,300 digits is outside 0..4294967295",
        }
        with pytest.raises(bitstat.InvalidEvent, match="5,000 digits"):
            st.track("e", user=LONG, time=T)
        day = st.actors("e").day(2026, 11, 10)
        assert list(day.ids()) == [1, 7]
        assert LONG not in day and "7" in day


def test_a_mapped_id_of_more_digits_than_python_reads_comes_back_as_text(
    server_url: str, namespace: str
) -> None:
    with opened(server_url, namespace, ids="map", max_value_length=6000) as st:
        res = st.track_many([{"event": "e", "user": u, "time": T} for u in (LONG, 10**5000, 3)])
        assert res.recorded == 2
        assert res.rejected == [(1, "user: actor id is an integer of more than 4,300 digits")]
        day = st.actors("e").day(2026, 11, 10)
        assert sorted(day.ids(), key=str) == [LONG, 3]  # (ids() raised ValueError)
        assert LONG in day and 10**5000 not in day


def test_a_negative_mapped_id_of_as_many_digits_as_python_reads_comes_back_as_an_integer(
    server_url: str, namespace: str
) -> None:
    """-(10**4300 - 1) has 4,300 digits, which Python reads: its text has 4,301 characters,
    and ids() gave it back as text (the limit was checked against the text's length, sign
    included), where every other integer id comes back as an integer."""
    negative = -(10**4300 - 1)
    with opened(server_url, namespace, ids="map", max_value_length=6000) as st:
        st.track_many([{"event": "e", "user": u, "time": T} for u in (negative, 10**4299)])
        assert sorted(st.actors("e").day(2026, 11, 10).ids()) == [negative, 10**4299]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_http_rejects_an_id_of_too_many_digits_alone(embedded_url: str, namespace: str) -> None:
    """It was a 500 for the whole body."""
    body = [{"event": "e", "user": u, "time": T} for u in (LONG, 12)]
    with opened(embedded_url, namespace) as st:
        with TestClient(create_app(ServerConfig(url=embedded_url, namespace=namespace))) as c:
            answer = c.post("/v1/track", json=body)
        assert answer.status_code == 200
        assert answer.json()["recorded"] == 1
        assert "5,000 digits" in answer.json()["rejected"][0]["reason"]
        assert st.unique("e", "2026-11-10") == 1


def test_a_large_batch_of_ids_past_2_to_the_33_keeps_every_actor(
    server_url: str, namespace: str
) -> None:
    """A batch of LARGE_BATCH (512) rows or more without property rules is grouped in numpy
    only while its shard numbers fit 13 bits; past that it went to the row-by-row grouping
    with no rows listed: every actor bit dropped, silently (the totals kept)."""
    users = [*range(511), 2**33]  # one id in shard 8192
    with opened(server_url, namespace, max_id=BIG) as st:
        assert st.track_many([{"event": "e", "user": u, "time": T} for u in users]).recorded == 512
        assert st.total("e", "2026-11-10") == 512
        day = st.actors("e").day(2026, 11, 10)
        assert list(day.ids()) == users
        assert st.unique("e", "2026-11-10") == 512 and 2**33 in day
