"""What an event may hold, and what a query may ask: names, values, actors, times, expired buckets.

Each limit rejects the event alone, with a reason in words, and the rest of the batch is kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import bitstat
from bitstat import ops

Open = Callable[..., bitstat.Stats]
SUPPORTED = "1970-01-01 to 9998-12-31"


@pytest.fixture
def open_stats(server_url: str, namespace: str) -> Iterator[Open]:
    opened: list[bitstat.Stats] = []

    def make(**settings: Any) -> bitstat.Stats:
        st = bitstat.connect(
            server_url, namespace=f"{namespace}-{len(opened)}", schema=bitstat.Schema(**settings)
        )
        opened.append(st)
        return st

    yield make
    for st in opened:
        st.drop()
        st.close()


def reasons(result: bitstat.TrackResult) -> dict[int, str]:
    return dict(result.rejected)


def test_times_past_the_horizon_are_rejected_with_the_reason(open_stats: Open) -> None:
    st = open_stats()
    now = datetime.now(UTC)
    result = st.track_many(
        [
            {"event": "e", "user": 1, "time": "3000-01-01"},
            {"event": "e", "user": 2, "time": now + timedelta(hours=23)},
            {"event": "e", "user": 3, "time": (now + timedelta(days=2)).timestamp()},
            {"event": "e", "user": 4},
        ]
    )
    assert result.recorded == 2
    why = reasons(result)
    assert set(why) == {0, 2}
    assert "'3000-01-01' is more than 1 day ahead of now" in why[0] and "horizon" in why[0]
    assert "(epoch seconds) is more than 1 day ahead" in why[2]
    assert st.span("e") == (now.date(), (now + timedelta(hours=23)).date())


def test_the_horizon_is_set_in_the_schema_and_counts_from_the_clock_given(
    open_stats: Open,
) -> None:
    st = open_stats(horizon="30d")
    now = datetime.now(UTC)
    ok = st.track_many([{"event": "e", "user": 1, "time": now + timedelta(days=29)}])
    late = st.track_many([{"event": "e", "user": 1, "time": now + timedelta(days=31)}])
    assert (ok.recorded, late.recorded) == (1, 0)
    assert "30 days ahead" in late.rejected[0][1]
    # the clock a caller passes (a replay of yesterday's log) is the one the horizon counts from
    past = (now - timedelta(days=100)).timestamp()
    replay = st.track_many([{"event": "e", "user": 1, "time": past + 40 * 86400}], now=past)
    assert replay.recorded == 0


def test_times_outside_the_supported_dates_say_so_in_words(open_stats: Open) -> None:
    st = open_stats()
    result = st.track_many(
        [
            {"event": "e", "user": 1, "time": datetime(1850, 1, 1)},
            {"event": "e", "user": 1, "time": "1969-12-31T23:59:59+00:00"},
            {"event": "e", "user": 1, "time": -5},
        ]
    )
    why = reasons(result)
    assert why[0] == (
        f"time: 1850-01-01T00:00:00 is before 1970-01-01; bitstat records times from {SUPPORTED}"
    )
    assert "'1969-12-31T23:59:59+00:00' is before 1970-01-01" in why[1]
    assert "-5 (epoch seconds) is before 1970-01-01" in why[2]
    assert all("datetime.datetime" not in w for w in why.values())
    far = open_stats(horizon=f"{400 * 365 * 10}d").track_many(
        [{"event": "e", "user": 1, "time": "9999-06-01"}]
    )
    assert f"is after 9998-12-31; bitstat records times from {SUPPORTED}" in far.rejected[0][1]
    st.track("e", user=1)
    # queries name the same dates
    for start, end, param in (("2026-01-01", "9999-12-31", "end"), ("1969-12-31", None, "start")):
        with pytest.raises(bitstat.QueryError) as caught:
            st.unique("e", start, end)
        assert SUPPORTED in str(caught.value) and caught.value.param == param


def test_names_must_be_printable_and_short(open_stats: Open) -> None:
    st = open_stats()
    result = st.track_many(
        [
            {"event": "bad\nname", "user": 1},
            {"event": "x" * 201, "user": 1},
            {"event": "tab\there", "user": 1},
            {"event": "x" * 200, "user": 1},
            {"event": "ünïcödé 🎉 with spaces: ok", "user": 1},
        ]
    )
    why = reasons(result)
    assert set(why) == {0, 1, 2}
    assert (
        why[0]
        == "event: event name holds the unprintable character '\\n'; names must be printable text"
    )
    assert "201 characters long; at most 200" in why[1]
    assert st.events() == sorted(["x" * 200, "ünïcödé 🎉 with spaces: ok"])
    for bad in ("new\nline", "x" * 201):
        with pytest.raises(bitstat.SchemaError, match="property name"):
            bitstat.Schema(count=[bad])
        with pytest.raises(bitstat.SchemaError, match="event name"):
            bitstat.Schema(events={bad: {"count": ["a"]}})


def test_values_and_text_ids_are_bounded(open_stats: Open) -> None:
    st = open_stats(ids="map", top=["item"], count=["a~b"], max_value_length=10)
    result = st.track_many(
        [
            {"event": "e", "user": "u", "item": "x" * 11},
            {"event": "e", "user": "u", "a": "ok", "b": "y" * 11},
            {"event": "e", "user": "u" * 11, "item": "fine"},
            {"event": "e", "user": "u", "item": "x" * 10, "a": 1234567890},
        ]
    )
    why = reasons(result)
    assert set(why) == {0, 1, 2}
    assert why[0] == (
        "item: value is 11 characters long; at most 10 are recorded (Schema max_value_length)"
    )
    assert why[1].startswith("b: value is 11 characters long")
    assert why[2].startswith("user: actor id is 11 characters long")
    assert st.top("e", "item", datetime.now(UTC).date()) == [("x" * 10, 1)]
    default = open_stats(top=["item"])
    big = default.track_many(
        [{"event": "e", "user": 1, "item": "x" * 1_000_000}, {"event": "e", "user": 1, "item": "y"}]
    )
    assert [i for i, _ in big.rejected] == [0] and "at most 1,024" in big.rejected[0][1]


def test_an_event_without_an_actor_is_rejected_unless_the_schema_allows_it(
    open_stats: Open,
) -> None:
    strict = open_stats(count=["country"])
    result = strict.track_many([{"event": "e", "user": None}, {"event": "e", "country": "NL"}])
    assert result.recorded == 0
    assert all(w.startswith("user: no actor") for w in reasons(result).values())
    loose = open_stats(count=["country"], anonymous=True)
    result = loose.track_many([{"event": "e", "user": None}, {"event": "e", "country": "NL"}])
    assert result.recorded == 2
    today = datetime.now(UTC).date()
    assert loose.total("e", today) == 2 and loose.unique("e", today) == 0
    assert loose.counts("e", "country", today) == {"NL": 1}


def test_text_ids_in_an_int_namespace_point_to_ids_map(open_stats: Open) -> None:
    st = open_stats()
    result = st.track_many([{"event": "e", "user": "3f2b1c9e-0d4a-4b8e-9c1a-2b3c4d5e6f70"}])
    assert "ids='map'" in result.rejected[0][1]


def test_a_float_time_past_int64_is_rejected_without_a_warning(open_stats: Open) -> None:
    # the batch path cast 1e300 to int64 (a RuntimeWarning; under -W error, track_many raised)
    st = open_stats()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = st.track_many(
            [
                {"event": "e", "user": 1, "time": 1e300},
                {"event": "e", "user": 2, "time": -1e300},
                {"event": "e", "user": 3, "time": 1772445600.5},
            ]
        )
    assert result.recorded == 1 and [i for i, _ in result.rejected] == [0, 1]
    assert "after 9998-12-31" in reasons(result)[0]
    assert "before 1970-01-01" in reasons(result)[1]


def test_expired_buckets_are_reported_at_ingest_and_refused_by_queries(open_stats: Open) -> None:
    st = open_stats(periods=("hour", "day", "week", "month", "year"), expire={"hour": "14d"})
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    old, recent = (now - timedelta(days=30)).replace(hour=10), now - timedelta(hours=3)
    result = st.track_many(
        [
            {"event": "e", "user": 1, "time": old},
            {"event": "e", "user": 2, "time": old + timedelta(hours=1)},
            {"event": "e", "user": 3, "time": recent},
        ]
    )
    assert result.recorded == 3 and result.expired == {"hour": 2}
    assert st.track_many([{"event": "e", "user": 3, "time": recent}]).expired == {}
    # whole days are kept; the old events' hours are not, and asking about them is an error
    assert st.unique("e", old.date()) == 2
    with pytest.raises(bitstat.QueryError) as caught:
        st.series("e", old.date(), old.date(), by="hour")
    message = str(caught.value)
    assert "hour buckets are kept 2 weeks" in message and "Schema expire" in message
    assert caught.value.param == "start"
    with pytest.raises(bitstat.QueryError, match="Schema expire"):
        st.unique("e", old.replace(tzinfo=None) + timedelta(hours=1), old.date())
    with pytest.raises(bitstat.QueryError, match="Schema expire"):
        st.actors("e").hour(old.year, old.month, old.day, old.hour).count()
    label = recent.strftime("%Y-%m-%dT%H")
    assert st.unique("e", label) == 1
    assert dict(st.series("e", recent.date(), recent.date(), by="hour"))[label] == 1
    # a batch recorded before reports nothing of it again
    again = st.track_many([{"event": "e", "user": 1, "time": old}], batch_id="b")
    assert again.expired == {"hour": 1}
    assert st.track_many([{"event": "e", "user": 1, "time": old}], batch_id="b").expired == {}


def test_a_bucket_gone_is_read_from_the_finer_buckets_kept(open_stats: Open) -> None:
    # weeks expire first here: a range of whole days that is an old week was tiled with the
    # week and refused ("ask about whole days"), though its days are kept
    st = open_stats(expire={"week": "7d", "month": "1d"})
    today = datetime.now(UTC).date()
    monday = today - timedelta(days=today.weekday() + 63)
    days = [monday + timedelta(days=i % 7) for i in range(14)]
    result = st.track_many([{"event": "e", "user": i, "time": d} for i, d in enumerate(days)])
    assert result.expired == {"week": 14, "month": 14}
    year, week, _ = monday.isocalendar()
    sunday = monday + timedelta(days=6)
    assert st.unique("e", monday, sunday) == st.unique("e", f"{year}-W{week:02d}") == 14
    assert st.total("e", monday, sunday) == 14
    assert len(st.actors("e").between(monday, sunday)) == 14
    assert len(st.actors("e").week(year, week)) == 14
    assert dict(st.series("e", monday, sunday, by="week")) == {f"{year}-W{week:02d}": 14}
    month_days = [d for d in days if d.month == monday.month]
    first = monday.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    assert st.total("e", first, last) == st.total("e", first.strftime("%Y-%m")) == len(month_days)
    # a bucket nothing finer can stand for is still refused, saying what to ask instead
    hours = open_stats(periods=("hour", "day", "week"), expire={"day": "7d", "hour": "7d"})
    hours.track_many([{"event": "e", "user": 1, "time": monday}])
    assert hours.unique("e", f"{year}-W{week:02d}") == 1
    with pytest.raises(bitstat.QueryError) as caught:
        hours.unique("e", monday, monday + timedelta(days=2))
    assert "ask about whole weeks, or days within the last 1 week" in str(caught.value)


def test_client_caches_emptied_at_their_limit_lose_nothing(
    open_stats: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id and value caches are emptied when they would pass ID_CACHE_LIMIT (2,000,000), in
    the middle of a batch that also holds ids and values they knew: every id is still read."""
    from bitstat import record

    monkeypatch.setattr(record, "ID_CACHE_LIMIT", 5)
    st = open_stats(ids="map", unique=["item"])
    t = "2026-11-03T10:00:00+00:00"
    first = [{"event": "buy", "user": f"u{i}", "item": f"i{i}", "time": t} for i in range(4)]
    st.track_many(first * 20)  # large enough to number values before the write
    for n in (8, 12, 16):  # known and new ids and values in each batch, past the limit
        mixed = [{"event": "buy", "user": f"u{i}", "item": f"i{i}", "time": t} for i in range(n)]
        assert st.track_many(mixed * 10).recorded == 10 * n
    for i in (0, 16):  # and one event at a time
        st.track({"event": "buy", "user": f"u{i}", "item": f"i{i}", "time": t})
    assert st.unique("buy", "2026-11-03") == 17
    assert st.distinct("buy", "item", "2026-11-03") == 17
    assert sorted(st.actors("buy").day(2026, 11, 3).ids()) == sorted(f"u{i}" for i in range(17))


