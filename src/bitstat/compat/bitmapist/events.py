"""bitmapist's event objects: one bitmap per event and period, under bitmapist's key names.

Keys, as bitmapist writes them (numbers not zero-padded):

    trackist_<event>_<year>-<month>-<day>-<hour>     HourEvents
    trackist_<event>_<year>-<month>-<day>            DayEvents
    trackist_<event>_W<iso year>-<iso week>          WeekEvents
    trackist_<event>_<year>-<month>                  MonthEvents
    trackist_<event>_u                               UniqueEvents
    trackist_bitop_OR_<the 12 month keys, joined by "-">   YearEvents (computed, never written)

Constructors do no I/O and accept any numbers (bitmapist code passes `now.hour - 1`): dates
are checked only by `delta`, `period_start` and `period_end`, by Python's own dates (years 1 to
9999), as in bitmapist.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, Self

import redis

from . import _engine
from ._redis import client_of, direct_client, is_pipeline, server_id

KEY_PREFIX = "trackist_"
_TICK = timedelta(microseconds=1)


def event_key(event_name: str, suffix: str) -> str:
    """bitmapist's name of the bitmap of `event_name` for a period written as `suffix`."""
    return f"{KEY_PREFIX}{event_name}_{suffix}"


def _utc_now() -> datetime:
    return datetime.now(tz=UTC)


class StoredSet:
    """What bitmapist's mixins share: a set of ids stored as the bitmap `redis_key` of `system`.

    Every read goes through `redis_key`, as bitmapist's do: a subclass may set it as it likes.
    """

    event_name: str
    system: Any
    redis_key: str

    def _node(self, system: Any) -> _engine.Node:
        """This set as a node of an expression evaluated on `system`."""
        return _engine.Leaf(self.redis_key)

    def _count(self) -> int:
        """The set's BITCOUNT, in one server call."""
        node = self._node(self.system)
        if isinstance(node, _engine.Op):
            return _engine.evaluate(self.system, [("count", node)])[0]
        return int(direct_client(self.system).bitcount(node.key))

    def _bit(self, offset: Any) -> int:
        """The set's GETBIT at `offset`, in one server call; an offset that is no number (None
        included) is refused by redis-py or Redis, as in bitmapist."""
        node = self._node(self.system)
        if isinstance(node, _engine.Op):
            return _engine.evaluate(self.system, [("bit", node, offset)])[0]
        return int(direct_client(self.system).getbit(node.key, offset))

    def _readable_key(self) -> str:
        """The name of a key that holds the set now."""
        return self.redis_key


# bitmapist's mixins, each giving the methods bitmapist's gives; a class may take any of them.


class MixinIter(StoredSet):
    def get_uuids(self) -> Iterator[int]:
        """The ids in the set, ascending."""
        return _engine.iter_ids(direct_client(self.system), self._readable_key())

    def __iter__(self) -> Iterator[int]:
        return self.get_uuids()


class MixinCounts(StoredSet):
    def get_count(self) -> Any:
        """How many ids the set holds (BITCOUNT). On a caller's pipeline, as in bitmapist, the
        BITCOUNT is queued there and the pipeline returned: the count comes with its execute()
        (after the set's own bit operation, queued when it was built)."""
        if is_pipeline(self.system):
            return client_of(self.system).bitcount(self.redis_key)
        return self._count()

    def __len__(self) -> int:
        return self._count()


class MixinContains(StoredSet):
    def __contains__(self, uuid: int) -> bool:
        return bool(self._bit(uuid))


class MixinEventsMisc(StoredSet):
    def has_events_marked(self) -> bool:
        """True if the set holds any id."""
        return self._count() > 0

    def delete(self) -> None:
        """Delete the set's key (queued, on a pipeline, as in bitmapist)."""
        client_of(self.system).delete(self.redis_key)

    def __eq__(self, other: object) -> bool:
        other_key = getattr(other, "redis_key", None)
        if other_key is None:
            return NotImplemented
        return bool(self.redis_key == other_key)

    def __hash__(self) -> int:
        return hash(self.redis_key)


