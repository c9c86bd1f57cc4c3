"""The ops of a write plan: per hash tag, one apply.lua call (`Group`), built by `Builder`.

Pure: no I/O. What each op means is apply.lua's contract header; here they are only written.
Actor and value bits go as offsets (few bits, or a set sparse enough for the script to keep it
as a Redis set) or as one client-built bitmap merged with BITOP OR (many bits).
"""

from __future__ import annotations

import struct
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from .keys import Keys, value_bucket_of
from .periods import expire_at
from .schema import ExpireChange, Schema, kept_for

OR_MIN_BITS = 32  # fewer bits are never worth a bitmap
WITH_BITMAP = 16  # offsets from this many on also go as a bitmap, for targets that are bitmaps
# Setting one bit (SETBIT) costs about what OR-merging this many bytes of bitmap does.
OR_BYTES_PER_BIT = 300
# For sets known to be bitmaps, a payload this small always goes as a bitmap (it saves the
# script a call a bit); a larger one only when dense (OR_BYTES_PER_BIT)
SMALL_PAYLOAD = 8192
SET_MAX = 512  # apply.lua's: the most members a set keeps before it becomes a bitmap
FEW_SORTED = 256  # offsets in lists up to this many are sorted in Python, not numpy (faster)
FEW_PAIRS = 4  # a set given this many offsets or fewer gets them as (k, offset) pairs (op E)
Chunk = list[int] | np.ndarray  # bit offsets of one group of rows


@dataclass
class Group:
    """The ops of one script call; every key in it shares one hash tag (one cluster slot)."""

    tag: str
    batch_key: str
    scratch_key: str
    keys: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    sums: bool = False  # holds sums, which the script may refuse (see apply.lua): sent first
    # hashes given one increment of one field each (an hour's event count): field -> (key
    # index, increment) pairs, sent packed in one N op a field (`Builder.finish`)
    increments: dict[str, list[int]] = field(default_factory=dict)
    ttl: int | None = None  # seconds its batch marker is kept, if not the batch's
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
    expired: dict[str, int] = field(default_factory=dict)


