"""Turn a checked batch (columns) into a write plan: per hash tag, the ops of one script call.

Pure: no I/O. Rows are grouped by event and bucket, counters summed here first (one HINCRBY
per distinct field per batch), actor and value bits gathered per key; writes.py writes the ops.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Container, Generator, Iterable, Mapping
from functools import lru_cache, partial
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from . import periods
from .events import Columns
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
from .periods import expire_at
from .schema import ExpireChange, Schema, kept_for
from .tallies import Items, Tally
from .writes import OR_MIN_BITS, Builder, Chunk, WritePlan, float_text

# A row's group: its event code above these bits, its bucket base (an hour or day number,
# < 2^27 up to year 9999) below them.
BUCKET_BITS = 28
BUCKET_MASK = (1 << BUCKET_BITS) - 1
LARGE_BATCH = 512  # from this many rows, rows are grouped by sorting in numpy
SHARD_KEY_BITS = 13  # a shard number (< 2^12 with 32-bit ids) below a group key
SHARD_KEY_MASK = (1 << SHARD_KEY_BITS) - 1
UNNUMBERED = -2  # a distinct value's id when the write numbers it on the server


@lru_cache(maxsize=65536)
def bucket_labels(base: int, chosen: tuple[str, ...]) -> dict[str, str]:
    """Labels of the chosen periods for one bucket base (an hour number if hours are recorded,
    else a day number; wall clock)."""
    hourly = "hour" in chosen
    every = dict(periods.labels_for_day(base // 24 if hourly else base))
    if hourly:
        every["hour"] = periods.hour_label(base)
    return {p: every[p] for p in chosen}


_LABEL_CACHES: dict[tuple[str, ...], tuple[dict[int, dict[str, str]], ...]] = {}
LABELS_KEPT = 65536  # buckets whose labels a cache keeps, then starts again


def _label_caches(
    chosen: tuple[str, ...],
) -> tuple[dict[int, dict[str, str]], dict[int, dict[str, str]]]:
    """The caches of day+ labels and hour labels by bucket base for periods `chosen`."""
    found = _LABEL_CACHES.get(chosen)
    if found is None or len(found[0]) + len(found[1]) > LABELS_KEPT:
        found = _LABEL_CACHES[chosen] = ({}, {})
    return found[0], found[1]


def live_labels(
    base: int, schema: Schema, now: float, changes: tuple[ExpireChange, ...] = ()
) -> dict[str, str]:
    """`bucket_labels` without the periods whose bucket is already past its retention at `now`
    (`kept_for`, the expiry `changes` configure() made included): such a key would be deleted
    as soon as written, or kept where no read looks, so it is not written."""
    every = bucket_labels(base, schema.periods)
    if not (schema.expire or changes):
        return every
    return {
        p: label
        for p, label in every.items()
        if (ttl := kept_for(schema, changes, p, label)) is None
        or expire_at(p, label, schema.timezone, ttl) > now
    }


def bucket_base(wall: np.ndarray, schema: Schema) -> np.ndarray:
    """The bucket base of each wall-clock time: its hour number if hours are recorded, else its
    day number."""
    return wall // (3600 if "hour" in schema.periods else 86400)


def _grouped(keys: Iterable[Any], offsets: Iterable[int]) -> dict[Any, list[int]]:
    """The offsets (>= 0) of the rows of each key, in row order."""
    groups: dict[Any, list[int]] = {}
    for k, o in zip(keys, offsets, strict=True):
        if o >= 0:
            found = groups.get(k)
            if found is None:
                groups[k] = [o]
            else:
                found.append(o)
    return groups


def _by_day(per_hour: Mapping[int, int]) -> dict[int, int]:
    """Events per (event, day), the day named by its first hour, from events per (event, hour)."""
    out: dict[int, int] = {}
    for c, n in per_hour.items():
        day = c - (c & BUCKET_MASK) % 24
        out[day] = out.get(day, 0) + n
    return out


def _grouped_array(
    keys: np.ndarray, values: np.ndarray, present: np.ndarray
) -> list[tuple[int, Chunk]]:
    """`_grouped` for a large batch: (key, its values in row order) per distinct key, of the
    rows where `present`: a list for a group too small for a bitmap (plain Python handles it
    faster than a numpy view: a backfill's hours hold an event or two each), else an array."""
    if not present.all():
        keys, values = keys[present], values[present]
    if not len(keys):
        return []
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), len(keys)]
    firsts = keys[starts].tolist()
    listed = values.tolist()
    return [
        (k, listed[a:b] if b - a < OR_MIN_BITS else values[a:b])
        for k, a, b in zip(firsts, starts, ends, strict=True)
    ]


