"""Scale: memory and ingest cost of the realistic profile as actors, events and masters grow.

    python benchmarks/scale.py                  # full run (about 15 minutes on 2 cores)
    python benchmarks/scale.py --quick          # tiny sizes, every section: < 60 s
    python benchmarks/scale.py --only actors rate --actors 10000 100000
    python benchmarks/scale.py --json           # benchmarks/results/scale-<time>.json

Sections (each on private servers started here, no persistence, stopped at the end):

- `keys`: the keys one event of each name creates (keys per event, per family and period).
- `actors`: the live stream (14 days, 5 events per actor) for growing numbers of actors:
  events/s, client and server CPU per event, Redis bytes per event and per actor per key
  family, and the main queries' latency, each checked against the truth.
- `periods`: one stream recorded with periods ("day",), the default four, the five, and the
  five with sessions `approx` instead of `unique`.
- `rate`: a stream at a fixed rate of event time (10,000 events/s), recorded in growing spans
  into one namespace: how each family grows with events at a fixed number of actors. Its
  per-bucket figures are the inputs of the extrapolations (scale_report.py).
- `cluster`: the live stream and the main queries on 1, 3 and 6 masters on loopback.

Every answer is compared with the truth computed from the generated columns (scale_data.py);
the exit status is 1 when one differs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))

import bitstat
import harness
import realistic_data as rd
import scale_data as sd
import scale_report as report
import servers
from bitstat.keys import Keys, escape
from realistic import Server, load1
from realistic_report import classify

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("keys", "actors", "periods", "rate", "ids", "wide", "cluster")
NOW = datetime(2027, 1, 1, tzinfo=UTC)  # "now" of retention: after every stream
RATE_START = datetime(2026, 11, 10, 8, tzinfo=UTC)  # 09:00 in Amsterdam, a Tuesday


@dataclass
class Sizes:
    actors: list[int]
    per_actor: int
    periods_actors: int
    rate_actors: int
    rate: float
    checkpoints: list[float]  # seconds of event time
    rate_sessions: list[str]  # "unique" (the realistic schema), "approx"
    ids_actors: list[int]
    wide_actors: int
    wide_seconds: float
    masters: list[int]
    cluster_actors: list[int]
    cluster_data: list[str]  # "live" (cluster_actors), "wide" (wide_actors)
    batch: int
    runs: int  # timings per query


# --------------------------------------------------------------------------------------------
# Servers: one private Valkey, or a cluster; both give their masters for CPU and memory


class Single:
    def __init__(self) -> None:
        self.server = Server(None)

    def __enter__(self) -> Single:
        self.server.__enter__()
        self.url = self.server.url
        self.nodes = [self.server.redis]
        self.client: Any = self.server.redis
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def delete(self, namespace: str) -> None:
        self.server.delete_matching(*harness.namespace_patterns(namespace))


class Cluster:
    def __init__(self, masters: int) -> None:
        self.root = tempfile.mkdtemp(prefix="bitstat-scale-cluster-")
        self.cluster = servers.Cluster(Path(self.root), masters=masters)

    def __enter__(self) -> Cluster:
        self.url = self.cluster.start()
        self.nodes = [self.cluster.node(i) for i in range(self.cluster.masters)]
        self.client: Any = servers.client_for(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        for node in self.nodes:
            node.close()
        self.cluster.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def server_cpu(nodes: list[redis.Redis]) -> list[float]:
    """CPU seconds of each node so far: INFO cpu, used_cpu_sys + used_cpu_user."""
    out = []
    for node in nodes:
        info: dict[str, Any] = node.info("cpu")  # type: ignore[assignment]
        out.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return out


# --------------------------------------------------------------------------------------------
# Ingest, memory, queries


@dataclass
class Ingest:
    events: int = 0
    seconds: float = 0.0  # wall time of the track_many calls alone
    client_cpu: float = 0.0  # this process's CPU during those calls
    server_cpu: list[float] = field(default_factory=list)  # per node
    load: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        n = max(1, self.events)
        total = sum(self.server_cpu)
        return {
            "events": self.events,
            "seconds": self.seconds,
            "events_per_s": self.events / self.seconds if self.seconds else None,
            "client_cpu_us_per_event": self.client_cpu * 1e6 / n,
            "server_cpu_us_per_event": total * 1e6 / n,
            "server_cpu_us_per_event_per_node": [c * 1e6 / n for c in self.server_cpu],
            "load_average_1min_before_after": self.load,
        }


def ingest(
    st: bitstat.Stats,
    s: sd.Stream,
    nodes: list[redis.Redis],
    batch: int,
    lo: int = 0,
    hi: int | None = None,
) -> Ingest:
    """Record events lo..hi of a stream by `batch`."""
    return record(st, s.batches(batch, lo, hi), nodes)


def record(
    st: bitstat.Stats, batches: Iterable[list[dict[str, Any]]], nodes: list[redis.Redis]
) -> Ingest:
    """Record batches of event dicts; only the track_many calls are timed (a batch's dicts are
    built before its call)."""
    out = Ingest(load=[load1()])
    gc.collect()
    before = server_cpu(nodes)
    for events in batches:
        spare_caches(st, len(events))
        cpu, wall = time.process_time(), time.perf_counter()
        res = st.track_many(events)
        out.seconds += time.perf_counter() - wall
        out.client_cpu += time.process_time() - cpu
        if res.rejected or res.recorded != len(events):
            raise SystemExit(f"a batch was not recorded whole: {res.rejected[:3]}")
        out.events += len(events)
    out.server_cpu = [b - a for a, b in zip(before, server_cpu(nodes), strict=True)]
    out.load.append(load1())
    return out


def spare_caches(st: bitstat.Stats, batch: int) -> None:
    """Empty the client's id and value caches before a batch that could take one past its limit
    (untimed). bitstat empties a cache past ID_CACHE_LIMIT itself, in the middle of a batch, and
    then looks up the batch's known ids in the emptied cache: a KeyError (record.py, `offsets`
    and `value_ids`) once a process has met 2,000,000 actors or values of one property."""
    from bitstat import record

    ns: Any = st._ns
    limit = getattr(record, "ID_CACHE_LIMIT", None)
    if limit is None:
        return
    for cache in [ns.id_cache, *ns.value_cache.values()]:
        if len(cache) + batch > limit:
            cache.clear()


_HOUR = re.compile(r"^\d{4}-\d\d-\d\dT\d\d$")
_DAY = re.compile(r"^\d{4}-\d\d-\d\d$")
_WEEK = re.compile(r"^\d{4}-W\d\d$")
_MONTH = re.compile(r"^\d{4}-\d\d$")
_YEAR = re.compile(r"^\d{4}$")


def label_period(label: str) -> str:
    for name, pattern in (
        ("hour", _HOUR),
        ("day", _DAY),
        ("week", _WEEK),
        ("month", _MONTH),
        ("year", _YEAR),
    ):
        if pattern.match(label):
            return name
    return ""


def key_place(key: str, ns: str) -> tuple[str, str, str]:
    """(family, period, bucket label) of a key; period and label empty for families without."""
    family, grain = classify(key, ns)
    if not grain:
        return family, "", ""
    parts = key[key.find("}") + 1 :].split(":")
    label = parts[3] if parts[1] == "a" else parts[2]
    return family, label_period(label), label


def memory(nodes: list[redis.Redis], namespace: str) -> list[tuple[str, str, str, int]]:
    """(family, period, label, bytes) of every key of the namespace on every node: SCAN, then
    `MEMORY USAGE key SAMPLES 0` pipelined on the node that holds the key."""
    ns = escape(namespace)
    rows = []
    for node in nodes:
        keys = [k for p in harness.namespace_patterns(namespace) for k in node.scan_iter(p, 5000)]
        for i in range(0, len(keys), 10_000):
            chunk = keys[i : i + 10_000]
            pipe = node.pipeline(transaction=False)
            for k in chunk:
                pipe.memory_usage(k, samples=0)
            for k, size in zip(chunk, pipe.execute(), strict=True):
                place = key_place(k.decode("utf-8", "surrogateescape"), ns)
                rows.append((*place, int(size or 0)))
    return rows


def numbered(st: bitstat.Stats, where: Single | Cluster) -> dict[str, int]:
    """Actors mapped (the id map's next offset) and session values numbered (all event names)."""
    keys = Keys(st.namespace)
    return {
        "actors_mapped": int(where.client.get(keys.ids_next) or 0),
        "session_values_numbered": sum(
            int(where.client.get(keys.value_next(e, "session")) or 0) for e, _ in rd.EVENTS
        ),
    }


@dataclass
class Query:
    name: str
    ask: Callable[[bitstat.Stats], Any]
    truth: Callable[[], Any]
    close: bool = False  # a float: equal within 1e-6 relative


def queries(t: sd.Truth, periods: tuple[str, ...]) -> list[Query]:
    """The main questions over the stream's days, with their truth."""
    ev = t.ev
    first, last = t.days()
    mid = sd.day_of((t.first + t.last) // 2)
    iso = mid.isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    month = f"{mid:%Y-%m}"
    lo, hi = first.isoformat(), last.isoformat()
    span = t.last - t.first + 1
    out = [
        Query(
            "unique page_view, one day (label)",
            lambda st: st.unique("page_view", mid.isoformat()),
            lambda: t.unique("page_view", mid, mid),
        ),
    ]
    if "week" in periods:
        w0, w1 = sd.iso_week_days(week)
        out.append(
            Query(
                "unique page_view, ISO week (label)",
                lambda st: st.unique("page_view", week),
                lambda: t.unique("page_view", w0, w1),
            )
        )
    if "month" in periods:
        m0, m1 = sd.month_days(month)
        out.append(
            Query(
                "unique page_view, month (label)",
                lambda st: st.unique("page_view", month),
                lambda: t.unique("page_view", m0, m1),
            )
        )
    out += [
        Query(
            "unique page_view, every day (range)",
            lambda st: st.unique("page_view", lo, hi),
            lambda: t.unique("page_view", first, last),
        ),
        Query(
            "unique purchase, every day, plan=pro (segment)",
            lambda st: st.unique("purchase", lo, hi, plan="pro"),
            lambda: t.unique("purchase", first, last, plan="pro"),
        ),
        Query(
            "total page_view, every day",
            lambda st: st.total("page_view", lo, hi),
            lambda: ev.total("page_view"),
        ),
        Query(
            "counts purchase country~plan, every day",
            lambda st: dict(st.counts("purchase", "country~plan", lo, hi)),
            lambda: ev.counts("purchase", "country~plan"),
        ),
        Query(
            "sums purchase amount, every day",
            lambda st: st.sums("purchase", "amount", lo, hi),
            lambda: ev.sum_amount("purchase"),
            close=True,
        ),
        Query(
            "top 10 purchase items, every day",
            lambda st: [tuple(x) for x in st.top("purchase", "item", lo, hi, limit=10)],
            lambda: ev.top_items("purchase", 10),
        ),
        Query(
            "distinct page_view sessions, every day",
            lambda st: st.distinct("page_view", "session", lo, hi),
            lambda: ev.distinct_sessions("page_view"),
        ),
    ]
    cohorts = min(7, (span + 1) // 2)
    out += [
        Query(
            "retention page_view, first-time, daily cohorts",
            lambda st: [
                (r.size, list(r.counts))
                for r in st.retention(
                    "page_view", "page_view", lo, periods=cohorts, period="day", now=NOW
                ).rows
            ],
            lambda: t.retention_first("page_view", "page_view", cohorts),
        ),
        Query(
            "funnel page_view > add_to_cart > purchase, within 7d",
            lambda st: [
                n
                for _, n in st.funnel(["page_view", "add_to_cart", "purchase"], lo, hi, within="7d")
            ],
            lambda: t.funnel(["page_view", "add_to_cart", "purchase"], 7),
        ),
    ]
    return out


def ask_all(st: bitstat.Stats, qs: list[Query], runs: int) -> list[dict[str, Any]]:
    """Each query: checked once against its truth, then timed `runs` times after 2 warm-ups."""
    out = []
    for q in qs:
        got, expected = q.ask(st), q.truth()
        if q.close:
            ok = abs(float(got) - float(expected)) <= 1e-6 * max(1.0, abs(float(expected)))
        else:
            ok = got == expected
        times = harness.latencies_ms(partial(q.ask, st), runs)
        out.append(
            {
                "query": q.name,
                "ok": ok,
                "expected": harness_plain(expected),
                "got": harness_plain(got),
                "median_ms": statistics.median(times),
                "p90_ms": sorted(times)[max(0, int(len(times) * 0.9) - 1)],
                "runs": len(times),
            }
        )
    return out


def harness_plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------------------------
# The sections


class Run:
    def __init__(self, sizes: Sizes, seed: int, log: Callable[[str], None]) -> None:
        self.sizes = sizes
        self.seed = seed
        self.log = log
        self.token = harness.token()
        self.out: dict[str, Any] = {}
        self._users: dict[int, rd.Population] = {}
        self.errors: list[str] = []

    def users(self, actors: int) -> rd.Population:
        if actors not in self._users:
            self._users = {actors: rd.population(self.seed, users=actors)}  # one at a time
        return self._users[actors]

    @contextmanager
    def namespace(
        self, where: Single | Cluster, name: str, schema: bitstat.Schema = rd.SCHEMA
    ) -> Iterator[bitstat.Stats]:
        ns = f"scale-{name}-{self.token}"
        st = bitstat.connect(where.url, namespace=ns, schema=schema)
        try:
            yield st
        finally:
            st.close()
            if isinstance(where, Single):
                where.delete(ns)

    def section(self, name: str, body: Callable[[], None]) -> None:
        """Run a section; an error is logged and kept (the run goes on and exits 1)."""
        try:
            body()
        except Exception as exc:
            traceback.print_exc()
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            self.log(f"{name} failed: {type(exc).__name__}: {exc}")

    def failed(self) -> int:
        text = json.dumps(self.out)
        return text.count('"ok": false')


def section_keys(run: Run, single: Single) -> None:
    """Keys one event creates, per family and period: one event of each name, alone in a
    fresh namespace (meta keys and batch markers left out)."""
    s = sd.stream(rd.population(run.seed, users=10), 200, seed=run.seed)
    events = s.part(0, len(s)).dicts()
    rows = {}
    for name, _ in rd.EVENTS:
        one = next(e for e in events if e["event"] == name)
        with run.namespace(single, f"keys-{name}") as st:
            st.track_many([one])
            found = memory(single.nodes, st.namespace)
        kept = [(f, p) for f, p, _, _ in found if f not in ("meta", "batch ids")]
        table: dict[str, dict[str, int]] = {}
        for family, period in kept:
            table.setdefault(family, {}).setdefault(period or "-", 0)
            table[family][period or "-"] += 1
        rows[name] = {"keys": len(kept), "families": table, "properties": sorted(one)}
    run.out["keys"] = rows
    run.log("keys: " + ", ".join(f"{n} {r['keys']}" for n, r in rows.items()))


def measure_stream(
    run: Run,
    where: Single | Cluster,
    label: str,
    s: sd.Stream,
    schema: bitstat.Schema = rd.SCHEMA,
    *,
    timed: bool = True,
) -> dict[str, Any]:
    """Record a whole stream into a fresh namespace: its cost, its memory, and the main queries
    (checked; timed unless `timed` is false)."""
    with run.namespace(where, label, schema) as st:
        cost = ingest(st, s, where.nodes, run.sizes.batch)
        result: dict[str, Any] = {"ingest": cost.to_json()}
        result.update(numbered(st, where))
        result["memory"] = report.families(memory(where.nodes, st.namespace), len(s))
        result["keys_per_node"] = [int(n.dbsize()) for n in where.nodes]  # type: ignore[arg-type]
        truth = sd.Truth(s)
        result["days"] = truth.last - truth.first + 1
        asked = queries(truth, schema.periods)
        if schema.approx:  # an estimate by design: checked by its error, not for equality
            asked = [q for q in asked if not q.name.startswith("distinct")]
        result["queries"] = ask_all(st, asked, run.sizes.runs if timed else 1)
        if schema.approx:
            first, last = (d.isoformat() for d in truth.days())
            got = st.distinct("page_view", "session", first, last)
            exact = s.events.distinct_sessions("page_view")
            error = abs(got - exact) / max(1, exact)
            result["queries"].append(
                {
                    "query": "distinct page_view sessions (approx, within 5%)",
                    "expected": exact,
                    "got": got,
                    "relative_error": error,
                    "ok": error <= 0.05,
                }
            )
    return result


def section_actors(run: Run, single: Single) -> None:
    rows = []
    for actors in run.sizes.actors:
        users = run.users(actors)
        s = sd.stream(users, actors * run.sizes.per_actor, seed=run.seed)
        r = measure_stream(run, single, f"actors-{actors}", s)
        r.update(actors=actors, events=len(s), distinct_actors=len(set(s.events.user.tolist())))
        rows.append(r)
        run.log(f"actors {actors:,}: {report.summary(r)}")
        del s
    run.out["actors"] = {"per_actor": run.sizes.per_actor, "rows": rows}


def schema_variant(periods: tuple[str, ...], approx: bool = False) -> bitstat.Schema:
    base = rd.SCHEMA
    return bitstat.Schema(
        ids=base.ids,
        timezone=base.timezone,
        periods=periods,
        count=base.count,
        sum=base.sum,
        top=base.top,
        unique=() if approx else base.unique,
        approx=base.unique if approx else (),
        segment=base.segment,
    )


PERIOD_VARIANTS = (
    ("day", ("day",), False),
    ("day..year", ("day", "week", "month", "year"), False),
    ("hour..year", ("hour", "day", "week", "month", "year"), False),
    ("hour..year, session approx", ("hour", "day", "week", "month", "year"), True),
)


def section_periods(run: Run, single: Single) -> None:
    actors = run.sizes.periods_actors
    s = sd.stream(run.users(actors), actors * run.sizes.per_actor, seed=run.seed)
    rows = []
    for label, periods, approx in PERIOD_VARIANTS:
        schema = schema_variant(periods, approx)
        name = f"periods-{len(periods)}{'a' if approx else ''}"
        r = measure_stream(run, single, name, s, schema, timed=False)
        r.update(variant=label, periods=list(periods), approx=approx, actors=actors, events=len(s))
        rows.append(r)
        run.log(f"periods {label}: {report.summary(r)}")
    run.out["periods"] = {"rows": rows}


def section_rate(run: Run, single: Single) -> None:
    """A fixed rate of event time, recorded span after span into one namespace: with the
    realistic schema (`rate`), and with its sessions `approx` (`rate_approx`)."""
    z = run.sizes
    ends = [int(sec * z.rate) for sec in z.checkpoints]
    s = sd.stream(
        run.users(z.rate_actors),
        ends[-1],
        shape="rate",
        start=RATE_START,
        rate=z.rate,
        seed=run.seed,
    )
    truth = sd.Truth(s)
    for sessions in z.rate_sessions:
        approx = sessions == "approx"
        schema = schema_variant(rd.SCHEMA.periods, approx)
        points = []
        with run.namespace(single, f"rate-{sessions}", schema) as st:
            lo = 0
            for sec, hi in zip(z.checkpoints, ends, strict=True):
                cost = ingest(st, s, single.nodes, z.batch, lo, hi)
                point: dict[str, Any] = {"seconds_of_event_time": sec, "events": hi}
                point["ingest_of_this_span"] = cost.to_json()
                point.update(numbered(st, single))
                point["memory"] = report.families(memory(single.nodes, st.namespace), hi)
                points.append(point)
                run.log(f"rate ({sessions} sessions) {sec:g} s: {report.summary(point)}")
                lo = hi
            asked = queries(truth, schema.periods)
            if approx:
                asked = [q for q in asked if not q.name.startswith("distinct")]
            answers = ask_all(st, asked, z.runs)
        run.out["rate_approx" if approx else "rate"] = {
            "actors": z.rate_actors,
            "rate": z.rate,
            "sessions": sessions,
            "start": RATE_START.isoformat(),
            "points": points,
            "queries": answers,
            "days": truth.last - truth.first + 1,
        }


IDS_SCHEMA = bitstat.Schema(ids="map", timezone=rd.TIMEZONE, periods=("day",))


def section_ids(run: Run, single: Single) -> None:
    """The id map alone: `actors` new UUIDs, one event each, bitmaps of one day and nothing
    else, so the id map's bytes per actor and the cost of mapping are seen as it grows past
    the sizes where its hashes stay compact."""
    rows = []
    for actors in run.sizes.ids_actors:
        ids = run.users(actors).ids
        when = "2026-11-10T09:00:00.000+01:00"
        with run.namespace(single, f"ids-{actors}", IDS_SCHEMA) as st:
            cost = record(st, signups(ids, when, run.sizes.batch), single.nodes)
            r: dict[str, Any] = {"actors": actors, "ingest": cost.to_json()}
            r.update(numbered(st, single))
            r["memory"] = report.families(memory(single.nodes, st.namespace), actors)
            sample = [ids[0], ids[actors // 2], ids[-1]]
            day = st.actors("signup").day(2026, 11, 10)
            r["queries"] = [
                {
                    "query": "unique signup, the day",
                    "expected": actors,
                    "got": st.unique("signup", "2026-11-10"),
                    "ok": st.unique("signup", "2026-11-10") == actors,
                },
                {
                    "query": "first, middle and last id are members",
                    "expected": [True] * 3,
                    "got": [u in day for u in sample],
                    "ok": all(u in day for u in sample),
                },
            ]
        rows.append(r)
        run.log(f"ids {actors:,}: {report.summary(r)}")
    run.out["ids"] = {"rows": rows}


def signups(ids: list[str], when: str, batch: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(ids), batch):
        yield [{"event": "signup", "user": u, "time": when} for u in ids[i : i + batch]]


def wide(run: Run, where: Single | Cluster, label: str) -> dict[str, Any]:
    """Every actor mapped first (one `signup` event each, the day before, its keys then
    deleted but the id map and the all-actors bitmap), then the realistic stream at the rate
    for `wide_seconds`: what a busy stream costs once the id space holds every actor (for more
    than 2^20 actors, a batch's actors fall in every id shard)."""
    z = run.sizes
    users = run.users(z.wide_actors)
    s = sd.stream(users, int(z.wide_seconds * z.rate), shape="rate", start=RATE_START,
                  rate=z.rate, seed=run.seed)  # fmt: skip
    with run.namespace(where, label) as st:
        premap = record(
            st, signups(users.ids, "2026-11-09T12:00:00.000+01:00", z.batch), where.nodes
        )
        ns = escape(st.namespace)
        for node in where.nodes:  # the signups' own keys: only the mapping is wanted
            for pattern in (f"{{{ns}:s*}}:a:signup:*", f"{{{ns}:e:signup}}*"):
                pipe = node.pipeline(transaction=False)
                for key in node.scan_iter(pattern, 5000):
                    pipe.unlink(key)  # one key a command: a node holds several slots
                pipe.execute()
        cost = ingest(st, s, where.nodes, z.batch)
        result: dict[str, Any] = {
            "actors": z.wide_actors,
            "events": len(s),
            "premap": premap.to_json(),
        }
        result["ingest"] = cost.to_json()
        result.update(numbered(st, where))
        result["memory"] = report.families(memory(where.nodes, st.namespace), len(s))
        result["keys_per_node"] = [int(n.dbsize()) for n in where.nodes]  # type: ignore[arg-type]
        truth = sd.Truth(s)
        result["days"] = truth.last - truth.first + 1
        result["queries"] = ask_all(st, queries(truth, rd.SCHEMA.periods), z.runs)
    return result


def section_wide(run: Run, single: Single) -> None:
    r = wide(run, single, "wide")
    run.out["wide"] = {"rate": run.sizes.rate, "seconds": run.sizes.wide_seconds, "rows": [r]}
    run.log(f"wide {run.sizes.wide_actors:,} actors: {report.summary(r)}")


def section_cluster(run: Run) -> None:
    rows: list[dict[str, Any]] = []
    run.out["cluster"] = {"rows": rows}  # kept row by row: a failure keeps the rows before it
    if "live" in run.sizes.cluster_data:
        for actors in run.sizes.cluster_actors:
            s = sd.stream(run.users(actors), actors * run.sizes.per_actor, seed=run.seed)
            for masters in run.sizes.masters:
                with Cluster(masters) as cl:
                    r = measure_stream(run, cl, f"cluster-{masters}-{actors}", s)
                r.update(data="live", masters=masters, actors=actors, events=len(s))
                rows.append(r)
                run.log(f"cluster {masters} masters, {actors:,} actors: {report.summary(r)}")
    if "wide" in run.sizes.cluster_data:
        for masters in run.sizes.masters:
            with Cluster(masters) as cl:
                r = wide(run, cl, f"cluster-wide-{masters}")
            r.update(data="wide", masters=masters)
            rows.append(r)
            run.log(f"cluster {masters} masters, wide: {report.summary(r)}")


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/scale.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, every section: < 60 s")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="sections to run (default: all)")
    p.add_argument("--actors", nargs="+", type=int, help="actors sweep (10k 100k 1M)")
    p.add_argument("--per-actor", type=int, default=5, help="events per actor (5)")
    p.add_argument("--periods-actors", type=int, help="actors of the periods section (100k)")
    p.add_argument("--rate-actors", type=int, help="actors of the rate section (1M)")
    p.add_argument("--rate", type=float, default=10_000.0, help="events a second (10,000)")
    p.add_argument(
        "--checkpoints",
        nargs="+",
        type=float,
        help="seconds of event time to measure at (60 120 240 480)",
    )
    p.add_argument(
        "--rate-sessions",
        nargs="+",
        choices=("unique", "approx"),
        default=["unique", "approx"],
        help="rate section: sessions as the realistic schema has them (unique), and approx",
    )
    p.add_argument("--ids-actors", nargs="+", type=int, help="id map section (1M 10M)")
    p.add_argument("--wide-actors", type=int, help="wide section: actors mapped first (10M)")
    p.add_argument("--wide-seconds", type=float, help="wide section: seconds at the rate (60)")
    p.add_argument(
        "--cluster-data",
        nargs="+",
        choices=("live", "wide"),
        default=["live", "wide"],
        help="cluster section: the live stream (--cluster-actors) and the wide one",
    )
    p.add_argument("--masters", nargs="+", type=int, help="cluster sizes (1 3 6)")
    p.add_argument("--cluster-actors", nargs="+", type=int, help="cluster data (100k 1M)")
    p.add_argument("--batch", type=int, default=10_000, help="events per track_many (10,000)")
    p.add_argument("--runs", type=int, help="timings per query (20; quick 5)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument(
        "--json",
        nargs="?",
        const="auto",
        metavar="PATH",
        help="write the figures (no PATH: benchmarks/results/scale-<time>.json)",
    )
    p.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    p.add_argument(
        "--report",
        metavar="JSON",
        help="print the tables of a saved run (extrapolations computed again); measure nothing",
    )
    return p.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> Sizes:
    q = args.quick
    return Sizes(
        actors=args.actors or ([1_000, 5_000] if q else [10_000, 100_000, 1_000_000]),
        per_actor=args.per_actor,
        periods_actors=args.periods_actors or (2_000 if q else 100_000),
        rate_actors=args.rate_actors or (5_000 if q else 1_000_000),
        rate=args.rate,
        checkpoints=args.checkpoints or ([1, 2, 4] if q else [60, 120, 240, 480]),
        rate_sessions=args.rate_sessions,
        ids_actors=args.ids_actors or ([2_000] if q else [1_000_000, 10_000_000]),
        wide_actors=args.wide_actors or (3_000 if q else 10_000_000),
        wide_seconds=args.wide_seconds or (1 if q else 60),
        masters=args.masters or [1, 3, 6],
        cluster_actors=args.cluster_actors or ([2_000] if q else [100_000, 1_000_000]),
        cluster_data=args.cluster_data,
        batch=args.batch,
        runs=args.runs or (5 if q else 20),
    )


def rerender(path: str) -> int:
    """The tables of a saved run, its extrapolations computed again from its measured figures."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    data["extrapolated"] = report.extrapolate(data)
    print(report.markdown(data))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return rerender(args.report)
    sizes = sizes_of(args)
    sections = args.only or list(SECTIONS)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    run = Run(sizes, args.seed, log)
    with Single() as single:
        info = harness.machine_info(single.server)
        log(f"load {info['load_average_at_start']}; sections {' '.join(sections)}")
        for name in ("keys", "actors", "periods", "rate", "ids", "wide"):
            if name in sections:
                run.section(name, partial(globals()[f"section_{name}"], run, single))
    if "cluster" in sections:
        run.section("cluster", partial(section_cluster, run))
    elapsed = time.perf_counter() - started
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    info["server"]["persistence"] = "none (--save '' --appendonly no)"
    data = {
        "machine": info,
        "settings": {**vars(sizes), "quick": args.quick, "sections": sections, "seed": args.seed},
        "schema": rd.SCHEMA.to_dict(),
        **run.out,
        "elapsed_s": elapsed,
    }
    data["extrapolated"] = report.extrapolate(data)
    data["errors"] = run.errors
    failed = run.failed() + len(run.errors)
    text = report.markdown(data) + f"\n{failed} failed checks; run took {elapsed:.0f} s\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.json:
        path = Path(args.json)
        if args.json == "auto":
            RESULTS.mkdir(exist_ok=True)
            path = RESULTS / f"scale-{datetime.now(UTC):%Y-%m-%d-%H%M}.json"
        path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"JSON: {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
