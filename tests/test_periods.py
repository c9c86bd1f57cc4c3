"""Tests for bitstat.periods: labels, time parsing, ranges, covers and vectorised wall time."""

from __future__ import annotations

import math
import zoneinfo
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitstat import periods as periods_module
from bitstat.errors import QueryError
from bitstat.periods import (
    PERIODS,
    Bucket,
    bucket_of,
    buckets_between,
    cover,
    day_labels,
    hour_label,
    labels_for_day,
    parse_label,
    parse_time,
    resolve_range,
    wall_seconds,
)

AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
UTC_ZONE = ZoneInfo("UTC")
ZONES = [AMS, NYC, KOLKATA, LORD_HOWE, UTC_ZONE]
ALL = PERIODS
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# from year 2: every bucket of a wall has a previous one (year 1 has none)
walls = st.datetimes(min_value=datetime(2, 1, 8), max_value=datetime(9998, 12, 20))
hours_2020s = st.integers(0, 8 * 366 * 24).map(lambda h: datetime(2019, 1, 1) + timedelta(hours=h))


def _expected_label(period: str, t: datetime) -> str:
    if period == "hour":
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}"
    if period == "day":
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
    if period == "week":
        year, week, _ = t.isocalendar()
        return f"{year:04d}-W{week:02d}"
    if period == "month":
        return f"{t.year:04d}-{t.month:02d}"
    return f"{t.year:04d}"


# Labels and buckets


@FAST
@given(walls, st.sampled_from(PERIODS))
def test_bucket_of_contains_wall_and_label_round_trips(wall: datetime, period: str) -> None:
    bucket = bucket_of(period, wall)
    assert bucket.period == period
    assert bucket.start <= wall < bucket.end
    assert bucket.label == _expected_label(period, wall)
    assert parse_label(bucket.label) == bucket
    assert bucket_of(period, bucket.end - timedelta(microseconds=1)) == bucket
    assert bucket.next().start == bucket.end
    assert bucket.next().prev() == bucket
    assert bucket.prev().end == bucket.start


@pytest.mark.parametrize(
    ("label", "period", "start", "end"),
    [
        ("2026-11-22T13", "hour", datetime(2026, 11, 22, 13), datetime(2026, 11, 22, 14)),
        ("2026-12-31T23", "hour", datetime(2026, 12, 31, 23), datetime(2027, 1, 1)),
        ("2026-11-22", "day", datetime(2026, 11, 22), datetime(2026, 11, 23)),
        ("2024-02-29", "day", datetime(2024, 2, 29), datetime(2024, 3, 1)),
        ("2026-W47", "week", datetime(2026, 11, 16), datetime(2026, 11, 23)),
        ("2026-W53", "week", datetime(2026, 12, 28), datetime(2027, 1, 4)),
        ("2020-W53", "week", datetime(2020, 12, 28), datetime(2021, 1, 4)),
        ("2025-W01", "week", datetime(2024, 12, 30), datetime(2025, 1, 6)),
        ("2026-11", "month", datetime(2026, 11, 1), datetime(2026, 12, 1)),
        ("2026-12", "month", datetime(2026, 12, 1), datetime(2027, 1, 1)),
        ("2026", "year", datetime(2026, 1, 1), datetime(2027, 1, 1)),
        ("0001", "year", datetime(1, 1, 1), datetime(2, 1, 1)),
    ],
)
def test_parse_label_each_format(label: str, period: str, start: datetime, end: datetime) -> None:
    bucket = parse_label(label)
    assert bucket == Bucket(period, start, end)
    assert bucket.label == label


@pytest.mark.parametrize(
    ("day", "week"),
    [
        (date(2026, 12, 31), "2026-W53"),
        (date(2027, 1, 1), "2026-W53"),
        (date(2027, 1, 3), "2026-W53"),
        (date(2027, 1, 4), "2027-W01"),
        (date(2024, 12, 30), "2025-W01"),
        (date(2021, 1, 3), "2020-W53"),
        (date(2027, 12, 31), "2027-W52"),
    ],
)
def test_iso_week_edges(day: date, week: str) -> None:
    wall = datetime(day.year, day.month, day.day, 12)
    assert bucket_of("week", wall).label == week
    assert labels_for_day((day - date(1970, 1, 1)).days)["week"] == week