def _segment_groups(
    cb: np.ndarray, values: list[Any], offsets: np.ndarray, sharded: bool
) -> list[tuple[tuple[int, Any], int, Chunk]]:
    """((group, value), shard, offsets in shard) of the rows with an actor and a value, grouped by
    sorting in numpy (a large batch): `shard_groups` of (group, value) without a step a row."""
    n = len(values)
    first: dict[Any, int] = {}  # a value's code: the first row holding it
    codes = np.fromiter(map(first.setdefault, values, range(n)), dtype=np.int64, count=n)
    present = offsets >= 0
    if None in first:
        present &= codes != first[None]
    rows = np.flatnonzero(present)
    if not len(rows):
        return []
    shards = offsets[rows] >> SHARD_BITS if sharded else None
    columns = [cb[rows], codes[rows]] if shards is None else [cb[rows], codes[rows], shards]
    order = np.lexsort(columns[::-1])  # stable: rows stay in order within a group
    rows = rows[order]
    change = np.zeros(len(rows) - 1, dtype=bool)
    for column in columns:
        ordered = column[order]
        change |= ordered[1:] != ordered[:-1]
    cuts = (np.flatnonzero(change) + 1).tolist()
    starts, ends = [0, *cuts], [*cuts, len(rows)]
    in_shard = offsets[rows] & SHARD_MASK if sharded else offsets[rows]
    listed = in_shard.tolist()
    heads = rows[starts].tolist()
    firsts = cb[heads].tolist()
    top = (offsets[heads] >> SHARD_BITS).tolist() if sharded else [0] * len(heads)
    return [
        ((c, values[h]), shard, listed[a:b] if b - a < OR_MIN_BITS else in_shard[a:b])
        for c, h, shard, a, b in zip(firsts, heads, top, starts, ends, strict=True)
    ]


# a batch's planning: stops once for the value ids of its `unique` rules when not given them
Planning = Generator[None, dict[int, np.ndarray], WritePlan]


def build_plan(
    cols: Columns, offsets: np.ndarray, schema: Schema, keys: Keys, **options: Any
) -> WritePlan:
    """The write plan of one checked batch in one go: `planning` with the value ids given
    (`value_ids`, none for a batch without `unique` rules)."""
    ids = options.pop("value_ids", None) or {}
    return finished(started(planning(cols, offsets, schema, keys, value_ids=ids, **options)), ids)


