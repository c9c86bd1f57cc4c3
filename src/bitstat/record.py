"""Recording, written once for the sync and the async API: check a batch, number its ids, plan
its writes and apply them all or nothing, rejecting alone the events whose sums would overflow.

A mixin of `ops.Namespace`, whose state (schema, key names, id caches) it uses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import sums
from .calls import Call, Op
from .errors import InvalidEvent, ServerError
from .events import Columns, parse_batch
from .keys import REVERSE_BUCKET_BITS, Keys, member_text
from .plan import UNNUMBERED, build_plan, sum_bound_of
from .schema import Schema

DEFAULT_BATCH_TTL = 7 * 86400  # how long a batch id is remembered: retries come sooner
ID_CACHE_LIMIT = 2_000_000
SUM_REFUSED = -1  # apply.lua's answer when a sum would overflow: nothing of the group written
SUM_RETRIES = 3
SMALL_BATCH = 64  # up to this many events, values new to this client are numbered by the write


@dataclass
class TrackResult:
    """What `track_many` did: how many events were recorded, which were rejected and why, and
    per period how many recorded events fell in buckets already past that period's retention
    (`Schema.expire`), so that period keeps nothing of them."""

    recorded: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    expired: dict[str, int] = field(default_factory=dict)


def noted(marker: bytes) -> list[tuple[int, str]]:
    """The events a batch had rejected for their sums, as its marker keeps them ("1": none)."""
    return [] if marker == b"1" else [(int(i), str(why)) for i, why in json.loads(marker)]


class Recording:
    """The recording operations of a namespace."""

    keys: Keys
    schema: Schema
    cluster: bool
    batch_ttl: int
    id_cache: dict[str, int]
    value_cache: dict[tuple[str, str], dict[str, int]]

    def track(self, event: str | Mapping[str, Any], props: Mapping[str, Any]) -> Op[None]:
        if isinstance(event, Mapping):
            if props:
                raise InvalidEvent("pass either a mapping or keyword properties, not both")
            record: Mapping[str, Any] = event
        else:
            if "event" in props:
                raise InvalidEvent("the event name is given twice", field="event")
            record = {"event": event, **props}
        result = yield from self.track_many([record], None, None)
        if result.rejected:
            raise InvalidEvent(result.rejected[0][1])

    def track_many(
        self, events: Iterable[Mapping[str, Any]], batch_id: str | None, now: float | None
    ) -> Op[TrackResult]:
        if batch_id is not None and (not isinstance(batch_id, str) or not batch_id):
            raise InvalidEvent(f"batch_id must be non-empty text, got {batch_id!r}")
        return (yield from self.track_columns(parse_batch(events, self.schema, now), batch_id))

    def track_columns(self, cols: Columns, batch_id: str | None) -> Op[TrackResult]:
        """Record a checked batch, given as columns (`track_many` parses dicts into them; a
        data frame is turned into them directly)."""
        if batch_id:
            # a batch seen before answers as it did then, not by the totals of today; the
            # namespace's marker is written last, so it says the whole batch is in (a batch
            # cut short on a cluster has it not, and its missing groups are written now)
            seen = yield Call("get", (self.keys.batch(self.keys.meta_tag, batch_id),))
            if seen is not None:
                return TrackResult(0, sorted(cols.rejected + noted(seen)))
        if not len(cols):
            return TrackResult(0, cols.rejected)
        if isinstance(cols.actors, np.ndarray):
            offsets = cols.actors
        else:
            offsets = np.full(len(cols), -1, dtype=np.int64)
            present = [i for i, a in enumerate(cols.actors) if a is not None]
            if present:
                found = yield from self.offsets([cols.actors[i] for i in present])
                offsets[present] = found
        value_ids = yield from self.value_ids(cols)
        rejected = list(cols.rejected)
        overflow: list[tuple[int, str]] = []
        clock = time.time()
        # the batch's values, in any order, move no total further than this
        bound = sum_bound_of(cols)
        check = not bound <= sums.LIMIT  # the batch alone could pass the limit
        applied_tags: set[str] = set()
        applied = False
        for _ in range(SUM_RETRIES):
            if check:  # some total could overflow: find the events that would carry it there
                bad = yield from self.overflowing(cols, applied_tags, clock)
                if bad:
                    overflow += [(cols.index[r], why) for r, why in bad]
                    keep = np.setdiff1d(np.arange(len(cols)), [r for r, _ in bad])
                    cols, offsets = cols.take(keep), offsets[keep]
                    value_ids = {k: v[keep] for k, v in value_ids.items()}
                    if not len(cols):  # nothing left to write: the id still answers so
                        if batch_id:
                            marker = self.keys.batch(self.keys.meta_tag, batch_id)
                            yield Call("mark", (marker, json.dumps(overflow), self.batch_ttl))
                        return TrackResult(0, sorted(rejected + overflow))
            plan = build_plan(
                cols,
                offsets,
                self.schema,
                self.keys,
                batch_id=batch_id,
                single=not self.cluster,
                value_ids=value_ids,
                now=clock,
                sum_bound=0.0 if check else bound,  # once checked in order: final totals only
                # the marker keeps the events rejected for their sums: a retry of the batch
                # reports them, though the totals it would be checked against have moved on
                note=json.dumps(overflow) if batch_id and overflow else None,
            )
            # on a cluster, groups applied by an earlier try are not sent again (events
            # rejected since belong to the group that refused, so those groups are unchanged)
            groups = [g for g in plan.groups if g.tag not in applied_tags]
            results = yield Call("apply", (groups, self.batch_ttl if batch_id else 0))
            for g, result in zip(groups, results, strict=False):
                if isinstance(result, bytes):  # this batch id was applied before
                    applied_tags.add(g.tag)
                    overflow = noted(result)
                elif result == 1:
                    applied_tags.add(g.tag)
                    applied = True
            if SUM_REFUSED not in results:
                break
            check = True
        else:
            raise ServerError(
                f"recording a batch: sums kept overflowing after {SUM_RETRIES} tries"
                " (other writers adding to the same totals?); the groups applied so far are"
                " kept, send the batch again with the same batch_id"
            )
        recorded = plan.recorded if applied or batch_id is None else 0
        # a batch recorded before (its id seen) reports nothing of what it held
        return TrackResult(
            recorded, sorted(rejected + overflow), dict(plan.expired) if recorded else {}
        )

    def overflowing(
        self, cols: Columns, applied_tags: set[str], clock: float
    ) -> Op[list[tuple[int, str]]]:
        """(row, reason) of the events that would carry a total past the limit, in order and
        against the stored totals; totals under tags this batch has written already are left
        out (their stored value holds the batch's share)."""
        rows = sums.without_tags(
            sums.row_targets(cols, self.schema, self.keys, clock), applied_tags
        )
        targets = list(dict.fromkeys(t for _, items in rows for t, *_ in items))
        stored = yield Call("read_sums", (targets,))
        return sums.overflowing(rows, dict(zip(targets, stored, strict=True)))

    def offsets(self, canonical: Sequence[str]) -> Op[np.ndarray]:
        """Bit offsets of mapped ids (ids="map"), created on the server where new."""
        cache = self.id_cache
        missing = list(dict.fromkeys(c for c in canonical if c not in cache))
        if missing:
            if len(cache) > ID_CACHE_LIMIT:
                cache.clear()
            k = self.keys
            forward = [k.id_forward(c) for c in missing]
            found = yield Call(
                "map_ids", (k.ids_next, f"{k.ids_tag}:r:", REVERSE_BUCKET_BITS, forward, missing)
            )
            cache.update(zip(missing, found, strict=True))
        return np.array([cache[c] for c in canonical], dtype=np.int64)

    def value_ids(self, cols: Columns) -> Op[dict[int, np.ndarray]]:
        """Per `unique` rule, the id of each row's value (-1: none), numbered per event and
        property on the server (get or create), remembered here. In a small batch, a value not
        numbered yet is UNNUMBERED: the write itself numbers it (one round trip, not two)."""
        out: dict[int, np.ndarray] = {}
        for idx, (kind, prop, _) in enumerate(cols.specs):
            if kind != "unique":
                continue
            values = cols.values[idx]
            ids = np.full(len(cols), -1, dtype=np.int64)
            by_event: dict[int, tuple[list[int], list[str]]] = {}  # code: (rows, members)
            for r, (code, v) in enumerate(zip(cols.codes.tolist(), values, strict=True)):
                if v is not None:
                    found = by_event.get(code)
                    if found is None:
                        found = by_event[code] = ([], [])
                    found[0].append(r)
                    found[1].append(v if type(v) is str else member_text(v))
            for code, (rows, members) in by_event.items():
                event = cols.names[code]
                cache = self.value_cache.setdefault((event, prop), {})
                missing = list(dict.fromkeys(m for m in members if m not in cache))
                if missing and len(cols) <= SMALL_BATCH:
                    ids[rows] = [cache.get(m, UNNUMBERED) for m in members]
                    continue
                if missing:
                    if len(cache) > ID_CACHE_LIMIT:
                        cache.clear()
                    k = self.keys
                    found = yield Call(
                        "map_values",
                        (k.value_ids(event, prop), k.value_next(event, prop), missing),
                    )
                    cache.update(zip(missing, found, strict=True))
                ids[rows] = [cache[m] for m in members]
            out[idx] = ids
        return out