@pytest.mark.parametrize(
    "text",
    [
        *["2027-W53", "2026-W00", "2026-W54", "2026-13", "2026-00", "2026-02-29", "2026-11-31"],
        *["2026-11-22T24", "0000", "26-11", "2026-11-22T13:00", "2026-w47", "", " 2026"],
        *["2026-11-", "\u0662\u0660\u0662\u0666", "2026-11-22 13", "2026-W47-1"],
    ],
)
def test_parse_label_rejects(text: str) -> None:
    with pytest.raises(QueryError, match="label"):
        parse_label(text)


def test_parse_label_rejects_non_strings_and_bad_periods() -> None:
    with pytest.raises(QueryError):
        parse_label(2026)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="unknown period 'minute'"):
        bucket_of("minute", datetime(2026, 1, 1))
    with pytest.raises(QueryError, match="unknown period"):
        Bucket("minute", datetime(2026, 1, 1), datetime(2026, 1, 1, 0, 1))
    with pytest.raises(QueryError, match="naive"):
        bucket_of("day", datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(QueryError, match="outside"):
        parse_label("9999")  # its end is past datetime.max
    with pytest.raises(QueryError, match="no year before"):
        parse_label("0001").prev()


def test_bucket_ordering_and_hash() -> None:
    buckets = [parse_label(x) for x in ["2026-11", "2026-11-02", "2026-W45", "2026", "2026-10-31"]]
    ordered = [b.label for b in sorted(buckets)]
    assert ordered == ["2026", "2026-10-31", "2026-11", "2026-11-02", "2026-W45"]
    assert len({parse_label("2026-11"), parse_label("2026-11")}) == 1


# parse_time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 22, 12, 5, tzinfo=UTC), datetime(2026, 11, 22, 13, 5)),
        (datetime(2026, 7, 1, 12, tzinfo=UTC), datetime(2026, 7, 1, 14)),
        (datetime(2026, 11, 22, 13, 5, 7, 9), datetime(2026, 11, 22, 13, 5, 7, 9)),
        (date(2026, 11, 22), datetime(2026, 11, 22)),
        (1_795_348_800, datetime(2026, 11, 22, 13)),
        (1_795_348_800.5, datetime(2026, 11, 22, 13, 0, 0, 500000)),
        (np.int64(1_795_348_800), datetime(2026, 11, 22, 13)),
        ("2026-11-22", datetime(2026, 11, 22)),
        ("2026-11-22T13:05:00", datetime(2026, 11, 22, 13, 5)),
        ("2026-11-22 13:05", datetime(2026, 11, 22, 13, 5)),
        ("2026-11-22T13:05:00+01:00", datetime(2026, 11, 22, 13, 5)),
        ("2026-11-22T13:05:00+05:30", datetime(2026, 11, 22, 8, 35)),
        ("2026-11-22T12:05:00Z", datetime(2026, 11, 22, 13, 5)),
        ("2026-11-22T13", datetime(2026, 11, 22, 13)),
        ("2026-11", datetime(2026, 11, 1)),
        ("2026-W47", datetime(2026, 11, 16)),
        ("2026", datetime(2026, 1, 1)),
    ],
)
def test_parse_time_accepts(value: object, expected: datetime) -> None:
    assert parse_time(value, AMS) == expected


@pytest.mark.parametrize(
    "value",
    [True, math.nan, math.inf, -math.inf, None, "yesterday", "2026-11-32", [2026], 1e20, "2026-1"],
)
def test_parse_time_rejects_naming_the_value(value: object) -> None:
    with pytest.raises(QueryError) as info:
        parse_time(value, AMS)
    assert repr(value) in str(info.value)