def planning(
    cols: Columns,
    offsets: np.ndarray,
    schema: Schema,
    keys: Keys,
    batch_id: str | None = None,
    single: bool = False,
    value_ids: dict[int, np.ndarray] | None = None,
    now: float | None = None,
    sum_bound: float | None = None,
    note: str | None = None,
    bitmaps: Container[str] = (),
    marker: str | None = None,
    expire_changes: tuple[ExpireChange, ...] = (),
) -> Planning:
    """The write plan of one checked batch, returned at the end of the generator.

    With `value_ids` None, the batch is planned but its `unique` rules, and then the
    generator stops once to be sent their value ids: the caller numbers the values on the
    server meanwhile (`Recording.record_once`). Otherwise it plans in one go.

    `offsets[i]` is the bit offset of row i's actor, -1 for a row without one; `single` merges
    all groups into one call (a single server has no slots to respect). Keys of a period past
    its retention at `now` (default: the clock) are left out, and the events they would have
    held counted per period in `expired`. `sum_bound` tells the script how far the batch's
    sums can stray in any order (default: the sum of the values' magnitudes; 0 once the caller
    has checked them in order against the stored totals). `note` is what the batch marker
    keeps, handed back when the batch id is seen again. `bitmaps`: actor and value sets known
    to be bitmaps (a bitmap never becomes a set again), sent a bitmap alone. `marker`: the
    batch marker of a single server's call when not the batch's own (a part of the batch).
    `expire_changes`: the stored schema's, which keep a bucket begun before a longer expiry
    to the one it was begun under.

    Rows are grouped in plain Python by one integer per row, the event and its bucket
    (`event code << BUCKET_BITS | bucket base`), so one event costs little and a batch costs
    a dictionary step per row and rule; each key is then named and written once per batch.
    """
    b = Builder(
        keys,
        schema,
        batch_id,
        single,
        sum_bound_of(cols) if sum_bound is None else sum_bound,
        bitmaps,
        marker if single else None,
        expire_changes,
    )
    b.note = note
    n = len(cols)
    if n == 0:
        return WritePlan([], 0)
    hourly = "hour" in schema.periods
    chosen = schema.periods
    names = cols.names
    cb_array = (cols.codes << BUCKET_BITS) | bucket_base(cols.wall, schema)
    large = n >= LARGE_BATCH
    # row by row, the groups as Python ints (a large batch of actors alone never needs them)
    rows_cb: list[int] = cb_array.tolist() if not large or cols.specs else []  # see rowwise

    def split(c: int) -> tuple[str, int]:
        return names[c >> BUCKET_BITS], c & BUCKET_MASK

    if schema.expire or expire_changes:
        clock = time.time() if now is None else now
        live: dict[int, dict[str, str]] = {}

        def labels(bb: int) -> dict[str, str]:
            found = live.get(bb)
            if found is None:
                found = live[bb] = live_labels(bb, schema, clock, expire_changes)
            return found

    else:

        def labels(bb: int) -> dict[str, str]:
            return bucket_labels(bb, chosen)

    # a bucket's day+ and hour labels, kept across batches while no period expires (they
    # then depend on the bucket alone: a backfill's part meets ~1,300 hours)
    daily, hours = ({}, {}) if schema.expire or expire_changes else _label_caches(chosen)

    def day_labels(bb: int) -> dict[str, str]:
        found = daily.get(bb)
        if found is None:
            found = daily[bb] = {p: lb for p, lb in labels(bb).items() if p != "hour"}
        return found

    def labels_of(family: str) -> Callable[[int], dict[str, str]]:
        """The labels of a bucket that a rule family is kept for (`Schema.hourly`)."""
        return labels if schema.periods_of(family) == chosen else day_labels

    # totals: one HINCRBY per (event, bucket)
    metrics: dict[tuple[str, str, str], defaultdict[str, float]] = {}

    def metric(event: str, period: str, label: str) -> defaultdict[str, float]:
        m = metrics.get((event, period, label))
        if m is None:
            m = metrics[(event, period, label)] = defaultdict(float)
        return m

    expired: dict[str, int] = {}
    if large:  # counted in numpy
        present, counts = np.unique(cb_array, return_counts=True)
        per_bucket = Counter(dict(zip(present.tolist(), counts.tolist(), strict=True)))
    else:
        per_bucket = Counter(rows_cb)

    def count_events(per_group: Iterable[tuple[int, int]], kept_periods: Iterable[str]) -> None:
        for c, cnt in per_group:
            event, bb = split(c)
            kept = labels(bb)
            for period in kept_periods:
                if period in kept:  # (`metric`, inlined: a backfill counts ~1,300 hours)
                    target = (event, period, kept[period])
                    m = metrics.get(target)
                    if m is None:
                        m = metrics[target] = defaultdict(float)
                    m["n"] += cnt
                else:
                    expired[period] = expired.get(period, 0) + cnt

    if hourly:  # an hour's total per hour, the rest per day: a day's hours are one group
        count_events(per_bucket.items(), ("hour",))
        count_events(_by_day(per_bucket).items(), chosen[1:])
    else:
        count_events(per_bucket.items(), chosen)
    span: dict[str, list[int]] = {}  # first and last day number per event
    for c in per_bucket:
        event, bb = split(c)
        day = bb // 24 if hourly else bb
        seen = span.get(event)
        if seen is None:
            span[event] = [day, day]
        else:
            seen[0], seen[1] = min(seen[0], day), max(seen[1], day)

    meta = b.group(keys.meta_tag)
    meta.args += ["S", meta.key(keys.events), len(names), *names]
    meta.args += ["L", meta.key(keys.span_first), len(names)]
    meta.args += [x for e in names for x in (e, span[e][0])]
    meta.args += ["G", meta.key(keys.span_last), len(names)]
    meta.args += [x for e in names for x in (e, span[e][1])]

    # actor bitmaps, per (event and bucket, shard); segments add the value to the group
    per_shard: dict[int, dict[str, list[Chunk]]] = defaultdict(dict)
    key_period: dict[str, tuple[str, str]] = {}
    rowwise = not large or bool(cols.specs)  # whether rows are grouped in plain Python
    offs: list[int] = offsets.tolist() if rowwise else []
    sharded = bool(offsets.max() >= SHARD_SIZE)
    in_shard = (
        (np.where(offsets >= 0, offsets & SHARD_MASK, -1) if sharded else offsets).tolist()
        if rowwise
        else []
    )
    actor_keys: dict[tuple[int, str, str], str] = {}

    # (period, label, actor set key) per group, shard and family: a group's segment values
    # share them
    targets_of: dict[tuple[int, int, Callable[..., Any]], list[tuple[str, str, str]]] = {}

    def add_chunks(
        c: int, shard: int, chunks: list[Chunk], segment: str, kept: Callable[..., Any]
    ) -> None:
        targets = targets_of.get((c, shard, kept))
        if targets is None:
            event, bb = split(c)
            targets = targets_of[(c, shard, kept)] = []
            for period, label in kept(bb).items():
                base_key = actor_keys.get((shard, event, label))
                if base_key is None:
                    base_key = actor_keys[(shard, event, label)] = keys.actors(shard, event, label)
                targets.append((period, label, base_key))
        dest = per_shard[shard]
        for period, label, base_key in targets:
            key = base_key + segment
            found = dest.get(key)
            if found is None:
                dest[key] = list(chunks)
                key_period[key] = (period, label)
            else:
                found += chunks

    def hour_label(bb: int) -> dict[str, str]:
        found = hours.get(bb)
        if found is None:
            found = hours[bb] = {p: lb for p, lb in labels(bb).items() if p == "hour"}
        return found

    def shard_groups(row_keys: Iterable[Any]) -> list[tuple[Any, int, list[int]]]:
        """(row key, shard, offsets) per group of rows with an actor."""
        if not sharded:
            return [(k, 0, chunk) for k, chunk in _grouped(row_keys, offs).items()]
        keyed = ((k, o >> SHARD_BITS) for k, o in zip(row_keys, offs, strict=True))
        return [(k, shard, chunk) for (k, shard), chunk in _grouped(keyed, in_shard).items()]

    actor_groups: list[tuple[Any, int, Chunk]]
    top_shard = int(offsets.max()) >> SHARD_BITS
    if large and top_shard <= SHARD_KEY_MASK:  # grouped by sorting in numpy, not row by row
        with_actor = offsets >= 0
        if sharded:  # the group key holds the shard in its low bits
            grouped = _grouped_array(
                (cb_array << SHARD_KEY_BITS) | (offsets >> SHARD_BITS),
                offsets & SHARD_MASK,
                with_actor,
            )
            actor_groups = [(k >> SHARD_KEY_BITS, k & SHARD_KEY_MASK, ch) for k, ch in grouped]
        else:
            actor_groups = [(k, 0, ch) for k, ch in _grouped_array(cb_array, offsets, with_actor)]
    else:
        if not rowwise:  # a large batch of actors alone did not list its rows: ids past the
            # shards a group key holds (2^33 and up) are grouped row by row all the same
            rows_cb, offs = cb_array.tolist(), offsets.tolist()
            in_shard = np.where(offsets >= 0, offsets & SHARD_MASK, -1).tolist()
        actor_groups = list(shard_groups(rows_cb))
    if hourly:  # an hour's bits to its hour; its day's, week's, ... once per day
        days: dict[tuple[int, int], list[Chunk]] = {}
        for c, shard, chunk in actor_groups:
            bb = c & BUCKET_MASK
            kept = hours.get(bb)  # (`hour_label`, its cache read here first)
            hour = (kept if kept is not None else hour_label(bb)).get("hour")  # (none: past
            # its retention)
            if hour is not None:  # add_bits, with less work a group: a backfill has many
                key = keys.actors(shard, names[c >> BUCKET_BITS], hour)
                dest = per_shard[shard]
                found = dest.get(key)
                if found is None:
                    dest[key] = [chunk]
                    key_period[key] = ("hour", hour)
                else:
                    found.append(chunk)
            days.setdefault((c - (c & BUCKET_MASK) % 24, shard), []).append(chunk)
        day_groups = [(c, shard, chunks) for (c, shard), chunks in days.items()]
    else:
        day_groups = [(c, shard, [chunk]) for c, shard, chunk in actor_groups]
    for c, shard, chunks in day_groups:
        add_chunks(c, shard, chunks, "", day_labels if hourly else labels)
        per_shard[shard].setdefault(keys.all_actors(shard), []).extend(chunks)
    if per_shard:
        shards = sorted(per_shard)
        meta.args += ["S", meta.key(keys.shards), len(shards), *shards]

    # property columns: counts, top, distinct values, segments, sums. Rows are grouped by
    # their event and bucket at once, so one column serves every event of the batch.
    # a family kept per day groups its rows by day (a day's hours are one group, not 24): a
    # row's group is then its event and the first hour of its day
    groupings: dict[bool, tuple[list[int], int | None]] = {}

    def groups_of(family: Callable[[int], dict[str, str]]) -> tuple[list[int], int | None]:
        """Each row's group, and the only group when all rows share one."""
        daily = hourly and family is not labels
        found = groupings.get(daily)
        if found is None:
            rows = [c - (c & BUCKET_MASK) % 24 for c in rows_cb] if daily else rows_cb
            distinct = set(rows)
            found = groupings[daily] = (rows, distinct.pop() if len(distinct) == 1 else None)
        return found

    row_groups: dict[bool, dict[int, list[int]]] = {}

    def rows_of(family: Callable[[int], dict[str, str]]) -> dict[int, list[int]]:
        """Each group's rows, in order, the groups in the order they first appear."""
        daily = hourly and family is not labels
        found = row_groups.get(daily)
        if found is None:
            groups = groups_of(family)[0]
            found = row_groups[daily] = _grouped(groups, range(len(groups)))
        return found

    later: list[tuple[int, Grouped, list[int]]] = []  # unique rules waiting for their ids
    for idx, (kind, prop, by) in enumerate(cols.specs):
        values = cols.values.get(idx)
        family = labels_of(kind)
        cb, only = groups_of(family)
        to = Grouped(b, keys, split, family)
        if kind == "sum":
            _plan_sums(to, metric, cb, cols.amounts[idx], values, prop, by)
        elif kind in ("count", "top"):
            assert values is not None
            by_bucket: dict[int, list[tuple[str, float]]] = defaultdict(list)
            recount = summed = None
            if only is not None:  # one event and bucket (a live stream): count values alone
                by_bucket[only] = _counted(values)
            elif large:  # each row read once, a week's or a year's buckets summed in numpy
                tally = Tally(cb, values)
                by_bucket = {c: [] for c in tally.groups}  # (the buckets alone)
                summed = tally.summed
            else:  # a bucket's values counted at once (in C), its rows found once a batch
                grouped_rows = rows_of(family)
                texts: dict[Any, str] = {}
                for c, rows in grouped_rows.items():
                    items = _counted(map(values.__getitem__, rows), texts)
                    if items:
                        by_bucket[c] = items
                recount = partial(_recounted, values, grouped_rows, texts)
            name_key = partial(_prop_key, keys.counts if kind == "count" else keys.top, prop)
            _emit_scores(to, name_key, by_bucket, recount=recount, summed=summed)
        elif kind == "approx":
            assert values is not None
            _plan_approx(to, prop, cb, values)
        elif kind == "unique":
            if value_ids is None:  # planned last, once numbered
                later.append((idx, to, cb))
                continue
            assert values is not None
            _plan_distinct(to, prop, cb, _ids_of(value_ids, idx, prop), values)
        else:  # segment: actor bits per value
            assert values is not None
            suffixes: dict[Any, str] = {}
            segment_groups: Iterable[tuple[Any, int, Chunk]]
            if large:  # grouped by sorting in numpy, not row by row
                segment_groups = _segment_groups(
                    np.asarray(cb, dtype=np.int64), values, offsets, sharded
                )
            else:
                valued = (
                    (c, v) if v is not None else None for c, v in zip(cb, values, strict=True)
                )
                segment_groups = shard_groups(valued)
            for group, shard, chunk in segment_groups:
                if group is None:
                    continue
                value = group[1]
                suffix = suffixes.get(value)
                if suffix is None:
                    suffix = suffixes[value] = keys.segment(prop, encode_value(value))
                add_chunks(group[0], shard, [chunk], suffix, family)

    tags = {event: keys.event_tag(event) for event in names}
    for (event, period, label), m in metrics.items():
        if len(m) == 1:  # an event count alone (a backfill's hours): one field, no lists
            [(f, v)] = m.items()
            if not f.startswith("s:"):
                b.increment(keys.metrics(event, label), f, int(v), period, label, tags[event])
                continue
        ints: list[tuple[str, Any]] = []
        floats: list[tuple[str, Any]] = []
        for f, v in m.items():
            if f.startswith("s:"):
                floats.append((f, float_text(v)))
            else:
                ints.append((f, int(v)))
        key, tag = keys.metrics(event, label), keys.event_tag(event)
        b.pairs("H", key, ints, period, label, tag)
        if floats:
            b.pairs("F", key, floats, period, label, tag)
    for shard, by_key in per_shard.items():
        b.bits(keys.shard_tag(shard), by_key, key_period)
    if later:
        numbered = yield
        for idx, to, cb in later:
            prop = cols.specs[idx][1]
            _plan_distinct(to, prop, cb, _ids_of(numbered, idx, prop), cols.values[idx])

    return WritePlan(b.finish(), n, expired)