def test_a_namespace_dropped_and_used_again_by_the_same_client_numbers_ids_anew(
    open_stats: Open,
) -> None:
    """After `drop()` the server numbers ids and values from 0 again: the client must not keep
    the offsets it had learnt (alice's old offset is bob's new one)."""
    st = open_stats(ids="map", unique=["item"])
    t = "2026-11-03T10:00:00+00:00"
    st.track("login", user="alice", item="x", time=t)
    st.drop()
    st.track("login", user="bob", item="y", time=t)
    st.track_many([{"event": "login", "user": "alice", "item": "x", "time": t}] * 70)
    assert st.unique("login", "2026-11-03") == 2
    assert sorted(st.actors("login").day(2026, 11, 3).ids()) == ["alice", "bob"]
    assert st.distinct("login", "item", "2026-11-03") == 2


def test_track_after_configure_writes_the_new_schema_s_periods(open_stats: Open) -> None:
    """`track()` remembers key names per event and hour; a new schema's periods are its own."""
    st = open_stats(periods=("day", "week"), count=["country"])
    t = "2026-11-03T10:00:00+00:00"
    st.track("login", user=1, country="NL", time=t)
    st.configure(bitstat.Schema(periods=("day", "month"), count=["country"]))
    st.track("login", user=2, country="NL", time=t)
    # months added while days held data: November is read from its days, which hold both
    assert st.unique("login", "2026-11") == 2
    assert st.counts("login", "country", "2026-11") == {"NL": 2}
    assert st.unique("login", "2026-11-03") == 2
    # and the month key was written for user 2 alone (the new schema's periods)
    month = st._ns.keys.actors(0, "login", "2026-11")
    assert st._store.client.exists(month) == 1


