"""bitstat.compat.bitmapist against the real bitmapist 3.x, on the same server, both directions.

What one library writes the other reads; the same marks give byte-identical keys; the same
expressions give the same answers, result bytes and key names; the cohort tables are equal.
bitmapist's keys are global `trackist_*` names, so every test uses event names that contain its
own unique `namespace` and deletes exactly those keys afterwards (SCAN + DEL, never a flush).
Times are explicit everywhere; nothing depends on the wall clock.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import bitmapist as real
import bitmapist.cohort as real_cohort
import pytest
import redis

from bitstat.compat import bitmapist as dropin
from bitstat.compat.bitmapist import _engine
from bitstat.compat.bitmapist import cohort as dropin_cohort

SYSTEM = "bitstat-compat-test"
LIBS = {"bitmapist": real, "dropin": dropin}
PERIODS = ("HourEvents", "DayEvents", "WeekEvents", "MonthEvents", "YearEvents")

# ISO-week edges: a week numbered in the next or previous year, 53-week years, a leap day.
EDGES = [
    datetime(2018, 12, 31, 23, 59, tzinfo=UTC),  # 2019-W01
    datetime(2020, 12, 31, 0, 0, tzinfo=UTC),  # 2020-W53
    datetime(2021, 1, 1, 12, 0, tzinfo=UTC),  # 2020-W53, in 2021
    datetime(2021, 1, 3, 23, 30, tzinfo=UTC),  # the Sunday ending 2020-W53
    datetime(2021, 1, 4, 0, 0, tzinfo=UTC),  # 2021-W01
    datetime(2024, 2, 29, 5, 0, tzinfo=UTC),
    datetime(2026, 11, 22, 13, 0, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 0, tzinfo=UTC),  # 2026-W53
    datetime(2027, 1, 1, 0, 0, tzinfo=UTC),  # 2026-W53, in 2027
    datetime(2021, 1, 3, 23, 30),  # naive: its fields are used as they are
    datetime(2021, 1, 3, 23, 30, tzinfo=timezone(timedelta(hours=2))),  # not converted to UTC
]
MARKS = [(t, uid) for i, t in enumerate(EDGES) for uid in (i, 8 + i, 100 * i + 7, 4242)]
MARKS.append((EDGES[6], (1 << 20) + 3))
UNMARK = (EDGES[1], 4242)


@pytest.fixture(scope="module")
def client(embedded_url: str) -> Iterator[redis.Redis]:
    """A client of the embedded server, registered as system SYSTEM in both libraries."""
    raw = redis.Redis.from_url(embedded_url)
    real.SYSTEMS[SYSTEM] = raw
    dropin.setup_redis_url(SYSTEM, embedded_url)
    yield raw
    del real.SYSTEMS[SYSTEM]
    dropin.SYSTEMS.pop(SYSTEM).close()
    raw.close()


@pytest.fixture
def ev(namespace: str, client: redis.Redis) -> Iterator[str]:
    """A unique event-name prefix; every trackist key containing it is deleted afterwards."""
    yield namespace
    for key in list(client.scan_iter(match=f"trackist_*{namespace}*", count=1000)):
        client.delete(key)


@pytest.fixture
def default_system(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """bitmapist's operators and cohort handlers run on "default": point it at the test server."""
    monkeypatch.setitem(real.SYSTEMS, "default", client)
    monkeypatch.setitem(dropin.SYSTEMS, "default", client)


def write(lib: ModuleType, name: str) -> None:
    for t, uid in MARKS:
        lib.mark_event(name, uid, system=SYSTEM, now=t, track_hourly=True, track_unique=True)
    t, uid = UNMARK
    lib.unmark_event(name, uid, system=SYSTEM, now=t, track_hourly=True)
    lib.mark_unique(name, 77, system=SYSTEM)
    lib.mark_unique(name, 78, system=SYSTEM)
    lib.unmark_unique(name, 78, system=SYSTEM)


def fields(period: str, t: datetime) -> tuple[Any, ...]:
    return {
        "HourEvents": (t.year, t.month, t.day, t.hour),
        "DayEvents": (t.year, t.month, t.day),
        "WeekEvents": tuple(t.isocalendar()[:2]),
        "MonthEvents": (t.year, t.month),
    }[period]


def expected(period: str, t: datetime) -> list[int]:
    """The ids in `period` of `t` after `write`, by plain Python over MARKS and UNMARK."""
    if period == "YearEvents":
        months = {(m.year, m.month) for m, _ in MARKS if m.year == t.year}
        return sorted(set().union(*(expected("MonthEvents", datetime(*m, 1)) for m in months)))
    ids = {uid for m, uid in MARKS if fields(period, m) == fields(period, t)}
    if fields(period, UNMARK[0]) == fields(period, t):
        ids.discard(UNMARK[1])
    return sorted(ids)


def dump(client: redis.Redis, name: str) -> dict[str, bytes]:
    found = client.scan_iter(match=f"trackist_{name}_*", count=1000)
    return {k.decode().replace(name, "EVENT"): client.get(k) for k in found}


def test_same_marks_give_identical_keys_and_bytes(client: redis.Redis, ev: str) -> None:
    write(real, f"{ev}-real")
    write(dropin, f"{ev}-drop")
    written = dump(client, f"{ev}-real")
    assert written == dump(client, f"{ev}-drop")
    assert "trackist_EVENT_W2020-53" in written and "trackist_EVENT_2021-1-3-23" in written
    assert "trackist_EVENT_W2019-1" in written and "trackist_EVENT_u" in written


