"""`Stats`, the object users hold: checks arguments, builds plans, has the store run them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from . import periods
from .actors import ActorQuery
from .errors import InvalidEvent, QueryError, SchemaError
from .events import canonical_id, int_actor, original_id, parse_batch
from .keys import (
    REVERSE_BUCKET_BITS,
    SHARD_BITS,
    Keys,
    encode_value,
    member_value,
    metric_count_field,
    metric_sum_field,
)
from .plan import build_plan
from .query import Compiler, Expr, Leaf, Program, count_union
from .schema import Schema, compound, normalise
from .store import SCRATCH_TTL_MS, Store

DEFAULT_BATCH_TTL = 7 * 86400  # how long a batch id is remembered: retries come sooner
ID_CACHE_LIMIT = 2_000_000


@dataclass
class TrackResult:
    """What `track_many` did: how many events were recorded, which were rejected and why."""

    recorded: int
    rejected: list[tuple[int, str]] = field(default_factory=list)


class Stats:
    """One namespace in one Redis (or Cluster). Made by `bitstat.connect()`."""

    def __init__(
        self, store: Store, namespace: str, schema: Schema, batch_ttl: int = DEFAULT_BATCH_TTL
    ) -> None:
        self._store = store
        self._keys = Keys(namespace)
        self._schema = schema
        self._batch_ttl = batch_ttl
        self._id_cache: dict[str, int] = {}
        self._shard_cache: list[int] = []
        self.namespace = namespace

    # schema
    @property
    def schema(self) -> Schema:
        return self._schema

    def configure(self, schema: Schema) -> None:
        """Store `schema` as the namespace's schema (the way to change it on purpose)."""
        if not isinstance(schema, Schema):
            raise SchemaError(f"configure() takes a bitstat.Schema, got {type(schema).__name__}")
        if schema.ids != self._schema.ids and self.events():
            raise SchemaError(
                f"namespace {self.namespace!r} holds data recorded with ids={self._schema.ids!r};"
                f" it cannot switch to ids={schema.ids!r}"
            )
        self._store.run(
            "storing the schema",
            lambda: self._store.client.set(self._keys.schema, schema.to_json()),
        )
        self._schema = schema

    def server_info(self) -> dict[str, Any]:
        """The server's version, memory use and mode, for status lines and reports."""

        def read() -> dict[str, Any]:
            info = self._store.client.info()
            if self._store.cluster:  # one answer per node: keep the first, add memory up
                nodes = list(info.values())
                merged = dict(nodes[0])
                merged["used_memory"] = sum(int(n.get("used_memory", 0)) for n in nodes)
                info = merged
            return {
                "version": info.get("valkey_version") or info.get("redis_version"),
                "used_memory": int(info.get("used_memory", 0)),
                "used_memory_human": info.get("used_memory_human"),
                "cluster": self._store.cluster,
            }

        return self._store.run("reading server info", read)

    def drop(self) -> int:
        """Delete every key of this namespace (found with SCAN, never KEYS); returns how many."""
        ns = self._keys.ns
        return self._store.delete_matching(["{" + ns + "}*", "{" + ns + ":*"])

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Stats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # recording
    def track(self, event: str | Mapping[str, Any], /, **props: Any) -> None:
        """Record one event: `track("login", user=42)` or `track({"event": "login", ...})`."""
        if isinstance(event, Mapping):
            if props:
                raise InvalidEvent("pass either a mapping or keyword properties, not both")
            record: Mapping[str, Any] = event
        else:
            if "event" in props:
                raise InvalidEvent("the event name is given twice", field="event")
            record = {"event": event, **props}
        result = self.track_many([record])
        if result.rejected:
            raise InvalidEvent(result.rejected[0][1])

    def track_many(
        self,
        events: Iterable[Mapping[str, Any]],
        batch_id: str | None = None,
        *,
        now: float | None = None,
    ) -> TrackResult:
        """Record a batch; bad events are rejected alone. A repeated `batch_id` records nothing."""
        if batch_id is not None and (not isinstance(batch_id, str) or not batch_id):
            raise InvalidEvent(f"batch_id must be non-empty text, got {batch_id!r}")
        cols = parse_batch(events, self._schema, now)
        if not len(cols):
            return TrackResult(0, cols.rejected)
        if isinstance(cols.actors, np.ndarray):
            offsets = cols.actors
        else:
            offsets = np.full(len(cols), -1, dtype=np.int64)
            present = [i for i, a in enumerate(cols.actors) if a is not None]
            if present:
                offsets[present] = self._offsets([cols.actors[i] for i in present])
        plan = build_plan(
            cols,
            offsets,
            self._schema,
            self._keys,
            batch_id=batch_id,
            single=not self._store.cluster,
        )
        applied = self._store.apply(plan, self._batch_ttl if batch_id else 0)
        recorded = plan.recorded if applied or batch_id is None else 0
        return TrackResult(recorded, cols.rejected)

    def _offsets(self, canonical: Sequence[str]) -> np.ndarray:
        cache = self._id_cache
        missing = list(dict.fromkeys(c for c in canonical if c not in cache))
        if missing:
            if len(cache) > ID_CACHE_LIMIT:
                cache.clear()
            k = self._keys
            found = self._store.map_ids(
                k.ids_next,
                f"{k.ids_tag}:r:",
                REVERSE_BUCKET_BITS,
                [k.id_forward(c) for c in missing],
                missing,
            )
            cache.update(zip(missing, found, strict=True))
        return np.array([cache[c] for c in canonical], dtype=np.int64)

    def _ids_of(self, offsets: np.ndarray) -> list[Any]:
        if self._schema.ids == "int":
            return offsets.tolist()  # type: ignore[no-any-return]
        k = self._keys
        pairs = [
            (k.id_reverse(o), str(o & ((1 << REVERSE_BUCKET_BITS) - 1))) for o in offsets.tolist()
        ]
        texts = self._store.hget_many(pairs)
        return [original_id(t.decode("utf-8", "surrogatepass")) for t in texts if t is not None]

    # time ranges
    def _range(self, start: Any, end: Any) -> tuple[datetime, datetime]:
        if start is None:
            raise QueryError("a start date or period label is required")
        return periods.resolve_range(start, end, self._schema.tz, self._schema.periods)

    def _cover_labels(self, start: Any, end: Any) -> tuple[str, ...]:
        lo, hi = self._range(start, end)
        return tuple(b.label for b in periods.cover(lo, hi, self._schema.periods))

    def _require_period(self, period: str) -> None:
        if period not in self._schema.periods:
            raise QueryError(
                f"{period!r} buckets are not recorded in namespace {self.namespace!r}"
                f" (periods: {', '.join(self._schema.periods)})"
            )

    # actor sets
    def _segment(self, event: str, segment: Mapping[str, Any]) -> tuple[str, str] | None:
        if not segment:
            return None
        name = normalise("~".join(segment))
        configured = self._schema.rules_for(event).segment
        if name not in configured:
            raise QueryError(
                f"no segment {name!r} is recorded for event {event!r}"
                f" (segments: {', '.join(configured) or 'none'})"
            )
        values = []
        for part in compound(name):
            value = segment[part]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise QueryError(f"segment {part}={value!r}: the value must be text or a number")
            values.append(str(value))
        return name, encode_value(values[0] if len(values) == 1 else values)

    def actors(self, event: str, **segment: Any) -> ActorQuery:
        """Actors of `event` (with optional segment filters); pick the time on the result."""
        _check_name(event)
        return ActorQuery(self, event, self._segment(event, segment))

    def _per_shard(self, add: Callable[[Compiler], None]) -> list[tuple[int, list[Any]]]:
        """Compile with `add` for every id shard and run: (shard, answers) per shard.

        The shard set is read in the same round trip as the programs compiled for the set seen
        last time; only when it has changed since are they compiled and run again.
        """
        shards = self._shard_cache
        while True:
            programs = []
            for shard in shards:
                c = Compiler(self._keys, shard)
                add(c)
                programs.append(c.program(SCRATCH_TTL_MS))
            now, answers = self._store.evaluate_checked(self._keys.shards, programs)
            if now == shards:
                return list(zip(shards, answers, strict=True))
            shards = self._shard_cache = now

    def _count_exprs(self, exprs: Sequence[Expr]) -> list[int]:
        def add(c: Compiler) -> None:
            for e in exprs:
                c.count(e)

        totals = [0] * len(exprs)
        for _, answers in self._per_shard(add):
            for i, value in enumerate(answers):
                totals[i] += int(value)
        return totals

    def _contains(self, expr: Expr, actor: object) -> bool:
        if self._schema.ids == "map":
            try:
                text = canonical_id(actor)
            except InvalidEvent:
                return False
            offset = self._known_offset(text)
            if offset is None:
                return False
        else:
            try:  # the same ids track() takes: integers, and digit text such as "42"
                offset = int_actor(actor, self._schema.actor, self._schema.max_id)
            except InvalidEvent:
                return False
        c = Compiler(self._keys, offset >> SHARD_BITS)
        c.contains(expr, offset & ((1 << SHARD_BITS) - 1))
        return bool(self._store.evaluate([c.program(SCRATCH_TTL_MS)])[0][0])

    def _known_offset(self, text: str) -> int | None:
        if text in self._id_cache:
            return self._id_cache[text]
        k = self._keys
        raw = self._store.run(
            "looking up an actor id", lambda: self._store.client.hget(k.id_forward(text), text)
        )
        return None if raw is None else int(raw)

    def _store_expr(self, expr: Expr) -> list[tuple[int, str]]:
        out = []
        for shard, answers in self._per_shard(lambda c: c.store(expr)):
            key = answers[0].decode() if isinstance(answers[0], bytes) else str(answers[0])
            if key:
                out.append((shard, key))
        return out

    # metrics
    def unique(self, event: str, start: Any, end: Any = None, **segment: Any) -> int:
        """Distinct actors who did `event` in [start, end] (inclusive), optionally in a segment."""
        return self.actors(event, **segment).between(start, end).count()

    def total(self, event: str, start: Any, end: Any = None) -> int:
        """How many times `event` happened in [start, end]."""
        _check_name(event)
        labels = self._cover_labels(start, end)
        sums = self._store.hsum([self._keys.metrics(event, lb) for lb in labels], ["n"])
        return int(sums.get(b"n", 0))

    def series(
        self,
        event: str,
        start: Any,
        end: Any = None,
        *,
        by: str = "day",
        metric: str = "unique",
        **segment: Any,
    ) -> list[tuple[str, int]]:
        """One value per `by` bucket of the range: `unique` actors or `total` events."""
        _check_name(event)
        self._require_period(by)
        if metric not in ("unique", "total"):
            raise QueryError(f"metric must be 'unique' or 'total', got {metric!r}")
        if metric == "total" and segment:
            raise QueryError("segments filter actors; metric='total' takes none")
        lo, hi = self._range(start, end)
        buckets = periods.buckets_between(by, lo, hi)
        parts = [
            periods.cover(max(lo, b.start), min(hi, b.end), self._schema.periods) for b in buckets
        ]
        if metric == "unique":
            seg = self._segment(event, segment)
            exprs: list[Expr] = [Leaf(event, tuple(c.label for c in p), seg) for p in parts]
            values = self._count_exprs(exprs)
        else:
            pairs = [(self._keys.metrics(event, c.label), "n") for p in parts for c in p]
            raw = iter(self._store.hget_many(pairs))
            values = [sum(int(next(raw) or 0) for _ in p) for p in parts]
        return [(b.label, v) for b, v in zip(buckets, values, strict=True)]

    def counts(self, event: str, prop: str, start: Any, end: Any = None) -> dict[Any, int]:
        """Events per value of a `count` property: {"NL": 12, ...}; compound keys are tuples."""
        asked, stored = self._prop(event, prop, "count")
        labels = self._cover_labels(start, end)
        keys = [self._keys.counts(event, lb, stored) for lb in labels]
        raw = self._store.zsum(self._scratch(event), keys)
        return {self._value(f, asked, stored): int(v) for f, v in raw.items()}

    def sums(
        self, event: str, prop: str, start: Any, end: Any = None, by: str | None = None
    ) -> float | dict[Any, float]:
        """Sum of a `sum` property; with `by`, a sum per value of that property."""
        _check_name(event)
        rules = self._schema.rules_for(event).sum
        by_stored = normalise(by) if by else None
        if not any(r.prop == prop and r.by == by_stored for r in rules):
            wanted = prop if by is None else f"{prop} by {by}"
            raise QueryError(
                f"no sum {wanted!r} is recorded for event {event!r}"
                f" (sums: {', '.join(map(str, rules)) or 'none'})"
            )
        labels = self._cover_labels(start, end)
        if by_stored is None:
            f = metric_sum_field(prop)
            raw = self._store.hsum([self._keys.metrics(event, lb) for lb in labels], [f])
            return raw.get(f.encode(), 0.0)
        assert by is not None
        keys = [self._keys.sums_by(event, lb, prop, by_stored) for lb in labels]
        raw = self._store.zsum(self._scratch(event), keys)
        return {self._value(f[2:], by, by_stored): v for f, v in raw.items() if f[:2] == b"s:"}

    def averages(self, event: str, prop: str, start: Any, end: Any = None) -> float | None:
        """Mean of a `sum` property over the events that carried it (None when there were none)."""
        self.sums(event, prop, start, end)
        labels = self._cover_labels(start, end)
        fs, fk = metric_sum_field(prop), metric_count_field(prop)
        raw = self._store.hsum([self._keys.metrics(event, lb) for lb in labels], [fs, fk])
        n = raw.get(fk.encode(), 0.0)
        return raw.get(fs.encode(), 0.0) / n if n else None

    def top(
        self, event: str, prop: str, start: Any, end: Any = None, limit: int = 10
    ) -> list[tuple[Any, int]]:
        """The `limit` most frequent values: count descending, then value ascending."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise QueryError(f"limit must be a positive integer, got {limit!r}")
        asked, stored = self._prop(event, prop, "top")
        labels = self._cover_labels(start, end)
        keys = [self._keys.top(event, lb, stored) for lb in labels]
        ranked = [
            (self._value(m, asked, stored), int(s))
            # ties are cut on the server in stored order; another order of parts needs them all
            for m, s in self._store.top(self._scratch(event), keys, limit, asked != stored)
        ]
        ranked.sort(key=lambda vc: (-vc[1], vc[0]))
        return ranked[:limit]

    def distinct(self, event: str, prop: str, start: Any, end: Any = None) -> int:
        """How many distinct values a `unique` property took in the range."""
        _asked, stored = self._prop(event, prop, "unique")
        labels = self._cover_labels(start, end)
        operands, code, scratch = count_union(
            [self._keys.distinct(event, lb, stored) for lb in labels]
        )
        program = Program(operands, [len(operands), SCRATCH_TTL_MS, *code], scratch, 1)
        return int(self._store.evaluate([program])[0][0])

    def query(self, event: str, start: Any, end: Any = None) -> dict[str, Any]:
        """Every metric the schema records for `event` over the range, in one dict (trk's query)."""
        rules = self._schema.rules_for(event)
        out: dict[str, Any] = {
            "event": event,
            "total": self.total(event, start, end),
            "unique": self.unique(event, start, end),
        }
        if rules.count:
            out["counts"] = {p: self.counts(event, p, start, end) for p in rules.count}
        if rules.sum:
            out["sums"] = {str(r): self.sums(event, r.prop, start, end, by=r.by) for r in rules.sum}
        if rules.top:
            out["top"] = {p: self.top(event, p, start, end) for p in rules.top}
        if rules.unique:
            out["distinct"] = {p: self.distinct(event, p, start, end) for p in rules.unique}
        return out

    def query_days(self, event: str, days: int, end: Any = None) -> list[dict[str, Any]]:
        """`query` for each of the last `days` days up to `end` (default: today), oldest first."""
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise QueryError(f"days must be a positive integer, got {days!r}")
        last = (
            periods.parse_time(end, self._schema.tz).date()
            if end is not None
            else datetime.now(self._schema.tz).date()
        )
        out = []
        for d in range(days - 1, -1, -1):
            day = last - timedelta(days=d)
            out.append({"day": day.isoformat(), **self.query(event, day)})
        return out

    def events(self) -> list[str]:
        """Every event name recorded in the namespace, sorted."""
        raw = self._store.run(
            "listing events", lambda: self._store.client.smembers(self._keys.events)
        )
        return sorted(n.decode("utf-8", "surrogatepass") for n in raw)

    def _scratch(self, event: str) -> str:
        return self._keys.temp(self._keys.event_tag(event), secrets.token_hex(6))

    def _prop(self, event: str, prop: str, kind: str) -> tuple[str, str]:
        _check_name(event)
        stored = normalise(prop)
        configured = getattr(self._schema.rules_for(event), kind)
        if stored not in configured:
            raise QueryError(
                f"no {kind} of {prop!r} is recorded for event {event!r}"
                f" ({kind}: {', '.join(configured) or 'none'})"
            )
        return prop, stored

    @staticmethod
    def _value(raw: bytes, asked: str, stored: str) -> Any:
        """A stored value back as text, or as a tuple in the order the caller named the parts."""
        text = raw.decode("utf-8", "surrogatepass")
        if "~" not in stored:
            return text
        parts = dict(zip(stored.split("~"), member_value(text, True), strict=True))
        return tuple(parts[p] for p in asked.split("~"))

    # analysis: retention, funnels, stickiness, lifecycle (planned in analysis.py)
    def retention(
        self,
        first_event: str,
        return_event: str,
        start: Any,
        periods: int = 8,
        period: str = "week",
        kind: str = "first",
        *,
        columns: int | None = None,
        now: Any = None,
        **segment: Any,
    ) -> analysis.Retention:
        """Cohort retention table (`analysis.Retention`): row i is the cohort of period start + i.

        kind="first": actors whose first-ever `first_event` falls in period i; "recurring": all
        who did it in period i. `counts[k]` = of those, actors who did `return_event` in period
        i + k (`columns` of them, default `periods`); None for periods not begun by `now`
        (default: the wall clock). Segment filters (`country="NL"`) narrow the cohort.
        """
        args = (first_event, return_event, start, periods, period, kind, columns, now, segment)
        return analysis.retention(self, *args)

    def funnel(
        self, steps: Sequence[str], start: Any, end: Any = None, within: Any = "7d", **segment: Any
    ) -> list[tuple[str, int]]:
        """Ordered funnel at day resolution: [(step, actors who reached it), ...].

        An actor reaches step k if, for some day d in [start, end] on which they did step 1,
        they did steps 2..k in order (each on a day no earlier than the step before; the same
        day counts as in order) on days before d + `within`. Bitmaps keep days, not instants,
        so two steps on one day always count as in order. Segment filters apply to step 1.
        """
        return analysis.funnel(self, steps, start, end, within, segment)

    def stickiness(self, event: str, start: Any, end: Any = None, **segment: Any) -> dict[int, int]:
        """{n: actors active on exactly n distinct days of [start, end]}, n = 1 .. days."""
        return analysis.stickiness(self, event, start, end, segment)

    def lifecycle(
        self, event: str, start: Any, periods: int = 8, period: str = "week", *, now: Any = None
    ) -> list[analysis.LifecyclePeriod]:
        """Per period from start: `new`, `returning`, `resurrecting`, `dormant` actor counts.

        new: first activity ever; returning: active in the previous period too; resurrecting:
        not in the previous period but before it; dormant: active in the previous period, not
        in this one. Periods not begun by `now` have None counts.
        """
        return analysis.lifecycle(self, event, start, periods, period, now=now)


def _check_name(event: Any) -> None:
    if not isinstance(event, str) or not event:
        raise QueryError(f"event name must be non-empty text, got {event!r}")


from . import analysis  # noqa: E402  (kept beside the analysis methods above)
