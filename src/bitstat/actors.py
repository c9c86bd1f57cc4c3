"""Actor sets: lazy expressions over actor bitmaps, evaluated on the server when asked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from . import periods
from .query import Expr, Leaf, Op, combine

if TYPE_CHECKING:
    from .stats import Stats

CHUNK_BYTES = 64 * 1024  # ids() reads the result bitmap in pieces of this size


class ActorSet:
    """A set of actors, built with `& | ^ - ~`; nothing runs until it is counted or read."""

    def __init__(self, stats: Stats, expr: Expr) -> None:
        self._stats = stats
        self.expr = expr

    def _with(self, op: str, other: ActorSet) -> ActorSet:
        if not isinstance(other, ActorSet):
            return NotImplemented
        if other._stats is not self._stats:
            raise ValueError("actor sets from different Stats objects cannot be combined")
        return ActorSet(self._stats, combine(op, self.expr, other.expr))

    def __and__(self, other: ActorSet) -> ActorSet:
        return self._with("and", other)

    def __or__(self, other: ActorSet) -> ActorSet:
        return self._with("or", other)

    def __xor__(self, other: ActorSet) -> ActorSet:
        return self._with("xor", other)

    def __sub__(self, other: ActorSet) -> ActorSet:
        return self._with("diff", other)

    def __invert__(self) -> ActorSet:
        """Every actor ever seen in the namespace who is not in this set."""
        return ActorSet(self._stats, Op("not", (self.expr,)))

    def count(self) -> int:
        return self._stats._count_exprs([self.expr])[0]

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, actor: object) -> bool:
        return self._stats._contains(self.expr, actor)

    def ids(self) -> Iterator[Any]:
        """The actors' original ids, read from the server in chunks."""
        stats = self._stats
        for shard, key in stats._store_expr(self.expr):
            try:
                start = 0
                while True:
                    data = stats._store.getrange(key, start, start + CHUNK_BYTES - 1)
                    if not data:
                        break
                    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
                    offsets = np.flatnonzero(bits) + start * 8 + (shard << 20)
                    if len(offsets):
                        yield from stats._ids_of(offsets)
                    if len(data) < CHUNK_BYTES:
                        break
                    start += CHUNK_BYTES
            finally:
                if ":tmp:" in key:
                    stats._store.delete(key)

    def __iter__(self) -> Iterator[Any]:
        return self.ids()

    def __repr__(self) -> str:
        return f"ActorSet({self.expr!r})"


class ActorQuery:
    """`st.actors(event, **segment)`: pick the time with .hour/.day/.week/.month/.year/.between."""

    def __init__(self, stats: Stats, event: str, segment: tuple[str, str] | None) -> None:
        self._stats = stats
        self.event = event
        self.segment = segment

    def _bucket(self, period: str, start: datetime) -> ActorSet:
        self._stats._require_period(period)
        label = periods.bucket_of(period, start).label
        return ActorSet(self._stats, Leaf(self.event, (label,), self.segment))

    def hour(self, year: int, month: int, day: int, hour: int) -> ActorSet:
        return self._bucket("hour", datetime(year, month, day, hour))

    def day(self, year: int, month: int, day: int) -> ActorSet:
        return self._bucket("day", datetime(year, month, day))

    def week(self, year: int, week: int) -> ActorSet:
        """ISO week `week` of ISO year `year`."""
        return self._bucket("week", datetime.fromisocalendar(year, week, 1))

    def month(self, year: int, month: int) -> ActorSet:
        return self._bucket("month", datetime(year, month, 1))

    def year(self, year: int) -> ActorSet:
        return self._bucket("year", datetime(year, 1, 1))

    def between(self, start: Any, end: Any = None) -> ActorSet:
        """Actors active at any time in [start, end] (inclusive); a single label means its span."""
        labels = self._stats._cover_labels(start, end)
        return ActorSet(self._stats, Leaf(self.event, labels, self.segment))
