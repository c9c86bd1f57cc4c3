"""Questions at calendar edges: dates that do not exist, ISO weeks past a year's last one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

import bitstat

AMS = "Europe/Amsterdam"


@pytest.fixture
def stats(embedded_url: str, namespace: str) -> Iterator[bitstat.Stats]:
    periods = ("hour", "day", "week", "month", "year")
    schema = bitstat.Schema(timezone=AMS, periods=periods, horizon="3650d")  # (2027 is ahead)
    with bitstat.connect(embedded_url, namespace=namespace, schema=schema) as st:
        yield st
        st.drop()


@pytest.mark.parametrize(
    ("pick", "named"),
    [
        (lambda q: q.week(2027, 53), "week(2027, 53)"),  # 2027 has 52 ISO weeks
        (lambda q: q.week(2026, 0), "week(2026, 0)"),
        (lambda q: q.day(2026, 2, 29), "day(2026, 2, 29)"),  # not a leap year
        (lambda q: q.hour(2026, 3, 29, 24), "hour(2026, 3, 29, 24)"),
        (lambda q: q.month(2026, 13), "month(2026, 13)"),
        (lambda q: q.year(0), "year(0)"),
    ],
)
def test_an_actor_set_of_a_date_that_does_not_exist_is_a_query_error(
    stats: bitstat.Stats, pick: Callable[[Any], Any], named: str
) -> None:
    with pytest.raises(bitstat.QueryError, match=named.replace("(", r"\(").replace(")", r"\)")):
        pick(stats.actors("login"))


def test_an_actor_set_of_the_last_iso_week_and_a_leap_day(stats: bitstat.Stats) -> None:
    res = stats.track_many(
        [
            {"event": "login", "user": 1, "time": "2027-01-03T23:30:00+01:00"},  # 2026-W53
            {"event": "login", "user": 2, "time": "2024-02-29T00:00:00+01:00"},
        ]
    )
    assert res.recorded == 2, res.rejected
    assert list(stats.actors("login").week(2026, 53).ids()) == [1]
    assert list(stats.actors("login").day(2024, 2, 29).ids()) == [2]


def test_epoch_milliseconds_are_refused_saying_what_they_would_mean(stats: bitstat.Stats) -> None:
    ms = 1_795_348_800_000  # 2026-11-22T12:00:00Z, as JavaScript's Date.now() gives it
    hint = "as milliseconds it is 2026-11-22T12:00:00Z: divide by 1000"
    res = stats.track_many([{"event": "login", "user": 1, "time": t} for t in (ms, ms + 0.5)])
    assert [i for i, _ in res.rejected] == [0, 1]
    assert all(reason.endswith(hint) for _, reason in res.rejected), res.rejected
    stats.track_many([{"event": "login", "user": 1, "time": ms // 1000}])
    for ask in (
        lambda: stats.unique("login", ms),
        lambda: stats.unique("login", "2026-11-22", ms),
        lambda: stats.retention("login", "login", "2026-11-22", now=ms),
    ):
        with pytest.raises(bitstat.QueryError, match=hint):
            ask()


def test_epoch_seconds_as_text_are_refused_saying_what_they_would_mean(
    stats: bitstat.Stats,
) -> None:
    """A query string's `start=1795348800` reaches a question as text, read as ISO-8601
    alone: it was refused with fromisoformat's words only ("Invalid isoformat string")."""
    hint = "not as epoch seconds: as epoch seconds it is 2026-11-22T12:00:00Z"
    stats.track_many([{"event": "login", "user": 1, "time": 1_795_348_800}])
    with pytest.raises(bitstat.QueryError, match=hint):
        stats.unique("login", "1795348800")
    with pytest.raises(bitstat.QueryError, match=hint):
        stats.unique("login", "2026-11-01", " 1795348800 ")
    assert stats.unique("login", "20261122") == 1  # (8 digits: ISO's basic date, read so)
    ms = "as milliseconds it is 2026-11-22T12:00:00Z: divide by 1000"
    with pytest.raises(bitstat.QueryError, match=f"not as epoch seconds; {ms}"):
        stats.unique("login", "1795348800000")


def test_a_batch_of_datetimes_far_ahead_keeps_their_last_microsecond_in_its_day(
    embedded_url: str, namespace: str
) -> None:
    """A batch of datetimes alone is read column-wise: as floats, 23:59:59.999999 of 9970
    rounded up to the next midnight (its year 9971) where the same event in a mixed batch,
    read one by one, stayed in 9970."""
    schema = bitstat.Schema(periods=("day", "year"), horizon="3000000d")
    last = datetime(9970, 12, 31, 23, 59, 59, 999_999)
    with bitstat.connect(embedded_url, namespace=namespace, schema=schema) as st:
        st.track_many([{"event": "v", "user": 1, "time": last}])
        st.track_many([{"event": "v", "user": 2, "time": last.replace(tzinfo=UTC)}])
        st.track_many([{"event": "v", "user": 3, "time": last}, {"event": "v", "time": "?"}])
        assert sorted(st.actors("v").day(9970, 12, 31).ids()) == [1, 2, 3]
        assert st.unique("v", "9971") == 0
        st.drop()


def test_numpy_epoch_seconds_are_times_as_they_are_to_questions(stats: bitstat.Stats) -> None:
    """np.float64 (a float) was taken and np.int64 refused as 'not epoch seconds', where a
    question took both."""
    noon = 1_795_348_800  # 2026-11-22T12:00:00Z
    res = stats.track_many(
        [{"event": "v", "user": 1, "time": np.int64(noon)}, {"event": "v", "user": 2, "time": "?"}]
    )
    assert [i for i, _ in res.rejected] == [1]
    stats.track_many([{"event": "v", "user": 3, "time": np.uint32(noon)}])
    stats.track("v", user=4, time=np.int32(noon))
    assert sorted(stats.actors("v").day(2026, 11, 22).ids()) == [1, 3, 4]
    assert stats.unique("v", np.int64(noon)) == 3
