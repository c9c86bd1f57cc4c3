"""One event, planned without the batch machinery: the path of `track()`.

`plan.build_plan` is made for batches (columns in numpy, rows grouped by event and bucket); a
web app calls `track()` once a request, and one event needs none of that. `parse_one` checks
an event as `events.parse_batch` does (the same `check_event`), and `plan_one` writes the very
ops `build_plan` writes for a batch of that one event: tests/test_single.py holds the two equal
on random schemas and events. Key names are remembered per event and hour, so a live stream
formats each once an hour, not once an event.

Pure: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from .events import Latest, Spec, check_event
from .keys import (
    SHARD_BITS,
    SHARD_MASK,
    SHARD_SIZE,
    Keys,
    encode_value,
    member_text,
    metric_count_field,
    metric_sum_field,
)
from .periods import local_offset, real_wall
from .plan import UNNUMBERED, bucket_labels, live_labels
from .schema import ExpireChange, Schema
from .writes import Builder, WritePlan, float_text

MEMO_LIMIT = 4096  # key names remembered per namespace: a few hours of a few events' keys


@dataclass
class Single:
    """One checked event. `actor`: its id as checked (an offset with ids="int", else text),
    None without one; `wall`: wall-clock seconds in the namespace's zone; `row`: the value of
    each rule that applies and has one (a sum: (number, label))."""

    record: Mapping[str, Any]
    name: str
    actor: Any
    wall: int
    specs: list[Spec]
    row: dict[Spec, Any]
    rejected: list[tuple[int, str]] = field(default_factory=list)  # none: as Columns has them
    utc: int | None = None  # UTC epoch seconds, for a time given with its zone (or none)

    def __len__(self) -> int:
        return 1


def parse_one(record: Any, schema: Schema, now: float | None = None) -> Single:
    """Check one event as `parse_batch` would; InvalidEvent says what is wrong."""
    now_s = int(now if now is not None else time.time())
    derived = schema.derived
    latest = derived.get("latest")
    if latest is None or latest[0] != now_s:  # one zone lookup a second, not one an event
        latest = derived["latest"] = (now_s, Latest.of(now_s, schema))
    rules = derived.setdefault("single_rules", {})
    if len(rules) > 1024:
        rules.clear()
    name, actor, sec, is_utc, row = check_event(record, schema, now_s, latest[1], rules)
    tz = ZoneInfo(schema.timezone)
    wall = sec + local_offset(tz, sec) if is_utc else real_wall(sec, tz)
    return Single(record, name, actor, wall, rules[name], row, utc=sec if is_utc else None)


def sum_bound_one(one: Single) -> float:
    """`plan.sum_bound_of` for one event: the largest magnitude among its summed values."""
    bound = 0.0
    for spec, value in one.row.items():  # (a loop: a generator into max() cost twice this)
        if spec[0] == "sum" and abs(value[0]) > bound:
            bound = abs(value[0])
    return bound


def plan_one(
    one: Single,
    offset: int,
    value_ids: Mapping[int, int],
    schema: Schema,
    keys: Keys,
    memo: dict[Any, Any],
    *,
    batch_id: str | None,
    single: bool,
    now: float,
    sum_bound: float,
    note: str | None = None,
    bitmaps: Container[str] = (),
    changes: tuple[ExpireChange, ...] = (),
) -> WritePlan:
    """`build_plan` of a batch of this one event: the same groups, ops and order.

    `offset`: the actor's bit offset (-1: none); `value_ids`: per `unique` rule (by its index
    in `one.specs`) the value's id, or UNNUMBERED for the write to number it; `memo`: key
    names remembered between calls (the namespace's)."""
    expiring = bool(schema.expire or changes)  # (`changes`: the stored schema's, kept_for)
    if expiring:  # which periods are kept changes with the clock: nothing remembered
        memo = {}
    elif len(memo) > MEMO_LIMIT:
        memo.clear()
    b = Builder(keys, schema, batch_id, single, sum_bound, bitmaps, changes=changes)
    b.note = note
    event, chosen = one.name, schema.periods
    hourly = "hour" in chosen
    bb = one.wall // (3600 if hourly else 86400)
    labels = live_labels(bb, schema, now, changes) if expiring else bucket_labels(bb, chosen)
    # a family kept per day (Schema.hourly) has the labels of its day, the hour left out
    day_labels = {p: lb for p, lb in labels.items() if p != "hour"}

    def family(kind: str) -> dict[str, str]:
        return labels if schema.periods_of(kind) == chosen else day_labels

    def named(kind: str, key_of: Any, *args: str) -> list[tuple[str, str, str]]:
        """(key, period, label) of each period of the event's bucket kept for a family."""
        found = memo.get((kind, event, bb, *args))
        if found is None:
            found = memo[(kind, event, bb, *args)] = [
                (key_of(event, label, *args), period, label)
                for period, label in family(kind).items()
            ]
        return found

    expired = {p: 1 for p in chosen if p not in labels}
    tag = keys.event_tag(event)
    metrics: dict[str, dict[str, float]] = {period: {"n": 1.0} for period in labels}

    meta = b.group(keys.meta_tag)
    day = bb // 24 if hourly else bb
    meta.args += ["S", meta.key(keys.events), 1, event]
    meta.args += ["L", meta.key(keys.span_first), 1, event, day]
    meta.args += ["G", meta.key(keys.span_last), 1, event, day]

    # actor bits: the event's own keys, then its segments' (written after the counters)
    by_key: dict[str, list[Any]] = {}
    key_period: dict[str, tuple[str, str]] = {}
    shard = offset >> SHARD_BITS if offset >= SHARD_SIZE else 0
    bit = [offset & SHARD_MASK if offset >= SHARD_SIZE else offset]
    if offset >= 0:
        actor_keys = memo.get(("a", shard, event, bb))
        if actor_keys is None:
            actor_keys = memo[("a", shard, event, bb)] = [
                (keys.actors(shard, event, label), period, label)
                for period, label in labels.items()
            ] + [(keys.all_actors(shard), "", "")]
        chunks = [bit]  # one list for all: the script adds its bit to all of them by one op
        for key, period, label in actor_keys:
            by_key[key] = chunks
            if period:
                key_period[key] = (period, label)
        meta.args += ["S", meta.key(keys.shards), 1, shard]

    for idx, spec in enumerate(one.specs):
        kind, prop, by = spec
        value = one.row.get(spec)
        if kind == "sum":
            if value is None:
                continue
            amount, label_value = value
            if by is None:
                sf, kf = metric_sum_field(prop), metric_count_field(prop)
                for period in family("sum"):
                    m = metrics[period]
                    m[sf] = m.get(sf, 0.0) + amount
                    m[kf] = m.get(kf, 0.0) + 1
            elif label_value is not None:
                member = member_text(label_value)
                targets = named("sum", keys.sums_by, prop, by)
                if targets:
                    b.scores(tag, targets, [("s:" + member, amount), ("k:" + member, 1)], "Z")
        elif kind in ("count", "top"):
            if value is not None:
                targets = named(kind, keys.counts if kind == "count" else keys.top, prop)
                if targets:
                    b.scores(tag, targets, [(member_text(value), 1)])
        elif kind == "approx":
            if value is not None:
                b.estimate(tag, named(kind, keys.approx, prop), [member_text(value)])
        elif kind == "unique":
            vid = value_ids.get(idx, -1)
            if vid == UNNUMBERED:
                assert value is not None  # (an absent value has no id to make)
                b.number(tag, named(kind, keys.distinct, prop), event, prop, [member_text(value)])
            elif vid >= 0:
                targets = named(kind, keys.distinct, prop)
                chunk = [vid]  # one list for all: one op adds the value to every period's set
                b.bits(tag, {k: [chunk] for k, _, _ in targets}, _periods(targets))
        elif value is not None and offset >= 0:  # a segment: the actor's bit per value
            suffix = keys.segment(prop, encode_value(value))
            chunks = [bit[:]]
            base = memo.get(("s", shard, event, bb))
            if base is None:
                base = memo[("s", shard, event, bb)] = [
                    (keys.actors(shard, event, label), period, label)
                    for period, label in family("segment").items()
                ]
            for key, period, label in base:
                by_key[key + suffix] = chunks
                key_period[key + suffix] = (period, label)

    for period, label in labels.items():
        m = metrics[period]
        key = memo.get(("m", event, label))
        if key is None:
            key = memo[("m", event, label)] = keys.metrics(event, label)
        ints = [(f, int(v)) for f, v in m.items() if not f.startswith("s:")]
        floats = [(f, float_text(v)) for f, v in m.items() if f.startswith("s:")]
        b.pairs("H", key, ints, period, label, tag)
        b.pairs("F", key, floats, period, label, tag)
    if by_key:
        b.bits(keys.shard_tag(shard), by_key, key_period)
    return WritePlan(b.finish(), 1, expired)


def _periods(targets: list[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    return {key: (period, label) for key, period, label in targets}