@FAST
@given(st.integers(0, 4_000_000_000), st.sampled_from(ZONES))
def test_parse_time_epoch_matches_fromtimestamp(t: int, tz: ZoneInfo) -> None:
    expected = datetime.fromtimestamp(t, tz).replace(tzinfo=None)
    assert parse_time(t, tz) == expected
    aware = datetime.fromtimestamp(t, timezone(timedelta(hours=-3)))
    assert parse_time(aware, tz) == expected
    assert parse_time(aware.isoformat(), tz) == expected


# resolve_range


@pytest.mark.parametrize(
    ("start", "end", "periods", "lo", "hi"),
    [
        ("2026-11-01", "2026-11-30", ALL, "2026-11-01", "2026-12-01"),
        ("2026-W47", "2026-W48", ALL, "2026-11-16", "2026-11-30"),
        ("2026-11", "2026-12", ALL, "2026-11-01", "2027-01-01"),
        ("2025", "2026", ALL, "2025-01-01", "2027-01-01"),
        ("2026-11", "2026-W47", ALL, "2026-11-01", "2026-11-23"),
        ("2026-11-22T13", "2026-11-22T15", ALL, "2026-11-22T13", "2026-11-22T16"),
        ("2026-11-22T13", "2026-11-22T15", ("day",), "2026-11-22", "2026-11-23"),
        (date(2026, 11, 1), date(2026, 11, 2), ALL, "2026-11-01", "2026-11-03"),
        (
            datetime(2026, 11, 22, 13, 30),
            datetime(2026, 11, 22, 13, 45),
            ALL,
            "2026-11-22T13",
            "2026-11-22T14",
        ),
        (
            datetime(2026, 11, 22, 13, 30),
            datetime(2026, 11, 24, 0, 0),
            ("day", "week"),
            "2026-11-22",
            "2026-11-25",
        ),
        (
            datetime(2026, 11, 22, 12, 30, tzinfo=UTC),
            "2026-11-22T17:59:59+01:00",
            ALL,
            "2026-11-22T13",
            "2026-11-22T18",
        ),
        (1_795_348_800, 1_795_348_800 + 7200, ALL, "2026-11-22T13", "2026-11-22T16"),
        ("2026-11-22 13:05", "2026-11-23", ALL, "2026-11-22T13", "2026-11-24"),
        ("20261122", "2026-W48-2", ALL, "2026-11-22", "2026-11-25"),
        # the basic form of a week label is the whole week (fromisoformat reads its Monday)
        ("2026-11-01", "2026W47", ALL, "2026-11-01", "2026-11-23"),
        ("2026W53", "2027W01", ALL, "2026-12-28", "2027-01-11"),
        (parse_label("2026-W47"), parse_label("2026-12"), ALL, "2026-11-16", "2027-01-01"),
    ],
)
def test_resolve_range_endpoints(
    start: object, end: object, periods: tuple[str, ...], lo: str, hi: str
) -> None:
    expected = (datetime.fromisoformat(lo), datetime.fromisoformat(hi))
    assert resolve_range(start, end, AMS, periods) == expected


@pytest.mark.parametrize(
    ("start", "periods", "lo", "hi"),
    [
        ("2026-11", ALL, "2026-11-01", "2026-12-01"),
        ("2026-W47", ALL, "2026-11-16", "2026-11-23"),
        ("2026W47", ALL, "2026-11-16", "2026-11-23"),
        ("2020W53", ("day",), "2020-12-28", "2021-01-04"),
        ("2026", ALL, "2026-01-01", "2027-01-01"),
        ("2026-11-22", ALL, "2026-11-22", "2026-11-23"),
        (date(2026, 11, 22), ALL, "2026-11-22", "2026-11-23"),
        ("2026-11-22T13", ALL, "2026-11-22T13", "2026-11-22T14"),
        (datetime(2026, 11, 22, 13, 5), ALL, "2026-11-22T13", "2026-11-22T14"),
        (datetime(2026, 11, 22, 13, 5), ("day", "month"), "2026-11-22", "2026-11-23"),
        ("2026-11-22T13:05+00:00", ALL, "2026-11-22T14", "2026-11-22T15"),
    ],
)
def test_resolve_range_single_argument(
    start: object, periods: tuple[str, ...], lo: str, hi: str
) -> None:
    expected = (datetime.fromisoformat(lo), datetime.fromisoformat(hi))
    assert resolve_range(start, None, AMS, periods) == expected


