"""The benchmark scenarios: each measures bitstat and bitmapist on the same server, same data.

Every scenario writes under a fresh bitstat namespace / bitmapist event name and deletes what
it wrote when it ends (also when it fails). Events are generated before any clock starts; a
timed region holds only the library calls being measured. Each result is checked against the
truth computed with numpy from the generated data, so a fast but wrong figure is flagged.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from rich.console import Console

import bitstat
from bitstat.keys import escape
from harness import (
    Cell,
    Row,
    Server,
    Target,
    absent,
    latencies_ms,
    median,
    namespace_patterns,
    timed,
    token,
)
from workload import (
    DAY,
    History,
    Stream,
    backfill_stream,
    counters_stream,
    full_stream,
    history,
    live_stream,
    random_ids_32,
    random_ids_64,
)

FULL_SCHEMA = {
    "count": ["country", "country~platform"],
    "sum": ["amount"],
    "top": ["item"],
}


@dataclass(frozen=True)
class Sizes:
    live: int  # 1a events
    backfill: int  # 1b events
    full: int  # 1c events
    bm_sample_default: int  # bitmapist mark_event, one round trip per event
    bm_sample_pipeline: int  # bitmapist with its own pipeline
    population: int  # scenario 2: distinct actors
    id_space: int  # scenario 2: ids drawn from [0, id_space)
    daily_share: float  # scenario 2: share of the population active each day
    counters_per_day: int  # scenario 2c: full-schema events per day
    query_runs: int  # timed runs per query (median reported)
    memory_ids: int  # scenario 3: 64-bit ids for bitstat
    bm_memory_ids: int  # scenario 3: ids below 2^32 for bitmapist


FULL = Sizes(
    live=1_000_000,
    backfill=1_000_000,
    full=500_000,
    bm_sample_default=20_000,
    bm_sample_pipeline=100_000,
    population=1_000_000,
    id_space=10_000_000,
    daily_share=0.1,
    counters_per_day=20_000,
    query_runs=50,
    memory_ids=1_000_000,
    bm_memory_ids=1_000_000,
)
QUICK = Sizes(
    live=50_000,
    backfill=50_000,
    full=20_000,
    bm_sample_default=2_000,
    bm_sample_pipeline=10_000,
    population=20_000,
    id_space=10_000_000,
    daily_share=0.1,
    counters_per_day=1_000,
    query_runs=20,
    memory_ids=20_000,
    bm_memory_ids=5_000,
)


@dataclass
class Bench:
    """What every scenario needs: the server, the sizes, the output so far."""

    server: Server
    sizes: Sizes
    repeats: int
    batch: int
    console: Console
    bitmapist_memory_real: bool = True
    rows: list[Row] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    _bitmapist: Any = None

    @property
    def url(self) -> str:
        return self.server.url

    def log(self, text: str) -> None:
        self.console.log(text)

    def bitmapist(self) -> Any:
        """The bitmapist module, pointed at the benchmark server as its 'default' system."""
        if self._bitmapist is None:
            import bitmapist

            host, port, kw = self.server.bitmapist_kwargs()
            bitmapist.setup_redis("default", host, port, **kw)
            bitmapist.TRACK_HOURLY = False
            bitmapist.TRACK_UNIQUE = False
            self._bitmapist = bitmapist
        return self._bitmapist

    def check(self, scenario: str, what: str, expected: Any, got: Any) -> bool:
        ok = expected == got
        self.checks.append(
            {
                "scenario": scenario,
                "what": what,
                "expected": plain(expected),
                "got": plain(got),
                "ok": ok,
            }
        )
        if not ok:
            self.console.log(
                f"[bold red]CHECK FAILED[/] {scenario} {what}: expected {expected!r}, got {got!r}"
            )
        return ok

    @contextmanager
    def namespace(self, scenario: str, schema: bitstat.Schema) -> Iterator[bitstat.Stats]:
        """A fresh bitstat namespace, deleted (SCAN on its prefix) when the block ends."""
        ns = f"bench-{scenario}-{token()}"
        st = bitstat.connect(self.url, namespace=ns, schema=schema)
        try:
            yield st
        finally:
            st.close()
            self.server.delete_matching(*namespace_patterns(ns))

    @contextmanager
    def bitmapist_event(self, scenario: str) -> Iterator[str]:
        """A fresh bitmapist event name; its keys and bit-op keys are deleted afterwards."""
        name = f"bench_{scenario}_{token()}"
        try:
            yield name
        finally:
            if self._bitmapist is not None:
                self._bitmapist.delete_runtime_bitop_keys()
            self.server.delete_matching(f"trackist_{name}_*", f"trackist_bitop_*trackist_{name}_*")


def plain(value: Any) -> Any:
    """A checked value as JSON can hold it: numbers and text as they are, the rest as repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def attempt(unit: str, fn: Callable[[], Cell], console: Console) -> Cell:
    """Run one measurement; a failure becomes an 'error' cell instead of stopping the run."""
    try:
        return fn()
    except Exception as exc:
        console.log(f"[red]measurement failed[/]: {type(exc).__name__}: {exc}")
        console.log(traceback.format_exc(limit=3))
        message = str(exc).splitlines()[0] if str(exc) else ""
        return Cell(None, unit, text=f"error: {type(exc).__name__}: {message[:90]}")