class MixinBitOperations(StoredSet):
    # Operators run on this set's system; bitmapist's run on "default" whatever the operands'
    # systems are, which differs only when those are other servers (where it reads nothing).
    # They run at once, as bitmapist's: a set built on a pipeline gives them a client of its
    # server instead. BitOpAnd & co. are defined below, from Computed: found when called
    def _operator_system(self) -> Any:
        return direct_client(self.system) if is_pipeline(self.system) else self.system

    def __and__(self, other: StoredSet) -> BitOpAnd:
        return BitOpAnd(self._operator_system(), self, other)

    def __or__(self, other: StoredSet) -> BitOpOr:
        return BitOpOr(self._operator_system(), self, other)

    def __xor__(self, other: StoredSet) -> BitOpXor:
        return BitOpXor(self._operator_system(), self, other)

    def __invert__(self) -> BitOpNot:
        return BitOpNot(self._operator_system(), self)


class Bitmap(MixinIter, MixinCounts, MixinContains, MixinEventsMisc, MixinBitOperations):
    """A set of ids stored as one Redis bitmap: `in`, `len`, iteration, `& | ^ ~`, equality."""


class Computed(Bitmap):
    """A set computed by BITOP from other sets when it is built, as in bitmapist, into a result
    key with a TTL: a snapshot, which marks made later do not change.

    Built on a caller's pipeline, it is computed when the caller executes the pipeline, as in
    bitmapist (where it is queued as a BITOP); its reads run at once on the pipeline's server.
    """

    _op_name: str
    _state: _engine.State

    def _start(self, system: Any, op_name: str, key: str) -> None:
        self.system = system
        self._op_name = op_name
        self.redis_key = key
        self._state = _engine.fresh_state(system, key)
        if _engine.deferring():
            return
        node = self._node(system)
        if is_pipeline(system) and isinstance(node, _engine.Op):
            _engine.queue(client_of(system), node)
        else:
            self._readable_key()

    def _operands(self) -> list[Any]:
        raise NotImplementedError

    def _node(self, system: Any) -> _engine.Node:
        if self._state.status == _engine.DELETED:
            return _engine.Leaf(self.redis_key)
        if server_id(system) != server_id(self.system):
            # computed on its own system, as bitmapist does, then read by name
            return _engine.Leaf(self._readable_key())
        children = tuple(_operand_node(o, system) for o in self._operands())
        return _engine.Op(self._op_name, self.redis_key, children, self._state)

    def _readable_key(self) -> str:
        """The result key, computed again if it expired."""
        node = self._node(self.system)
        if isinstance(node, _engine.Op):
            _engine.evaluate(self.system, [("len", node)])
        return self.redis_key

    def delete(self) -> None:
        super().delete()
        self._state.status = _engine.DELETED


def _operand_node(operand: Any, system: Any) -> _engine.Node:
    if isinstance(operand, StoredSet):
        return operand._node(system)
    return _engine.Leaf(str(operand.redis_key))  # any object with a key, as bitmapist allows


class UniqueEvents(Bitmap):
    """Ids flagged by an event regardless of time (`mark_unique`), e.g. premium users."""

    @classmethod
    def from_date(
        cls, event_name: str, dt: date | datetime | None = None, system: Any = "default"
    ) -> UniqueEvents:
        return cls(event_name, system=system)

    def __init__(self, event_name: str, system: Any = "default") -> None:
        self.event_name = event_name
        self.system = system
        self.redis_key = event_key(event_name, "u")

    def next(self) -> UniqueEvents:
        return self

    def prev(self) -> UniqueEvents:
        return self