def test_resolve_range_errors() -> None:
    with pytest.raises(QueryError, match="before it starts"):
        resolve_range("2026-11-02", "2026-11-01", AMS, ALL)
    with pytest.raises(QueryError, match="before it starts"):
        resolve_range(datetime(2026, 11, 1, 14), datetime(2026, 11, 1, 13), AMS, ALL)
    with pytest.raises(QueryError, match="'tomorrow'"):
        resolve_range("2026-11-02", "tomorrow", AMS, ALL)
    with pytest.raises(QueryError, match="unknown period"):
        resolve_range("2026-11-02", None, AMS, ("days",))
    with pytest.raises(QueryError, match="no periods"):
        resolve_range("2026-11-02", None, AMS, ())
    # Same hour, day resolution without "hour": not an error.
    assert resolve_range(datetime(2026, 11, 1, 14), datetime(2026, 11, 1, 13), AMS, ("day",)) == (
        datetime(2026, 11, 1),
        datetime(2026, 11, 2),
    )


# cover


def _labels(buckets: list[Bucket]) -> list[str]:
    return [b.label for b in buckets]


def test_cover_whole_buckets() -> None:
    for label in ["2026", "2026-02", "2026-W47", "2026-W53", "2026-11-22", "2026-11-22T13"]:
        b = parse_label(label)
        assert cover(b.start, b.end, ALL) == [b]
    nov = parse_label("2026-11")
    assert _labels(cover(nov.start, nov.end, ("day", "week", "month"))) == ["2026-11"]
    assert _labels(cover(*resolve_range("2025", "2026", AMS, ALL), ALL)) == ["2025", "2026"]


def test_cover_beats_greedy() -> None:
    lo, hi = resolve_range("2026-10-26", "2026-11-30", AMS, ("day", "week", "month"))
    got = cover(lo, hi, ("day", "week", "month"))
    assert _labels(got) == [
        "2026-W44",
        "2026-W45",
        "2026-W46",
        "2026-W47",
        "2026-W48",
        "2026-11-30",
    ]
    # Largest-first would take June and then need five days of July.
    lo, hi = resolve_range("2026-06-01", "2026-07-05", AMS, ALL)
    got = cover(lo, hi, ("day", "week", "month"))
    assert _labels(got) == ["2026-W23", "2026-W24", "2026-W25", "2026-W26", "2026-W27"]
    # Here the year wins over 53 ISO weeks.
    lo, hi = resolve_range("2025-12-29", "2027-01-03", AMS, ALL)
    assert _labels(cover(lo, hi, ALL)) == [
        *["2025-12-29", "2025-12-30", "2025-12-31", "2026"],
        *["2027-01-01", "2027-01-02", "2027-01-03"],
    ]
    assert len(cover(lo, hi, ("day", "week"))) == 53


def test_cover_ragged_edges_use_hours() -> None:
    got = cover(datetime(2026, 11, 21, 22), datetime(2026, 12, 1, 2), ALL)
    assert _labels(got) == [
        *["2026-11-21T22", "2026-11-21T23", "2026-11-22", "2026-W48", "2026-11-30"],
        *["2026-12-01T00", "2026-12-01T01"],
    ]
    assert _labels(cover(datetime(2026, 11, 22, 5), datetime(2026, 11, 22, 7), ALL)) == [
        "2026-11-22T05",
        "2026-11-22T06",
    ]
    assert cover(datetime(2026, 1, 1), datetime(2026, 1, 1), ("day",)) == []


def test_cover_hours_stand_in_for_days() -> None:
    got = cover(datetime(2026, 11, 29), datetime(2026, 12, 3), ("hour", "month"))
    assert [b.period for b in got] == ["hour"] * 96
    got = cover(datetime(2026, 10, 31), datetime(2027, 1, 1), ("hour", "month"))
    assert _labels(got) == [f"2026-10-31T{h:02d}" for h in range(24)] + ["2026-11", "2026-12"]