def started(stages: Planning) -> Planning | WritePlan:
    """`planning` run until it stops for value ids, or its plan if it needs none."""
    try:
        next(stages)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    return stages


def finished(stages: Planning | WritePlan, value_ids: dict[int, np.ndarray]) -> WritePlan:
    """The plan of a `started` planning, sent the value ids it stopped for."""
    if isinstance(stages, WritePlan):
        return stages
    try:
        stages.send(value_ids)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("planning stopped twice")


def _ids_of(value_ids: dict[int, np.ndarray], idx: int, prop: str) -> np.ndarray:
    ids = value_ids.get(idx)
    if ids is None:
        raise ValueError(f"no value ids for the unique rule {prop!r}")
    return ids


def _counted(values: Iterable[Any], texts: dict[Any, str] | None = None) -> list[tuple[str, float]]:
    """(member, how many) of the values present, in the order they first appear (counted in C);
    `texts` remembers the member text of compound values (tuples)."""
    counted = Counter(values)
    counted.pop(None, None)
    if texts is None:
        return [(member_text(v), n) for v, n in counted.items()]
    out: list[tuple[str, float]] = []
    for v, n in counted.items():
        if type(v) is not str:
            text = texts.get(v)
            if text is None:
                text = texts[v] = member_text(v)
            v = text
        out.append((v, n))
    return out


