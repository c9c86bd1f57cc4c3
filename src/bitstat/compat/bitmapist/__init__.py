"""A drop-in replacement for bitmapist 3.x, on bitstat's machinery.

Change one line, ``import bitmapist`` to ``import bitstat.compat.bitmapist as bitmapist`` (or
call `install()` once, before anything imports bitmapist), and existing code keeps working on
the same Redis keys: data written by bitmapist is read here, and the other way round.

What differs from bitmapist (docs/bitmapist.md lists it all):

- bit operations (and `YearEvents`) are computed in their constructors, as in bitmapist, but
  their result keys get a TTL instead of living forever; a result read after it expired is
  computed again from the data of that moment;
- iteration reads a bitmap in chunks instead of one GET of the whole key;
- cleanup uses SCAN, never KEYS;
- the cohort table is computed with one Lua call per row, all rows in one round trip.

bitmapist's module-level settings are kept: `SYSTEMS` ("default", localhost:6379, and the
systems of `setup_redis`), `TRACK_HOURLY` and `TRACK_UNIQUE`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bitstat.signatures import takes_arguments_of

from . import _engine
from ._redis import SYSTEMS, get_redis, setup_redis, setup_redis_url
from .events import (
    KEY_PREFIX,
    Bitmap,
    BitOpAnd,
    BitOperation,
    BitOpNot,
    BitOpOr,
    BitOpXor,
    DayEvents,
    GenericPeriodEvents,
    HourEvents,
    MixinBitOperations,
    MixinContains,
    MixinCounts,
    MixinEventsMisc,
    MixinIter,
    MonthEvents,
    UniqueEvents,
    WeekEvents,
    YearEvents,
    add_month,
    iso_to_gregorian,
    iso_year_start,
    not_none,
)

__all__ = [
    "SYSTEMS",
    "TRACK_HOURLY",
    "TRACK_UNIQUE",
    "BitOpAnd",
    "BitOpNot",
    "BitOpOr",
    "BitOpXor",
    "BitOperation",
    "Bitmap",
    "DayEvents",
    "GenericPeriodEvents",
    "HourEvents",
    "MixinBitOperations",
    "MixinContains",
    "MixinCounts",
    "MixinEventsMisc",
    "MixinIter",
    "MonthEvents",
    "UniqueEvents",
    "WeekEvents",
    "YearEvents",
    "add_month",
    "delete_all_events",
    "delete_runtime_bitop_keys",
    "delete_temporary_bitop_keys",
    "get_event_names",
    "get_redis",
    "install",
    "iso_to_gregorian",
    "iso_year_start",
    "mark_event",
    "mark_unique",
    "not_none",
    "setup_redis",
    "setup_redis_url",
    "unmark_event",
    "unmark_unique",
]

TRACK_HOURLY = False
"""Whether `mark_event` writes hour bitmaps when not told (bitmapist's default: no)."""

TRACK_UNIQUE = False
"""Whether `mark_event` also writes the time-less `UniqueEvents` bitmap when not told."""

_SCAN_BATCH = 1000


@dataclass(slots=True)
class _Marking:
    """The arguments of `mark_event` and `unmark_event` (bitmapist's), and the bits they write."""

    event_name: str
    uuid: int
    system: Any = "default"
    now: datetime | None = None
    track_hourly: bool | None = None
    track_unique: bool | None = None
    use_pipeline: bool = True

    def write(self, value: int) -> None:
        """Set the id's bit to `value` in every bitmap of its periods."""
        event_name, now = self.event_name, self.now or datetime.now(tz=UTC)
        keys = [
            MonthEvents.from_date(event_name, now).redis_key,
            WeekEvents.from_date(event_name, now).redis_key,
            DayEvents.from_date(event_name, now).redis_key,
        ]
        if TRACK_HOURLY if self.track_hourly is None else self.track_hourly:
            keys.append(HourEvents.from_date(event_name, now).redis_key)
        if TRACK_UNIQUE if self.track_unique is None else self.track_unique:
            keys.append(UniqueEvents(event_name).redis_key)
        client = get_redis(self.system)
        writer = client.pipeline() if self.use_pipeline else client
        for key in keys:
            writer.setbit(key, self.uuid, value)
        if self.use_pipeline:
            writer.execute()


@takes_arguments_of(_Marking)
def mark_event(marking: _Marking) -> None:
    """Mark id `uuid` as having done `event_name` in the day, ISO week and month of `now`.

    Also in its hour with `track_hourly` and in `UniqueEvents` with `track_unique` (defaults:
    `TRACK_HOURLY`, `TRACK_UNIQUE`). `now` defaults to the current UTC time; its own calendar
    fields are used as they are. `system` may be a pipeline: with `use_pipeline=False` the
    writes are only queued on it, for the caller to execute.
    """
    marking.write(1)


@takes_arguments_of(_Marking)
def unmark_event(marking: _Marking) -> None:
    """Undo `mark_event` for the same periods."""
    marking.write(0)


def mark_unique(event_name: str, uuid: int, system: Any = "default") -> None:
    """Flag id `uuid` with `event_name` regardless of time (read with `UniqueEvents`)."""
    get_redis(system).setbit(UniqueEvents(event_name).redis_key, uuid, 1)


def unmark_unique(event_name: str, uuid: int, system: Any = "default") -> None:
    """Remove the time-less flag `event_name` from id `uuid`."""
    get_redis(system).setbit(UniqueEvents(event_name).redis_key, uuid, 0)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _scan(system: Any, pattern: str, batch: int = _SCAN_BATCH) -> list[str]:
    found = get_redis(system).scan_iter(match=pattern, count=batch)
    return [k.decode() if isinstance(k, bytes) else str(k) for k in found]


def get_event_names(system: Any = "default", prefix: str = "", batch: int = 10000) -> list[str]:
    """The names of every event with a bitmap, in no order, optionally starting with `prefix`."""
    names = set()
    for key in _scan(system, f"{KEY_PREFIX}{_glob_escape(prefix)}*", batch):
        name = "_".join(key.split("_")[1:-1])
        if not name.startswith("bitop_"):
            names.add(name)
    return list(names)


def _delete_matching(system: Any, pattern: str) -> None:
    """Delete the keys matching `pattern` as SCAN finds them, 500 per DEL."""
    client = get_redis(system)
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
        batch.append(key)
        if len(batch) == 500:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)


def delete_all_events(system: Any = "default") -> None:
    """Delete every bitmapist key (events and bit operation results) of `system`."""
    _delete_matching(system, f"{KEY_PREFIX}*")
    _engine.mark_deleted(system)


def delete_temporary_bitop_keys(system: Any = "default") -> None:
    """Delete every bit operation result key of `system`, whoever made it."""
    _delete_matching(system, f"{KEY_PREFIX}bitop_*")
    _engine.mark_deleted(system)


def delete_runtime_bitop_keys() -> None:
    """Delete the result keys of the bit operations built by this thread so far."""
    _engine.delete_runtime_keys()


def install() -> None:
    """Make ``import bitmapist`` and ``import bitmapist.cohort`` resolve to this drop-in.

    Call it once at start-up, before any module imports bitmapist.
    """
    from . import cohort

    sys.modules["bitmapist"] = sys.modules[__name__]
    sys.modules["bitmapist.cohort"] = cohort
