"""Actor sets: lazy expressions over actor bitmaps, evaluated on the server when asked."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from . import periods
from .errors import QueryError
from .query import Expr, Leaf, Op, combine

if TYPE_CHECKING:
    from .ops import Namespace


class SetRunner(Protocol):
    """What evaluates actor sets on the server: a `Stats`."""

    def _count_exprs(self, exprs: Sequence[Expr]) -> list[int]: ...

    def _contains(self, expr: Expr, actor: object) -> bool: ...

    def _ids(self, expr: Expr) -> Iterator[Any]: ...


S = TypeVar("S", bound="SetAlgebra[Any]")
R = TypeVar("R")


class SetAlgebra(Generic[R]):
    """`& | ^ - ~` over actor sets of one namespace; builds expressions, runs nothing."""

    def __init__(self, runner: R, expr: Expr) -> None:
        self._runner = runner
        self.expr = expr

    def _with(self: S, op: str, other: S) -> S:
        if not isinstance(other, type(self)):
            return NotImplemented  # type: ignore[no-any-return]
        if other._runner is not self._runner:
            raise ValueError("actor sets from different connections cannot be combined")
        made: S = type(self)(self._runner, combine(op, self.expr, other.expr))
        return made

    def __and__(self: S, other: S) -> S:
        return self._with("and", other)

    def __or__(self: S, other: S) -> S:
        return self._with("or", other)

    def __xor__(self: S, other: S) -> S:
        return self._with("xor", other)

    def __sub__(self: S, other: S) -> S:
        return self._with("diff", other)

    def __invert__(self: S) -> S:
        """Every actor ever seen in the namespace who is not in this set."""
        return type(self)(self._runner, Op("not", (self.expr,)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expr!r})"


class ActorSet(SetAlgebra[SetRunner]):
    """A set of actors; nothing runs until it is counted, tested or read."""

    def count(self) -> int:
        """How many actors the set holds (`len(actor_set)`), counted on the server."""
        return int(self._runner._count_exprs([self.expr])[0])

    def __len__(self) -> int:
        return self.count()

    def contains(self, actor: object) -> bool:
        """Whether the set holds `actor` (`actor in actor_set`), by its original id."""
        return bool(self._runner._contains(self.expr, actor))

    def __contains__(self, actor: object) -> bool:
        return self.contains(actor)

    def ids(self) -> Iterator[Any]:
        """The actors' original ids: the set is read whole at the first (128 KiB a million ids
        at most), a snapshot however slowly it is iterated; ids are looked up a chunk at a time."""
        ids: Iterator[Any] = self._runner._ids(self.expr)
        return ids

    def __iter__(self) -> Iterator[Any]:
        return self.ids()


SetT = TypeVar("SetT", bound=SetAlgebra[Any])


class ActorQuery(Generic[SetT]):
    """`st.actors(event, **segment)`: pick the time with .hour/.day/.week/.month/.year/.between."""

    def __init__(
        self,
        make: Callable[[Expr], SetT],
        ns: Namespace,
        event: str,
        segment: tuple[str, str] | None,
    ) -> None:
        self._make = make
        self._ns = ns
        self.event = event
        self.segment = segment

    def _bucket(self, period: str, start: datetime) -> SetT:
        self._ns.require_period(period)
        bucket = periods.bucket_of(period, start)
        # (a segment kept per day has no hour buckets: tiling says so)
        tiling = self._ns.tiling(bucket.start, bucket.end, "segment" if self.segment else None)
        labels: tuple[str, ...] = (bucket.label,)
        if self._ns.buckets_may_lack():  # (an expired week: its days)
            family = "segment" if self.segment else None
            kept = self._ns.kept_cover(bucket.start, bucket.end, tiling, family)
            labels = tuple(b.label for b in kept)
        return self._make(Leaf(self.event, labels, self.segment))

    def hour(self, year: int, month: int, day: int, hour: int) -> SetT:
        """The actors of that hour (wall clock, the namespace's zone); needs "hour" in periods."""
        return self._bucket("hour", _named("hour", datetime, year, month, day, hour))

    def day(self, year: int, month: int, day: int) -> SetT:
        """The actors of that day (the namespace's zone)."""
        return self._bucket("day", _named("day", datetime, year, month, day))

    def week(self, year: int, week: int) -> SetT:
        """ISO week `week` of ISO year `year`."""
        return self._bucket("week", _named("week", _monday, year, week))

    def month(self, year: int, month: int) -> SetT:
        """The actors of that calendar month."""
        return self._bucket("month", _named("month", _first, year, month))

    def year(self, year: int) -> SetT:
        """The actors of that calendar year."""
        return self._bucket("year", _named("year", _first, year))

    def between(self, start: Any, end: Any = None) -> SetT:
        """Actors active at any time in [start, end] (inclusive); a single label means its span."""
        family = "segment" if self.segment is not None else None
        return self._make(Leaf(self.event, self._ns.cover_labels(start, end, family), self.segment))


def _named(period: str, make: Callable[..., datetime], *fields: Any) -> datetime:
    """The start of the bucket a method's fields name; a QueryError naming them if none is
    (`week(2027, 53)`: 2027 has 52 ISO weeks; `day(2026, 2, 29)`), not datetime's ValueError."""
    try:
        return make(*fields)
    except (TypeError, ValueError, OverflowError) as exc:
        shown = ", ".join(map(repr, fields))
        raise QueryError(f"{period}({shown}) names no {period}: {exc}", param=period) from None


def _monday(year: int, week: int) -> datetime:
    return datetime.fromisocalendar(year, week, 1)


def _first(year: int, month: int = 1) -> datetime:
    return datetime(year, month, 1)