@pytest.mark.parametrize(
    ("lo", "hi", "periods", "needed"),
    [
        (datetime(2026, 11, 18), datetime(2026, 12, 1), ("week", "month"), "'day' is needed"),
        (datetime(2026, 11, 16), datetime(2026, 11, 30, 5), ("day", "week"), "'hour' is needed"),
        (datetime(2026, 11, 16, 5), datetime(2026, 11, 16, 7), ("day",), "'hour' is needed"),
        (datetime(2026, 11, 16, 5, 30), datetime(2026, 11, 17), ALL, "whole hour"),
        (datetime(2026, 11, 17), datetime(2026, 11, 16), ALL, "before it starts"),
        (datetime(2026, 11, 16), datetime(2026, 11, 17), ("fortnight",), "unknown period"),
    ],
)
def test_cover_errors(lo: datetime, hi: datetime, periods: tuple[str, ...], needed: str) -> None:
    with pytest.raises(QueryError, match=needed):
        cover(lo, hi, periods)


period_sets = st.sets(st.sampled_from(PERIODS), min_size=1)


@FAST
@given(hours_2020s, st.integers(0, 4 * 366 * 24), period_sets.map(lambda s: s | {"day"}))
def test_cover_tiles_exactly(lo: datetime, length: int, periods: set[str]) -> None:
    hi = lo + timedelta(hours=length)
    if "hour" not in periods:
        if (lo.hour or hi.hour) and lo != hi:
            with pytest.raises(QueryError, match="'hour' is needed"):
                cover(lo, hi, periods)
        lo, hi = lo.replace(hour=0), hi.replace(hour=0)
    got = cover(lo, hi, periods)
    assert all(b.period in periods for b in got)
    assert [b.start for b in got] == [lo, *[b.end for b in got]][: len(got)]
    assert (got[-1].end if got else lo) == hi
    assert all(bucket_of(b.period, b.start) == b for b in got)


def _fewest(lo: datetime, hi: datetime, periods: set[str], step: timedelta) -> float:
    """Independent DP over every `step` boundary: fewest buckets tiling [lo, hi)."""
    n = (hi - lo) // step
    best = [0.0] + [math.inf] * n
    for i in range(n):
        if best[i] == math.inf:
            continue
        t = lo + i * step
        for p in periods:
            b = bucket_of(p, t)
            if b.start == t and b.end <= hi:
                j = (b.end - lo) // step
                best[j] = min(best[j], best[i] + 1)
    return best[n]


def _checked_cover_size(lo: datetime, hi: datetime, periods: set[str]) -> float:
    try:
        return len(cover(lo, hi, periods))
    except QueryError:
        return math.inf


@FAST
@given(hours_2020s, st.integers(0, 40 * 24), period_sets)
def test_cover_is_minimal_hourly(lo: datetime, length: int, periods: set[str]) -> None:
    hi = lo + timedelta(hours=length)
    assert _checked_cover_size(lo, hi, periods) == _fewest(lo, hi, periods, timedelta(hours=1))


@FAST
@given(
    st.integers(0, 10 * 366), st.integers(0, 3 * 366), period_sets.filter(lambda s: s != {"hour"})
)
def test_cover_is_minimal_daily(start: int, length: int, periods: set[str]) -> None:
    lo = datetime(2018, 1, 1) + timedelta(days=start)
    hi = lo + timedelta(days=length)
    if "hour" in periods and "day" not in periods:
        periods = periods - {"hour"}  # the day-step DP cannot see hours
    if not periods:
        return
    assert _checked_cover_size(lo, hi, periods) == _fewest(lo, hi, periods, timedelta(days=1))


@FAST
@given(
    st.integers(0, 30 * 366),
    st.integers(366, 6 * 366),
    period_sets.map(lambda s: s | {"year"}).filter(lambda s: s != {"hour", "year"}),
)
def test_cover_of_whole_years_is_minimal(start: int, length: int, periods: set[str]) -> None:
    """Ranges of years, where the middle years are taken whole without a path over their weeks
    (a week may cross a 1 January only next to the range's ends)."""
    lo = datetime(1995, 12, 25) + timedelta(days=start)
    hi = lo + timedelta(days=length)
    if "hour" in periods and "day" not in periods:
        periods = periods - {"hour"}  # the day-step DP cannot see hours
    assert _checked_cover_size(lo, hi, periods) == _fewest(lo, hi, periods, timedelta(days=1))


