"""Integer arguments take any integral number, numpy's too (the cells of a DataFrame), as the
events' ids, times and values always have: `periods`, `columns`, `within`, `limit`, `days`,
the schema's and connect()'s counts, `batch_size`. Booleans and floats, Python's or numpy's, are
refused with the errors they always got. On every backend; every event has its time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

import bitstat

MON = datetime(2026, 9, 7, 10, tzinfo=UTC)  # Monday of 2026-W37
WHOLE = [np.int64, np.int32, np.uint8]  # numpy's integers, as a DataFrame's cells come


def day(n: int) -> datetime:
    return MON + timedelta(days=n)


@pytest.fixture
def st(server_url: str, namespace: str) -> Iterator[bitstat.Stats]:
    """Signups 0-3 in W37; logins of 0 and 1 in W38 (day 8), of 2 in W39; 0, 1 buy "a", 2 "b"."""
    stats = bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(top=["item"]))
    events: list[dict[str, Any]] = [
        *({"event": "signup", "user": u, "time": day(0)} for u in range(4)),
        *({"event": "login", "user": u, "time": day(8)} for u in (0, 1)),
        {"event": "login", "user": 2, "time": day(15)},
        *({"event": "buy", "user": u, "time": day(9), "item": "ab"[u // 2]} for u in range(3)),
    ]
    assert stats.track_many(events).recorded == 10
    yield stats
    stats.drop()
    stats.close()


def answers(st: bitstat.Stats, whole: Callable[[int], Any]) -> list[Any]:
    """Every analysis and metric that takes an integer, asked with `whole(n)` for each n."""
    retention = st.retention("signup", "login", "2026-W37", whole(2), columns=whole(2), now=day(30))
    lifecycle = st.lifecycle("login", "2026-W38", whole(2), now=day(30))
    return [
        [(r.cohort, r.size, r.counts) for r in retention.rows],
        [p.as_dict() for p in lifecycle],
        list(st.funnel(["signup", "login"], "2026-09-07", within=whole(9))),
        list(st.funnel(["signup", "login"], "2026-09-07", within=whole(8))),
        st.top("buy", "item", "2026-09", limit=whole(1)),
        [(d["day"], d["total"], d["unique"]) for d in st.query_days("login", whole(2), day(8))],
    ]


EXPECTED = [
    [("2026-W37", 4, [0, 2]), ("2026-W38", 0, [0, 0])],
    [
        {"period": "2026-W38", "new": 2, "returning": 0, "resurrecting": 0, "dormant": 0},
        {"period": "2026-W39", "new": 1, "returning": 0, "resurrecting": 0, "dormant": 2},
    ],
    [("signup", 4), ("login", 2)],  # logins on day 8: within 9 days of the signups on day 0
    [("signup", 4), ("login", 0)],  # not within 8
    [("a", 2)],
    [("2026-09-14", 0, 0), ("2026-09-15", 2, 2)],
]


@pytest.mark.parametrize("whole", [int, *WHOLE], ids=lambda t: t.__name__)
def test_analyses_and_metrics_take_numpy_integers(st: bitstat.Stats, whole: type) -> None:
    """periods, columns, within, limit and days of numpy's types answered "must be a positive
    integer, got np.int64(2)" (`within`: "expected a positive number of whole days")."""
    assert answers(st, whole) == EXPECTED