@pytest.mark.parametrize(("writer", "reader"), [("bitmapist", "dropin"), ("dropin", "bitmapist")])
def test_what_one_writes_the_other_reads(writer: str, reader: str, ev: str) -> None:
    write(LIBS[writer], ev)
    lib = LIBS[reader]
    for t in EDGES:
        for period in PERIODS:
            events = getattr(lib, period).from_date(ev, t, system=SYSTEM)
            ids = expected(period, t)
            assert list(events) == ids, (period, t)
            assert len(events) == events.get_count() == len(ids)
            assert events.has_events_marked() is bool(ids)
            assert all(uid in events for uid in ids)
            assert not any(uid in events for uid in (19, 9999, (1 << 20) + 2))
    unique = lib.UniqueEvents(ev, system=SYSTEM)
    assert list(unique) == sorted({uid for _, uid in MARKS} | {77})
    assert 78 not in unique


def expressions(lib: ModuleType, n: str) -> list[Callable[[], Any]]:
    def day(event: str, d: int) -> Any:
        return lib.DayEvents(f"{n}-{event}", 2021, 1, d, system=SYSTEM)

    def month(event: str, m: int) -> Any:
        return lib.MonthEvents(f"{n}-{event}", 2020 + m // 13, (m - 1) % 12 + 1, system=SYSTEM)

    unique = lib.UniqueEvents(f"{n}-a", system=SYSTEM)
    year = lib.YearEvents(f"{n}-a", 2021, system=SYSTEM)
    missing = day("none", 1)
    And, Or, Xor, Not = lib.BitOpAnd, lib.BitOpOr, lib.BitOpXor, lib.BitOpNot
    return [
        lambda: And(SYSTEM, day("a", 1), day("b", 1)),
        lambda: Or(SYSTEM, day("a", 1), day("a", 2), day("b", 3)),
        lambda: Xor(SYSTEM, day("a", 1), day("b", 1), day("a", 2)),
        lambda: Not(SYSTEM, day("a", 1)),
        lambda: And(SYSTEM, Not(SYSTEM, day("a", 1)), day("b", 1)),
        lambda: And(SYSTEM, Or(SYSTEM, day("a", 1), day("b", 2)), unique),
        lambda: Or(SYSTEM, year, missing),
        lambda: And(SYSTEM, year, month("b", 13)),
        lambda: And(SYSTEM, day("a", 1), missing),
        lambda: Not(SYSTEM, And(SYSTEM, day("a", 1), missing)),
        lambda: Xor(SYSTEM, missing, day("none", 2)),
        # more than 16 operands
        lambda: Or(SYSTEM, *(day("a", d) for d in range(1, 25))),
        lambda: Xor(SYSTEM, *(day("a", d) for d in range(1, 22))),
        lambda: And(SYSTEM, *(Or(SYSTEM, year, day("b", d)) for d in range(1, 19))),
        lambda: And(SYSTEM, *(day("b", d) for d in range(1, 20)), missing),
    ]


@pytest.fixture(scope="module")
def days_ev(client: redis.Redis) -> Iterator[str]:
    """Events a and b on 2021-01-01..24, written day by day by alternating libraries."""
    n = f"days-{uuid.uuid4().hex[:8]}"
    for d in range(1, 25):
        lib = real if d % 2 else dropin
        for uid in range(d % 5, 90, 3 + d % 4):
            lib.mark_event(f"{n}-a", uid, system=SYSTEM, now=datetime(2021, 1, d, tzinfo=UTC))
            if uid % 2:
                other = uid if uid % 3 else uid + 1
                lib.mark_event(f"{n}-b", other, system=SYSTEM, now=datetime(2021, 1, d))
    dropin.mark_unique(f"{n}-a", 5, system=SYSTEM)
    real.mark_unique(f"{n}-a", 8, system=SYSTEM)
    yield n
    for key in list(client.scan_iter(match=f"trackist_*{n}*", count=1000)):
        client.delete(key)


def test_bit_operations_agree(client: redis.Redis, days_ev: str) -> None:
    ev = days_ev
    sizes = []
    for build_real, build_drop in zip(expressions(real, ev), expressions(dropin, ev), strict=True):
        r = build_real()
        key = r.redis_key
        answer = (list(r), len(r), r.has_events_marked(), [u in r for u in range(0, 130, 7)])
        stored, ttl = client.get(key), client.pttl(key)
        client.delete(key)

        sizes.append(answer[1])
        d = build_drop()
        assert client.get(key) == stored  # computed when built: the same bytes, the same name
        assert (list(d), len(d), d.has_events_marked(), [u in d for u in range(0, 130, 7)]) == (
            answer
        )
        assert d.redis_key == key and d == r
        if stored is not None:
            assert ttl == -1 and 0 < client.pttl(key) <= _engine.TTL_SECONDS * 1000
    assert sum(size > 0 for size in sizes) >= 11


def test_operators_and_mixed_objects(
    client: redis.Redis, days_ev: str, default_system: None
) -> None:
    ev = days_ev
    answers = []
    for lib in (real, dropin):
        a1, a2 = (lib.DayEvents(f"{ev}-a", 2021, 1, d, system=SYSTEM) for d in (1, 2))
        b1 = lib.DayEvents(f"{ev}-b", 2021, 1, 1, system=SYSTEM)
        answers.append([list(a1 & b1), list(a1 | a2), list(a1 ^ a2), list(~a1 & b1)])
    assert answers[0] == answers[1]
    # objects of one library inside the other's operations
    days = [dropin.DayEvents(f"{ev}-a", 2021, 1, d) for d in (1, 2)]
    b1 = real.DayEvents(f"{ev}-b", 2021, 1, 1)
    mixed = real.BitOpAnd(SYSTEM, dropin.BitOpOr(SYSTEM, *days), b1)
    inverse = dropin.BitOpAnd(SYSTEM, real.BitOpOr(SYSTEM, *days), b1)
    assert list(mixed) == list(inverse) == sorted(set(answers[0][1]) & set(b1))
    assert list(mixed)


def test_year_events_are_computed_when_built_and_equal(client: redis.Redis, ev: str) -> None:
    write(dropin, ev)
    for year in (2018, 2021, 2024, 2026, 2027):
        made = real.YearEvents(ev, year, system=SYSTEM)
        key = made.redis_key
        stored = client.get(key)
        client.delete(key)
        drop = dropin.YearEvents(ev, year, system=SYSTEM)
        assert client.get(key) == stored and 0 < client.pttl(key) <= _engine.TTL_SECONDS * 1000
        ids = expected("YearEvents", datetime(year, 6, 1))
        assert [uid in drop for uid in (*ids, 1, 9999)] == [True] * len(ids) + [False, False]
        assert len(drop) == len(ids) and list(drop) == list(made) == ids
        assert drop.redis_key == key


def test_operations_are_snapshots_like_bitmapist(client: redis.Redis, days_ev: str) -> None:
    """A computed result stays until an equal operation is built again or it is deleted."""
    ev = days_ev
    days = [f"trackist_{ev}-{e}_2021-1-1" for e in "ab"]

    def scenario(lib: ModuleType) -> list[int]:
        a, b = (lib.DayEvents(f"{ev}-{e}", 2021, 1, 1, system=SYSTEM) for e in "ab")
        op = lib.BitOpAnd(SYSTEM, a, b)
        seen = [len(op)]
        for key in days:
            client.setbit(key, 1001, 1)
        seen.append(len(op))
        again = lib.BitOpAnd(SYSTEM, a, b)
        seen += [len(again), len(op)]
        op.delete()
        seen += [len(op), len(again), int(1001 in again)]
        for key in days:
            client.setbit(key, 1001, 0)
        return seen

    assert scenario(real) == scenario(dropin)


def test_operations_and_years_are_snapshots_from_when_they_are_built(
    client: redis.Redis, days_ev: str, default_system: None
) -> None:
    """bitmapist runs BITOP in the constructor: marks made after an operation (or a YearEvents)
    is built do not change its answer. The drop-in computed them at the first read, so they
    counted."""
    ev = days_ev
    later = [(f"trackist_{ev}-{e}_2021-1-1", 1001) for e in "ab"]
    later.append((f"trackist_{ev}-a_2021-5", 77))
    for key, uid in later:  # (as long as each scenario leaves them: ~a reads the key's length)
        client.setbit(key, uid, 0)

    def scenario(lib: ModuleType) -> list[Any]:
        a, b = (lib.DayEvents(f"{ev}-{e}", 2021, 1, 1, system=SYSTEM) for e in "ab")
        ops = [lib.BitOpAnd(SYSTEM, a, b), a & b, ~a, lib.BitOpOr(SYSTEM, a & b, ~b)]
        year = lib.YearEvents(f"{ev}-a", 2021, system=SYSTEM)
        for key, uid in later:
            client.setbit(key, uid, 1)
        seen = [(len(op), 1001 in op, list(op)) for op in ops]
        seen.append((len(year), 77 in year, 1001 in year, list(year)))
        for key, uid in later:
            client.setbit(key, uid, 0)
        return seen

    assert scenario(dropin) == scenario(real)


def test_events_are_built_without_io_and_operations_computed_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(dropin.SYSTEMS, "nowhere", redis.Redis(port=1, socket_timeout=0.1))
    day = dropin.DayEvents("x", 2021, 1, 1, system="nowhere")
    month = dropin.MonthEvents.from_date("x", datetime(2021, 1, 1), system="nowhere")
    unique = dropin.UniqueEvents("x", system="nowhere")
    assert day.system == month.system == unique.system == "nowhere"
    builds: list[Callable[[], Any]] = [
        lambda: dropin.YearEvents("x", 2021, system="nowhere"),
        lambda: day & month,
        lambda: day | unique,
        lambda: ~day,
        lambda: dropin.BitOpXor("nowhere", day, month),
    ]
    for build in builds:
        with pytest.raises(redis.ConnectionError):
            build()


def test_expired_results_are_recomputed(client: redis.Redis, days_ev: str) -> None:
    ev = days_ev
    op = dropin.BitOpOr(SYSTEM, *(dropin.DayEvents(f"{ev}-a", 2021, 1, d) for d in (1, 2)))
    answer = list(op)
    client.pexpire(op.redis_key, 1)
    time.sleep(0.01)
    assert client.exists(op.redis_key) == 0
    assert list(op) == answer and len(op) == len(answer)


def test_scripts_are_loaded_again_after_script_flush(
    client: redis.Redis, days_ev: str, cohort_ev: str
) -> None:
    days = [dropin.DayEvents(f"{days_ev}-a", 2021, 1, d, system=SYSTEM) for d in (1, 2)]
    client.script_flush()
    assert len(dropin.BitOpAnd(SYSTEM, *days)) == len(real.BitOpAnd(SYSTEM, *days))
    args = {"select1": f"{cohort_ev}-signup", "select2": f"{cohort_ev}-active"}
    args |= {"system": SYSTEM, "num_results": 3, "num_of_rows": 2, "start_date": "2026-09-01"}
    client.script_flush()
    assert dropin_cohort.get_dates_data(**args) == real_cohort.get_dates_data(**args)


def test_iteration_by_chunks(client: redis.Redis, ev: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [0, 7, 8, 31, 32, 33, 63, 64, 1000, 4095, 4096]
    for uid in ids:
        real.mark_unique(f"{ev}-c", uid, system=SYSTEM)
    monkeypatch.setattr(_engine, "ITER_CHUNK_BYTES", 4)
    unique = dropin.UniqueEvents(f"{ev}-c", system=SYSTEM)
    assert list(unique) == list(real.UniqueEvents(f"{ev}-c", system=SYSTEM)) == ids
    assert list(itertools.islice(dropin.BitOpNot(SYSTEM, unique), 3)) == [1, 2, 3]


def test_get_event_names(ev: str) -> None:
    for lib, name in ((real, "song_played:web"), (dropin, "a"), (real, "b")):
        lib.mark_event(f"{ev}-{name}", 1, system=SYSTEM, now=EDGES[0])
    dropin.BitOpAnd(SYSTEM, dropin.DayEvents(f"{ev}-a", 2018, 12, 31)).get_count()
    for prefix in (ev, f"{ev}-s"):
        got = dropin.get_event_names(system=SYSTEM, prefix=prefix, batch=2)
        assert sorted(got) == sorted(real.get_event_names(system=SYSTEM, prefix=prefix, batch=2))
    assert set(got) == {f"{ev}-song_played:web"}


@pytest.fixture(scope="module")
def cohort_ev(client: redis.Redis) -> Iterator[str]:
    """Events signup/active/buy from 2023-12 to 2026-11, written half by each library."""
    ev = f"cohort-{uuid.uuid4().hex[:8]}"
    t, step = datetime(2023, 12, 1, 10, tzinfo=UTC), 0
    while t < datetime(2026, 11, 22, tzinfo=UTC):
        # every 2 days around the daily and weekly tables, every 10 days elsewhere
        busy = datetime(2026, 8, 20, tzinfo=UTC) <= t <= datetime(2026, 10, 20, tzinfo=UTC)
        t, step = t + timedelta(days=2 if busy else 10), step + 1
        lib = real if step % 3 else dropin
        for uid in range(step % 7, 40, 5):
            lib.mark_event(f"{ev}-signup", uid, system=SYSTEM, now=t)
            if (uid + step) % 3:
                lib.mark_event(f"{ev}-active", uid, system=SYSTEM, now=t + timedelta(days=2))
            if (uid * step) % 5 == 1:
                lib.mark_event(f"{ev}-buy", uid, system=SYSTEM, now=t + timedelta(days=9))
    yield ev
    for key in list(client.scan_iter(match=f"trackist_*{ev}*", count=1000)):
        client.delete(key)


COHORTS = [
    ("days", "2026-10-05", 7, 5),
    ("weeks", "2026-08-31", 5, 4),
    ("months", "2026-01-31", 4, 3),
    ("years", "2024-03-01", 31, 2),
]


@pytest.mark.parametrize(("time_group", "start_date", "num_results", "num_of_rows"), COHORTS)
def test_cohort_tables_agree(
    cohort_ev: str, time_group: str, start_date: str, num_results: int, num_of_rows: int
) -> None:
    ev = cohort_ev
    selections = [
        ("signup", None, "active", None),
        ("signup", "active", "buy", None),
        ("active", None, "buy", "signup"),
        ("nobody", None, "active", None),
    ]
    for s1, s1b, s2, s2b in selections:
        for as_percent in (True, False):
            args: dict[str, Any] = {
                "select1": f"{ev}-{s1}",
                "select2": f"{ev}-{s2}",
                "select1b": s1b and f"{ev}-{s1b}",
                "select2b": s2b and f"{ev}-{s2b}",
                "time_group": time_group,
                "system": SYSTEM,
                "as_percent": as_percent,
                "num_results": num_results,
                "num_of_rows": num_of_rows,
                "start_date": start_date,
            }
            table = dropin_cohort.get_dates_data(**args)
            assert table == real_cohort.get_dates_data(**args)
            shape = {"time_group": time_group, "num_of_rows": num_of_rows}
            csv = dropin_cohort.render_csv_data(table, as_percent, **shape)
            assert csv == real_cohort.render_csv_data(table, as_percent, **shape)
            assert dropin_cohort.render_html_data(table, as_percent, **shape).count("<tr>") == (
                len(table) + 2
            )


def test_cohort_custom_handlers(cohort_ev: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ev = cohort_ev
    name = f"{ev}-active_or_buy"
    for lib, module in ((real, real_cohort), (dropin, dropin_cohort)):

        def either(key: str, cls: Any, args: tuple[Any, ...], lib: ModuleType = lib) -> Any:
            return lib.BitOpOr(args[-1], cls(f"{ev}-active", *args), cls(f"{ev}-buy", *args))

        monkeypatch.setitem(module.CUSTOM_HANDLERS, name, either)
    args = {"select1": f"{ev}-signup", "select2": name, "time_group": "weeks", "system": SYSTEM}
    args |= {"num_results": 6, "num_of_rows": 3, "start_date": "2026-08-24"}
    table = dropin_cohort.get_dates_data(**args)
    assert table == real_cohort.get_dates_data(**args)
    assert any(cell not in ("", 0.0) for row in table for cell in row[2:])


def test_cohort_form() -> None:
    form = dropin_cohort.render_html_form(
        "/cohort?x=<1>", [("Active", "active"), "---"], select1="active", time_group="weeks"
    )
    assert 'action="/cohort?x=&lt;1&gt;"' in form
    assert '<option value="active" selected="selected">Active</option>' in form
    assert '<option value="weeks" selected="selected">Weeks</option>' in form


def sweep() -> Iterator[datetime]:
    for first, days in ((datetime(2019, 12, 20), 400), (datetime(2024, 2, 20), 20)):
        for d in range(days):
            yield first + timedelta(days=d, hours=23 * (d % 2))


def test_period_math_agrees() -> None:
    """Keys, deltas and period bounds of every class over ISO-week edges and a leap year."""
    for t in sweep():
        for period in PERIODS[:4]:
            r, d = (getattr(lib, period).from_date("x", t) for lib in (real, dropin))
            assert d.redis_key == r.redis_key and d == r
            assert (d.period_start(), d.period_end()) == (r.period_start(), r.period_end())
            assert d.next().redis_key == r.next().redis_key
            assert d.prev().redis_key == r.prev().redis_key
            for k in (-60, -1, 1, 60):
                assert d.delta(k).redis_key == r.delta(k).redis_key
    odd = [("WeekEvents", (2014, 53)), ("WeekEvents", (2015, 53)), ("HourEvents", (2021, 1, 1, -1))]
    for period, numbers in odd:
        r, d = (getattr(lib, period)("x", *numbers) for lib in (real, dropin))
        assert d.redis_key == r.redis_key
        if period == "WeekEvents":
            assert d.next().redis_key == r.next().redis_key
            assert (d.period_start(), d.period_end()) == (r.period_start(), r.period_end())


def test_year_period_math(ev: str) -> None:
    for year in (2019, 2020, 2024):
        r = real.YearEvents(ev, year, system=SYSTEM)
        d = dropin.YearEvents(ev, year, system=SYSTEM)
        assert d == r and d.next() == r.next() and d.prev() == r.prev()
        assert d.delta(-3) == r.delta(-3)
        assert (d.period_start(), d.period_end()) == (r.period_start(), r.period_end())
    first = dropin.YearEvents.from_date(ev, datetime(2020, 12, 31, 23), system=SYSTEM)
    assert first.year == 2020 and first == dropin.YearEvents(ev, 2020)


def bounds_or_error(lib: ModuleType, period: str, numbers: tuple[int, ...], ev: str) -> Any:
    events = getattr(lib, period)(ev, *numbers, system=SYSTEM)
    try:
        return events.period_start(), events.period_end()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize(
    ("period", "numbers", "dated"),
    [
        ("YearEvents", (9999,), True),
        ("MonthEvents", (9999, 12), True),
        ("DayEvents", (9999, 12, 31), True),
        ("HourEvents", (9999, 12, 31, 23), True),
        ("YearEvents", (1,), True),
        ("WeekEvents", (1, 1), True),
        ("DayEvents", (1969, 12, 31), True),
        ("WeekEvents", (9999, 52), False),  # it ends on 10000-01-02
        ("MonthEvents", (2021, 13), False),
        ("DayEvents", (2021, 2, 29), False),
        ("HourEvents", (2021, 1, 1, 24), False),
    ],
)
def test_period_bounds_reach_the_ends_of_pythons_dates(
    period: str, numbers: tuple[int, ...], dated: bool, ev: str
) -> None:
    """A period's bounds are bitmapist's from year 1 to 9999; a period Python cannot date
    raises Python's error, as bitmapist does (they were refused outside 1970..9998, with a
    message saying 1970 was a bound, which year 1 passed)."""
    theirs = bounds_or_error(real, period, numbers, ev)
    assert bounds_or_error(dropin, period, numbers, ev) == theirs
    assert isinstance(theirs, tuple) == dated


def quarter_events(lib: ModuleType) -> type[Any]:
    """A period class of a user's own, as bitmapist documents them: it sets `redis_key`."""

    class QuarterEvents(lib.GenericPeriodEvents):  # type: ignore[misc,name-defined]
        def __init__(self, event_name: str, year: int, quarter: int, system: Any = "default"):
            super().__init__(event_name, system=system)
            self.year, self.quarter = year, quarter
            self.redis_key = f"trackist_{event_name}_Q{year}-{quarter}"

        def delta(self, value: int) -> Any:
            year, quarter = divmod(self.year * 4 + self.quarter - 1 + value, 4)
            return type(self)(self.event_name, year, quarter + 1, self.system)

        def period_start(self) -> datetime:
            return datetime(self.year, 3 * self.quarter - 2, 1, tzinfo=UTC)

        def period_end(self) -> datetime:
            return self.next().period_start() - timedelta(microseconds=1)

    return QuarterEvents


def renamed_days(lib: ModuleType) -> type[Any]:
    """A subclass that moves its bitmaps under other key names."""

    class RenamedDays(lib.DayEvents):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.redis_key += "-v2"

    return RenamedDays


def test_reads_go_through_redis_key_as_in_bitmapist(client: redis.Redis, ev: str) -> None:
    """bitmapist reads every set by its `redis_key`, so a user's own period class (which sets
    only that) and a subclass renaming its keys work; the drop-in read a private key instead."""
    for key, ids in ((f"trackist_{ev}_Q2021-1", (3, 9, 20)), (f"trackist_{ev}_2021-1-2-v2", (9,))):
        for uid in ids:
            client.setbit(key, uid, 1)
    client.setbit(f"trackist_{ev}_2021-1-2", 3, 1)

    def answers(lib: ModuleType) -> list[Any]:
        quarter = quarter_events(lib)(ev, 2021, 1, system=SYSTEM)
        day = renamed_days(lib)(ev, 2021, 1, 2, system=SYSTEM)
        both = lib.BitOpAnd(SYSTEM, quarter, day)
        seen = [len(quarter), 9 in quarter, list(quarter), quarter.has_events_marked()]
        seen += [len(day), 3 in day, list(day), list(both), both.redis_key]
        seen += [quarter == quarter_events(lib)(ev, 2021, 1), quarter.next().redis_key]
        return seen

    assert answers(dropin) == answers(real)


MIXINS = ("MixinIter", "MixinCounts", "MixinContains", "MixinEventsMisc", "MixinBitOperations")
OPERATORS = ("__iter__", "__len__", "__contains__", "__eq__", "__hash__")
OPERATORS += ("__and__", "__or__", "__xor__", "__invert__")


def provides(mixin: type) -> set[str]:
    """The public methods and the operators a mixin defines (or inherits, but from object)."""
    names = {n for k in mixin.__mro__[:-1] for n in vars(k)}
    return {n for n in names if not n.startswith("_") or n in OPERATORS}


def flag_events(lib: ModuleType) -> type[Any]:
    """A set class of a user's own, made of bitmapist's mixins as its UniqueEvents is."""

    class FlagEvents(*(getattr(lib, m) for m in MIXINS)):  # type: ignore[misc]
        def __init__(self, event_name: str, system: Any = "default") -> None:
            self.event_name, self.system = event_name, system
            self.redis_key = f"trackist_{event_name}_flag"

    return FlagEvents


def test_the_mixins_are_bitmapists(client: redis.Redis, days_ev: str, default_system: None) -> None:
    """Each mixin gives what bitmapist's gives, and a class may take several of them (they
    were all one class: two of them as bases raised "duplicate base class")."""
    assert {m: provides(getattr(dropin, m)) for m in MIXINS} == {
        m: provides(getattr(real, m)) for m in MIXINS
    }
    ev = days_ev
    client.setbit(f"trackist_{ev}-a_flag", 5, 1)

    def answers(lib: ModuleType) -> list[Any]:
        flag = flag_events(lib)(f"{ev}-a", system=SYSTEM)
        day = lib.DayEvents(f"{ev}-a", 2021, 1, 5, system=SYSTEM)
        seen = [len(flag), flag.get_count(), 5 in flag, list(flag), flag.has_events_marked()]
        seen += [list(flag | day), list(~flag)[:3], list(lib.BitOpAnd(SYSTEM, flag, day))]
        seen += [flag == flag_events(lib)(f"{ev}-a"), len({flag, flag_events(lib)(f"{ev}-a")})]
        flag.delete()
        client.setbit(f"trackist_{ev}-a_flag", 5, 1)
        return seen

    assert answers(dropin) == answers(real)


def test_mark_options(client: redis.Redis, ev: str, monkeypatch: pytest.MonkeyPatch) -> None:
    t = EDGES[6]
    pipe = client.pipeline()
    dropin.mark_event(ev, 3, system=pipe, now=t, use_pipeline=False)
    assert len(dropin.DayEvents.from_date(ev, t, system=SYSTEM)) == 0  # only queued
    pipe.execute()
    assert 3 in dropin.DayEvents.from_date(ev, t, system=SYSTEM)
    assert 3 not in dropin.HourEvents.from_date(ev, t, system=SYSTEM)
    monkeypatch.setattr(dropin, "TRACK_HOURLY", True)
    monkeypatch.setattr(dropin, "TRACK_UNIQUE", True)
    dropin.mark_event(ev, 4, system=SYSTEM, now=t)
    assert list(real.HourEvents.from_date(ev, t, system=SYSTEM)) == [4]
    assert list(real.UniqueEvents(ev, system=SYSTEM)) == [4]


@pytest.fixture
def db13(embedded_url: str) -> Iterator[redis.Redis]:
    """Database 13 of the embedded server, empty, for the functions that delete every key."""
    raw = redis.Redis.from_url(embedded_url + "?db=13")
    if raw.dbsize():
        pytest.fail("database 13 of the test server is not empty; refusing to delete its keys")
    real.SYSTEMS["db13"] = raw
    dropin.SYSTEMS["db13"] = raw
    yield raw
    del real.SYSTEMS["db13"], dropin.SYSTEMS["db13"]
    for key in list(raw.scan_iter(match="trackist_*")):
        raw.delete(key)
    raw.close()


class NoKeys(redis.Redis):
    def keys(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("KEYS must not be used")


def test_deleting_matches_bitmapist_without_keys(db13: redis.Redis, embedded_url: str) -> None:
    no_keys = NoKeys.from_url(embedded_url + "?db=13")
    answers: dict[str, list[Any]] = {}
    for label, lib in LIBS.items():
        pipe = db13.pipeline()
        for i in range(1200):  # more than one SCAN batch and one DEL batch
            pipe.setbit(f"trackist_bulk{i}_u", i, 1)
        pipe.execute()
        lib.mark_event("a", 1, system="db13", now=EDGES[0])
        lib.mark_event("b", 1, system="db13", now=EDGES[0])
        days = [lib.DayEvents.from_date(e, EDGES[0], system="db13") for e in "ab"]
        first, second = lib.BitOpAnd("db13", *days), lib.BitOpOr("db13", *days)
        seen = [len(first), len(second)]
        lib.delete_runtime_bitop_keys()
        seen += [len(first), len(second), db13.dbsize()]
        third = lib.BitOpXor("db13", *days)
        seen.append(len(third))
        lib.delete_temporary_bitop_keys(no_keys if lib is dropin else "db13")
        seen += [len(third), db13.dbsize()]
        names = lib.get_event_names(no_keys if lib is dropin else "db13")
        lib.delete_all_events(no_keys if lib is dropin else "db13")
        answers[label] = [*seen, sorted(names), db13.dbsize()]
    assert answers["bitmapist"] == answers["dropin"]
    no_keys.close()


def test_setup_redis_url_refuses_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="single server"):
        dropin.setup_redis_url("cluster", "redis+cluster://127.0.0.1:1")
    assert "cluster" not in dropin.SYSTEMS


IMPORTED_SYSTEMS = """
import bitstat.compat.bitmapist as lib
default = lib.SYSTEMS["default"]
kw = default.connection_pool.connection_kwargs
print(sorted(lib.SYSTEMS), kw["host"], kw["port"], default.connection_pool._created_connections)
"""


def test_systems_hold_default_after_import_and_nothing_connects() -> None:
    """bitmapist's SYSTEMS has "default" (localhost:6379) from import on; code reads it."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_SYSTEMS], capture_output=True, text=True, check=False
    )
    assert (done.stderr, done.stdout) == ("", "['default'] localhost 6379 0\n")


def test_install_resolves_import_bitmapist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bitmapist", real)
    monkeypatch.setitem(sys.modules, "bitmapist.cohort", real_cohort)
    dropin.install()
    import bitmapist
    from bitmapist.cohort import get_dates_data

    assert bitmapist is dropin and get_dates_data is dropin_cohort.get_dates_data


@pytest.mark.parametrize(
    "helper", ["_day_events_fn", "_weeks_events_fn", "_month_events_fn", "_year_events_fn"]
)
def test_the_per_period_helpers_match_bitmapists(helper: str, ev: str, client: redis.Redis) -> None:
    """bitmapist 3.119's cohort helpers (its newest release imports `_weeks_events_fn`): the
    same key, the same members, for ISO-week edges and a custom handler."""
    for lib in LIBS.values():
        write(lib, f"{ev}-h")
    for when in [t.date() for t in EDGES[:9]]:
        mine = getattr(dropin_cohort, helper)(f"{ev}-h", when, SYSTEM)
        theirs = getattr(real_cohort, helper)(f"{ev}-h", when, SYSTEM)
        assert mine.redis_key == theirs.redis_key
        assert len(mine) == len(theirs) and list(mine.get_uuids()) == list(theirs.get_uuids())


def reader(lib: ModuleType, key: str) -> Any:
    """An object of `lib` reading `key` on SYSTEM, made of its mixins: how a bitmapist caller
    reads a result computed on a pipeline (its own object reads queue there, never answering)."""
    bases = tuple(getattr(lib, m) for m in MIXINS)
    found = type("Reader", bases, {})()
    found.system, found.redis_key = SYSTEM, key
    return found


@pytest.mark.parametrize("transaction", [True, False])
def test_bit_operations_built_on_a_pipeline_run_when_it_is_executed(
    client: redis.Redis, ev: str, default_system: None, transaction: bool
) -> None:
    """bitmapist queues a bit operation built on a caller's pipeline there: the caller's
    execute() runs it, in order with the other commands queued (marks queued before it count,
    and so do marks written at once before the execute). The drop-in raised when built."""
    for d in (1, 2):
        for uid in range(d, 60, 3):
            real.mark_event(f"{ev}-a", uid, system=SYSTEM, now=datetime(2021, 1, d, tzinfo=UTC))
        for uid in range(0, 60, 2 + d):
            real.mark_event(f"{ev}-b", uid, system=SYSTEM, now=datetime(2021, 1, d, tzinfo=UTC))
    a1, b1 = (f"trackist_{ev}-{e}_2021-1-1" for e in "ab")

    def scenario(lib: ModuleType) -> tuple[list[Any], list[Any]]:
        a, b = (
            (lib.DayEvents(f"{ev}-{e}", 2021, 1, d, system=SYSTEM) for d in (1, 2)) for e in "ab"
        )
        (day_a1, day_a2), (day_b1, day_b2) = a, b
        client.script_flush()  # the execute() loads the drop-in's script itself
        pipe = client.pipeline(transaction=transaction)
        pipe.set(f"trackist_{ev}-other", "x")
        lib.mark_event(f"{ev}-a", 1001, system=pipe, now=datetime(2021, 1, 1), use_pipeline=False)
        pipe.setbit(b1, 1001, 1)
        both = lib.BitOpAnd(pipe, day_a1, day_b1)
        nested = lib.BitOpOr(pipe, both, lib.BitOpXor(pipe, day_a2, day_b2))
        inverse = lib.BitOpNot(pipe, both)
        outer = lib.BitOpAnd(pipe, nested, inverse, day_a2)
        year = lib.YearEvents(f"{ev}-a", 2021, system=pipe)
        pipe.get(f"trackist_{ev}-other")
        ops = [both, nested, inverse, outer, year]
        queued = [client.exists(op.redis_key) for op in ops]
        for key in (a1, b1):
            client.setbit(key, 1003, 1)  # written at once, before the execute: counts
        done = pipe.execute()
        for key in (a1, b1):
            client.setbit(key, 1005, 1)  # after: results are snapshots
        stored = [client.get(op.redis_key) for op in ops]
        if lib is dropin:
            assert all(0 < client.pttl(op.redis_key) <= _engine.TTL_SECONDS * 1000 for op in ops)
        answers = [done, queued, stored, [op.redis_key for op in ops]]
        readers = ops if lib is dropin else [reader(real, op.redis_key) for op in ops]
        for op, read in zip(ops, readers, strict=True):
            members = [uid in read for uid in (0, 1, 3, 1001, 1003, 1005, 5000)]
            # (get_count() of a set on a pipeline queues there: read through SYSTEM)
            count = reader(lib, op.redis_key).get_count()
            answers.append((len(read), count, read.has_events_marked(), list(read)))
            answers.append(members)
            answers.append((list(lib.BitOpAnd(SYSTEM, op, day_a1)), list(op & day_b1)))
            answers.append(list(lib.BitOpXor(SYSTEM, op, lib.BitOpOr(SYSTEM, op, day_b2))))
        real.unmark_event(f"{ev}-a", 1001, system=SYSTEM, now=datetime(2021, 1, 1))
        for key in (a1, b1):
            for uid in (1001, 1003, 1005):
                client.setbit(key, uid, 0)
        client.delete(*(op.redis_key for op in ops))
        return answers

    theirs, mine = scenario(real), scenario(dropin)
    assert mine == theirs
    assert theirs[1] == [0] * 5 and all(theirs[2])
    # SET, 3 SETBITs of the mark, a SETBIT, 6 bit operations (BITOP's sizes), GET
    assert theirs[0][0] is True and theirs[0][-1] == b"x" and len(theirs[0]) == 12
    counts, members = theirs[4:6]  # of `both`: 1001 queued before it, 1003 set before the execute
    assert counts[0] > 0 and members[3:6] == [True, True, False]


def test_a_bit_operation_on_a_pipeline_read_before_its_execute(
    client: redis.Redis, ev: str
) -> None:
    """Read before the caller's execute(), it is computed then (bitmapist's reads would join
    the queue); `delete_runtime_bitop_keys()` deletes its result at once, not queued."""
    for uid in (1, 2, 3):
        dropin.mark_event(f"{ev}-a", uid, system=SYSTEM, now=datetime(2021, 1, 1))
    dropin.mark_event(f"{ev}-b", 2, system=SYSTEM, now=datetime(2021, 1, 1))
    a, b = (dropin.DayEvents(f"{ev}-{e}", 2021, 1, 1, system=SYSTEM) for e in "ab")
    pipe = client.pipeline()
    op = dropin.BitOpXor(pipe, a, b)
    assert (list(op), 2 in op, len(pipe.command_stack)) == ([1, 3], False, 1)
    assert pipe.execute() == [1] and list(op) == [1, 3]
    dropin.delete_runtime_bitop_keys()
    assert client.exists(op.redis_key) == 0 and not pipe.command_stack


def test_counts_asked_on_a_pipeline_come_with_its_execute_as_in_bitmapist(
    client: redis.Redis, ev: str, default_system: None
) -> None:
    """bitmapist's idiom for many counts in one round trip: sets and bit operations built on a
    pipeline, `get_count()` of each (which queues a BITCOUNT there and returns the pipeline),
    then one execute() whose replies hold the counts, in order."""
    for uid in range(0, 90, 2):
        real.mark_event(f"{ev}-a", uid, system=SYSTEM, now=datetime(2021, 1, 1, tzinfo=UTC))
    for uid in range(0, 90, 3):
        real.mark_event(f"{ev}-b", uid, system=SYSTEM, now=datetime(2021, 1, 1, tzinfo=UTC))

    def scenario(lib: ModuleType) -> list[Any]:
        pipe = client.pipeline()
        a, b = (lib.DayEvents(f"{ev}-{e}", 2021, 1, 1, system=pipe) for e in "ab")
        both = lib.BitOpAnd(pipe, a, b)
        either = lib.BitOpOr(pipe, both, lib.BitOpXor(pipe, a, b))
        asked = [s.get_count() for s in (a, b, both, either, lib.MonthEvents(f"{ev}-a", 2021, 1))]
        assert all(x is pipe for x in asked[:4])  # (the month's is on "default": a number)
        replies = pipe.execute()
        client.delete(*(op.redis_key for op in (both, either)))
        return [*replies, asked[4]]

    theirs, mine = scenario(real), scenario(dropin)
    assert mine == theirs
    assert theirs[-5:-1] == [45, 30, 15, 60]  # a, b, a & b, (a & b) | (a ^ b)


def test_none_is_no_member_but_an_error_as_in_bitmapist(client: redis.Redis, ev: str) -> None:
    """`None in events` is redis-py's DataError in bitmapist (GETBIT of no offset); the drop-in
    answered whether the set had any id (None meant "count" inside), True for a non-empty set."""
    for lib in LIBS.values():
        lib.mark_event(f"{ev}-a", 5, system=SYSTEM, now=datetime(2021, 1, 1))
        day = lib.DayEvents(f"{ev}-a", 2021, 1, 1, system=SYSTEM)
        for events in (day, lib.BitOpOr(SYSTEM, day, day)):
            with pytest.raises(redis.exceptions.DataError):
                None in events  # noqa: B015
            assert 5 in events and 4 not in events


@pytest.mark.parametrize("op", ["BitOpAnd", "BitOpOr", "BitOpXor", "BitOpNot"])
def test_a_bit_operation_of_no_events_fails_as_in_bitmapist(
    client: redis.Redis, ev: str, op: str
) -> None:
    """bitmapist sends BITOP with no source key, which Redis refuses: at once, or at the
    execute() of a caller's pipeline. The drop-in gave an empty set (`BitOpAnd(SYSTEM, *[])`
    of an empty selection read as nobody, silently)."""
    for lib in LIBS.values():
        with pytest.raises(redis.exceptions.ResponseError, match="wrong number of arguments"):
            getattr(lib, op)(SYSTEM)
        # (in a MULTI, Redis refuses bitmapist's whole transaction when queued; the drop-in's
        # script fails when run, the other commands done: not compared)
        pipe = client.pipeline(transaction=False)
        pipe.set(f"trackist_{ev}-before", 1)
        getattr(lib, op)(pipe)
        with pytest.raises(redis.exceptions.ResponseError, match="wrong number of arguments"):
            pipe.execute()
        assert client.get(f"trackist_{ev}-before") == b"1"  # the commands before it ran


def test_systems_and_get_redis_replaced_on_the_module_are_used(
    client: redis.Redis, ev: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bitmapist looks up `SYSTEMS` and `get_redis` in its module at each call, so a test that
    replaces them (`mock.patch.object(bitmapist, "SYSTEMS", {...})`) redirects everything; the
    drop-in kept using the dict of its import, "default" at localhost:6379 (and marks honoured
    a patched get_redis where reads did not: written to one server, read from another)."""
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.5)  # not the system Redis
    answers = []
    for lib in LIBS.values():
        monkeypatch.setitem(lib.SYSTEMS, "default", unreachable)
        for replace in ("SYSTEMS", "get_redis"):
            name = f"{ev}-{replace}"
            with monkeypatch.context() as patch:
                if replace == "SYSTEMS":
                    patch.setattr(lib, "SYSTEMS", {"default": client})
                else:
                    patch.setattr(lib, "get_redis", lambda system="default": client)
                lib.mark_event(name, 3, now=datetime(2021, 1, 1), track_unique=True)
                lib.mark_unique(name, 4)
                day = lib.DayEvents(name, 2021, 1, 1)
                both = lib.BitOpOr(day, lib.UniqueEvents(name))
                answers.append([list(day), len(day), 3 in day, list(both), len(~day)])
                answers.append(sorted(lib.get_event_names(prefix=name)))
                lib.delete_temporary_bitop_keys()
                answers.append(client.exists(both.redis_key))
            for key in list(client.scan_iter(match=f"trackist_{name}_*")):
                client.delete(key)
    expected = [[3], 1, True, [3, 4], 7]
    assert answers == [expected, [f"{ev}-SYSTEMS"], 0, expected, [f"{ev}-get_redis"], 0] * 2