def test_a_cover_of_centuries_is_planned_from_its_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    """A range of 8,000 years (a query's start=1970-01-02&end=9998-12-30) was a shortest path
    over its 417,000 weeks: seconds per cover, minutes for a lifecycle of 12 periods (a cover
    each), with the server's event loop held. Only its edges are searched now."""
    searched: list[int] = []
    edges = periods_module._coarse_edges

    def counting(d0: int, d1: int, chosen: frozenset[str]) -> dict[int, list[tuple[int, str]]]:
        searched.append(d1 - d0)
        return edges(d0, d1, chosen)

    monkeypatch.setattr(periods_module, "_coarse_edges", counting)
    got = cover(datetime(1970, 1, 2), datetime(9998, 12, 31), ALL)
    assert _labels(got[:3]) == ["1970-01-02", "1970-01-03", "1970-01-04"]
    assert _labels(got[-3:]) == ["9998-12-28", "9998-12-29", "9998-12-30"]
    assert [b.label for b in got if b.period == "year"] == [str(y) for y in range(1971, 9998)]
    assert max(searched) < 366


# buckets_between


def test_buckets_between() -> None:
    nov = parse_label("2026-11")
    weeks = buckets_between("week", nov.start, nov.end)
    assert _labels(weeks) == [f"2026-W{w}" for w in range(44, 50)]
    assert len(buckets_between("day", nov.start, nov.end)) == 30
    assert _labels(
        buckets_between("month", datetime(2026, 11, 30, 23), datetime(2027, 1, 1, 1))
    ) == [
        "2026-11",
        "2026-12",
        "2027-01",
    ]
    hours = buckets_between("hour", datetime(2026, 10, 25), datetime(2026, 10, 26))
    assert len(hours) == 24  # wall-clock hours: the fall-back day still has 24 buckets
    assert buckets_between("day", nov.end, nov.start) == []


# wall-clock seconds and labels


def wall_epoch(wall: datetime) -> int:
    """Seconds from 1970-01-01T00:00 to the naive wall-clock time `wall`, by naive arithmetic."""
    return (wall.replace(tzinfo=None) - datetime(1970, 1, 1)) // timedelta(seconds=1)