def test_a_period_added_to_a_namespace_holding_data_is_read_from_the_finer_ones(
    open_stats: Open,
) -> None:
    """A week and a month added once days hold data hold only what comes after: a range they
    tile was answered from them, silently short (3 where 13 actors came)."""
    st = open_stats(ids="map", periods=("day",))
    before = [
        {"event": "v", "user": f"u{i}", "time": f"2026-11-0{2 + i % 5}T10:00:00Z"}
        for i in range(10)
    ]
    st.track_many(before)
    st.configure(bitstat.Schema(ids="map", periods=("day", "week", "month")))
    after = [
        {"event": "v", "user": f"u{i}", "time": f"2026-11-0{5 + i % 3}T10:00:00Z"}
        for i in range(10, 13)
    ]
    st.track_many(after)
    assert st.unique("v", "2026-11-02", "2026-11-08") == 13
    assert st.unique("v", "2026-W45") == st.unique("v", "2026-11") == 13
    assert st.total("v", "2026-11") == st.total("v", "2026-11-01", "2026-11-30") == 13
    assert len(st.actors("v").month(2026, 11)) == 13
    assert [n for _, n in st.series("v", "2026-W45", "2026-W45", by="week")] == [13]
    # a weekly retention table reads that week as unique() does, from its days
    table = st.retention("v", "v", "2026-W45", 2, period="week")
    assert (table.rows[0].size, table.rows[0].counts[0]) == (13, 13)