class GenericPeriodEvents(Bitmap):
    """The ids of an event in one period: hour, day, ISO week, month or year (all UTC).

    A period class names its calendar fields, largest first (`_fields`): they are its
    constructor's arguments after the event name, what `from_date` reads from a date (ISO
    weeks: from its ISO calendar) and the parts of its key.
    """

    _fields: tuple[str, ...]
    _step: timedelta  # one period, where it is a fixed length (not months or years)
    _key_prefix = ""

    def __init__(self, event_name: str, *, system: Any = "default") -> None:
        self.event_name = event_name
        self.system = system

    @staticmethod
    def _calendar(when: date | datetime) -> Any:
        """What the fields are read from: `when` itself, or for ISO weeks its ISO calendar."""
        return when

    @classmethod
    def _values(cls, when: date | datetime) -> list[int]:
        calendar = cls._calendar(when)
        return [getattr(calendar, name) for name in cls._fields]

    def _name_period(self, *values: int | None) -> str:
        """Set the fields, each given or the current UTC time's; the key they name."""
        now = self._calendar(_utc_now())
        for name, value in zip(self._fields, values, strict=True):
            setattr(self, name, not_none(value, getattr(now, name)))
        parts = "-".join(str(getattr(self, name)) for name in self._fields)
        return event_key(self.event_name, self._key_prefix + parts)

    @classmethod
    def from_date(
        cls, event_name: str, dt: date | datetime | None = None, system: Any = "default"
    ) -> Self:
        """The period that holds `dt` (default: now, UTC)."""
        make: Callable[..., Self] = cls
        return make(event_name, *cls._values(dt or _utc_now()), system=system)

    def _with(self, *values: int) -> Self:
        make: Callable[..., Self] = type(self)
        return make(self.event_name, *values, system=self.system)

    def _first_instant(self) -> datetime:
        raise NotImplementedError

    def _length(self) -> timedelta:
        return self._step

    def delta(self, value: int) -> Self:
        """The same event `value` periods later (earlier when negative)."""
        return self._with(*self._values(self._first_instant() + value * self._step))

    def period_start(self) -> datetime:
        """The first instant of the period, in UTC."""
        return self._first_instant().replace(tzinfo=UTC)

    def period_end(self) -> datetime:
        """The last microsecond of the period, in UTC."""
        length = self._length()
        # the start plus (length - 1 µs): the start of the next period may not exist (year 9999)
        return self.period_start() + (length - _TICK)

    def next(self) -> Self:
        return self.delta(1)

    def prev(self) -> Self:
        return self.delta(-1)


def add_month(year: int, month: int, delta: int) -> tuple[int, int]:
    """(year, month) moved by `delta` months."""
    year, index = divmod(year * 12 + (month - 1) + delta, 12)
    return year, index + 1


def not_none(*keys: Any) -> Any:
    """The first of `keys` that is not None."""
    return next((k for k in keys if k is not None), None)


def iso_year_start(iso_year: int) -> date:
    """The Monday that starts ISO year `iso_year`."""
    return date.fromisocalendar(iso_year, 1, 1)


def iso_to_gregorian(iso_year: int, iso_week: int, iso_day: int) -> date:
    """The date of ISO (year, week, weekday); weeks past the year's last roll into the next."""
    return iso_year_start(iso_year) + timedelta(weeks=iso_week - 1, days=iso_day - 1)


class YearEvents(Computed, GenericPeriodEvents):
    """The ids of an event in a year: the OR of its 12 months, under bitmapist's key name,
    computed in the constructor as in bitmapist (months that do not exist are skipped)."""

    _fields = ("year",)
    year: int

    def __init__(self, event_name: str, year: int | None = None, system: Any = "default") -> None:
        self.event_name = event_name
        self.year = not_none(year, _utc_now().year)
        months = "-".join(self._month_keys())
        self._start(system, "OR", f"{KEY_PREFIX}bitop_OR_{months}")

    def _month_keys(self) -> list[str]:
        return [event_key(self.event_name, f"{self.year}-{m}") for m in range(1, 13)]

    def _operands(self) -> list[Bitmap]:
        return [MonthEvents(self.event_name, self.year, m, self.system) for m in range(1, 13)]

    def _first_instant(self) -> datetime:
        return datetime(self.year, 1, 1)

    def _length(self) -> timedelta:
        return timedelta(days=366 if calendar.isleap(self.year) else 365)

    def delta(self, value: int) -> Self:
        return self._with(self.year + value)


class MonthEvents(GenericPeriodEvents):
    """The ids of an event in a month, e.g. `MonthEvents("active", 2026, 11)`."""

    _fields = ("year", "month")
    year: int
    month: int

    def __init__(
        self,
        event_name: str,
        year: int | None = None,
        month: int | None = None,
        system: Any = "default",
    ) -> None:
        super().__init__(event_name, system=system)
        self.redis_key = self._name_period(year, month)

    def _first_instant(self) -> datetime:
        return datetime(self.year, self.month, 1)

    def _length(self) -> timedelta:
        return timedelta(days=calendar.monthrange(self.year, self.month)[1])

    def delta(self, value: int) -> Self:
        return self._with(*add_month(self.year, self.month, value))