def _reference(t: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    return np.array(
        [wall_epoch(datetime.fromtimestamp(int(x), tz).replace(tzinfo=None)) for x in t.tolist()],
        dtype=np.int64,
    )


TRANSITIONS = [
    (AMS, datetime(2026, 3, 29, 1, tzinfo=UTC)),
    (AMS, datetime(2026, 10, 25, 1, tzinfo=UTC)),
    (NYC, datetime(2026, 3, 8, 7, tzinfo=UTC)),
    (NYC, datetime(2026, 11, 1, 6, tzinfo=UTC)),
    (KOLKATA, datetime(2026, 6, 1, tzinfo=UTC)),
    (LORD_HOWE, datetime(2026, 4, 4, 15, tzinfo=UTC)),
    (LORD_HOWE, datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
    (UTC_ZONE, datetime(2026, 10, 25, 1, tzinfo=UTC)),
]


@FAST
@given(
    st.sampled_from(TRANSITIONS),
    st.lists(st.integers(-3 * 86400, 3 * 86400), min_size=1, max_size=300),
    st.booleans(),
)
def test_wall_seconds_matches_zoneinfo_near_transitions(
    where: tuple[ZoneInfo, datetime], deltas: list[int], ordered: bool
) -> None:
    tz, moment = where
    t = int(moment.timestamp()) + np.array(sorted(deltas) if ordered else deltas, dtype=np.int64)
    got = wall_seconds(t, tz)
    assert got.dtype == np.int64
    assert np.array_equal(got, _reference(t, tz))


@pytest.mark.parametrize("tz", ZONES, ids=str)
def test_wall_seconds_spread_over_years(tz: ZoneInfo) -> None:
    rng = np.random.default_rng(7)
    for low, high, size in [(0, 4_100_000_000, 2000), (1_767_225_600, 1_772_409_600, 3000)]:
        t = rng.integers(low, high, size, dtype=np.int64)
        assert np.array_equal(wall_seconds(t, tz), _reference(t, tz))
    assert wall_seconds(np.array([], dtype=np.int64), tz).shape == (0,)


def test_wall_seconds_every_zone_and_odd_historic_offsets() -> None:
    rng = np.random.default_rng(11)
    for key in sorted(zoneinfo.available_timezones()):
        tz = ZoneInfo(key)
        t = rng.integers(-2_500_000_000, 3_000_000_000, 16, dtype=np.int64)
        assert np.array_equal(wall_seconds(t, tz), _reference(t, tz)), key
    # Amsterdam was +00:19:32 until 1937; Monrovia moved from -00:44:30 to 0 in 1972.
    for tz, moment in [(AMS, -1_000_000_000), (ZoneInfo("Africa/Monrovia"), 63_593_070)]:
        t = moment + np.arange(-7200, 7200, 7, dtype=np.int64)
        assert np.array_equal(wall_seconds(t, tz), _reference(t, tz))


def test_wall_seconds_rejects_out_of_range() -> None:
    with pytest.raises(QueryError, match="outside"):
        wall_seconds(np.array([0, 10**15], dtype=np.int64), AMS)


def test_dst_hours_are_wall_clock_hours() -> None:
    fall = int(datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp())
    walls = wall_seconds(np.array([fall, fall + 3600], dtype=np.int64), AMS)
    # Both real hours land in the one repeated wall hour 02:00-03:00.
    assert [hour_label(int(w) // 3600) for w in walls] == ["2026-10-25T02"] * 2
    spring = int(datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC).timestamp())
    walls = wall_seconds(np.array([spring, spring + 1], dtype=np.int64), AMS)
    assert [hour_label(int(w) // 3600) for w in walls] == ["2026-03-29T01", "2026-03-29T03"]
    lh = int(datetime(2026, 10, 3, 15, 29, tzinfo=UTC).timestamp())
    walls = wall_seconds(np.array([lh, lh + 60], dtype=np.int64), LORD_HOWE)
    assert [datetime(1970, 1, 1) + timedelta(seconds=int(w)) for w in walls] == [
        datetime(2026, 10, 4, 1, 59),
        datetime(2026, 10, 4, 2, 30),
    ]


def test_wall_epoch_reference() -> None:
    assert wall_epoch(datetime(1970, 1, 1)) == 0
    assert wall_epoch(datetime(2026, 11, 22, 13, 0, 1)) == 1_795_352_401
    assert wall_epoch(datetime(1969, 12, 31, 23, 59, 59, 500000)) == -1


@FAST
@given(st.integers(0, (date(2100, 12, 31) - date(1970, 1, 1)).days))
def test_labels_for_day_match_date_arithmetic(day_number: int) -> None:
    d = date(1970, 1, 1) + timedelta(days=day_number)
    wall = datetime(d.year, d.month, d.day)
    expected = {p: _expected_label(p, wall) for p in ("day", "week", "month", "year")}
    assert labels_for_day(day_number) == expected
    assert labels_for_day(np.int64(day_number)) == expected
    hour = day_number * 24 + 17
    assert hour_label(hour) == f"{expected['day']}T17"
    assert parse_label(hour_label(hour)).start == wall + timedelta(hours=17)


def test_labels_for_day_is_not_shared_state() -> None:
    labels_for_day(20000)["day"] = "changed"
    assert labels_for_day(20000)["day"] == "2024-10-04"


def test_day_labels_for_distinct_days() -> None:
    days = np.array([20000, 20001, 20000, 0], dtype=np.int64)
    got = day_labels(days)
    assert sorted(got) == [0, 20000, 20001]
    assert got[0] == {"day": "1970-01-01", "week": "1970-W01", "month": "1970-01", "year": "1970"}