def test_distinct_values_switched_between_unique_and_approx_are_refused_for_the_days_before(
    open_stats: Open,
) -> None:
    """A property switched from `unique` to `approx` once days held data answered 0 distinct
    values for those days (their values are in exact bitmaps, the question read the empty
    HyperLogLogs) instead of saying so."""
    st = open_stats(ids="map", unique=["session"], horizon="30d")
    today = datetime.now(UTC).date()
    day = lambda n: f"{today + timedelta(days=n)}T10:00:00Z"  # noqa: E731
    st.track_many(
        [{"event": "v", "user": i, "session": f"s{i}", "time": day(-3)} for i in range(5)]
    )
    assert st.distinct("v", "session", str(today - timedelta(days=3))) == 5
    st.configure(bitstat.Schema(ids="map", approx=["session"], horizon="30d"))
    st.track_many([{"event": "v", "user": 9, "session": "s9", "time": day(2)}])
    for start, end in ((-3, None), (-10, 5), (0, None)):
        lo = str(today + timedelta(days=start))
        hi = None if end is None else str(today + timedelta(days=end))
        with pytest.raises(bitstat.QueryError, match="kept approx now, but configure"):
            st.distinct("v", "session", lo, hi)
    # the days after the change hold one form alone, and the other rules still answer
    assert (
        st.distinct("v", "session", str(today + timedelta(days=1)), str(today + timedelta(days=5)))
        == 1
    )
    assert st.unique("v", str(today - timedelta(days=3)), str(today + timedelta(days=5))) == 6
    # query() answers every other metric, and None for the distinct values it cannot
    summary = st.query("v", str(today - timedelta(days=3)), str(today + timedelta(days=5)))
    assert (summary["total"], summary["unique"], summary["distinct"]) == (6, 6, {"session": None})
    # and back to unique: every day that held data at either switch is refused, saying from
    # which day an answer is whole
    st.configure(bitstat.Schema(ids="map", unique=["session"], horizon="30d"))
    with pytest.raises(
        bitstat.QueryError,
        match=f"from {today - timedelta(days=3)} to {day(2)[:10]}.* after {day(2)[:10]}$",
    ):
        st.distinct("v", "session", str(today))
    # an event or property named with ':' is its own entry
    assert ops.switch_name("a:b", "c") != ops.switch_name("a", "b:c")


