"""Retention, funnels, stickiness and lifecycle: the reference model as oracle, on every backend.

Property tests feed random event streams to bitstat and to the model (tests/model_analysis.py)
and compare every cell; example tests pin hand-checked answers, the None cells of periods not
begun, the CSV/HTML/JSON views and argument errors. `now` is always given: nothing here depends
on the wall clock.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitstat
import model_analysis as ref
import servers
from bitstat import analysis
from bitstat.keys import Keys
from model import Model, ModelError

EXAMPLES = settings(
    max_examples=int(os.environ.get("BITSTAT_ANALYSIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SHARD = 2**20
NAMES = ["signup", "login", "buy"]
AWKWARD = ["a:b {c}", "🎉"]
COUNTRIES = ["NL", "DE", "n l"]
# A Sunday when Amsterdam's clocks fall back (and a month's end), and ISO week 2026-W53.
ANCHORS = [datetime(2026, 10, 25, 12, tzinfo=UTC), datetime(2026, 12, 30, 12, tzinfo=UTC)]
# Far enough ahead for the anchors and the weeks after them: streams run past today's date.
HORIZON = 3650 * 86400
WINDOWS = [1, 3, "7d", "7d", "2w", "2w", "48h", timedelta(days=10)]


# streams and questions


@st.composite
def configs(draw: st.DrawFn, ids: str) -> dict[str, Any]:
    extra = draw(st.lists(st.sampled_from(["week", "month", "year"]), unique=True))
    hourly = draw(st.integers(0, 3)) == 0
    return {
        "ids": ids,
        "timezone": draw(st.sampled_from(["UTC", "Europe/Amsterdam"])),
        "periods": ("hour",) * hourly + ("day", *extra),
        "segment": ["country"],
        "horizon": HORIZON,
        # segments kept per hour, or per day only (the default)
        **({"hourly": draw(st.sampled_from([(), ("segment",)]))} if hourly else {}),
    }


def actor_ids(ids: str) -> st.SearchStrategy[Any]:
    """A few actors, so they come back often; int ids in three 2^20 shards."""
    if ids == "int":
        # SHARD - 1 makes shard 0's bitmaps 128 KiB long: small sets are then counted by probing
        return st.sampled_from([0, 1, 2, 3, 4, 5, SHARD - 1, SHARD + 1, 3 * SHARD + 2])
    return st.sampled_from([0, 1, "2", "ann", "bo", "🎉", "a:b"])


@st.composite
def streams(
    draw: st.DrawFn, cfg: dict[str, Any], names: list[str], anchor: datetime
) -> list[dict[str, Any]]:
    who = actor_ids(cfg["ids"])
    out = []
    for _ in range(draw(st.integers(1, 150) | st.integers(50, 150))):
        t = anchor + timedelta(minutes=draw(st.integers(-16 * 1440, 16 * 1440)))
        ev: dict[str, Any] = {"event": draw(st.sampled_from(names)), "user": draw(who)}
        ev["time"] = t if draw(st.booleans()) else int(t.timestamp())
        country = draw(st.sampled_from([None, *COUNTRIES]))
        if country is not None:
            ev["country"] = country
        out.append(ev)
    return out


@st.composite
def days(draw: st.DrawFn, anchor: datetime) -> date:
    return anchor.date() + timedelta(days=draw(st.integers(-24, 20)))


@st.composite
def starts(draw: st.DrawFn, anchor: datetime, period: str) -> Any:
    """A start in one of the forms users give: date, ISO text, a period label, a datetime."""
    d = draw(days(anchor))
    form = draw(st.integers(0, 3))
    if form == 0:
        return d
    if form == 1:
        return d.isoformat()
    if form == 2:
        y, w, _ = d.isocalendar()
        return {"week": f"{y}-W{w:02d}", "month": f"{d:%Y-%m}", "year": f"{d:%Y}"}.get(
            period, d.isoformat()
        )
    return datetime(d.year, d.month, d.day, draw(st.integers(0, 23)))


@st.composite
def ranges(draw: st.DrawFn, anchor: datetime, longest: int = 40) -> tuple[Any, Any]:
    a = draw(days(anchor))
    b = a + timedelta(days=draw(st.integers(0, longest)))
    if draw(st.integers(0, 4)) == 0:  # exact times: whole hours when hours are recorded
        return (
            datetime(a.year, a.month, a.day, draw(st.integers(0, 23))),
            datetime(b.year, b.month, b.day, draw(st.integers(0, 23))),
        )
    return a.isoformat(), b


def segment(draw: Callable[..., Any]) -> dict[str, Any]:
    return draw(st.sampled_from([{}, {}, {"country": "NL"}, {"country": "n l"}]))


# comparing


def same(
    lib: Callable[..., Any],
    oracle: Callable[..., Any],
    model: Model,
    *args: Any,
    view: Callable[[Any], Any] = lambda x: x,
    **kwargs: Any,
) -> None:
    """Ask bitstat and the model; a question the model refuses must be a QueryError."""
    what = f"{oracle.__name__}{args!r} {kwargs!r}"
    try:
        expected = oracle(model, *args, **kwargs)
    except ModelError:
        with pytest.raises(bitstat.QueryError):
            lib(*args, **kwargs)
        return
    answer = view(lib(*args, **kwargs))
    assert answer == expected, f"{what}: got {answer!r}, want {expected!r}"


def rows(table: analysis.Retention) -> list[tuple[str, int, list[int | None]]]:
    return [(r.cohort, r.size, r.counts) for r in table.rows]


def phases(found: list[analysis.LifecyclePeriod]) -> list[tuple[Any, ...]]:
    return [(p.period, p.new, p.returning, p.resurrecting, p.dormant) for p in found]


def ask_everything(
    st_: bitstat.Stats, model: Model, data: st.DataObject, names: list[str], anchor: datetime
) -> None:
    periods = [p for p in model.periods if p != "hour"] + ["month"]  # one unrecorded now and then
    for _ in range(2):
        period = data.draw(st.sampled_from(periods))
        same(
            st_.retention,
            ref.retention,
            model,
            data.draw(st.sampled_from(names)),
            data.draw(st.sampled_from(names)),
            data.draw(starts(anchor, period)),
            data.draw(st.integers(1, 5)),
            period,
            data.draw(st.sampled_from(["first", "recurring"])),
            columns=data.draw(st.sampled_from([None, 1, 3, 6])),
            now=anchor + timedelta(hours=data.draw(st.integers(-10 * 24, 40 * 24))),
            view=rows,
            **segment(data.draw),
        )
    for _ in range(2):
        steps = data.draw(st.lists(st.sampled_from(names), min_size=2, max_size=4))
        start, end = data.draw(ranges(anchor, longest=20))
        within = data.draw(st.sampled_from(WINDOWS))
        same(st_.funnel, ref.funnel, model, steps, start, end, within, **segment(data.draw))
    event = data.draw(st.sampled_from(names))
    start, end = data.draw(ranges(anchor))
    same(st_.stickiness, ref.stickiness, model, event, start, end, **segment(data.draw))
    period = data.draw(st.sampled_from(periods))
    same(
        st_.lifecycle,
        ref.lifecycle,
        model,
        event,
        data.draw(starts(anchor, period)),
        data.draw(st.integers(1, 6)),
        period,
        now=data.draw(days(anchor)),
        view=phases,
        **segment(data.draw),
    )


@pytest.fixture
def clean(redis_client: servers.Client) -> Iterator[list[bitstat.Stats]]:
    """Stats opened by a test; their namespaces are dropped (and checked free of scratch keys)."""
    opened: list[bitstat.Stats] = []
    yield opened
    for st_ in opened:
        ns = Keys(st_.namespace).ns
        leftovers = [k for k in redis_client.scan_iter(match="{" + ns + ":*:tmp:*", count=1000)]
        st_.drop()
        st_.close()
        assert not leftovers, f"scratch keys left behind: {leftovers[:3]}"


def check(
    server_url: str, namespace: str, clean: list[bitstat.Stats], data: st.DataObject, ids: str
) -> None:
    cfg = data.draw(configs(ids))
    names = NAMES if data.draw(st.booleans()) else [*NAMES[:2], *AWKWARD]
    anchor = data.draw(st.sampled_from(ANCHORS))
    events = data.draw(streams(cfg, names, anchor))
    model = Model(**cfg)
    st_ = bitstat.connect(
        server_url, namespace=f"{namespace}-{len(clean)}", schema=bitstat.Schema(**cfg)
    )
    clean.append(st_)
    assert st_.track_many(events).recorded == model.track_many(events)[0] == len(events)
    ask_everything(st_, model, data, names, anchor)


@EXAMPLES
@given(data=st.data())
def test_int_ids_agree_with_model(
    server_url: str, namespace: str, clean: list[bitstat.Stats], data: st.DataObject
) -> None:
    check(server_url, namespace, clean, data, "int")


@EXAMPLES
@given(data=st.data())
def test_mapped_ids_agree_with_model(
    server_url: str, namespace: str, clean: list[bitstat.Stats], data: st.DataObject
) -> None:
    check(server_url, namespace, clean, data, "map")


# examples, checked by hand

MON = datetime(2026, 9, 7, 10, tzinfo=UTC)  # Monday of 2026-W37


def day(n: int) -> datetime:
    return MON + timedelta(days=n)


@pytest.fixture
def shop(server_url: str, namespace: str, clean: list[bitstat.Stats]) -> bitstat.Stats:
    """Ten signups in W37 (0-9, country NL for the even ids), six in W38 (10-15), logins after."""
    st_ = bitstat.connect(
        server_url, namespace=namespace, schema=bitstat.Schema(segment=["country"])
    )
    clean.append(st_)
    events: list[dict[str, Any]] = []
    for u in range(10):
        events.append(
            {"event": "signup", "user": u, "time": day(0), "country": "NL" if u % 2 == 0 else "DE"}
        )
    for u in range(10, 16):
        events.append({"event": "signup", "user": u, "time": day(7), "country": "DE"})
    events += [{"event": "login", "user": u, "time": day(8)} for u in range(0, 16, 2)]
    events += [{"event": "login", "user": u, "time": day(15)} for u in range(0, 16, 3)]
    events += [{"event": "login", "user": 3, "time": day(-30)}]  # before any signup
    events += [{"event": "buy", "user": u, "time": day(9)} for u in (0, 10, 12)]
    events += [{"event": "buy", "user": 14, "time": day(20)}]
    assert st_.track_many(events).recorded == len(events)
    return st_


def test_retention_example(shop: bitstat.Stats) -> None:
    table = shop.retention("signup", "login", "2026-09-07", periods=3, now=day(8))
    assert rows(table) == [
        ("2026-W37", 10, [0, 5, None]),  # 0 2 4 6 8 back in W38; W39 has not begun on day 8
        ("2026-W38", 6, [3, None, None]),  # 10 12 14
        ("2026-W39", 0, [None, None, None]),
    ]
    later = shop.retention("signup", "login", "2026-W37", periods=2, columns=3, now=day(30))
    assert rows(later) == [("2026-W37", 10, [0, 5, 4]), ("2026-W38", 6, [3, 2, 0])]
    nl = shop.retention("signup", "login", date(2026, 9, 7), periods=2, now=day(30), country="NL")
    assert rows(nl) == [("2026-W37", 5, [0, 5]), ("2026-W38", 0, [0, 0])]
    # login: user 3 logged in 30 days before W37, so is no first-timer in W39
    first = shop.retention("login", "login", "2026-W37", 3, now=day(30))
    recurring = shop.retention("login", "login", "2026-W37", 3, kind="recurring", now=day(30))
    assert rows(first) == [("2026-W37", 0, [0, 0, 0]), ("2026-W38", 8, [8, 3, 0]),
                           ("2026-W39", 2, [2, 0, 0])]  # fmt: skip
    assert rows(recurring) == [("2026-W37", 0, [0, 0, 0]), ("2026-W38", 8, [8, 3, 0]),
                               ("2026-W39", 6, [6, 0, 0])]  # fmt: skip
    daily = shop.retention("signup", "buy", "2026-09-07", periods=2, period="day", now=day(30))
    assert rows(daily) == [("2026-09-07", 10, [0, 0]), ("2026-09-08", 0, [0, 0])]
    assert daily.rows[0].rates() == [0.0, 0.0] and daily.rows[1].rates() == [None, None]


def test_funnel_example(shop: bitstat.Stats) -> None:
    steps = ["signup", "login", "buy"]
    # W37 signups log in on day 8: too late for a 7-day window from day 0, in time for 9 days
    assert shop.funnel(steps, day(0), day(13), within="7d") == [
        ("signup", 16), ("login", 3), ("buy", 2)]  # fmt: skip
    assert shop.funnel(steps, "2026-09-07", "2026-09-13", within="10d") == [
        ("signup", 10), ("login", 5), ("buy", 1)]  # fmt: skip
    # 15 logs in on day 15 and 14 buys on day 20, 13 days after signing up: in 2 weeks
    assert shop.funnel(steps, "2026-W38", within="2w") == [("signup", 6), ("login", 4), ("buy", 3)]
    assert shop.funnel(steps, "2026-W38", within="1w") == [("signup", 6), ("login", 3), ("buy", 2)]
    # the same day counts as in order; a day before does not
    assert shop.funnel(["login", "buy"], day(8), day(8), within=1) == [("login", 8), ("buy", 0)]
    assert shop.funnel(["buy", "login"], day(9), day(9), within=1) == [("buy", 3), ("login", 0)]
    assert shop.funnel(["signup"], "2026-09", country="NL") == [("signup", 5)]


def test_funnel_window_longer_than_the_data(shop: bitstat.Stats) -> None:
    """A window longer than the data ("36500d": at any time after) answers as the longest the
    data needs; one reaching past the year 9999 raised OverflowError (and one of 10**6 days
    was planned day by day, for minutes)."""
    steps = ["signup", "login", "buy"]
    # 0-9 sign up on day 0; 0 2 4 6 8 log in on day 8, 0 3 6 9 on day 15; 0 buys on day 9
    want = [("signup", 10), ("login", 7), ("buy", 1)]
    assert shop.funnel(steps, "2026-W37", within="3w") == want
    for within in ("36500d", 3_000_000, 10**30):
        assert shop.funnel(steps, "2026-W37", within=within) == want
    assert shop.funnel(["buy", "signup"], "2026-09", within=10**30) == [("buy", 4), ("signup", 0)]


def test_periods_added_after_the_data_are_read_from_its_days(
    server_url: str, namespace: str, clean: list[bitstat.Stats]
) -> None:
    """Weeks and months added to a namespace that held days: unique() read an old week from its
    days, retention and lifecycle refused it ('2026-W37 holds only what was recorded since')."""
    schema = bitstat.Schema(periods=("day",), segment=["country"])
    st_ = bitstat.connect(server_url, namespace=namespace, schema=schema)
    clean.append(st_)
    st_.track_many(
        [{"event": "v", "user": u, "time": day(u), "country": "NL"} for u in range(6)]
        + [{"event": "v", "user": u, "time": day(7 + u), "country": "DE"} for u in range(3)]
    )
    st_.configure(bitstat.Schema(periods=("day", "week", "month"), segment=["country"]))
    assert st_.unique("v", "2026-W37") == 6
    # 0-5 in W37 (NL), 0-2 again in W38 (DE)
    table = st_.retention("v", "v", "2026-W37", 2, now=day(30))
    assert rows(table) == [("2026-W37", 6, [6, 3]), ("2026-W38", 0, [0, 0])]
    nl = st_.retention("v", "v", "2026-W37", 2, kind="recurring", now=day(30), country="NL")
    assert rows(nl) == [("2026-W37", 6, [6, 3]), ("2026-W38", 0, [0, 0])]
    assert rows(st_.retention("v", "v", "2026-09", 1, "month", now=day(30))) == [
        ("2026-09", 6, [6])
    ]
    found = st_.lifecycle("v", "2026-W37", 2, now=day(30))
    assert phases(found) == [("2026-W37", 6, 0, 0, 0), ("2026-W38", 0, 3, 0, 3)]
    de = st_.lifecycle("v", "2026-W38", 1, now=day(30), country="DE")
    assert phases(de) == [("2026-W38", 0, 0, 3, 0)]


def test_families_kept_per_day_in_a_namespace_of_hours(
    server_url: str, namespace: str, clean: list[bitstat.Stats]
) -> None:
    """periods=("hour",) keeps segments and counts nowhere unless hourly names them: a query of
    them says so (it said 'no periods given'); unique actors and totals are kept per hour."""
    schema = bitstat.Schema(periods=("hour",), segment=["country"], count=["country"])
    st_ = bitstat.connect(server_url, namespace=namespace, schema=schema)
    clean.append(st_)
    st_.track("visit", user=1, time="2026-11-23T10:00", country="NL")
    assert st_.unique("visit", "2026-11-23") == 1
    asked = [
        lambda: st_.counts("visit", "country", "2026-11-23"),
        lambda: st_.unique("visit", "2026-11-23", country="NL"),
        lambda: st_.stickiness("visit", "2026-11-23", country="NL"),
        lambda: st_.funnel(["visit"], "2026-11-23", country="NL"),
        lambda: st_.retention("visit", "visit", "2026-11-23T10", 1, "hour", country="NL"),
        lambda: st_.lifecycle("visit", "2026-11-23T10", 1, "hour", country="NL"),
    ]
    for ask in asked:
        with pytest.raises(bitstat.QueryError, match="records hours only, so none are recorded"):
            ask()


def test_stickiness_and_lifecycle_examples(shop: bitstat.Stats) -> None:
    assert shop.stickiness("login", day(8), day(15)) == {
        1: 8,
        2: 3,
        **dict.fromkeys(range(3, 9), 0),
    }
    assert shop.stickiness("login", "2026-W38") == {1: 8, **dict.fromkeys(range(2, 8), 0)}
    found = shop.lifecycle("login", "2026-W37", 4, now=day(16))
    assert [p.as_dict() for p in found] == [
        {"period": "2026-W37", "new": 0, "returning": 0, "resurrecting": 0, "dormant": 0},
        {"period": "2026-W38", "new": 8, "returning": 0, "resurrecting": 0, "dormant": 0},
        # 0 6 12 again, 3 back from day -30, 9 15 new; 2 4 8 10 14 gone
        {"period": "2026-W39", "new": 2, "returning": 3, "resurrecting": 1, "dormant": 5},
        {"period": "2026-W40", "new": None, "returning": None, "resurrecting": None,
         "dormant": None},
    ]  # fmt: skip


def test_lifecycle_of_a_segment(
    server_url: str, namespace: str, clean: list[bitstat.Stats]
) -> None:
    """A segment narrows the actors of a period and of the one before; "seen before" is any
    segment's (as retention's first-ever): 1, seen in DE, comes back in NL resurrecting, not
    new. (lifecycle took no segment filter, where every other actor query takes one.)"""
    st_ = bitstat.connect(
        server_url, namespace=namespace, schema=bitstat.Schema(segment=["country"])
    )
    clean.append(st_)
    visits = [(1, 0, "DE"), (1, 7, "NL"), (2, 8, "NL"), (3, 1, "NL"), (3, 9, "NL"), (4, 2, "NL")]
    st_.track_many([{"event": "v", "user": u, "time": day(d), "country": c} for u, d, c in visits])
    found = st_.lifecycle("v", "2026-W37", 2, now=day(16), country="NL")
    assert [p.as_dict() for p in found] == [
        {"period": "2026-W37", "new": 2, "returning": 0, "resurrecting": 0, "dormant": 0},
        {"period": "2026-W38", "new": 1, "returning": 1, "resurrecting": 1, "dormant": 1},
    ]
    with pytest.raises(bitstat.QueryError):  # (segments are kept per day: no hour periods)
        st_.lifecycle("v", day(0), 2, period="hour", now=day(16), country="NL")


def test_register_script_edges(server_url: str, namespace: str, clean: list[bitstat.Stats]) -> None:
    """More than 16 sources, an operand standing in a register, diff into its second operand."""
    st_ = bitstat.connect(server_url, namespace=namespace)
    clean.append(st_)
    st_.track_many(
        [{"event": "e", "user": u, "time": day(u % 20)} for u in range(40)]
        + [{"event": "e", "user": SHARD + 5, "time": day(3)}]
    )
    labels = [(day(i).date().isoformat(),) for i in range(20)]
    prog = analysis.SetProgram()
    a, b = prog.register(), prog.register()
    prog.op("or", a, [prog.leaf("e", lb) for lb in labels])  # 20 days: two BITOP chunks
    prog.count(a)
    prog.op("or", b, [prog.leaf("e", labels[3])])  # stands for the operand key
    prog.count(b)
    prog.diff(b, a, b)  # b := a - b, written over b
    prog.count(b)
    prog.op("and", a, [a, prog.leaf("e", ("2026-01-01",))])  # a missing key: empty
    prog.count(a)
    prog.op("or", a, [a, b])
    prog.count(a)
    assert st_._run(st_._ns.totals(prog)) == [41, 3, 38, 0, 38]


def test_register_xor_with_itself(
    server_url: str, namespace: str, clean: list[bitstat.Stats]
) -> None:
    """A register among its own sources, even twice: x ^ x cancels, as set algebra says."""
    st_ = bitstat.connect(server_url, namespace=namespace)
    clean.append(st_)
    days = {0: (1, 2, 3), 1: (2, 3, 4, SHARD + 1), 2: (5, 6)}
    st_.track_many(
        [{"event": "e", "user": u, "time": day(i)} for i, users in days.items() for u in users]
    )
    d0, d1, d2 = ((day(i).date().isoformat(),) for i in range(3))
    prog = analysis.SetProgram()
    x = prog.register()
    prog.op("or", x, [prog.leaf("e", d0)])  # stands for the operand key
    prog.op("xor", x, [x, prog.leaf("e", d1)])  # {1, 4, SHARD + 1}
    prog.count(x)
    prog.op("xor", x, [x, x, prog.leaf("e", d2)])  # x ^ x ^ d2 = d2
    prog.count(x)
    assert st_._run(st_._ns.totals(prog)) == [3, 2]


def test_intersections_counted_by_probing_small_sets(
    server_url: str, namespace: str, clean: list[bitstat.Stats]
) -> None:
    """andcount: BITOP + BITCOUNT, or, for a small counted set beside long keys, its members."""
    st_ = bitstat.connect(server_url, namespace=namespace)
    clean.append(st_)
    far = SHARD - 1  # shard 0's keys become 128 KiB long
    st_.track_many(
        [{"event": "e", "user": u, "time": day(0)} for u in (1, 2, 3, 700, far)]
        + [{"event": "e", "user": u, "time": day(1)} for u in (2, 3, 9, far)]
        + [{"event": "f", "user": u, "time": day(1)} for u in (1, 3, far)]
        + [{"event": "e", "user": u, "time": day(1)} for u in range(1000, 1100)]
    )
    d0, d1 = (day(0).date().isoformat(),), (day(1).date().isoformat(),)
    prog = analysis.SetProgram()
    scratch = prog.register()
    e0, e1, f1 = prog.leaf("e", d0), prog.leaf("e", d1), prog.leaf("f", d1)
    prog.and_count(scratch, [e0, e1])  # no size known: BITOP
    prog.count(e0)  # 5 members beside a 128 KiB key: probed from now on
    prog.and_count(scratch, [e0, e1])
    prog.and_count(scratch, [e1, e0, f1])
    prog.and_count(scratch, [e0, prog.leaf("e", ("2026-01-01",))])  # a missing key
    prog.and_count(scratch, [e0])
    assert st_._run(st_._ns.totals(prog)) == [3, 5, 3, 2, 0, 5]


# views


def test_views(shop: bitstat.Stats) -> None:
    table = shop.retention("signup", "login", "2026-W37", periods=3, now=day(8))
    assert table.rates() == [[0.0, 0.5, None], [0.5, None, None], [None, None, None]]
    assert table.to_csv().splitlines() == [
        "cohort,size,0,1,2",
        "2026-W37,10,0,5,",
        "2026-W38,6,3,,",
        "2026-W39,0,,,",
    ]
    assert list(csv.reader(io.StringIO(table.to_csv(rates=True))))[1] == [
        "2026-W37",
        "10",
        "0",
        "0.5",
        "",
    ]
    dicts = table.as_dicts()
    assert json.loads(json.dumps(dicts)) == dicts
    assert dicts[0] == {"cohort": "2026-W37", "size": 10, "counts": [0, 5, None],
                        "rates": [0.0, 0.5, None]}  # fmt: skip

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.open: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.open.append(tag)
            if tag == "tr":
                self.rows.append([])
            if tag in ("td", "th"):
                self.rows[-1].append("")

        def handle_endtag(self, tag: str) -> None:
            assert self.open.pop() == tag, f"unbalanced </{tag}>"

        def handle_data(self, text: str) -> None:
            if self.open and self.open[-1] in ("td", "th"):
                self.rows[-1][-1] += text

    fragment = table.to_html()
    parsed = Cells()
    parsed.feed(fragment)
    assert not parsed.open
    assert parsed.rows == [
        ["cohort", "size", "week 0", "week 1", "week 2"],
        ["2026-W37", "10", "0.0%", "50.0%", ""],
        ["2026-W38", "6", "50.0%", "", ""],
        ["2026-W39", "0", "", "", ""],
    ]
    assert "login after signup" in fragment and "background:rgb(" in fragment
    page = table.to_html(page=True)
    assert page.startswith("<!doctype html>") and fragment in page


def test_awkward_names_are_escaped(
    server_url: str, namespace: str, clean: list[bitstat.Stats]
) -> None:
    st_ = bitstat.connect(server_url, namespace=namespace)
    clean.append(st_)
    st_.track_many([{"event": "<b>&", "user": 1, "time": day(0)}])
    html = st_.retention("<b>&", "<b>&", day(0), 1, now=day(0)).to_html()
    assert "<b>&" not in html and "&lt;b&gt;&amp;" in html


# arguments


def test_bad_arguments(shop: bitstat.Stats) -> None:
    bad: list[Callable[[], Any]] = [
        lambda: shop.retention("signup", "login", "2026-W37", kind="weekly", now=day(0)),
        lambda: shop.retention("signup", "login", "2026-W37", periods=0, now=day(0)),
        lambda: shop.retention("signup", "login", "2026-W37", columns=True, now=day(0)),
        lambda: shop.retention("signup", "login", "2026-W37", period="hour", now=day(0)),
        lambda: shop.retention("signup", "login", "2026-W37", period="fortnight", now=day(0)),
        lambda: shop.retention("", "login", "2026-W37", now=day(0)),
        lambda: shop.retention("signup", "login", "not a date", now=day(0)),
        lambda: shop.retention("signup", "login", "2026-W37", now=day(0), platform="ios"),
        lambda: shop.funnel([], day(0), day(3)),
        lambda: shop.funnel("signup", day(0), day(3)),
        lambda: shop.funnel(["signup", 5], day(0), day(3)),  # type: ignore[list-item]
        lambda: shop.funnel(["signup"], day(0), day(3), within="36h"),
        lambda: shop.funnel(["signup"], day(0), day(3), within=0),
        lambda: shop.funnel(["signup"], day(0), day(3), within="soon"),
        lambda: shop.funnel(["signup"], day(3), day(0)),
        lambda: shop.stickiness("login", day(3), day(0)),
        lambda: shop.lifecycle("login", "2026-W37", periods=-1, now=day(0)),
    ]
    for ask in bad:
        with pytest.raises(bitstat.QueryError):
            ask()


def test_periods_past_the_last_supported_date(shop: bitstat.Stats) -> None:
    """Periods running past 9998-12-31 are refused at once, naming the argument: they were
    rows labelled 9999-01-01 (days, weeks, months), a QueryError naming no argument (years), or
    minutes of counting hours up to the year 9999 before one (periods=10**30)."""
    asked = [
        ("periods", lambda: shop.retention("signup", "login", "9998-12-30", 3, "day", now=day(0))),
        ("periods", lambda: shop.retention("signup", "login", "9998-W53", 2, now=day(0))),
        ("periods", lambda: shop.lifecycle("login", "9998-12", 2, "month", now=day(0))),
        ("periods", lambda: shop.lifecycle("login", "9998", 2, "year", now=day(0))),
        ("periods", lambda: shop.lifecycle("login", "2026-W37", 10**30, now=day(0))),
        ("periods", lambda: shop.retention("signup", "login", "2026-09", 10**30, "month")),
        ("columns", lambda: shop.retention("signup", "login", "9998-W50", 2, columns=5)),
    ]
    for param, ask in asked:
        with pytest.raises(bitstat.QueryError, match="run past 9998-12-31") as raised:
            ask()
        assert raised.value.param == param
    last = shop.retention("signup", "login", "9998-12-30", 2, "day", columns=1, now=day(0))
    assert rows(last) == [("9998-12-30", 0, [None]), ("9998-12-31", 0, [None])]


def test_parse_within() -> None:
    assert analysis.parse_within("7d") == analysis.parse_within(7) == 7
    assert analysis.parse_within(" 2w ") == 14
    assert analysis.parse_within("48h") == 2
    assert analysis.parse_within(timedelta(days=3)) == 3
    assert analysis.parse_within("7") == 7  # as the HTTP API has read it: days
    for bad in ("0d", "25h", timedelta(hours=30), -1, True, None, "x7", 7.0):
        with pytest.raises(bitstat.QueryError):
            analysis.parse_within(bad)


# the examples of docs/analysis.md, run as written


DOC = Path(__file__).resolve().parent.parent / "docs" / "analysis.md"


def doc_examples() -> list[tuple[str, str | None]]:
    """(code, printed output or None) for each Python block of docs/analysis.md."""
    out: list[tuple[str, str | None]] = []
    for kind, body in re.findall(r"```(python|text)\n(.*?)```", DOC.read_text("utf-8"), re.S):
        if kind == "python":
            out.append((body, None))
        else:
            out[-1] = (out[-1][0], body)
    return out


def test_doc_examples(
    server_url: str, namespace: str, clean: list[bitstat.Stats], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITSTAT_URL", server_url)
    scope: dict[str, Any] = {}
    examples = doc_examples()
    assert len(examples) == 5
    try:
        for code, expected in examples:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(code.replace('"analysis-demo"', repr(namespace)), scope)
            assert printed.getvalue() == (expected or ""), code
    finally:
        if "st" in scope:
            clean.append(scope["st"])
