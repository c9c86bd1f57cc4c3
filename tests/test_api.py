"""Example-based tests of the public API of DESIGN.md §2, on every backend.

Every event carries an explicit time, so nothing depends on the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

import bitstat
import servers

AMS = "Europe/Amsterdam"
FULL = ("hour", "day", "week", "month", "year")

Open = Callable[..., bitstat.Stats]


def drop(client: servers.Client, ns: str) -> None:
    """Delete the keys of every namespace whose name contains `ns` (a unique test name)."""
    for key in list(client.scan_iter(match="{*" + ns + "*", count=1000)):
        client.delete(key)


@pytest.fixture
def open_stats(server_url: str, namespace: str, redis_client: servers.Client) -> Iterator[Open]:
    """connect() on the test's backend and namespace; closes and deletes everything after."""
    opened: list[bitstat.Stats] = []
    names: set[str] = set()

    def make(schema: bitstat.Schema | None = None, ns: str | None = None) -> bitstat.Stats:
        ns = ns or namespace
        assert namespace in ns
        names.add(namespace)
        st = bitstat.connect(server_url, namespace=ns, schema=schema)
        opened.append(st)
        return st

    yield make
    for st in opened:
        st.close()
    for ns in names:
        drop(redis_client, ns)


def shop_schema(**overrides: Any) -> bitstat.Schema:
    settings: dict[str, Any] = {
        "actor": "user",
        "ids": "int",
        "timezone": AMS,
        "periods": FULL,
        "count": ["country", "country~platform"],
        "sum": ["amount", "amount by country", "amount by country~platform"],
        "top": ["item", "country~platform"],
        "unique": ["ip"],
        "segment": ["country", "country~platform"],
        "anonymous": True,  # a few events without an actor count in totals, not in actor sets
    }
    settings.update(overrides)
    return bitstat.Schema(**settings)


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    """A naive local wall time in November 2026 (Amsterdam is UTC+1 then)."""
    return datetime(2026, 11, day, hour, minute)


SHOP = [
    # 2026-11-22 is a Sunday: ISO week 47 is 2026-11-16 .. 2026-11-22.
    {"event": "login", "user": 1, "time": at(16, 9), "country": "NL", "platform": "ios"},
    {"event": "login", "user": 2, "time": at(18, 13), "country": "DE", "platform": "web"},
    {"event": "login", "user": 1, "time": at(22, 13, 5), "country": "NL", "platform": "web"},
    {"event": "login", "user": 3, "time": at(22, 13, 59), "country": "NL", "platform": "ios"},
    {"event": "login", "user": 4, "time": at(23, 0, 30), "country": "FR", "platform": "ios"},
    {"event": "login", "time": at(22, 14), "country": "NL", "ip": "10.0.0.1"},
    {"event": "login", "user": 5, "time": datetime(2026, 10, 31, 23), "country": "NL"},
    {"event": "login", "user": 6, "time": datetime(2025, 12, 31, 23), "country": "BE"},
    {"event": "purchase", "user": 1, "time": at(22, 15), "item": "sku-7", "amount": 10,
     "country": "NL", "platform": "ios", "ip": "10.0.0.1"},
    {"event": "purchase", "user": 1, "time": at(22, 16), "item": "sku-7", "amount": 2.5,
     "country": "NL", "platform": "ios", "ip": "10.0.0.2"},
    {"event": "purchase", "user": 2, "time": at(20, 10), "item": "sku-1", "amount": "7.5",
     "country": "DE", "platform": "web", "ip": "10.0.0.1"},
    {"event": "purchase", "user": 3, "time": at(21, 10), "item": "sku-2", "country": "NL",
     "platform": "web"},
    {"event": "purchase", "user": 4, "time": at(2, 10), "item": "sku-3", "amount": 0,
     "country": "FR", "platform": "ios"},
]  # fmt: skip


@pytest.fixture
def shop(open_stats: Open) -> bitstat.Stats:
    st = open_stats(shop_schema())
    result = st.track_many(SHOP)
    assert result.recorded == len(SHOP)
    assert result.rejected == []
    return st


# recording