def test_a_family_kept_per_hour_once_days_hold_data_is_refused_for_the_hours_before(
    open_stats: Open,
) -> None:
    """Counts kept per hour from a change on hold only what came after it: asked about an
    hour before, they answered short (3 where 13 came) instead of saying so."""
    st = open_stats(periods=("hour", "day"), count=["country"])
    t = "2026-11-03T10:{:02d}:00Z"
    st.track_many(
        [{"event": "v", "user": i, "country": "NL", "time": t.format(i)} for i in range(10)]
    )
    st.configure(bitstat.Schema(periods=("hour", "day"), count=["country"], hourly=["count"]))
    st.track_many(
        [{"event": "v", "user": i, "country": "NL", "time": t.format(i)} for i in range(10, 13)]
    )
    with pytest.raises(bitstat.QueryError, match="count was kept per hour"):
        st.counts("v", "country", "2026-11-03T10", "2026-11-03T11")
    assert st.counts("v", "country", "2026-11-03") == {"NL": 13}  # whole days: the days
    assert st.unique("v", "2026-11-03T10", "2026-11-03T11") == 13  # actors: always per hour


def test_days_gone_under_a_week_added_later_say_the_days_are_gone(open_stats: Open) -> None:
    """The refusal named the first bucket it left out (the week, added later), where the
    days that would have answered are past their retention."""
    today = datetime.now(UTC).date()
    monday = today - timedelta(days=today.weekday() + 35)
    st = open_stats(periods=("day",), expire={"day": "14d"})
    old = [
        {"event": "v", "user": i, "time": f"{monday + timedelta(days=i % 7)}T10:00:00Z"}
        for i in range(7)
    ]
    st.track_many([*old, {"event": "v", "user": 99}])
    st.configure(bitstat.Schema(periods=("day", "week"), expire={"day": "14d"}))
    with pytest.raises(bitstat.QueryError, match=f"so {monday} is gone"):
        st.unique("v", str(monday), str(monday + timedelta(days=6)))


def test_only_the_buckets_that_lack_data_are_read_from_finer_ones(open_stats: Open) -> None:
    """One week begun before weeks were added made every week of a range be read from its
    days (a year's range: 365 day keys)."""
    st = open_stats(periods=("day",))
    st.track_many([{"event": "v", "user": 1, "time": "2026-10-05T10:00:00Z"}])
    st.configure(bitstat.Schema(periods=("day", "week")))
    labels = st._ns.cover_labels("2026-09-21", "2026-10-11")
    days = [f"2026-10-{d:02d}" for d in range(5, 12)]
    assert list(labels) == ["2026-W39", "2026-W40", *days]
    assert st.unique("v", "2026-09-21", "2026-10-11") == 1
