"""Turn a checked batch (columns) into a write plan: per hash tag, the ops of one script call.

Pure: no I/O. Counters are summed here first (one HINCRBY per distinct field per batch);
actor bits are grouped per key and sent either as offsets (few bits) or as one client-built
bitmap merged with BITOP OR (many bits), whichever moves less work to the server.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from . import periods
from .events import Columns
from .keys import (
    SHARD_BITS,
    SHARD_MASK,
    Keys,
    encode_value,
    member_text,
    metric_count_field,
    metric_sum_field,
)
from .schema import Schema

# A bit costs about this many bytes of OR-merged bitmap: below it, offsets are cheaper.
OR_BYTES_PER_BIT = 48
OR_MIN_BITS = 32


@dataclass
class Group:
    """The ops of one script call; every key in it shares one hash tag (one cluster slot)."""

    tag: str
    batch_key: str
    scratch_key: str
    keys: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def key(self, name: str) -> int:
        idx = self._index.get(name)
        if idx is None:
            self.keys.append(name)
            idx = self._index[name] = len(self.keys) + 2  # KEYS[1], KEYS[2] are batch and scratch
        return idx


@dataclass
class WritePlan:
    groups: list[Group]
    recorded: int


@lru_cache(maxsize=65536)
def _labels(base: int, hourly: bool) -> dict[str, str]:
    """Labels of every period for one bucket base (an hour or a day number, wall clock)."""
    day = base // 24 if hourly else base
    labels = dict(periods.labels_for_day(day))
    if hourly:
        labels["hour"] = periods.hour_label(base)
    return labels


@lru_cache(maxsize=4096)
def _expire_at(period: str, label: str, tz_name: str, ttl: int) -> int:
    end: datetime = periods.parse_label(label).end
    return int(end.replace(tzinfo=ZoneInfo(tz_name)).timestamp()) + ttl


class _Builder:
    def __init__(self, keys: Keys, schema: Schema, batch_id: str | None, single: bool) -> None:
        self.keys = keys
        self.schema = schema
        self.batch_id = batch_id
        self.single = single
        self.groups: dict[str, Group] = {}
        self.expired: set[str] = set()

    def group(self, tag: str) -> Group:
        if self.single:
            tag = self.keys.meta_tag
        g = self.groups.get(tag)
        if g is None:
            batch = self.keys.batch(tag, self.batch_id) if self.batch_id else f"{tag}:batch"
            g = self.groups[tag] = Group(tag, batch, self.keys.temp(tag, "apply"))
        return g

    def expire(self, g: Group, key: str, period: str, label: str) -> None:
        ttl = self.schema.expire.get(period)
        if ttl is not None and key not in self.expired:
            self.expired.add(key)
            g.args += ["X", g.key(key), _expire_at(period, label, self.schema.timezone, ttl)]

    def bits(
        self, tag: str, by_key: dict[str, list[np.ndarray]], periods_of: dict[str, tuple[str, str]]
    ) -> None:
        """Set bits: offsets for sparse keys, one OR-merged bitmap per distinct payload otherwise."""
        g = self.group(tag)
        payloads: dict[tuple[int, bytes], list[int]] = {}
        for key, chunks in by_key.items():
            offs = np.unique(np.concatenate(chunks)) if len(chunks) > 1 else np.unique(chunks[0])
            k = g.key(key)
            first, last = int(offs[0]) >> 3, int(offs[-1]) >> 3
            span = last - first + 1
            if len(offs) >= OR_MIN_BITS and len(offs) * OR_BYTES_PER_BIT >= span:
                flags = np.zeros(span * 8, dtype=bool)
                flags[offs - first * 8] = True
                payloads.setdefault((first, np.packbits(flags).tobytes()), []).append(k)
            else:
                g.args += ["B", k, len(offs), *offs.tolist()]
            if key in periods_of:
                self.expire(g, key, *periods_of[key])
        for (first, payload), targets in payloads.items():
            g.args += ["P", first, payload]
            for k in targets:
                g.args += ["O", k]

    def pairs(
        self,
        code: str,
        key: str,
        items: Iterable[tuple[str, Any]],
        period: str,
        label: str,
        tag: str,
    ) -> None:
        g = self.group(tag)
        flat: list[Any] = []
        for f, v in items:
            flat += [f, v]
        if flat:
            g.args += [code, g.key(key), len(flat) // 2, *flat]
            self.expire(g, key, period, label)


def build_plan(
    cols: Columns,
    offsets: np.ndarray | None,
    has_actor: np.ndarray | None,
    schema: Schema,
    keys: Keys,
    batch_id: str | None = None,
    single: bool = False,
) -> WritePlan:
    """The write plan of one checked batch.

    `offsets[i]` is the bit offset of row i's actor where `has_actor[i]`; `single` merges all
    groups into one call (a single server has no slots to respect).
    """
    b = _Builder(keys, schema, batch_id, single)
    n = len(cols.codes)
    if n == 0:
        return WritePlan([], 0)
    hourly = "hour" in schema.periods
    chosen = schema.periods
    codes = np.array(cols.codes, dtype=np.int64)
    base = cols.wall // (3600 if hourly else 86400)
    bmin = int(base.min())
    width = int(base.max()) - bmin + 1
    combined = codes * width + (base - bmin)
    names = cols.names

    def split(c: int) -> tuple[str, int]:
        return names[c // width], c % width + bmin

    # totals: one HINCRBY per (event, bucket)
    metrics: dict[tuple[str, str, str], defaultdict[str, float]] = {}
    uniq, counts = np.unique(combined, return_counts=True)
    for c, cnt in zip(uniq.tolist(), counts.tolist(), strict=True):
        event, bb = split(c)
        for period in chosen:
            label = _labels(bb, hourly)[period]
            m = metrics.setdefault((event, period, label), defaultdict(float))
            m["n"] += cnt

    # span per event, in day numbers
    meta = b.group(keys.meta_tag)
    day_of = (base // 24) if hourly else base
    firsts, lasts = [], []
    for code, event in enumerate(names):
        mask = codes == code
        days = day_of[mask]
        firsts += [event, int(days.min())]
        lasts += [event, int(days.max())]
    meta.args += ["S", meta.key(keys.events), len(names), *names]
    meta.args += ["L", meta.key(keys.span_first), len(names), *firsts]
    meta.args += ["G", meta.key(keys.span_last), len(names), *lasts]

    # actor bitmaps
    per_shard: dict[int, dict[str, list[np.ndarray]]] = defaultdict(dict)
    key_period: dict[str, tuple[str, str]] = {}
    row_shard = row_bit = None
    if offsets is not None and has_actor is not None and has_actor.any():
        rows = np.flatnonzero(has_actor)
        offs = offsets[rows]
        row_shard = np.zeros(n, dtype=np.int64)
        row_bit = np.zeros(n, dtype=np.int64)
        row_shard[rows] = offs >> SHARD_BITS
        row_bit[rows] = offs & SHARD_MASK
        gkey = combined[rows]
        shard_of = offs >> SHARD_BITS
        order = np.lexsort((shard_of, gkey))
        gk, sh, bits = gkey[order], shard_of[order], (offs & SHARD_MASK)[order]
        cuts = np.flatnonzero((np.diff(gk) != 0) | (np.diff(sh) != 0)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [len(gk)]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            event, bb = split(int(gk[s]))
            shard = int(sh[s])
            chunk = bits[s:e]
            dest = per_shard[shard]
            for period in chosen:
                label = _labels(bb, hourly)[period]
                key = keys.actors(shard, event, label)
                dest.setdefault(key, []).append(chunk)
                key_period[key] = (period, label)
            dest.setdefault(keys.all_actors(shard), []).append(chunk)
        shards = sorted(per_shard)
        meta.args += ["S", meta.key(keys.shards), len(shards), *shards]

    # property rows: counts, top, distinct values, segments, sums
    specs = cols.rule_specs
    count_acc: dict[tuple[int, int, Any], int] = defaultdict(int)
    sum_acc: dict[tuple[int, int, Any], list[float]] = {}
    seen_values: dict[tuple[int, Any], set[int]] = defaultdict(set)
    segment_rows: list[tuple[int, Any, int]] = []
    base_list = base.tolist()
    for row, idx, value in cols.props:
        kind = specs[idx][1]
        bb = base_list[row]
        if kind == "count" or kind == "top":
            count_acc[(idx, bb, value)] += 1
        elif kind == "sum":
            label_value = value[1] if isinstance(value, tuple) and specs[idx][3] else None
            number = value[0] if label_value is not None else value
            acc = sum_acc.get((idx, bb, label_value))
            if acc is None:
                sum_acc[(idx, bb, label_value)] = [number, 1]
            else:
                acc[0] += number
                acc[1] += 1
        elif kind == "unique":
            seen_values[(idx, value)].add(bb)
        elif row_shard is not None and has_actor is not None and has_actor[row]:
            segment_rows.append((row, idx, value))

    hashes: dict[tuple[str, str, str, str], dict[str, float]] = defaultdict(
        lambda: defaultdict(float)
    )
    zsets: dict[tuple[str, str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (idx, bb, value), cnt in count_acc.items():
        event, kind, prop, _ = specs[idx]
        field_ = member_text(value)
        for period in chosen:
            label = _labels(bb, hourly)[period]
            if kind == "count":
                hashes[(event, period, label, keys.counts(event, label, prop))][field_] += cnt
            else:
                zsets[(event, period, label, keys.top(event, label, prop))][field_] += cnt
    for (idx, bb, label_value), (total, cnt) in sum_acc.items():
        event, _, prop, by = specs[idx]
        for period in chosen:
            label = _labels(bb, hourly)[period]
            if by is None:
                m = metrics.setdefault((event, period, label), defaultdict(float))
                m[metric_sum_field(prop)] += total
                m[metric_count_field(prop)] += cnt
            else:
                h = hashes[(event, period, label, keys.sums_by(event, label, prop, by))]
                v = member_text(label_value)
                h["s:" + v] += total
                h["k:" + v] += cnt

    for (event, period, label), m in metrics.items():
        ints = [(f, int(v)) for f, v in m.items() if f == "n" or f.startswith("k:")]
        floats = [(f, _float_text(v)) for f, v in m.items() if f.startswith("s:")]
        key = keys.metrics(event, label)
        b.pairs("H", key, ints, period, label, keys.event_tag(event))
        b.pairs("F", key, floats, period, label, keys.event_tag(event))
    for (event, period, label, key), h in hashes.items():
        ints = [(f, int(v)) for f, v in h.items() if not f.startswith("s:")]
        floats = [(f, _float_text(v)) for f, v in h.items() if f.startswith("s:")]
        b.pairs("H", key, ints, period, label, keys.event_tag(event))
        b.pairs("F", key, floats, period, label, keys.event_tag(event))
    for (event, period, label, key), z in zsets.items():
        b.pairs("Z", key, z.items(), period, label, keys.event_tag(event))

    # distinct values: a value's id is stable across buckets, so ranges merge with OR
    by_spec: dict[int, list[tuple[Any, set[int]]]] = defaultdict(list)
    for (idx, value), bases in seen_values.items():
        by_spec[idx].append((value, bases))
    for idx, values in by_spec.items():
        event, _, prop, _ = specs[idx]
        g = b.group(keys.event_tag(event))
        flat: list[Any] = []
        for value, bases in values:
            targets: list[int] = []
            labels_seen: set[str] = set()
            for bb in bases:
                for period in chosen:
                    label = _labels(bb, hourly)[period]
                    if label not in labels_seen:
                        labels_seen.add(label)
                        key = keys.distinct(event, label, prop)
                        targets.append(g.key(key))
                        b.expire(g, key, period, label)
            flat += [member_text(value), len(targets), *targets]
        g.args += ["V", g.key(keys.value_ids(event, prop)), g.key(keys.value_next(event, prop))]
        g.args += [len(values), *flat]

    # segment bitmaps join the shard's bitmaps
    assert row_shard is not None or not segment_rows
    for row, idx, value in segment_rows:
        event, _, prop, _ = specs[idx]
        shard = int(row_shard[row])  # type: ignore[index]
        bit = row_bit[row : row + 1]  # type: ignore[index]
        seg = (prop, encode_value(value))
        for period in chosen:
            label = _labels(base_list[row], hourly)[period]
            key = keys.actors(shard, event, label, seg)
            per_shard[shard].setdefault(key, []).append(bit)
            key_period[key] = (period, label)

    for shard, by_key in per_shard.items():
        b.bits(keys.shard_tag(shard), by_key, key_period)

    return WritePlan(list(b.groups.values()), n)


def _float_text(value: float) -> str:
    return repr(float(value))