def test_schema_connect_and_frames_take_numpy_integers(server_url: str, namespace: str) -> None:
    """max_id, max_value_length, horizon, expire, batch_ttl, flush_at, track_ahead and
    track_frame's batch_size, given numpy integers, are read as the same ints (stored as
    such: the schema is JSON in Redis)."""
    n, years = np.int64, 100 * 365 * 86400  # (month buckets, kept long: no test reads them)
    given = bitstat.Schema(
        max_id=n(1000), max_value_length=np.int32(50), horizon=n(7200), expire={"month": n(years)}
    )
    plain = bitstat.Schema(max_id=1000, max_value_length=50, horizon=7200, expire={"month": years})
    assert given == plain and given.to_dict() == plain.to_dict()
    assert [type(v) for v in (given.max_id, given.max_value_length, given.horizon)] == [int] * 3
    options = {"flush_at": n(1), "track_ahead": n(0), "batch_ttl": n(3600)}
    for seconds in (n(2), np.float32(0.5)):  # (seconds, not a count: any real number)
        bitstat.connect(server_url, namespace=namespace, flush_interval=seconds).close()
    with bitstat.connect(server_url, namespace=namespace, schema=given, **options) as stats:
        try:
            stats.track("visit", user=n(7), time=day(0))
            frame = pd.DataFrame(
                {"event": ["visit"] * 3, "user": [1, 2, 1001], "time": [day(1)] * 3}
            )
            done = stats.track_frame(frame, batch_size=n(2))
            assert (done.recorded, [i for i, _ in done.rejected]) == (2, [2])  # 1001 > max_id
            assert stats.unique("visit", "2026-09-07", "2026-09-08") == 3
            assert bitstat.connect(server_url, namespace=namespace).schema == plain
        finally:
            stats.drop()


def test_booleans_and_floats_are_still_refused(
    st: bitstat.Stats, server_url: str, namespace: str
) -> None:
    asked: list[tuple[Callable[[], Any], type[Exception], str]] = [
        (
            lambda: st.retention("signup", "login", "2026-W37", np.float64(2.0), now=day(9)),
            bitstat.QueryError,
            r"periods must be a positive integer, got np\.float64\(2\.0\)",
        ),
        (
            lambda: st.retention("signup", "login", "2026-W37", columns=np.True_, now=day(9)),
            bitstat.QueryError,
            r"columns must be a positive integer, got np\.True_",
        ),
        (
            lambda: st.lifecycle("login", "2026-W37", True, now=day(9)),
            bitstat.QueryError,
            "periods must be a positive integer, got True",
        ),
        (
            lambda: st.funnel(["signup", "login"], "2026-W37", within=np.float64(7.0)),
            bitstat.QueryError,
            r"within: expected a positive number of whole days .*got np\.float64\(7\.0\)",
        ),
        (
            lambda: st.top("buy", "item", "2026-09", limit=2.0),  # type: ignore[arg-type]
            bitstat.QueryError,
            r"limit must be a positive integer, got 2\.0",
        ),
        (
            lambda: st.query_days("login", np.True_, day(8)),  # type: ignore[arg-type]
            bitstat.QueryError,
            r"days must be a positive integer, got np\.True_",
        ),
        (
            lambda: st.query_days("login", np.int64(0), day(8)),  # type: ignore[arg-type]
            bitstat.QueryError,
            r"days must be a positive integer, got np\.int64\(0\)",
        ),
        (
            lambda: bitstat.Schema(max_id=np.float64(10.0)),  # type: ignore[arg-type]
            bitstat.SchemaError,
            r"max_id must be a positive integer below 2\^63, got np\.float64\(10\.0\)",
        ),
        (
            lambda: bitstat.Schema(max_value_length=True),
            bitstat.SchemaError,
            "max_value_length must be a positive integer, got True",
        ),
        (
            lambda: bitstat.Schema(horizon=np.True_),
            bitstat.SchemaError,
            r"horizon: not a duration: np\.True_",
        ),
        (
            lambda: st.track_frame(pd.DataFrame({"event": ["e"]}), batch_size=np.float64(2.0)),
            bitstat.InvalidEvent,
            r"batch_size must be a positive integer, got np\.float64\(2\.0\)",
        ),
    ]
    for ask, error, message in asked:
        with pytest.raises(error, match=f"^{message}"):
            ask()
    for options, message in [
        ({"flush_at": np.True_}, r"flush_at must be an integer >= 1 .*got np\.True_"),
        ({"track_ahead": 1.0}, r"track_ahead must be an integer >= 0 .*got 1\.0"),
        ({"batch_ttl": np.float64(60.0)}, r"not a duration: np\.float64\(60\.0\)"),
        ({"flush_interval": True}, r"flush_interval must be seconds >= 0, got True"),
    ]:
        with pytest.raises((ValueError, bitstat.SchemaError), match=message):
            bitstat.connect(server_url, namespace=namespace, **options)