class Builder:
    """The groups of one plan, op by op; `finish` orders them for the script calls."""

    def __init__(
        self,
        keys: Keys,
        schema: Schema,
        batch_id: str | None,
        single: bool,
        sum_bound: float,
        bitmaps: Container[str] = (),
        marker: str | None = None,
        changes: tuple[ExpireChange, ...] = (),
    ) -> None:
        self.sum_bound = sum_bound
        self.changes = changes  # the stored schema's expiry changes (`kept_for`)
        self.marker = marker  # the batch marker of a single server's call, if not the batch's
        self.bitmaps = bitmaps  # sets known to be bitmaps: sent a bitmap alone
        self.note: str | None = None
        self.keys = keys
        self.schema = schema
        self.batch_id = batch_id
        self.single = single
        self.groups: dict[str, Group] = {}
        self.expiry: dict[tuple[str, str], int] = {}
        self.expiring = bool(schema.expire or changes)  # whether any key may get an expiry

    def group(self, tag: str) -> Group:
        if self.single:
            tag = self.keys.meta_tag
        g = self.groups.get(tag)
        if g is None:
            batch = self.marker or self.keys.batch(tag, self.batch_id or None)
            g = self.groups[tag] = Group(tag, batch, self.keys.temp(tag, "apply"))
        return g

    def expire(self, g: Group, key: str, period: str, label: str) -> None:
        if not self.expiring:
            return
        ttl = kept_for(self.schema, self.changes, period, label)
        if ttl is not None:
            self.expiry[(g.tag, key)] = expire_at(period, label, self.schema.timezone, ttl)

    def finish(self) -> list[Group]:
        """Expiry last: a ZUNIONSTORE earlier in the batch would drop a TTL set before it.

        Groups with sums come first: when the script refuses one (a sum would overflow), no
        group that the events rejected for it also write to has been applied yet. The
        namespace's own group comes last: its batch marker then says the whole batch is in."""
        for g in self.groups.values():  # (before the X ops: an expiry needs its key there)
            for name, pairs in g.increments.items():
                g.args += ["N", name, len(pairs) // 2, _packed(pairs)]
        for (tag, key), at in self.expiry.items():
            g = self.groups[tag]
            g.args += ["X", g.key(key), at]
        for g in self.groups.values():
            if g.sums:
                g.args += ["C", float_text(self.sum_bound)]
            if self.note is not None:
                g.args += ["R", self.note]
        meta = self.keys.meta_tag
        return sorted(self.groups.values(), key=lambda g: (not g.sums, g.tag == meta))

    def scores(
        self,
        tag: str,
        targets: list[tuple[str, str, str]],
        items: list[tuple[str, float]],
        code: str = "Y",
    ) -> None:
        """Add the same member increments to several sorted sets (a bucket's day, week, ...);
        code "Z" for sums, whose scores the script checks stay finite."""
        g = self.group(tag)
        g.sums = g.sums or code == "Z"
        g.args += [code, len(targets), *(g.key(key) for key, _, _ in targets), len(items)]
        g.args += chain.from_iterable(items)
        if self.expiring:
            for key, period, label in targets:
                self.expire(g, key, period, label)

    def estimate(self, tag: str, targets: list[tuple[str, str, str]], members: list[str]) -> None:
        """Add the same values to several HyperLogLogs (a bucket's day, week, ...)."""
        g = self.group(tag)
        g.args += ["A", len(targets), *(g.key(key) for key, _, _ in targets), len(members)]
        g.args += members
        for key, period, label in targets:
            self.expire(g, key, period, label)

    def number(
        self,
        tag: str,
        targets: list[tuple[str, str, str]],
        event: str,
        prop: str,
        members: list[str],
    ) -> None:
        """Number values of a property on the server (get or create their ids in its value
        buckets) and add them to several sets (a bucket's day, week, ...)."""
        g = self.group(tag)
        k = self.keys
        g.args += ["V", len(targets), *(g.key(key) for key, _, _ in targets)]
        g.args += [g.key(k.value_next(event, prop)), g.key(k.value_ids(event, prop))]
        g.args += [g.key(k.value_layout(event, prop)), k.value_buckets(event, prop), len(members)]
        for value in members:
            g.args += [value, value_bucket_of(value)]
        for key, period, label in targets:
            self.expire(g, key, period, label)

    def bits(
        self, tag: str, by_key: dict[str, list[Chunk]], periods_of: dict[str, tuple[str, str]]
    ) -> None:
        """Add actors (or value ids) to sets: offsets for sparse ones (the script keeps a small
        sparse set as a Redis set), else one OR-merged bitmap per payload."""
        g = self.group(tag)
        expiring = self.expiring
        # keys fed by the very same chunks (a day, its week, month, year) share one op
        shared: dict[tuple[int, ...], tuple[Offsets | Bitmap, list[int], list[str]]] = {}
        singles: list[int] = []  # (k, offset) pairs of sets given few offsets: one E op for all
        index = g._index  # (`g.key`, looked up here first: a backfill has many keys)
        for key, chunks in by_key.items():
            if expiring and key in periods_of:
                self.expire(g, key, *periods_of[key])
            if len(chunks) == 1 and len(chunks[0]) == 1:  # one event's bit: a backfill's hours
                singles += (index.get(key) or g.key(key), int(chunks[0][0]))
                continue
            if sum(map(len, chunks)) <= FEW_PAIRS:  # a few events' bits: a backfill's days
                k = index.get(key) or g.key(key)
                for offset in sorted(set(map(int, chain.from_iterable(chunks)))):
                    singles += (k, offset)
                continue
            ident = tuple(map(id, chunks))
            found = shared.get(ident)
            if found is None:
                found = shared[ident] = (encode_bits(chunks), [], [])
            found[1].append(g.key(key))
            found[2].append(key)
        payloads: dict[Bitmap, list[int]] = {}
        for encoded, targets, names in shared.values():
            if isinstance(encoded, Bitmap):
                payloads.setdefault(encoded, []).extend(targets)
                continue
            if len(encoded.offsets) <= FEW_PAIRS:  # (fewer than a bitmap is ever worth)
                for k in targets:
                    for offset in encoded.offsets:
                        singles += (k, offset)
                continue
            known = sum(n in self.bitmaps for n in names) if _worth_a_bitmap(encoded) else 0
            if known == len(names):  # bitmaps all: OR-merged with the offsets' bitmap
                payloads.setdefault(_bitmap(np.asarray(encoded.offsets)), []).extend(targets)
                continue
            code = "B"
            if known:
                # some are bitmaps: the script also gets the offsets as a bitmap for them (one
                # BITOP, not a SETBIT per offset); sets, or keys not known to be bitmaps yet,
                # take the offsets (the script reports bitmaps, known from then on)
                bitmap = _bitmap(np.asarray(encoded.offsets))
                g.args += ["P", bitmap.first, bitmap.payload]
                code = "W"
            n = len(encoded.offsets)
            g.args += [code, len(targets), *targets, n, encoded.high, _packed(encoded.offsets)]
        if singles:
            g.args += ["E", len(singles) // 2, _packed(singles)]
        for bitmap, targets in payloads.items():
            g.args += ["P", bitmap.first, bitmap.payload]
            for k in targets:
                g.args += ["O", k]

    def increment(self, key: str, field: str, incr: int, period: str, label: str, tag: str) -> None:
        """Add `incr` to one field of a hash."""
        g = self.group(tag)
        if 0 <= incr <= UINT32:
            # most of a backfill's hours hold one event or two: packed with the others' in one
            # N op, 8 bytes, not 5 arguments
            g.increments.setdefault(field, []).extend((g.key(key), incr))
        else:
            g.args += ["H", g.key(key), 1, field, incr]
        if self.expiring:
            self.expire(g, key, period, label)

    def pairs(
        self,
        code: str,
        key: str,
        items: Iterable[tuple[str, Any]],
        period: str,
        label: str,
        tag: str,
    ) -> None:
        flat = list(chain.from_iterable(items))
        if not flat:
            return
        if code == "H" and len(flat) == 2 and type(flat[1]) is int:
            self.increment(key, flat[0], flat[1], period, label, tag)
            return
        g = self.group(tag)
        g.sums = g.sums or code == "F"
        g.args += [code, g.key(key), len(flat) // 2, *flat]
        if self.expiring:
            self.expire(g, key, period, label)


class Offsets(NamedTuple):
    high: int
    offsets: list[int]


class Bitmap(NamedTuple):
    first: int  # the byte `payload` starts at
    payload: bytes


def _worth_a_bitmap(encoded: Offsets) -> bool:
    """Whether offsets for sets that are bitmaps already go better as a bitmap to OR-merge:
    enough of them, in a small payload or a dense one. (A few offsets spread over a wide id
    space make a payload of mostly zero bytes: 60 days of random ids below 1M sent 1 KB an
    event, and recorded at 40% of the rate of offsets.)"""
    n = len(encoded.offsets)
    span = (encoded.high >> 3) - (encoded.offsets[0] >> 3) + 1
    return n >= WITH_BITMAP and (span <= SMALL_PAYLOAD or n * OR_BYTES_PER_BIT >= span)


UINT32 = 2**32 - 1


def _packed(offsets: list[int]) -> bytes:
    """Offsets (and key indexes) as little-endian uint32s: one argument, not one a number (a
    bit offset in Redis is below 2^32)."""
    return struct.pack(f"<{len(offsets)}I", *offsets)


def sparse(count: int, high: int) -> bool:
    """Whether a set of `count` offsets up to `high` is cheaper as a Redis set (apply.lua's rule):
    few enough to be an intset, 4 bytes a member against a bit per offset."""
    return count <= SET_MAX and count * 32 < high


def encode_bits(chunks: list[Chunk]) -> Offsets | Bitmap:
    """The distinct offsets, when they may go to a sparse set or are few; else a bitmap of
    them to OR-merge (one BITOP costs less than setting many bits one by one)."""
    if len(chunks) == 1 and len(chunks[0]) == 1:  # one event's bit: most hour keys of a backfill
        one = int(chunks[0][0])
        return Offsets(one, [one])
    total = sum(map(len, chunks))
    if total < OR_MIN_BITS:  # few bits (one event's, say): plain Python beats numpy's set-up
        few = sorted(set(chain.from_iterable(chunks))) if total > 1 else list(chunks[0])
        if any(type(c) is not list for c in chunks):  # numpy's integers, from an array
            few = [int(x) for x in few]
        return Offsets(few[-1], few)
    listed = all(type(c) is list for c in chunks)
    if listed and total < FEW_SORTED:  # a backfill's week of small groups: sorted in Python
        few = sorted(set(chain.from_iterable(chunks)))
        high = few[-1]
        if sparse(len(few), high) or len(few) * OR_BYTES_PER_BIT < (high >> 3) - (few[0] >> 3) + 1:
            return Offsets(high, few)
        return _bitmap(np.array(few, dtype=np.int64))
    # sorted once: gives the span, and the distinct offsets below (np.unique's hashing costs
    # far more on the small arrays most keys get)
    if listed:  # many small groups (a backfill's day): no arrays
        offs = np.sort(np.fromiter(chain.from_iterable(chunks), dtype=np.int64, count=total))
    else:
        offs = np.sort(np.concatenate(chunks) if len(chunks) > 1 else np.asarray(chunks[0]))
    lo, hi = int(offs[0]), int(offs[-1])
    span = (hi >> 3) - (lo >> 3) + 1
    distinct = offs[np.concatenate(([True], offs[1:] != offs[:-1]))]
    if sparse(len(distinct), hi) or len(distinct) * OR_BYTES_PER_BIT < span:
        return Offsets(hi, distinct.tolist())
    return _bitmap(offs)


def _bitmap(offs: np.ndarray) -> Bitmap:
    """The sorted offsets as bitmap bytes from the byte of the lowest."""
    first = int(offs[0]) >> 3
    span = (int(offs[-1]) >> 3) - first + 1
    rel = offs - first * 8
    if len(offs) < 2048:  # scattering into bytes beats zeroing and packing a bit per byte
        packed = np.zeros(span, dtype=np.uint8)
        np.bitwise_or.at(packed, rel >> 3, (0x80 >> (rel & 7)).astype(np.uint8))
        return Bitmap(first, packed.tobytes())
    flags = np.zeros(span * 8, dtype=bool)
    flags[rel] = True
    return Bitmap(first, np.packbits(flags).tobytes())


def float_text(value: float) -> str:
    return repr(float(value))