def test_track_kwargs_and_mapping_forms_record_the_same_event(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    st.track("login", user=42, time=at(22), country="NL", platform="ios")
    st.track({"event": "login", "user": 42, "time": at(22), "country": "NL", "platform": "ios"})
    assert st.total("login", "2026-11-22") == 2
    assert st.unique("login", "2026-11-22") == 1
    assert st.counts("login", "country", "2026-11-22") == {"NL": 2}
    assert st.counts("login", "country~platform", "2026-11-22") == {("NL", "ios"): 2}


def test_track_returns_nothing_and_track_many_reports(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    assert st.track("login", user=1, time=at(1)) is None
    res = st.track_many(
        [
            {"event": "login", "user": 2, "time": at(1)},
            {"event": "login", "user": -1, "time": at(1)},
            {"event": "login", "user": 3, "time": at(1)},
            {"event": "", "user": 4, "time": at(1)},
        ]
    )
    assert isinstance(res, bitstat.TrackResult)
    assert res.recorded == 2
    assert [i for i, _ in res.rejected] == [1, 3]
    assert all(isinstance(reason, str) and reason for _, reason in res.rejected)
    assert st.unique("login", "2026-11-01") == 3


def test_track_many_takes_any_iterable_and_empty_batches(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    gen = ({"event": "login", "user": n, "time": at(3)} for n in range(5))
    assert st.track_many(gen).recorded == 5
    assert st.track_many([]).recorded == 0
    assert st.unique("login", "2026-11-03") == 5


def test_batch_id_makes_a_retry_record_nothing(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    assert st.track_many(SHOP, batch_id="2026-11-22-0001").recorded == len(SHOP)
    again = st.track_many(SHOP, batch_id="2026-11-22-0001")
    assert again.recorded == 0
    assert again.rejected == []
    assert st.total("login", "2026-11") == 6
    assert st.sums("purchase", "amount", "2026-11") == pytest.approx(20.0)
    assert st.track_many(SHOP[:1], batch_id="2026-11-22-0002").recorded == 1
    assert st.total("login", "2026-11") == 7


def test_event_without_actor_counts_but_joins_no_actor_set(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    st.track("login", time=at(5), country="NL", ip="1.2.3.4")
    assert st.total("login", "2026-11-05") == 1
    assert st.counts("login", "country", "2026-11-05") == {"NL": 1}
    assert st.distinct("login", "ip", "2026-11-05") == 1
    assert st.unique("login", "2026-11-05") == 0
    assert st.unique("login", "2026-11-05", country="NL") == 0
    assert len(~st.actors("login").day(2026, 11, 5)) == 0


def test_values_are_recorded_as_text(open_stats: Open) -> None:
    """As JSON writes them, so that clients in any language agree: an integral float is its
    integer (a JavaScript client sends 2 for 2.0), booleans are true and false."""
    st = open_stats(shop_schema(count=["country", "size"]))
    for value in (1, "1", 1.5, "1.5", 2.0, 2, True, "true", False, 1e16, -0.0):
        st.track("login", user=1, time=at(6), size=value)
    st.track_many([{"event": "login", "user": 2, "time": at(6), "size": v} for v in (2.0, True)])
    assert st.counts("login", "size", "2026-11-06") == {
        "1": 2,
        "1.5": 2,
        "2": 3,
        "true": 3,
        "false": 1,
        "10000000000000000": 1,
        "0": 1,
    }


def test_a_summed_text_is_a_number_as_json_or_csv_writes_it(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    res = st.track_many(
        [{"event": "buy", "user": 1, "time": at(6), "amount": a} for a in ("1000", "1_000")]
    )
    assert res.recorded == 1 and [i for i, _ in res.rejected] == [1]
    assert st.sums("buy", "amount", "2026-11-06") == 1000


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_value_that_is_not_a_finite_number_is_refused(open_stats: Open, value: float) -> None:
    st = open_stats(shop_schema(count=["country", "size"]))
    with pytest.raises(bitstat.InvalidEvent, match="size: a number value must be finite"):
        st.track("login", user=1, time=at(6), size=value)
    res = st.track_many(
        [{"event": "login", "user": 1, "time": at(6), "size": v} for v in (1, value)]
    )
    assert res.recorded == 1 and [i for i, _ in res.rejected] == [1]
    assert "must be finite" in res.rejected[0][1]


def test_a_segment_is_asked_by_the_value_as_recorded(open_stats: Open) -> None:
    st = open_stats(shop_schema(segment=["premium", "size"]))
    st.track_many(
        [
            {"event": "login", "user": 1, "time": at(6), "premium": True, "size": 19.0},
            {"event": "login", "user": 2, "time": at(6), "premium": "true", "size": 19},
            {"event": "login", "user": 3, "time": at(6), "premium": False, "size": 19.5},
        ]
    )
    day = "2026-11-06"
    assert st.unique("login", day, premium=True) == st.unique("login", day, premium="true") == 2
    assert st.unique("login", day, premium=False) == 1
    assert st.unique("login", day, size=19.0) == st.unique("login", day, size=19) == 2
    assert st.unique("login", day, size=19.5) == 1
    with pytest.raises(bitstat.QueryError, match="finite number or a boolean"):
        st.unique("login", day, size=float("nan"))


# time


def test_times_in_every_form_land_in_the_local_bucket(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    # 2026-11-22T23:30Z is 2026-11-23 00:30 in Amsterdam.
    instant = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    forms = [
        instant,
        instant.astimezone(timezone(timedelta(hours=-5))),
        datetime(2026, 11, 23, 0, 30),  # naive: local wall time
        "2026-11-22T23:30:00+00:00",
        "2026-11-22T23:30:00Z",
        "2026-11-23T00:30:00",
        "2026-11-23 00:30",
        int(instant.timestamp()),
        instant.timestamp() + 0.5,
    ]
    for user, t in enumerate(forms):
        st.track("login", user=user, time=t)
    assert st.unique("login", "2026-11-23") == len(forms)
    assert st.unique("login", "2026-11-23T00") == len(forms)
    assert st.unique("login", "2026-11-22") == 0


def test_a_naive_time_the_clocks_jumped_over_is_the_instant_python_reads(
    open_stats: Open,
) -> None:
    """02:30 on 2026-03-29 never happened in Amsterdam (02:00 became 03:00). Given as a naive
    time it is the instant Python reads (the offset before the jump: 01:30Z, 03:30 CEST), in
    the T03 bucket as the same instant given with its offset, by every path: a queued
    track(), track_many event by event and by columns, and track_frame."""
    import pandas as pd

    st = open_stats(shop_schema())
    naive = ["2026-03-29T02:30:00", datetime(2026, 3, 29, 2, 30), "2026-03-29 02:59:59"]
    user = 0
    for t in naive:
        st.track("login", user=(user := user + 1), time=t)
    st.track_many([{"event": "login", "user": (user := user + 1), "time": t} for t in naive])
    many = [{"event": "login", "user": (user := user + 1), "time": naive[0]} for _ in range(40)]
    st.track_many(many)
    frame = pd.DataFrame({"event": "login", "user": [user + 1, user + 2], "time": naive[:2]})
    frame["time"] = pd.to_datetime(frame["time"])
    st.track_frame(frame)
    user += 2
    st.track("login", user=(user := user + 1), time="2026-03-29T02:30:00+01:00")
    assert st.total("login", "2026-03-29T03") == user
    assert st.total("login", "2026-03-29T02") == 0


def test_hour_buckets_are_wall_clock_hours_across_dst(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    # Fall back: 02:00-03:00 happens twice on 2026-10-25; it is one wall-clock hour bucket.
    st.track("login", user=1, time=datetime(2026, 10, 25, 0, 30, tzinfo=UTC))  # 02:30 CEST
    st.track("login", user=2, time=datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # 02:30 CET
    # Spring forward: 02:00-03:00 never happens on 2026-03-29.
    st.track("login", user=3, time=datetime(2026, 3, 29, 1, 30, tzinfo=UTC))  # 03:30 CEST
    assert st.unique("login", "2026-10-25T02") == 2
    assert st.actors("login").hour(2026, 10, 25, 2).count() == 2
    hours = st.series("login", "2026-10-25", by="hour")
    assert len(hours) == 24
    assert dict(hours)["2026-10-25T02"] == 2
    assert sum(v for _, v in hours) == 2
    spring = dict(st.series("login", "2026-03-29", by="hour", metric="total"))
    assert spring["2026-03-29T02"] == 0
    assert spring["2026-03-29T03"] == 1


def test_year_end_weeks_belong_to_their_iso_year(open_stats: Open) -> None:
    st = open_stats(shop_schema(horizon="3650d"))  # 2026-W53 ends in 2027
    st.track("login", user=1, time=datetime(2026, 12, 31, 12))  # Thursday of 2026-W53
    st.track("login", user=2, time=datetime(2027, 1, 3, 12))  # Sunday of 2026-W53
    st.track("login", user=3, time=datetime(2025, 12, 29, 12))  # Monday of 2026-W01
    assert st.unique("login", "2026-W53") == 2
    assert st.unique("login", "2026-W01") == 1
    assert st.unique("login", "2026") == 1
    assert st.unique("login", "2027") == 1
    assert st.actors("login").week(2026, 53).count() == 2
    assert st.series("login", "2025-12-29", "2027-01-03", by="year") == [
        ("2025", 1),
        ("2026", 1),
        ("2027", 1),
    ]


# unique and labels


def test_unique_over_labels_and_ranges(shop: bitstat.Stats) -> None:
    st = shop
    assert st.unique("login", "2026-11-22") == 2  # 1 and 3; the actorless event joins nothing
    assert st.unique("login", "2026-W47") == 3  # 1, 2, 3
    assert st.unique("login", "2026-11") == 4  # 1, 2, 3, 4
    assert st.unique("login", "2026") == 5  # and 5 (2026-10-31)
    assert st.unique("login", "2025") == 1
    assert st.unique("login", "2026-11-22T13") == 2
    assert st.unique("login", "2026-11-22T14") == 0
    assert st.unique("login", "2026-11-01", "2026-11-30") == 4
    assert st.unique("login", "2026-10-31", "2026-11-22") == 4  # 5, 1, 2, 3
    assert st.unique("login", date(2026, 11, 16), date(2026, 11, 18)) == 2
    assert st.unique("login", "2026-W46", "2026-W47") == 3
    assert st.unique("login", "2025", "2026-10") == 2
    assert st.unique("login", at(22, 13, 30), at(23, 0, 10)) == 3  # whole hours 13 .. 00
    assert st.unique("login", "2026-11-22T13", "2026-11-22T13") == 2


def test_unique_with_segment_filters(shop: bitstat.Stats) -> None:
    st = shop
    assert st.unique("login", "2026-11", country="NL") == 2
    assert st.unique("login", "2026-11", country="DE") == 1
    assert st.unique("login", "2026-11", country="XX") == 0
    assert st.unique("login", "2026-11", country="NL", platform="ios") == 2
    assert st.unique("login", "2026-11", platform="web", country="NL") == 1
    assert st.unique("purchase", "2026-11", country="FR", platform="ios") == 1


def test_total_counts_every_event(shop: bitstat.Stats) -> None:
    assert shop.total("login", "2026-11-22") == 3
    assert shop.total("login", "2026-11") == 6
    assert shop.total("login", "2025-12-01", "2026-12-31") == 8
    with pytest.raises(bitstat.UnknownEvent):  # a name never recorded: an error, not 0
        shop.total("nothing", "2026")


def test_series_by_period_and_metric(shop: bitstat.Stats) -> None:
    st = shop
    days = st.series("login", "2026-11-16", "2026-11-23", by="day")
    assert days == [
        ("2026-11-16", 1),
        ("2026-11-17", 0),
        ("2026-11-18", 1),
        ("2026-11-19", 0),
        ("2026-11-20", 0),
        ("2026-11-21", 0),
        ("2026-11-22", 2),
        ("2026-11-23", 1),
    ]
    totals = st.series("login", "2026-11-16", "2026-11-23", by="day", metric="total")
    assert dict(totals)["2026-11-22"] == 3
    weeks = st.series("login", "2026-11-16", "2026-11-30", by="week")
    assert weeks == [("2026-W47", 3), ("2026-W48", 1), ("2026-W49", 0)]  # the 30th is a Monday
    months = st.series("login", "2026-10-01", "2026-11-30", by="month")
    assert months == [("2026-10", 1), ("2026-11", 4)]
    # buckets are cut to the range: the week of the 18th counts only the 18th onwards
    assert st.series("login", "2026-11-17", "2026-11-22", by="week") == [("2026-W47", 3)]
    assert st.series("login", "2026-11-19", "2026-11-22", by="week") == [("2026-W47", 2)]
    nl = st.series("login", "2026-11-16", "2026-11-22", by="week", country="NL")
    assert nl == [("2026-W47", 2)]


def test_counts_with_compound_keys_in_the_order_asked(shop: bitstat.Stats) -> None:
    st = shop
    assert st.counts("login", "country", "2026-11") == {"NL": 4, "DE": 1, "FR": 1}
    assert st.counts("login", "country~platform", "2026-11") == {
        ("NL", "ios"): 2,
        ("NL", "web"): 1,
        ("DE", "web"): 1,
        ("FR", "ios"): 1,
    }
    assert st.counts("login", "platform~country", "2026-11") == {
        ("ios", "NL"): 2,
        ("web", "NL"): 1,
        ("web", "DE"): 1,
        ("ios", "FR"): 1,
    }
    assert st.counts("login", "country", "2024") == {}


def test_sums_and_averages(shop: bitstat.Stats) -> None:
    st = shop
    assert st.sums("purchase", "amount", "2026-11") == pytest.approx(20.0)
    assert st.sums("purchase", "amount", "2026-11-22") == pytest.approx(12.5)
    assert st.sums("purchase", "amount", "2026-11", by="country") == pytest.approx(
        {"NL": 12.5, "DE": 7.5, "FR": 0.0}
    )
    assert st.sums("purchase", "amount", "2026-11", by="platform~country") == pytest.approx(
        {("ios", "NL"): 12.5, ("web", "DE"): 7.5, ("ios", "FR"): 0.0}
    )
    # four purchases carried an amount (sku-2 did not)
    assert st.averages("purchase", "amount", "2026-11") == pytest.approx(5.0)
    assert st.averages("purchase", "amount", "2024") is None
    assert st.sums("purchase", "amount", "2024") == 0


def test_top_ranks_by_count_then_value(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    items = ["b", "a", "c", "a", "b", "d", "c", "e"]  # a, b, c twice; d, e once
    st.track_many(
        [{"event": "view", "user": i, "time": at(7), "item": x} for i, x in enumerate(items)]
    )
    assert st.top("view", "item", "2026-11-07") == [
        ("a", 2),
        ("b", 2),
        ("c", 2),
        ("d", 1),
        ("e", 1),
    ]
    assert st.top("view", "item", "2026-11-07", limit=2) == [("a", 2), ("b", 2)]
    assert st.top("view", "item", "2026-11-07", limit=4) == [
        ("a", 2),
        ("b", 2),
        ("c", 2),
        ("d", 1),
    ]
    assert st.top("view", "item", "2026-11-01", "2026-11-06") == []


def test_top_over_a_range_adds_up_buckets(shop: bitstat.Stats) -> None:
    st = shop
    assert st.top("purchase", "item", "2026-11") == [
        ("sku-7", 2),
        ("sku-1", 1),
        ("sku-2", 1),
        ("sku-3", 1),
    ]
    assert st.top("purchase", "country~platform", "2026-11", limit=1) == [(("NL", "ios"), 2)]


def test_top_compound_ties_follow_the_order_asked(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    st.track("view", user=1, time=at(8), country="A", platform="z")
    st.track("view", user=2, time=at(8), country="B", platform="a")
    assert st.top("view", "platform~country", "2026-11-08", limit=1) == [(("a", "B"), 1)]


def test_distinct_values(shop: bitstat.Stats) -> None:
    st = shop
    assert st.distinct("purchase", "ip", "2026-11") == 2
    assert st.distinct("purchase", "ip", "2026-11-20") == 1
    assert st.distinct("purchase", "ip", "2026-11-20", "2026-11-22") == 2  # merged, not added
    assert st.distinct("login", "ip", "2026-11") == 1
    assert st.distinct("login", "ip", "2024") == 0


def test_query_gathers_every_metric(shop: bitstat.Stats) -> None:
    st = shop
    q = st.query("purchase", "2026-11")
    assert q["event"] == "purchase"
    assert q["total"] == 5
    assert q["unique"] == 4
    assert q["counts"]["country"] == st.counts("purchase", "country", "2026-11")
    assert q["counts"]["country~platform"] == st.counts("purchase", "country~platform", "2026-11")
    assert q["sums"]["amount"] == pytest.approx(20.0)
    assert q["sums"]["amount by country"] == pytest.approx({"NL": 12.5, "DE": 7.5, "FR": 0.0})
    assert q["top"]["item"] == st.top("purchase", "item", "2026-11")
    assert q["distinct"]["ip"] == 2


def test_query_days_lists_the_last_days_oldest_first(shop: bitstat.Stats) -> None:
    days = shop.query_days("login", 3, end="2026-11-23")
    assert [d["day"] for d in days] == ["2026-11-21", "2026-11-22", "2026-11-23"]
    assert [d["total"] for d in days] == [0, 3, 1]
    assert [d["unique"] for d in days] == [0, 2, 1]
    assert days[1]["counts"]["country"] == {"NL": 3}


@pytest.mark.parametrize("days", [21_000, 10**6])
def test_query_days_reaching_before_1970_names_days(shop: bitstat.Stats, days: int) -> None:
    # 10**6 days back from 2026 was datetime's OverflowError; 21,000 blamed a `start` not given
    with pytest.raises(bitstat.QueryError, match=r"days=.*before 1970-01-01") as caught:
        shop.query_days("login", days, end="2026-11-23")
    assert caught.value.param == "days"


def test_events_lists_names_sorted(shop: bitstat.Stats) -> None:
    assert shop.events() == ["login", "purchase"]


# actor sets


def test_actor_queries_by_period(shop: bitstat.Stats) -> None:
    a = shop.actors("login")
    assert a.hour(2026, 11, 22, 13).count() == 2
    assert a.day(2026, 11, 22).count() == 2
    assert a.week(2026, 47).count() == 3
    assert a.month(2026, 11).count() == 4
    assert a.year(2026).count() == 5
    assert a.between("2026-11-16", "2026-11-18").count() == 2
    assert a.between("2026-W47").count() == 3
    assert shop.actors("login", country="NL").month(2026, 11).count() == 2


def test_actor_set_algebra(shop: bitstat.Stats) -> None:
    logins = shop.actors("login").month(2026, 11)  # 1, 2, 3, 4
    buyers = shop.actors("purchase").month(2026, 11)  # 1, 2, 3, 4
    week = shop.actors("login").week(2026, 47)  # 1, 2, 3
    dutch = shop.actors("purchase", country="NL").between("2026-11-01", "2026-11-30")  # 1, 3
    everyone = {1, 2, 3, 4, 5, 6}
    assert sorted(logins.ids()) == [1, 2, 3, 4]
    assert sorted((logins & dutch).ids()) == [1, 3]
    assert sorted((week | dutch).ids()) == [1, 2, 3]
    assert sorted((week ^ dutch).ids()) == [2]
    assert sorted((logins - week).ids()) == [4]
    assert sorted((~week).ids()) == sorted(everyone - {1, 2, 3})
    assert sorted((~(week - dutch) & buyers).ids()) == [1, 3, 4]
    assert len(logins & buyers) == 4
    assert (logins ^ buyers).count() == 0
    assert 4 in (logins - week)
    assert 1 not in (logins - week)
    assert 99 not in logins
    assert sorted(iter(dutch)) == [1, 3]


def test_actor_sets_over_shards_and_the_maximum_id(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    ids = [0, 2**20 - 1, 2**20, 3 * 2**20 + 5, 2**32 - 1]
    st.track_many([{"event": "login", "user": u, "time": at(9)} for u in ids])
    st.track_many([{"event": "buy", "user": u, "time": at(9)} for u in ids[1::2]])
    logins = st.actors("login").day(2026, 11, 9)
    buys = st.actors("buy").day(2026, 11, 9)
    assert len(logins) == 5
    assert sorted(logins.ids()) == ids
    assert sorted((logins - buys).ids()) == ids[0::2]
    assert sorted((~buys).ids()) == ids[0::2]
    assert all(u in logins for u in ids)
    assert 2**32 - 2 not in logins


def test_int_ids_given_as_digit_text_are_members(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    st.track("login", user="42", time=at(10))
    logins = st.actors("login").day(2026, 11, 10)
    assert list(logins.ids()) == [42]
    assert 42 in logins
    assert "42" in logins


def test_mapped_ids_come_back_as_given(open_stats: Open) -> None:
    st = open_stats(shop_schema(ids="map"))
    given_ids: list[Any] = [
        42,
        "u-1",
        "007",
        "a@b.c",
        2**64 + 1,
        "c9bf9e57-1685-4c89-bafb-ff5af830be8a",
        "🎉",
    ]
    st.track_many([{"event": "login", "user": u, "time": at(10)} for u in given_ids])
    st.track("login", user="42", time=at(10))  # the same actor as 42
    logins = st.actors("login").day(2026, 11, 10)
    assert logins.count() == len(given_ids)
    got = list(logins.ids())
    assert sorted(got, key=repr) == sorted(given_ids, key=repr)
    assert 42 in logins and "42" in logins
    assert "7" not in logins and 7 not in logins and "007" in logins
    assert 2**64 + 1 in logins and str(2**64 + 1) in logins


# connecting and the stored schema


def test_reader_with_only_url_and_namespace_gets_the_same_answers(
    shop: bitstat.Stats, server_url: str, namespace: str
) -> None:
    with bitstat.connect(server_url, namespace=namespace) as reader:
        assert reader.schema == shop.schema
        assert reader.unique("login", "2026-11") == shop.unique("login", "2026-11")
        assert reader.counts("login", "country~platform", "2026-11") == shop.counts(
            "login", "country~platform", "2026-11"
        )
        assert reader.query("purchase", "2026-11") == shop.query("purchase", "2026-11")
        assert sorted(reader.actors("login").month(2026, 11).ids()) == [1, 2, 3, 4]


def test_connect_checks_a_given_schema(open_stats: Open, server_url: str, namespace: str) -> None:
    open_stats(shop_schema())
    # the same schema again is fine
    with bitstat.connect(server_url, namespace=namespace, schema=shop_schema()) as again:
        assert again.schema == shop_schema()
    with pytest.raises(bitstat.SchemaError):
        bitstat.connect(server_url, namespace=namespace, schema=shop_schema(top=["country"]))
    with pytest.raises(bitstat.SchemaError):
        bitstat.connect(server_url, namespace=namespace, schema=shop_schema(timezone="UTC"))


def test_configure_replaces_the_stored_schema(
    open_stats: Open, server_url: str, namespace: str
) -> None:
    st = open_stats(shop_schema())
    st.track("login", user=1, time=at(11), device="phone")
    with pytest.raises(bitstat.QueryError):
        st.counts("login", "device", "2026-11-11")
    st.configure(shop_schema(count=["device"]))
    st.track("login", user=2, time=at(11), device="phone")
    assert st.counts("login", "device", "2026-11-11") == {"phone": 1}
    with bitstat.connect(server_url, namespace=namespace) as reader:
        assert reader.schema == shop_schema(count=["device"])
    with pytest.raises(bitstat.SchemaError):
        st.configure(shop_schema(ids="map"))  # data exists: the id mode is fixed


def test_reader_gets_per_event_rules_and_expiry(
    open_stats: Open, server_url: str, namespace: str
) -> None:
    schema = shop_schema(
        events={"purchase": {"count": ["item"], "sum": ["amount by item"]}},
        expire={"hour": "14d"},
    )
    st = open_stats(schema)
    st.track("purchase", user=1, time=at(4), item="sku-1", amount=3, country="NL")
    st.track("login", user=1, time=at(4), item="sku-1", amount=3, country="NL")
    with bitstat.connect(server_url, namespace=namespace) as reader:
        assert reader.schema == schema
        assert reader.counts("purchase", "item", "2026-11-04") == {"sku-1": 1}
        assert reader.sums("purchase", "amount", "2026-11-04", by="item") == {"sku-1": 3.0}
        assert reader.counts("login", "country", "2026-11-04") == {"NL": 1}
        with pytest.raises(bitstat.QueryError):
            reader.counts("purchase", "country", "2026-11-04")
        with pytest.raises(bitstat.QueryError):
            reader.counts("login", "item", "2026-11-04")


def test_look_alike_namespaces_are_apart(open_stats: Open, namespace: str) -> None:
    """Namespaces named like bitstat's own tags ({ns:s0}, {ns:ids}, ...) never share keys."""
    suffixes = ["", ":s0", ":ids", ":e:login", "}", ":s0}:a:login:2026", "%3As0", " "]
    opened = []
    for user, suffix in enumerate(suffixes):
        st = open_stats(shop_schema(ids="map"), ns=namespace + suffix)
        st.track("login", user=f"u{user}", time=at(13), country=suffix or "-")
        opened.append(st)
    prefixed = open_stats(shop_schema(ids="map"), ns="{" + namespace)
    prefixed.track("login", user="first", time=at(13), country="{")
    opened.append(prefixed)
    for user, st in enumerate(opened):
        want = f"u{user}" if user < len(suffixes) else "first"
        assert list(st.actors("login").day(2026, 11, 13).ids()) == [want], st.namespace
        assert st.total("login", "2026-11-13") == 1, st.namespace
        assert st.events() == ["login"]
        assert len(st.counts("login", "country", "2026-11-13")) == 1


def test_connect_reads_the_url_from_the_environment(
    open_stats: Open, server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_stats(shop_schema()).track("login", user=7, time=at(14))
    monkeypatch.setenv("BITSTAT_URL", server_url)
    with bitstat.connect(namespace=namespace) as st:
        assert st.unique("login", "2026-11-14") == 1


def test_new_namespace_without_schema_uses_the_default(open_stats: Open) -> None:
    st = open_stats()
    assert st.schema == bitstat.Schema()
    st.track("login", user=1, time=datetime(2026, 11, 22, 12))
    assert st.unique("login", "2026-11-22") == 1
    # without hour buckets an exact time stands for its whole day
    assert st.unique("login", datetime(2026, 11, 22, 1, 5)) == 1
    assert st.unique("login", datetime(2026, 11, 21, 9), datetime(2026, 11, 22, 0, 1)) == 1
    with pytest.raises(bitstat.QueryError):
        st.series("login", "2026-11-22", by="hour")


def test_events_without_a_time_happen_now(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    now = datetime(2026, 11, 22, 23, 30, tzinfo=UTC).timestamp()  # 00:30 on the 23rd locally
    res = st.track_many([{"event": "login", "user": 1}, {"event": "login", "user": 2}], now=now)
    assert res.recorded == 2
    assert st.unique("login", "2026-11-23T00") == 2


# keys on the server


def foreign_keys(namespace: str) -> dict[str, tuple[str, Any]]:
    """Keys a neighbour might own, named close to bitstat's own."""
    return {
        f"{namespace}:schema": ("string", b"foreign"),
        f"{namespace}:events": ("set", {b"x"}),
        f"bitstat:{namespace}": ("hash", {b"f": b"1"}),
        "{" + namespace + "x}:schema": ("string", b"neighbour"),
        "{" + namespace.upper() + "}:events": ("list", [b"a", b"b"]),
        namespace: ("string", b"plain"),
    }


def write_foreign(client: servers.Client, keys: dict[str, tuple[str, Any]]) -> None:
    for key, (kind, value) in keys.items():
        if kind == "string":
            client.set(key, value)
        elif kind == "set":
            client.sadd(key, *value)
        elif kind == "hash":
            client.hset(key, mapping=value)
        else:
            client.rpush(key, *value)


def read_foreign(client: servers.Client, key: str, kind: str) -> Any:
    assert client.type(key) == kind.encode()
    return {
        "string": client.get,
        "set": client.smembers,
        "hash": client.hgetall,
        "list": lambda k: client.lrange(k, 0, -1),
    }[kind](key)


def namespace_keys(client: servers.Client, namespace: str) -> list[str]:
    return [k.decode() for k in client.scan_iter(match=f"*{namespace}*", count=1000)]


def test_keys_stay_under_the_namespace_tag_and_foreign_keys_are_untouched(
    open_stats: Open, redis_client: servers.Client, namespace: str
) -> None:
    foreign = foreign_keys(namespace)
    write_foreign(redis_client, foreign)
    try:
        st = open_stats(shop_schema(ids="map"))
        st.track_many([{**e, "user": f"u{e['user']}"} if "user" in e else e for e in SHOP])
        st.query("purchase", "2026-11")
        st.configure(shop_schema(ids="map", count=["device"]))
        list((~st.actors("login").month(2026, 11)).ids())
        for key, (kind, value) in foreign.items():
            assert read_foreign(redis_client, key, kind) == value, key
        own = [k for k in namespace_keys(redis_client, namespace) if k not in foreign]
        assert own
        tag, inner = "{" + namespace + "}", "{" + namespace + ":"
        assert all(k.startswith((tag, inner)) for k in own), own
    finally:
        for key in foreign:
            redis_client.delete(key)


def test_awkward_names_never_collide(open_stats: Open) -> None:
    st = open_stats(shop_schema(count=["v"], segment=["v"], top=["v"], unique=["v"]))
    names = ["a:b", "a", "b", "{a}", "a}", "{", "a~b", "a=b", "a%3Ab", "a b", "ab", "a\x7fb"]
    names += ["ünï", "🎉", "]] redis.call('FLUSHALL') --", "*", "%"]
    values = {"ab": "a\nb", "a\x7fb": "a\x00b"}  # values may hold any character; names not
    res = st.track_many(
        [
            {"event": name, "user": i, "time": at(12), "v": values.get(name, name)}
            for i, name in enumerate(names)
        ]
    )
    assert [i for i, _ in res.rejected] == [names.index("a\x7fb")]
    assert "unprintable" in res.rejected[0][1]
    kept = [(i, name) for i, name in enumerate(names) if name != "a\x7fb"]
    assert st.events() == sorted(name for _, name in kept)
    for i, name in kept:
        assert st.total(name, "2026-11-12") == 1, name
        assert sorted(st.actors(name).day(2026, 11, 12).ids()) == [i], name
        value = values.get(name, name)
        assert st.counts(name, "v", "2026-11-12") == {value: 1}, name
        assert st.top(name, "v", "2026-11-12") == [(value, 1)], name
        assert st.unique(name, "2026-11-12", v=value) == 1, name
        assert st.unique(name, "2026-11-12", v=value + "x") == 0, name


def test_scratch_keys_are_gone_or_expire_after_queries(
    shop: bitstat.Stats, redis_client: servers.Client, namespace: str
) -> None:
    st = shop
    st.unique("login", "2026-10-01", "2026-11-30")
    st.series("login", "2026-11-01", "2026-11-30", by="week")
    st.top("purchase", "item", "2026-11-01", "2026-11-30")
    st.distinct("purchase", "ip", "2026-11-01", "2026-11-30")
    expr = (st.actors("login").month(2026, 11) ^ st.actors("purchase").week(2026, 47)) | ~(
        st.actors("login").year(2026) - st.actors("purchase", country="NL").between("2026-11")
    )
    assert len(expr) == len(list(expr.ids()))
    assert (5 in expr) == (5 in set(expr.ids()))
    scratch = [k for k in namespace_keys(redis_client, namespace) if ":tmp:" in k]
    assert scratch == []
    # a reader that stops half way leaves at most keys that expire by themselves
    ids = expr.ids()
    next(ids)
    for key in [k for k in namespace_keys(redis_client, namespace) if ":tmp:" in k]:
        assert redis_client.pttl(key) > 0, key
    ids.close()


def test_an_event_never_recorded_is_an_error_and_a_known_one_without_data_is_zero(
    shop: bitstat.Stats,
) -> None:
    asks: list[Callable[[], Any]] = [
        lambda: shop.unique("never", "2026"),
        lambda: shop.total("never", "2026"),
        lambda: shop.series("never", "2026-11-01", "2026-11-02", by="day"),
        lambda: shop.counts("never", "country", "2026"),
        lambda: shop.sums("never", "amount", "2026"),
        lambda: shop.top("never", "item", "2026"),
        lambda: shop.distinct("never", "ip", "2026"),
        lambda: shop.query("never", "2026"),
        lambda: list(shop.actors("never").year(2026).ids()),
        lambda: len(~shop.actors("never").year(2026)),
        lambda: 1 in shop.actors("login").year(2026) - shop.actors("never").year(2026),
        lambda: shop.funnel(["login", "never"], "2026-11-01", "2026-11-30"),
        lambda: shop.retention("never", "login", "2026-11-01", periods=2),
        lambda: shop.stickiness("never", "2026-11-01", "2026-11-07"),
        lambda: shop.lifecycle("never", "2026-11-01", periods=2),
    ]
    for ask in asks:
        with pytest.raises(bitstat.UnknownEvent) as caught:
            ask()
        assert caught.value.event == "never" and "'never'" in str(caught.value)
    with pytest.raises(bitstat.UnknownEvent) as typo:
        shop.unique("logni", "2026")
    assert typo.value.suggestions[0] == "login" and "did you mean 'login'" in str(typo.value)
    assert typo.value.param == "event"
    assert shop.unique("login", "2020") == 0  # known, no data then
    assert shop.series("login", "2020-11-01", "2020-11-02", by="day") == [
        ("2020-11-01", 0),
        ("2020-11-02", 0),
    ]


def test_an_event_the_schema_names_is_known_before_it_is_recorded(open_stats: Open) -> None:
    st = open_stats(shop_schema(events={"refund": {"sum": ["amount"]}}))
    assert st.unique("refund", "2026") == 0
    assert st.sums("refund", "amount", "2026") == 0.0


def test_many_labels_in_one_range(open_stats: Open) -> None:
    # a range covered by more than 16 buckets folds BITOP in chunks
    st = open_stats(shop_schema(periods=("hour", "day")))
    st.track_many(
        [
            {"event": "login", "user": u, "time": datetime(2026, 11, 1) + timedelta(hours=5 * u)}
            for u in range(100)
        ]
    )
    assert st.unique("login", "2026-11-01", "2026-11-30") == 100
    assert st.unique("login", at(1, 3), at(2, 22)) == len(
        [u for u in range(100) if 3 <= 5 * u < 47]
    )
    days = dict(st.series("login", "2026-11-01", "2026-11-30", by="day"))
    assert sum(days.values()) == 100


def test_several_stats_objects_cannot_mix_sets(open_stats: Open, namespace: str) -> None:
    a = open_stats(shop_schema())
    b = open_stats(shop_schema(), ns=namespace + "-other")
    with pytest.raises((ValueError, bitstat.BitstatError)):
        a.actors("login").year(2026) & b.actors("login").year(2026)


def test_queries_survive_a_server_that_forgot_its_scripts(
    shop: bitstat.Stats, redis_client: servers.Client
) -> None:
    """A restarted server has no cached scripts: bitstat loads them again on its own."""
    before = shop.query("purchase", "2026-11")
    redis_client.script_flush()
    assert shop.query("purchase", "2026-11") == before
    redis_client.script_flush()
    expr = shop.actors("login").month(2026, 11) - shop.actors("purchase").week(2026, 47)
    assert sorted(expr.ids()) == [4]
    assert 4 in expr
    redis_client.script_flush()
    assert shop.track_many(SHOP[:2], batch_id="after-flush").recorded == 2
    redis_client.script_flush()
    assert shop.track_many([{"event": "login", "user": 9, "time": at(1)}]).recorded == 1
    assert shop.unique("login", "2026-11") == 5


# retention and funnels


def test_retention_tables_first_and_recurring(open_stats: Open) -> None:
    st = open_stats(shop_schema())
    day = datetime  # local wall times, Amsterdam
    st.track_many(
        [
            {"event": "signup", "user": 1, "time": day(2026, 11, 2, 9)},  # W45
            {"event": "signup", "user": 2, "time": day(2026, 11, 4, 9)},  # W45
            {"event": "signup", "user": 3, "time": day(2026, 11, 10, 9)},  # W46
            {"event": "signup", "user": 1, "time": day(2026, 11, 11, 9)},  # W46, again
            {"event": "login", "user": 1, "time": day(2026, 11, 3, 9)},  # W45
            {"event": "login", "user": 1, "time": day(2026, 11, 12, 9)},  # W46
            {"event": "login", "user": 3, "time": day(2026, 11, 13, 9)},  # W46
            {"event": "login", "user": 2, "time": day(2026, 11, 17, 9)},  # W47
            {"event": "login", "user": 3, "time": day(2026, 11, 18, 9)},  # W47
        ]
    )
    now = "2026-11-20T12:00"  # Friday of W47: W48 has not begun
    first = st.retention("signup", "login", "2026-W45", periods=3, period="week", now=now)
    assert [(r.cohort, r.size, r.counts) for r in first.rows] == [
        ("2026-W45", 2, [1, 1, 1]),
        ("2026-W46", 1, [1, 1, None]),  # user 1 signed up before: not in the W46 cohort
        ("2026-W47", 0, [0, None, None]),
    ]
    assert first.rows[0].rates() == [0.5, 0.5, 0.5]
    again = st.retention(
        "signup",
        "login",
        "2026-11-10",
        periods=1,
        period="week",
        kind="recurring",
        columns=3,
        now=now,
    )
    assert [(r.cohort, r.size, r.counts) for r in again.rows] == [("2026-W46", 2, [2, 1, None])]
    daily = st.retention(
        "signup", "login", "2026-11-02", periods=2, period="day", columns=2, now=now
    )
    assert [(r.cohort, r.size, r.counts) for r in daily.rows] == [
        ("2026-11-02", 1, [0, 1]),
        ("2026-11-03", 0, [0, 0]),
    ]


def test_funnel_steps_in_order_within_the_window(open_stats: Open) -> None:
    st = open_stats(shop_schema())

    def ev(name: str, user: int, day: int, month: int = 11) -> dict[str, Any]:
        return {"event": name, "user": user, "time": datetime(2026, month, day, 12)}

    st.track_many(
        [
            ev("visit", 1, 1), ev("signup", 1, 1), ev("buy", 1, 2),  # all three in time
            ev("visit", 2, 2), ev("signup", 2, 5),  # signs up too late for 2 days
            ev("visit", 3, 3), ev("signup", 3, 4), ev("buy", 3, 4),  # after the range: fine
            ev("signup", 4, 1), ev("visit", 4, 2),  # wrong order
            ev("visit", 5, 31, 10), ev("signup", 5, 1),  # visited before the range
            ev("buy", 6, 1), ev("visit", 6, 1), ev("signup", 6, 2),  # bought before signing up
        ]
    )  # fmt: skip
    steps = ["visit", "signup", "buy"]
    assert st.funnel(steps, "2026-11-01", "2026-11-03", within="2d") == [
        ("visit", 5),
        ("signup", 3),
        ("buy", 2),
    ]
    assert st.funnel(steps, "2026-11-01", "2026-11-03", within="7d") == [
        ("visit", 5),
        ("signup", 4),
        ("buy", 2),
    ]
    assert st.funnel(["visit"], "2026-11-01", "2026-11-03") == [("visit", 5)]
    assert st.funnel(steps, "2026-11-10", "2026-11-12") == [("visit", 0), ("signup", 0), ("buy", 0)]


def test_numpy_scalars_and_large_numbers_are_recorded_as_javascript_writes_them(
    open_stats: Open,
) -> None:
    """A value read out of a numpy array or a pandas frame (np.float64, np.int64, np.bool_) is
    the Python number it holds, in every path (`track` at once or queued, `track_many` event by
    event or by columns, `track_frame`); a float at 1e21 or more, or below 1e-6, has an
    exponent, as JavaScript writes it (1e21 is 1e+21, not 22 digits)."""
    import numpy as np

    st = open_stats(shop_schema(count=["country", "size"], segment=["size"]))
    values = [np.float64(0.5), np.int64(7), np.bool_(True), 1e21, 1e300, 1e-7, 2.5e-6, 1e20]
    for value in values:
        st.track("login", user=1, time=at(6), size=value)
    st.track_many([{"event": "login", "user": 2, "time": at(6), "size": v} for v in values])
    want = {
        "0.5": 2,
        "7": 2,
        "true": 2,
        "1e+21": 2,
        "1e+300": 2,
        "1e-7": 2,
        "0.0000025": 2,
        "100000000000000000000": 2,
    }
    assert st.counts("login", "size", "2026-11-06") == want
    assert st.unique("login", "2026-11-06", size=np.float64(0.5)) == 2
    assert st.unique("login", "2026-11-06", size=np.int64(7)) == 2
    st.track("buy", user=1, time=at(6), amount=np.int64(3))
    st.track_many([{"event": "buy", "user": 2, "time": at(6), "amount": np.float32(0.5)}])
    assert st.sums("buy", "amount", "2026-11-06") == 3.5


def test_an_integer_too_long_to_write_rejects_its_event_alone(open_stats: Open) -> None:
    st = open_stats(shop_schema(count=["country", "size"]))
    events = [{"event": "login", "user": 1, "time": at(6), "size": v} for v in (10**5000, 3)]
    for batch in (events, events * 40):  # (event by event, and by columns)
        res = st.track_many(batch)
        assert res.recorded == len(batch) // 2
        assert {i % 2 for i, _ in res.rejected} == {0}
        assert "digits" in res.rejected[0][1]
