"""`track_many` given something it would iterate but not as events (one event, text, bytes, a
data frame) raises TypeError before anything is sent, on the blocking and the asyncio API;
every iterable of events (a list, a generator, an iterator, a numpy array, a pandas Series)
is still a batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import bitstat
import bitstat.aio

EVENTS = [
    {"event": "login", "user": "u-42", "time": "2026-11-02"},
    {"event": "login", "user": "u-7", "time": "2026-11-02"},
]
IDEA = "track_many takes an iterable of events (mappings), not"
AN_EVENT = 'an event is a mapping, such as {"event": "login", "user": 42}'
MISUSES = [
    pytest.param(
        EVENTS[0],
        f"{IDEA} a dict, which is one event: pass a list of events ([event]), or call track()"
        " for one",
        id="one-event",
    ),
    pytest.param("login", f"{IDEA} a str: {AN_EVENT}", id="str"),
    pytest.param(b"login", f"{IDEA} a bytes: {AN_EVENT}", id="bytes"),
    pytest.param(bytearray(b"login"), f"{IDEA} a bytearray: {AN_EVENT}", id="bytearray"),
    pytest.param(
        pd.DataFrame(EVENTS),
        f"{IDEA} a pandas.DataFrame: track_frame() records a frame",
        id="pandas",
    ),
    pytest.param(
        pl.DataFrame(EVENTS),
        f"{IDEA} a polars.DataFrame: track_frame() records a frame",
        id="polars",
    ),
    pytest.param(
        pa.Table.from_pylist(EVENTS),
        f"{IDEA} a pyarrow.Table: track_frame() records a frame",
        id="pyarrow",
    ),
    # (it said: 'NoneType' object is not iterable)
    pytest.param(None, f"{IDEA} None: pass a list of events, [] for none", id="none"),
    pytest.param(42, f"{IDEA} a int: pass a list of events, [] for none", id="int"),
]


@pytest.fixture
def st(embedded_url: str, namespace: str) -> Iterator[bitstat.Stats]:
    with bitstat.connect(
        embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map")
    ) as stats:
        yield stats
        stats.drop()


@pytest.mark.parametrize(("given", "message"), MISUSES)
def test_what_is_not_a_batch_raises_typeerror_and_records_nothing(
    st: bitstat.Stats, given: Any, message: str
) -> None:
    with pytest.raises(TypeError) as caught:
        st.track_many(given)
    assert str(caught.value) == message
    with pytest.raises(TypeError) as again:
        st.track_many(given, batch_id="misused")
    assert str(again.value) == message
    assert st.events() == []
    # the batch id was not used up: the same id records the events once given as a batch
    assert st.track_many(EVENTS, batch_id="misused").recorded == 2


@pytest.mark.parametrize(("given", "message"), MISUSES)
def test_the_asyncio_twin_raises_the_same_when_awaited(
    embedded_url: str, namespace: str, given: Any, message: str
) -> None:
    async def go() -> tuple[str, list[str]]:
        async with await bitstat.aio.connect(
            embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map")
        ) as ast:
            call = ast.track_many(given)  # made, not yet awaited: nothing raised yet
            try:
                await call
            except TypeError as exc:
                said = str(exc)
            else:
                said = "no error"
            names = await ast.events()
            await ast.drop()
            return said, names

    assert asyncio.run(go()) == (message, [])


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(lambda: list(EVENTS), id="list"),
        pytest.param(lambda: tuple(EVENTS), id="tuple"),
        pytest.param(lambda: (dict(ev) for ev in EVENTS), id="generator"),
        pytest.param(lambda: iter(EVENTS), id="iterator"),
        pytest.param(lambda: np.array(EVENTS, dtype=object), id="numpy"),
        pytest.param(lambda: pd.Series(EVENTS), id="pandas-series"),
        pytest.param(lambda: pd.DataFrame(EVENTS).to_dict("records"), id="frame-records"),
    ],
)
def test_every_iterable_of_events_is_still_a_batch(st: bitstat.Stats, batch: Any) -> None:
    result = st.track_many(batch())
    assert (result.recorded, result.rejected) == (2, [])
    assert st.unique("login", "2026-11-02") == 2


def test_an_event_that_is_not_a_mapping_is_rejected_saying_what_it_is(st: bitstat.Stats) -> None:
    result = st.track_many([None, 42, EVENTS[0]])
    assert result.recorded == 1
    assert [reason for _, reason in result.rejected] == [
        "an event must be a mapping, not None",
        "an event must be a mapping, not int",
    ]