def _recounted(
    values: list[Any],
    rows_of: Mapping[int, list[int]],
    texts: dict[Any, str],
    buckets: Iterable[int],
) -> list[tuple[str, float]]:
    """`_counted` of the rows of several buckets at once (a week of a backfill's days): counting
    their rows again in C costs less than adding up their counts member by member."""
    rows = chain.from_iterable(map(rows_of.__getitem__, buckets))
    return _counted(map(values.__getitem__, rows), texts)


def _prop_key(key_of: Callable[[str, str, str], str], prop: str, event: str, label: str) -> str:
    return key_of(event, label, prop)


class Grouped(NamedTuple):
    """Where a property column's rows go, group by group (a group: an event and a bucket): the
    plan being built, the key names, a group's event and bucket base (`split`), and the periods
    and labels the column's family keeps of a bucket (`labels`)."""

    b: Builder
    keys: Keys
    split: Callable[[int], tuple[str, int]]
    labels: Callable[[int], dict[str, str]]


def _emit_scores(
    to: Grouped,
    key_of: Callable[[str, str], str],
    by_bucket: dict[int, list[tuple[str, float]]],
    code: str = "Y",
    recount: Callable[[list[int]], list[tuple[str, float]]] | None = None,
    summed: Callable[[list[tuple[int, ...]]], list[Items]] | None = None,
) -> None:
    """Score increments per bucket -> one op per distinct content: a key fed by several
    buckets (a week of a backfill) gets their sum once (`recount`, given the buckets, makes it
    from the rows when it can); keys fed by the same buckets (a day and its week, month and
    year in a live stream) share one list of increments. `summed` (a `Tally`'s) gives the
    increments of every set of buckets at once, `by_bucket` then naming the buckets alone."""
    b, keys, split, labels = to
    if len(by_bucket) == 1 and summed is None:  # one event and bucket (a live batch): one op
        [(c, items)] = by_bucket.items()
        event, bb = split(c)
        named = [(key_of(event, label), period, label) for period, label in labels(bb).items()]
        if named and items:  # (no items: the bucket's events held no value)
            b.scores(keys.event_tag(event), named, items, code)
        return
    sources: dict[tuple[str, str, str], list[int]] = {}  # (event, period, label) -> buckets
    for c in by_bucket:
        event, bb = split(c)
        for period, label in labels(bb).items():
            found = sources.get((event, period, label))
            if found is None:
                sources[(event, period, label)] = [c]
            else:
                found.append(c)
    shared: dict[tuple[int, ...], list[tuple[str, str, str]]] = defaultdict(list)
    for target, cs in sources.items():
        shared[tuple(cs)].append(target)
    every = summed(list(shared)) if summed is not None else None
    for j, (feeders, targets) in enumerate(shared.items()):
        if every is not None:
            items = every[j]
        elif len(feeders) == 1:
            items = by_bucket[feeders[0]]
        elif recount is not None:
            items = recount(list(feeders))
        else:
            total: defaultdict[str, float] = defaultdict(float)
            for c in feeders:
                for member, incr in by_bucket[c]:
                    total[member] += incr
            items = [(m, int(v) if v == int(v) else v) for m, v in total.items()]
        event = targets[0][0]
        named = [(key_of(event, label), period, label) for _, period, label in targets]
        b.scores(keys.event_tag(event), named, items, code)