def batches(events: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def track_all(st: bitstat.Stats, chunks: list[list[dict[str, Any]]]) -> tuple[int, list[Any]]:
    recorded, rejected = 0, []
    for chunk in chunks:
        result = st.track_many(chunk)
        recorded += result.recorded
        rejected.extend(result.rejected[:3])
    return recorded, rejected


def median_of(k: int) -> str:
    return f"median of {k} runs" if k > 1 else "1 run"


def day_text(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


# --------------------------------------------------------------------------------------------
# Scenario 1: recording


def bitstat_track(
    b: Bench,
    scenario: str,
    schema: bitstat.Schema,
    stream: Stream,
    *,
    datetimes: bool,
) -> Cell:
    """Median events/s of `track_many` over `b.repeats` runs, each into a fresh namespace."""
    events = stream.dicts(datetimes=datetimes)
    chunks = batches(events, b.batch)
    n = len(events)
    seconds = []
    for run in range(b.repeats):
        with b.namespace(scenario, schema) as st:
            out: dict[str, Any] = {}

            def go(st: bitstat.Stats = st, out: dict[str, Any] = out) -> None:
                out["recorded"], out["rejected"] = track_all(st, chunks)

            seconds.append(timed(go))
            b.check(scenario, f"run {run}: events recorded", n, out["recorded"])
            if out["rejected"]:
                b.log(f"[red]{scenario}: rejected events[/]: {out['rejected'][:3]}")
            if run == 0:
                verify_track(b, scenario, st, stream)
    rates = [n / s for s in seconds]
    return Cell(
        n / median(seconds),
        "events/s",
        label="track_many, " + ("datetime" if datetimes else "epoch-second") + " times",
        runs=rates,
        note=f"{n:,} events in batches of {b.batch:,}, {median_of(len(seconds))}",
    )


def verify_track(b: Bench, scenario: str, st: bitstat.Stats, stream: Stream) -> None:
    first, last = day_text(min(stream.times)), day_text(max(stream.times))
    b.check(
        scenario,
        f"unique {first}..{last}",
        len(set(stream.ids)),
        st.unique(stream.event, first, last),
    )
    if stream.props:
        b.check(scenario, "total", len(stream), st.total(stream.event, first, last))
        truth = Counter(stream.props["country"])
        got = st.counts(stream.event, "country", first, last)
        b.check(scenario, "counts(country)", dict(truth), got)
        total = float(np.sum(np.array(stream.props["amount"])))
        got_sum = st.sums(stream.event, "amount", first, last)
        assert isinstance(got_sum, float)
        b.check(scenario, "sums(amount) within 1e-6", True, abs(got_sum - total) <= 1e-6 * total)


def bitmapist_mark(b: Bench, scenario: str, stream: Stream, sample: int, pipelined: bool) -> Cell:
    """bitmapist's `mark_event(name, uid, now=dt, track_hourly=False)` over the first events.

    Default: one call per event, each its own MULTI/EXEC pipeline of 3 SETBITs (month, week,
    day): one round trip per event. Pipelined: the caller's pipeline (`system=pipe`,
    `use_pipeline=False`), executed every `b.batch` events.
    """
    bm = b.bitmapist()
    part = stream.head(min(sample, len(stream)))
    pairs = list(zip(part.ids, [datetime.fromtimestamp(t, UTC) for t in part.times], strict=True))
    n = len(pairs)
    seconds = []
    for _ in range(b.repeats):
        with b.bitmapist_event(scenario) as ev:
            if pipelined:

                def go(ev: str = ev) -> None:
                    pipe = b.server.redis.pipeline(transaction=False)
                    for i, (uid, when) in enumerate(pairs, 1):
                        bm.mark_event(
                            ev, uid, system=pipe, now=when, track_hourly=False, use_pipeline=False
                        )
                        if i % b.batch == 0:
                            pipe.execute()
                    pipe.execute()

            else:

                def go(ev: str = ev) -> None:
                    for uid, when in pairs:
                        bm.mark_event(ev, uid, now=when, track_hourly=False)

            seconds.append(timed(go))
            day = part.times[0]
            d = datetime.fromtimestamp(day, UTC)
            expected = len(
                {u for u, t in zip(part.ids, part.times, strict=True) if t // DAY == day // DAY}
            )
            b.check(
                scenario,
                "bitmapist day count",
                expected,
                len(bm.DayEvents(ev, d.year, d.month, d.day)),
            )
    extrapolated = n < len(stream)
    how = (
        f"transaction=False, executed every {b.batch:,} events"
        if pipelined
        else "one MULTI/EXEC of 3 SETBITs per event, 1 round trip each"
    )
    note = f"{how}; track_hourly=False; sample of {n:,} events"
    if extrapolated:
        note += f", rate extrapolated to {len(stream):,}"
    return Cell(
        n / median(seconds),
        "events/s",
        label="own pipeline" if pipelined else "mark_event default",
        runs=[n / s for s in seconds],
        note=note + "; " + median_of(len(seconds)),
    )


TRACK_SPECS = {
    "1a": ("live stream (time-ordered), actor bitmaps", 1_000_000),
    "1b": ("backfill (random times over 60 days), actor bitmaps", 300_000),
    "1c": ("live stream, full schema (counts, sums, top)", 300_000),
}


def scenario_track(b: Bench, key: str) -> None:
    s = b.sizes
    if key == "1a":
        stream = live_stream(s.live, seed=11)
        schema = bitstat.Schema()
    elif key == "1b":
        stream = backfill_stream(s.backfill, seed=12)
        schema = bitstat.Schema()
    else:
        stream = full_stream(s.full, seed=13)
        schema = bitstat.Schema(**FULL_SCHEMA)
    title, goal = TRACK_SPECS[key]
    target = Target(">=", goal, "events/s")
    b.log(f"{key}: {title}, {len(stream):,} events")
    con = b.console
    epoch = attempt("events/s", lambda: bitstat_track(b, key, schema, stream, datetimes=False), con)
    dts = attempt("events/s", lambda: bitstat_track(b, key, schema, stream, datetimes=True), con)
    if key == "1c":
        others = [absent("— (no counters, sums or top)", "events/s")]
    else:
        others = [
            attempt(
                "events/s",
                lambda: bitmapist_mark(b, key, stream, s.bm_sample_default, pipelined=False),
                con,
            ),
            attempt(
                "events/s",
                lambda: bitmapist_mark(b, key, stream, s.bm_sample_pipeline, pipelined=True),
                con,
            ),
        ]
    b.rows.append(Row(key, f"track_many, {title}; epoch-second times", epoch, others, target))
    b.rows.append(Row(key, f"track_many, {title}; datetime times", dts, others, target))


# --------------------------------------------------------------------------------------------
# Scenario 2: queries over 1M actors


RANGE_FIRST, RANGE_LAST = 16, 45  # 2026-09-17 .. 2026-10-16: 30 days, not month-aligned


def load_history(b: Bench, st: bitstat.Stats, h: History) -> Cell:
    """Load the history day by day with track_many; the load rate is a context figure."""
    seconds, n = 0.0, 0
    for i in range(len(h.days)):
        day = h.day_stream(i, seed=21)
        chunks = batches(day.dicts(), b.batch)
        out: dict[str, Any] = {}

        def go(chunks: list[list[dict[str, Any]]] = chunks, out: dict[str, Any] = out) -> None:
            out["recorded"], _ = track_all(st, chunks)

        seconds += timed(go)
        n += len(day)
        if out["recorded"] != len(day):
            b.check("2", f"day {i} recorded", len(day), out["recorded"])
    return Cell(
        n / seconds,
        "events/s",
        label="track_many (load)",
        note=f"{n:,} events over {len(h.days)} days, {len(h.population):,} distinct actors",
        extra={"events": n, "seconds": seconds},
    )


def write_bitmapist_keys(b: Bench, ev: str, h: History) -> None:
    """bitmapist's day, week and month keys for the history, written directly with SET.

    The bits are exactly those `mark_event` would set (bit i of the key is id i, most
    significant bit first, the key as long as its highest set bit needs): only its query path
    is timed here, and loading 6M events one round trip each would take many minutes.
    """
    bm = b.bitmapist()
    days: dict[str, np.ndarray] = {}
    weeks: dict[str, np.ndarray] = {}
    months: dict[str, np.ndarray] = {}
    for d, ids in zip(h.days, h.daily, strict=True):
        bits = np.zeros(h.id_space, dtype=bool)
        bits[ids] = True
        packed = np.packbits(bits)
        iso = d.isocalendar()
        days[bm.DayEvents(ev, d.year, d.month, d.day).redis_key] = packed
        for store, key in (
            (weeks, bm.WeekEvents(ev, iso.year, iso.week).redis_key),
            (months, bm.MonthEvents(ev, d.year, d.month).redis_key),
        ):
            store[key] = packed if key not in store else store[key] | packed
    pipe = b.server.redis.pipeline(transaction=False)
    for table in (days, weeks, months):
        for key, packed in table.items():
            pipe.set(key, np.trim_zeros(packed, "b").tobytes())
    pipe.execute()


def scenario_queries(b: Bench) -> None:
    s = b.sizes
    con = b.console
    h = history(s.population, s.id_space, s.daily_share, seed=21)
    first, last = h.days[RANGE_FIRST].isoformat(), h.days[RANGE_LAST].isoformat()
    year = str(h.days[0].year)
    b.log(
        f"2: loading {len(h.days)} days x {len(h.daily[0]):,} actors"
        f" ({len(h.population):,} distinct ids in [0, {h.id_space:,}))"
    )
    truth_range = h.distinct(RANGE_FIRST, RANGE_LAST)
    truth_year = h.distinct(0, len(h.days) - 1)
    range_title = f"unique, 30 days not month-aligned ({first}..{last})"
    year_title = f"unique, whole year label ({year})"
    runs = s.query_runs
    with b.namespace("2", bitstat.Schema()) as st, b.bitmapist_event("2") as ev:
        load = attempt("events/s", lambda: load_history(b, st, h), con)
        loaded = load.value is not None
        if loaded:
            b.log("2: writing bitmapist's day/week/month keys directly")
            write_bitmapist_keys(b, ev, h)
        bm = b.bitmapist()
        b.rows.append(
            Row(
                "2",
                "load: 60 days of 'active' (context, not a target)",
                load,
                [absent("keys written directly with SET (see notes)", "events/s")],
                info=True,
            )
        )

        def bs_range() -> Cell:
            b.check("2a", "bitstat 30-day unique", truth_range, st.unique("active", first, last))
            times = latencies_ms(lambda: st.unique("active", first, last), runs)
            return ms_cell(times, "st.unique(event, start, end)")

        def bm_range() -> Cell:
            dates = [h.days[i] for i in range(RANGE_FIRST, RANGE_LAST + 1)]

            def q() -> int:
                return len(
                    bm.BitOpOr(
                        "default", *[bm.DayEvents(ev, d.year, d.month, d.day) for d in dates]
                    )
                )

            b.check("2a", "bitmapist 30-day unique", truth_range, q())
            return ms_cell(latencies_ms(q, runs), "len(BitOpOr(30 DayEvents))")

        def bs_year() -> Cell:
            b.check("2b", "bitstat year unique", truth_year, st.unique("active", year))
            return ms_cell(
                latencies_ms(lambda: st.unique("active", year), runs), "st.unique(event, year)"
            )

        def bm_year() -> Cell:
            def q() -> int:
                return len(bm.YearEvents(ev, int(year)))

            b.check("2b", "bitmapist year unique", truth_year, q())
            return ms_cell(latencies_ms(q, runs), "len(YearEvents), ORs 12 months")

        not_loaded = absent("not measured: the load failed", "ms")
        theirs_by_key: dict[str, Cell] = {}
        for key, title, bs, bmq in (
            ("2a", range_title, bs_range, bm_range),
            ("2b", year_title, bs_year, bm_year),
        ):
            b.log(f"{key}: {title}")
            mine = attempt("ms", bs, con) if loaded else not_loaded
            theirs = theirs_by_key[key] = attempt("ms", bmq, con) if loaded else not_loaded
            b.rows.append(
                Row(key, title, mine, [theirs], Target("<=", 2.0, "ms"), higher_is_better=False)
            )

    mapped_range_query(b, h, theirs_by_key["2a"])
    counters_queries(b, first, last)


def mapped_range_query(b: Bench, h: History, bitmapist_cell: Cell) -> None:
    """2a again with ids='map': the same actors, their sparse ids mapped to dense offsets.

    bitmapist has no id map; its cell is its answer to the same question on the same actors.
    """
    first, last = h.days[RANGE_FIRST].isoformat(), h.days[RANGE_LAST].isoformat()
    title = (
        f"unique, 30 days, the same {len(h.population):,} actors with ids='map' ({first}..{last})"
    )
    b.log(f"2a: {title}")
    truth = h.distinct(RANGE_FIRST, RANGE_LAST)
    with b.namespace("2m", bitstat.Schema(ids="map")) as st:
        load = attempt("events/s", lambda: load_history(b, st, h), b.console)

        def query() -> Cell:
            got = st.unique("active", first, last)
            b.check("2a", "bitstat 30-day unique, ids='map'", truth, got)
            times = latencies_ms(lambda: st.unique("active", first, last), b.sizes.query_runs)
            return ms_cell(times, "st.unique(event, start, end), ids='map'")

        if load.value is None:
            mine = absent("not measured: the load failed", "ms")
        else:
            mine = attempt("ms", query, b.console)
    b.rows.append(
        Row(
            "2a",
            title,
            mine,
            [bitmapist_cell],
            Target("<=", 2.0, "ms"),
            higher_is_better=False,
        )
    )


def counters_queries(b: Bench, first: str, last: str) -> None:
    s = b.sizes
    con = b.console
    stream = counters_stream(s.counters_per_day, s.id_space, seed=22)
    b.log(f"2c: loading {len(stream):,} full-schema events over 60 days")
    with b.namespace("2c", bitstat.Schema(**FULL_SCHEMA)) as st:
        load = attempt("events/s", lambda: timed_load(b, st, stream), con)
        b.rows.append(
            Row(
                "2c",
                "load: 60 days of full-schema 'purchase' (context, not a target)",
                load,
                [absent("— (no counters, sums or top)", "events/s")],
                info=True,
            )
        )
        truth = counters_truth(stream, first, last)
        runs = s.query_runs
        queries: list[tuple[str, Callable[[], Any], Any, Callable[[Any], Any]]] = [
            (
                "counts(event, 'country', 30 days)",
                lambda: st.counts("purchase", "country", first, last),
                truth["country"],
                lambda got: got,
            ),
            (
                "counts(event, 'country~platform', 30 days)",
                lambda: st.counts("purchase", "country~platform", first, last),
                truth["country~platform"],
                lambda got: got,
            ),
            (
                "sums(event, 'amount', 30 days)",
                lambda: st.sums("purchase", "amount", first, last),
                True,
                lambda got: abs(got - truth["amount"]) <= 1e-6 * truth["amount"],
            ),
            (
                "top(event, 'item', 30 days, limit=10)",
                lambda: st.top("purchase", "item", first, last, limit=10),
                truth["top"],
                lambda got: got,
            ),
        ]
        for title, query, expected, view in queries:
            b.log(f"2c: {title}")

            def measure(
                title: str = title,
                query: Callable[[], Any] = query,
                expected: Any = expected,
                view: Callable[[Any], Any] = view,
            ) -> Cell:
                if load.value is None:
                    return absent("not measured: the load failed", "ms")
                b.check("2c", title, expected, view(query()))
                return ms_cell(latencies_ms(query, runs), title)

            b.rows.append(
                Row(
                    "2c",
                    title,
                    attempt("ms", measure, con),
                    [absent("— (not supported)", "ms")],
                    Target("<=", 5.0, "ms"),
                    higher_is_better=False,
                )
            )


def timed_load(b: Bench, st: bitstat.Stats, stream: Stream) -> Cell:
    chunks = batches(stream.dicts(), b.batch)
    out: dict[str, Any] = {}

    def go() -> None:
        out["recorded"], _ = track_all(st, chunks)

    seconds = timed(go)
    b.check("2c", "events recorded", len(stream), out["recorded"])
    return Cell(
        len(stream) / seconds,
        "events/s",
        label="track_many (load)",
        note=f"{len(stream):,} events, batches of {b.batch:,}, time-ordered, 1 run",
    )


def counters_truth(stream: Stream, first: str, last: str) -> dict[str, Any]:
    """The answers of the 2c queries, computed from the generated events."""
    assert stream.props is not None
    lo = int(datetime.fromisoformat(first).replace(tzinfo=UTC).timestamp())
    hi = int((datetime.fromisoformat(last).replace(tzinfo=UTC) + timedelta(days=1)).timestamp())
    keep = [i for i, t in enumerate(stream.times) if lo <= t < hi]
    p = stream.props
    items = Counter(p["item"][i] for i in keep)
    ranked = sorted(items.items(), key=lambda vc: (-vc[1], vc[0]))[:10]
    return {
        "country": dict(Counter(p["country"][i] for i in keep)),
        "country~platform": dict(Counter((p["country"][i], p["platform"][i]) for i in keep)),
        "amount": float(sum(p["amount"][i] for i in keep)),
        "top": ranked,
    }


def ms_cell(times: list[float], label: str) -> Cell:
    return Cell(
        median(times),
        "ms",
        label=label,
        runs=times,
        note=median_of(len(times)),
        extra={"min": min(times), "p90": float(np.percentile(times, 90)), "max": max(times)},
    )


# --------------------------------------------------------------------------------------------
# Scenario 3: memory


MEMORY_DAY = date(2026, 11, 20)


def scenario_memory(b: Bench) -> None:
    s = b.sizes
    con = b.console
    n = s.memory_ids
    b.log(f"3: {n:,} random 64-bit ids in one day, ids='map'")
    label = MEMORY_DAY.isoformat()
    start = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
    bitstat_cells: dict[str, Cell] = {}

    def bitstat_memory() -> Cell:
        ids = random_ids_64(n, seed=31)
        events = [
            {"event": "active", "user": u, "time": start + (i * DAY) // n}
            for i, u in enumerate(ids)
        ]
        with b.namespace("3", bitstat.Schema(ids="map")) as st:
            out: dict[str, Any] = {}

            def go() -> None:
                out["recorded"], _ = track_all(st, batches(events, b.batch))

            seconds = timed(go)
            b.check("3", "events recorded", n, out["recorded"])
            b.check("3", "unique that day", n, st.unique("active", label))
            ns = escape(st.namespace)
            day_keys = b.server.keys_matching("{" + ns + ":s*}:a:active:" + label)
            day_bytes = b.server.memory_usage(day_keys)
            day_strlen = sum(int(b.server.redis.strlen(k)) for k in day_keys)
            id_keys = b.server.keys_matching("{" + ns + ":ids}*")
            id_bytes = b.server.memory_usage(id_keys)
        bitstat_cells["load"] = Cell(n / seconds, "events/s", label="track_many, ids='map'")
        bitstat_cells["per_id"] = Cell(
            id_bytes / n,
            "B/id",
            label="id map",
            note=f"MEMORY USAGE summed over {len(id_keys):,} id-map keys, / {n:,}",
            extra={"id_map_bytes": id_bytes, "keys": len(id_keys)},
        )
        bitstat_cells["total"] = Cell(day_bytes + id_bytes, "bytes", label="day bitmap + id map")
        return Cell(
            day_bytes,
            "bytes",
            label="day bitmap, MEMORY USAGE",
            note=f"{len(day_keys)} shard key(s), STRLEN {day_strlen:,} B",
            extra={"strlen": day_strlen, "keys": len(day_keys)},
        )

    bm_cells: dict[str, Cell] = {}

    def bitmapist_memory() -> Cell:
        m = s.bm_memory_ids
        ids = random_ids_32(m, seed=32)
        computed = max(ids) // 8 + 1
        if not b.bitmapist_memory_real:
            return Cell(
                computed,
                "bytes",
                label="day key, computed",
                note=f"computed as max id / 8 + 1 for {m:,} random ids < 2^32, not allocated",
            )
        bm = b.bitmapist()
        when = datetime(2026, 11, 20, 12, tzinfo=UTC)
        with b.bitmapist_event("3") as ev:

            def go() -> None:
                pipe = b.server.redis.pipeline(transaction=False)
                for i, uid in enumerate(ids, 1):
                    bm.mark_event(
                        ev, uid, system=pipe, now=when, track_hourly=False, use_pipeline=False
                    )
                    if i % b.batch == 0:
                        pipe.execute()
                pipe.execute()

            seconds = timed(go)
            key = bm.DayEvents(ev, 2026, 11, 20).redis_key
            strlen = int(b.server.redis.strlen(key))
            usage = b.server.memory_usage([key])
            b.check("3", "bitmapist day key STRLEN = max id / 8 + 1", computed, strlen)
            b.check(
                "3", "bitmapist unique that day", len(set(ids)), len(bm.DayEvents(ev, 2026, 11, 20))
            )
        bm_cells["load"] = Cell(
            m / seconds,
            "events/s",
            label="own pipeline",
            note=f"{m:,} ids < 2^32, mark_event via own pipeline; writes day, week and month"
            " keys, so this includes allocating three ~537 MB strings",
        )
        return Cell(
            usage,
            "bytes",
            label="day key, MEMORY USAGE",
            note=f"{m:,} random ids < 2^32 marked for real; STRLEN {strlen:,} B = max id / 8 + 1",
            extra={"strlen": strlen, "ids": m},
        )

    day = attempt("bytes", bitstat_memory, con)
    theirs = attempt("bytes", bitmapist_memory, con)
    err = absent(day.text or "not measured", "")
    b.rows.append(
        Row(
            "3",
            f"memory: day bitmap, {n:,} random ids in one day"
            " (bitstat: 64-bit ids, ids='map'; bitmapist: ids < 2^32)",
            day,
            [theirs],
            Target("<=", 200_000, "bytes"),
            higher_is_better=False,
        )
    )
    b.rows.append(
        Row(
            "3",
            "memory: id map per id (64-bit ids)",
            bitstat_cells.get("per_id", err),
            [absent("— (no id map: ids must be ints < 2^32)", "B/id")],
            Target("<=", 60, "B/id"),
            higher_is_better=False,
        )
    )
    b.rows.append(
        Row(
            "3",
            "memory: the whole day, bitmap + id map (bitmapist: day key alone)",
            bitstat_cells.get("total", err),
            [theirs],
            higher_is_better=False,
            info=True,
        )
    )
    b.rows.append(
        Row(
            "3",
            "recording those ids (context, not a target)",
            bitstat_cells.get("load", err),
            [bm_cells.get("load", absent("—", "events/s"))],
            info=True,
        )
    )


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "1a": lambda b: scenario_track(b, "1a"),
    "1b": lambda b: scenario_track(b, "1b"),
    "1c": lambda b: scenario_track(b, "1c"),
    "2": scenario_queries,
    "3": scenario_memory,
}
ALIASES = {
    "live": "1a",
    "backfill": "1b",
    "full": "1c",
    "track": "1",
    "queries": "2",
    "memory": "3",
}