class WeekEvents(GenericPeriodEvents):
    """The ids of an event in an ISO week, e.g. `WeekEvents("active", 2026, 47)`."""

    _fields = ("year", "week")
    _step = timedelta(weeks=1)
    _key_prefix = "W"
    year: int
    week: int

    def __init__(
        self,
        event_name: str,
        year: int | None = None,
        week: int | None = None,
        system: Any = "default",
    ) -> None:
        super().__init__(event_name, system=system)
        self.redis_key = self._name_period(year, week)

    @staticmethod
    def _calendar(when: date | datetime) -> Any:
        return when.isocalendar()

    def _first_instant(self) -> datetime:
        monday = iso_to_gregorian(self.year, self.week, 1)
        return datetime(monday.year, monday.month, monday.day)


class DayEvents(GenericPeriodEvents):
    """The ids of an event in a day, e.g. `DayEvents("active", 2026, 11, 22)`."""

    _fields = ("year", "month", "day")
    _step = timedelta(days=1)
    year: int
    month: int
    day: int

    def __init__(
        self,
        event_name: str,
        year: int | None = None,
        month: int | None = None,
        day: int | None = None,
        system: Any = "default",
    ) -> None:
        super().__init__(event_name, system=system)
        self.redis_key = self._name_period(year, month, day)

    def _first_instant(self) -> datetime:
        return datetime(self.year, self.month, self.day)


class HourEvents(GenericPeriodEvents):
    """The ids of an event in an hour (UTC), e.g. `HourEvents("active", 2026, 11, 22, 13)`."""

    _fields = ("year", "month", "day", "hour")
    _step = timedelta(hours=1)
    year: int
    month: int
    day: int
    hour: int

    @classmethod
    def from_date(  # type: ignore[override]  # a date has no hour
        cls, event_name: str, dt: datetime | None = None, system: Any = "default"
    ) -> Self:
        return super().from_date(event_name, dt, system)

    def __init__(
        self,
        event_name: str,
        year: int | None = None,
        month: int | None = None,
        day: int | None = None,
        hour: int | None = None,
        system: Any = "default",
    ) -> None:
        super().__init__(event_name, system=system)
        self.redis_key = self._name_period(year, month, day, hour)

    def _first_instant(self) -> datetime:
        return datetime(self.year, self.month, self.day, self.hour)


# bitmapist's bit operations: `BitOpAnd`, `BitOpOr`, `BitOpXor`, `BitOpNot`, nestable.
#
# The result key is bitmapist's, `trackist_bitop_<OP>_<operand keys joined by "-">`, so it is
# shared by equal operations and found by `delete_temporary_bitop_keys`. As in bitmapist, the
# BITOP runs in the constructor; unlike it, the result key expires (`_engine.TTL_SECONDS`,
# renewed on use, computed again from the operands when read after it expired).


def _split(system_or_event: Any, events: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """bitmapist's calling convention: an optional system name (or client) before the events."""
    if isinstance(system_or_event, str | redis.Redis):
        return system_or_event, events
    return "default", (system_or_event, *events)


class BitOperation(Computed):
    """BITOP `op_name` over `events` (AND, OR, XOR, or NOT of a single event).

    `BitOperation("AND", a, b)` runs on the "default" system; `BitOperation("AND", "stats",
    a, b)` on the system named "stats".
    """

    def __init__(self, op_name: str, system_or_event: Any, *events: Any) -> None:
        system, operands = _split(system_or_event, events)
        self.events = operands
        keys = "-".join(str(e.redis_key) for e in operands)
        self._start(system, op_name, f"{KEY_PREFIX}bitop_{op_name}_{keys}")

    def _operands(self) -> list[Any]:
        return list(self.events)


class _FixedOperation(BitOperation):
    """A `BitOperation` whose BITOP is the class's `_op`."""

    _op: str

    def __init__(self, system_or_event: Any, *events: Any) -> None:
        super().__init__(self._op, system_or_event, *events)


class BitOpAnd(_FixedOperation):
    """The ids in every one of the events."""

    _op = "AND"


class BitOpOr(_FixedOperation):
    """The ids in any of the events."""

    _op = "OR"


class BitOpXor(_FixedOperation):
    """The ids in an odd number of the events."""

    _op = "XOR"


class BitOpNot(_FixedOperation):
    """The ids not in the event, up to the last byte of its bitmap (Redis BITOP NOT)."""

    _op = "NOT"