def _plan_sums(
    to: Grouped,
    metric: Callable[[str, str, str], defaultdict[str, float]],
    cb: list[int],
    amounts: np.ndarray,
    by_values: list[Any] | None,
    prop: str,
    by: str | None,
) -> None:
    """Running totals (and how many values made them, so averages are exact), added in row
    order."""
    keys, split, labels = to.keys, to.split, to.labels
    acc: dict[Any, list[float]] = {}
    if by is None and len(cb) >= LARGE_BATCH:  # summed in numpy, in the same row order
        rows = np.flatnonzero(~np.isnan(amounts))
        buckets, inverse = np.unique(np.asarray(cb)[rows], return_inverse=True)
        totals = np.bincount(inverse, weights=amounts[rows]).tolist()
        counts = np.bincount(inverse).tolist()
        acc = {c: [t, k] for c, t, k in zip(buckets.tolist(), totals, counts, strict=True)}
    elif by is None:
        for c, amount in zip(cb, amounts.tolist(), strict=True):
            if amount == amount:  # NaN: no value
                a = acc.get(c)
                if a is None:
                    acc[c] = [amount, 1]
                else:
                    a[0] += amount
                    a[1] += 1
    if by is None:
        sf, kf = metric_sum_field(prop), metric_count_field(prop)
        for c, (total, cnt) in acc.items():
            event, bb = split(c)
            for period, label in labels(bb).items():
                m = metric(event, period, label)
                m[sf] += total
                m[kf] += cnt
        return
    assert by_values is not None
    for c, amount, label_value in zip(cb, amounts.tolist(), by_values, strict=True):
        if amount == amount and label_value is not None:
            a = acc.get((c, label_value))
            if a is None:
                acc[(c, label_value)] = [amount, 1]
            else:
                a[0] += amount
                a[1] += 1
    by_bucket: dict[int, list[tuple[str, float]]] = defaultdict(list)
    for (c, label_value), (total, cnt) in acc.items():
        member = member_text(label_value)
        by_bucket[c] += [("s:" + member, total), ("k:" + member, int(cnt))]
    _emit_scores(to, lambda e, lb: keys.sums_by(e, lb, prop, by), by_bucket, code="Z")


def _plan_distinct(
    to: Grouped, prop: str, cb: list[int], ids: np.ndarray, values: list[Any]
) -> None:
    """Bits of value ids per (event, bucket): a value's id is the same in every bucket, so a
    range's distinct count is one OR; sent like actor bits (packed offsets or a bitmap)."""
    b, keys, split, labels = to
    by_tag: dict[str, dict[str, list[Chunk]]] = defaultdict(dict)
    key_period: dict[str, tuple[str, str]] = {}
    id_list = ids.tolist()
    if UNNUMBERED in id_list:  # values new to a small batch: numbered by the write itself
        new: dict[int, dict[str, None]] = defaultdict(dict)
        for c, vid, value in zip(cb, id_list, values, strict=True):
            if vid == UNNUMBERED:
                new[c][member_text(value)] = None
        for c, members in new.items():
            event, bb = split(c)
            targets = [(keys.distinct(event, lb, prop), p, lb) for p, lb in labels(bb).items()]
            b.number(keys.event_tag(event), targets, event, prop, list(members))
    for c, chunk in _grouped(cb, id_list).items():
        event, bb = split(c)
        dest = by_tag[keys.event_tag(event)]
        for period, label in labels(bb).items():
            key = keys.distinct(event, label, prop)
            dest.setdefault(key, []).append(chunk)
            key_period[key] = (period, label)
    for tag, by_key in by_tag.items():
        b.bits(tag, by_key, key_period)


def _plan_approx(to: Grouped, prop: str, cb: list[int], values: list[Any]) -> None:
    """The distinct values of each (event, bucket), added to the HyperLogLog of every period of
    the bucket (its day, week, month, year) by one op."""
    b, keys, split, labels = to
    by_bucket: dict[int, set[str]] = defaultdict(set)
    for c, value in zip(cb, values, strict=True):
        if value is not None:
            by_bucket[c].add(member_text(value))
    for c, members in by_bucket.items():
        event, bb = split(c)
        targets = [(keys.approx(event, lb, prop), p, lb) for p, lb in labels(bb).items()]
        b.estimate(keys.event_tag(event), targets, sorted(members))


def sum_bound_of(cols: Columns) -> float:
    """The largest sum of magnitudes of one summed property's values in the batch: no total
    the batch adds to can move further than this, whatever the order of its events."""
    bound = 0.0
    if len(cols) <= 16:  # a few values (one event's): numpy's set-up costs more than the sum
        for amounts in cols.amounts.values():
            bound = max(bound, sum(abs(a) for a in amounts.tolist() if a == a))
        return bound
    for amounts in cols.amounts.values():
        present = amounts[~np.isnan(amounts)]
        if present.size:
            with np.errstate(over="ignore"):  # inf is an answer here: the batch is at risk
                bound = max(bound, float(np.abs(present).sum()))
    return bound
