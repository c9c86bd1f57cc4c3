"""`Stats`, the object users hold: runs the namespace's operations (ops.py) on a blocking
Store. Every method is a thin call: the logic lives in ops.py, shared with `AsyncStats`.

`AsyncStats` runs these very methods (`aio.awaited`): a method returns what `_run`, `_record`
or the store's `call` return, untouched, and those of an AsyncStats return coroutines. `self`
is positional-only before `**segment`, so that the method's parameters can be carried over."""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from .actors import ActorQuery, ActorSet
from .calls import Call, Driver, Emit, Links
from .errors import BitstatError
from .identity import Aliased, Forgotten, Identity
from .ops import Namespace, check_name, check_namespace
from .query import SCRATCH_TTL_MS, Expr
from .queued import FLUSH_INTERVAL, queueing
from .record import DEFAULT_BATCH_TTL, DEFAULT_DEADLINE, TrackResult, retrying
from .schema import Schema, parse_duration
from .store import Store, resolve_url, run
from .tables import Counts, Funnel, Lifecycle, Series, Stickiness, Sum, Sums, Top
from .tracker import Tracker
from .transport import Transport, patient

__all__ = ["DEFAULT_BATCH_TTL", "SCRATCH_TTL_MS", "Stats", "TrackResult"]
T = TypeVar("T")
log = logging.getLogger("bitstat")
# data frames, which track_frame records (track_many would iterate their columns)
FRAME_LIBRARIES = ("pandas", "polars", "pyarrow")
FRAME_TYPES = ("DataFrame", "LazyFrame", "Table", "RecordBatch")


def check_batch(events: object) -> None:
    """TypeError for what `track_many` would iterate but not as events: one event (a mapping,
    whose keys it would reject one by one), text or bytes (their characters), a data frame
    (its columns); raised before anything is sent. Any other iterable is a batch."""
    kind = type(events)
    library = kind.__module__.partition(".")[0]
    if isinstance(events, Mapping):
        given = f"a {kind.__name__}, which is one event"
        hint = "pass a list of events ([event]), or call track() for one"
    elif isinstance(events, str | bytes | bytearray | memoryview):
        given = f"a {kind.__name__}"
        hint = 'an event is a mapping, such as {"event": "login", "user": 42}'
    elif library in FRAME_LIBRARIES and kind.__name__ in FRAME_TYPES:
        given = f"a {library}.{kind.__name__}"
        hint = "track_frame() records a frame"
    elif not isinstance(events, Iterable):  # (None: 'NoneType' object is not iterable)
        given = repr(events) if events is None else f"a {kind.__name__}"
        hint = "pass a list of events, [] for none"
    else:
        return
    raise TypeError(f"track_many takes an iterable of events (mappings), not {given}: {hint}")


class AnyStore(Protocol):
    cluster: bool
    links: Links


S = TypeVar("S", bound=AnyStore)


class Opened(Generic[S]):
    """A namespace opened on a store: what `Stats` (on a `Store`) and `AsyncStats` (on an
    `aio.AsyncStore`) hold."""

    def __init__(
        self,
        store: S,
        namespace: str,
        schema: Schema,
        batch_ttl: int = DEFAULT_BATCH_TTL,
        deadline: float = DEFAULT_DEADLINE,
        flush_at: int | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        track_ahead: int = 0,
    ) -> None:
        self._store = store
        ns = Namespace(namespace, schema, store.cluster, batch_ttl, store.links)
        self._ns = retrying(ns, store, deadline)
        self._ns.pushing_ahead(track_ahead)
        self._ns.flush_at, self._ns.flush_interval = queueing(
            flush_at, flush_interval, self._ns.track_ahead
        )
        self.namespace = namespace

    @property
    def schema(self) -> Schema:
        """The namespace's schema."""
        return self._ns.schema


OpenedT = TypeVar("OpenedT", bound=Opened[Any])


def finish_ahead(store: Store, ns: Namespace) -> None:
    """A Stats with `track_ahead` let go unclosed (or at exit): the replies of the pushes and
    the answers of the batches sent ahead read (a connection closed with replies unread may
    lose them); a push that cannot be queued is logged, no caller being left to raise to."""
    if not (ns.pending_ahead or ns.applying):
        return
    try:
        run(store, ns.sent_settled())
    except BitstatError as exc:
        log.error("bitstat: %s", exc)


@dataclass(frozen=True)
class ConnectArguments:
    """The arguments of `bitstat.connect` and `bitstat.aio.connect`, written once (connect's
    docstring says what they mean), and the steps of opening a namespace both take."""

    url: str | None = None
    _: KW_ONLY
    namespace: str = "bitstat"
    schema: Schema | None = None
    data_dir: str | Path | None = None
    appendfsync: str = "everysec"
    batch_ttl: int | str = DEFAULT_BATCH_TTL
    timeout: float | None = None
    socket_timeout: float | None = None
    deadline: float = DEFAULT_DEADLINE
    durability: str | None = None
    flush_at: int | None = None  # 500; 2,000 with track_ahead (queued.py)
    flush_interval: float = FLUSH_INTERVAL
    track_ahead: int = 0

    def store_options(self) -> tuple[str, float | None, str | None]:
        """The arguments of the store's `from_url`: the server's URL (the embedded server is
        started when there is none), the timeout and the durability; the namespace is checked
        first."""
        check_namespace(self.namespace)
        address = resolve_url(self.url, self.data_dir, self.appendfsync)
        return address, self.socket_timeout or self.timeout, self.durability

    def opened(self, kind: type[OpenedT], store: Any) -> OpenedT:
        """The namespace opened on `store`, as a `kind` (Stats or AsyncStats)."""
        ttl = parse_duration(self.batch_ttl)
        return kind(
            store,
            self.namespace,
            self.schema or Schema(),
            ttl,
            self.deadline,
            self.flush_at,
            self.flush_interval,
            self.track_ahead,
        )


class Stats(Opened[Store]):
    """One namespace in one Redis (or Cluster). Made by `bitstat.connect()`."""

    def __init__(self, store: Store, *args: Any, **kwargs: Any) -> None:
        super().__init__(store, *args, **kwargs)
        self._finish: weakref.finalize[Any, Any] | None = None
        if self._ns.track_ahead:  # at close(), or once let go, or at exit
            self._finish = weakref.finalize(self, finish_ahead, store, self._ns)

    def _run(self, op: Generator[Call, Any, T]) -> T:
        # the events track() queued are applied first, so that every answer holds them
        return run(self._store, self._ns.settled(op), self._ns.deadline)

    def _unsettled(self, op: Generator[Call, Any, T]) -> T:
        return run(self._store, op, self._ns.deadline)

    def _record(self, op: Generator[Call, Any, T]) -> T:
        # a batch is tried again by the operation itself, for the call's own deadline
        return run(self._store, op)

    # schema and namespace
    def configure(self, schema: Schema) -> None:
        """Store `schema` as the namespace's schema (the way to change it on purpose)."""
        return self._run(self._ns.configure(schema))

    def server_info(self) -> dict[str, Any]:
        """The server's version, memory use and mode, for status lines and reports."""
        return self._store.call(Transport.info)

    def drop(self) -> int:
        """Delete every key of this namespace (found with SCAN, never KEYS); returns how many."""
        return self._unsettled(self._ns.drop())

    def close(self) -> None:
        """Close the connections (first reading the replies of pushes and batches sent ahead,
        `track_ahead`: a push that failed is sent again, or raises BatchError)."""
        try:
            ns = self._ns
            finishing = self._finish is not None and self._finish.detach()
            if finishing and (ns.pending_ahead or ns.applying):
                self._unsettled(ns.sent_settled())
        finally:
            self._store.close()

    def __enter__(self) -> Stats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # recording
    def track(self, event: str | Mapping[str, Any], /, **props: Any) -> None:
        """Record one event: `track("login", user=42)` or `track({"event": "login", ...})`.

        A bad event raises InvalidEvent at once. A good one is queued in Redis (one round
        trip) and applied with the others queued, by `flush_at` events or after
        `flush_interval` seconds (connect()'s), and before any read of this Stats: its
        answers hold every event tracked before; other processes' within `flush_interval`.
        With connect(track_ahead=N) the call returns once the push is written; its reply is
        read N calls later (a failure then raises BatchError with `events` to track again)."""
        return self._record(self._ns.track(event, props))

    def flush(self) -> int:
        """Apply now the events `track()` queued (any process's); returns how many."""
        return self._record(self._ns.flush())

    def track_many(
        self,
        events: Iterable[Mapping[str, Any]],
        batch_id: str | None = None,
        *,
        now: float | None = None,
        deadline: float | None = None,
    ) -> TrackResult:
        """Record a batch; bad events are rejected alone. A repeated `batch_id` records nothing.

        Recorded once, whatever fails: without a `batch_id` the batch gets one, and a failure
        that may pass (a lost reply, a failover) sends it again under its id for up to
        `deadline` seconds (default: connect()'s; 0: one try). Then `BatchError` (with the
        batch id) says whether it may have landed; the same events sent again, from this
        process and within 10 minutes when bitstat made the id, are recorded once."""
        check_batch(events)
        op = self._ns.track_many(events, batch_id, now, deadline)
        return self._record(self._ns.settled(op, others=False))

    def track_frame(
        self,
        frame: Any,
        batch_id: str | None = None,
        *,
        event: str | None = None,
        now: float | None = None,
        batch_size: int | None = None,
        sort: bool = True,
    ) -> TrackResult:
        """Record a pandas or polars DataFrame or a pyarrow Table, a row an event, column by
        column (`pip install bitstat[frames]`). A row stands for the dict of its cells holding
        a value (null and NaN hold none): it is recorded, or rejected as `track_many` would
        reject that dict, with its row position as index. `event` names the event of every
        row when the frame has no `event` column. Rows go in batches of `batch_size` (default
        50,000), in time order unless `sort` is false; with a `batch_id`, batch n is recorded
        once under `{batch_id}:{n}`, so a retry of the same frame records nothing twice."""
        from . import frames  # pyarrow is imported when a frame is recorded, not with bitstat

        op = frames.track_frame(self._ns, frame, batch_id, event, now, batch_size, sort)
        return self._record(self._ns.settled(op, others=False))

    def tracker(self, **options: Any) -> Tracker:
        """A fire-and-forget `Tracker` on this Stats: `track()` queues, a thread sends batches.
        Options: batch_size, max_batch, interval, max_queue, block, max_retries, backoff,
        max_backoff, on_error, exit_timeout (see `Tracker`)."""
        return Tracker(self, **options)

    # identity and erasure (identity.py; semantics in docs/identity.md)
    def alias(self, anon: Any, user: Any) -> Aliased:
        """Link the anonymous id `anon` to the user id `user`: one actor from then on, with
        what `anon` did before merged into `user`'s actor sets (uniques, retention and funnels
        count one person; event counters are unchanged). Safe to call again."""
        return self._run(Identity(self._ns).alias(anon, user))

    def forget(self, actor: Any) -> Forgotten:
        """Erase `actor` (and the ids aliased to it) from every actor set of the namespace and
        free its id mapping; aggregated counters, which hold no identity, are kept (`.kept`
        names them). Safe to call again."""
        return self._run(Identity(self._ns).forget(actor))

    # actor sets
    def actors(self, event: str, **segment: Any) -> ActorQuery[ActorSet]:
        """Actors of `event` (with optional segment filters); pick the time on the result."""
        check_name(event)
        seg = self._ns.segment(event, segment)
        return ActorQuery(partial(ActorSet, self), self._ns, event, seg)

    def _count_exprs(self, exprs: Sequence[Expr]) -> list[int]:
        counts: list[int] = self._run(self._ns.count_exprs(exprs))
        return counts

    def _contains(self, expr: Expr, actor: object) -> bool:
        return bool(self._run(self._ns.contains(expr, actor)))

    def _ids(self, expr: Expr) -> Iterator[Any]:
        op = self._ns.settled(self._ns.ids(expr))
        driver = Driver(patient(op, self._ns.deadline))
        try:
            while (asked := driver.next()) is not None:
                if isinstance(asked, Emit):
                    yield from asked.values
                    continue
                with driver.replying():
                    driver.reply = self._store.perform(asked)
        except BaseException:  # (an interrupt; GeneratorExit: the caller stopped iterating)
            driver.stop(op)
            raise

    # metrics
    def unique(self, /, event: str, start: Any, end: Any = None, **segment: Any) -> int:
        """Distinct actors who did `event` in [start, end] (inclusive), optionally in a segment."""
        return self._run(self._ns.unique(event, start, end, segment))

    def total(self, event: str, start: Any, end: Any = None) -> int:
        """How many times `event` happened in [start, end]."""
        return self._run(self._ns.total(event, start, end))

    def series(
        self,
        /,
        event: str,
        start: Any,
        end: Any = None,
        *,
        by: str = "day",
        metric: str = "unique",
        **segment: Any,
    ) -> Series:
        """One value per `by` bucket of the range: `unique` actors or `total` events."""
        return self._run(self._ns.series(event, start, end, by, metric, segment))

    def counts(self, event: str, prop: str, start: Any, end: Any = None) -> Counts:
        """Events per value of a `count` property: {"NL": 12, ...}; compound keys are tuples."""
        return self._run(self._ns.counts(event, prop, start, end))

    def sums(
        self, event: str, prop: str, start: Any, end: Any = None, by: str | None = None
    ) -> Sum | Sums:
        """Sum of a `sum` property; with `by`, a sum per value of that property."""
        return self._run(self._ns.sums(event, prop, start, end, by))

    def averages(self, event: str, prop: str, start: Any, end: Any = None) -> float | None:
        """Mean of a `sum` property over the events that carried it (None when there were none)."""
        return self._run(self._ns.averages(event, prop, start, end))

    def top(self, event: str, prop: str, start: Any, end: Any = None, limit: int = 10) -> Top:
        """The `limit` most frequent values: count descending, then value ascending."""
        return self._run(self._ns.top(event, prop, start, end, limit))

    def distinct(self, event: str, prop: str, start: Any, end: Any = None) -> int:
        """How many distinct values a property took in the range: counted exactly for a `unique`
        property, estimated with HyperLogLog (standard error 0.81%) for an `approx` one."""
        return self._run(self._ns.distinct(event, prop, start, end))

    def query(self, event: str, start: Any, end: Any = None) -> dict[str, Any]:
        """Every metric the schema records for `event` over the range, in one dict (trk's query)."""
        return self._run(self._ns.query(event, start, end))

    def query_days(self, event: str, days: int, end: Any = None) -> list[dict[str, Any]]:
        """`query` for each of the last `days` days up to `end` (default: today), oldest first."""
        return self._run(self._ns.query_days(event, days, end))

    def span(self, event: str) -> tuple[date, date] | None:
        """The first and last (local) days `event` was recorded on; None if it never was."""
        return self._run(self._ns.span(event))

    def events(self) -> list[str]:
        """Every event name recorded in the namespace, sorted."""
        return self._run(self._ns.events())

    # analysis: retention, funnels, stickiness, lifecycle (planned in analysis.py)
    def retention(
        self,
        /,
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
        return self._run(analysis.retention(self._ns, *args))

    def funnel(
        self,
        /,
        steps: Sequence[str],
        start: Any,
        end: Any = None,
        within: Any = "7d",
        **segment: Any,
    ) -> Funnel:
        """Ordered funnel at day resolution: [(step, actors who reached it), ...].

        An actor reaches step k if, for some day d in [start, end] on which they did step 1,
        they did steps 2..k in order (each on a day no earlier than the step before; the same
        day counts as in order) on days before d + `within`. Bitmaps keep days, not instants,
        so two steps on one day always count as in order. Segment filters apply to step 1.
        """
        return self._run(analysis.funnel(self._ns, steps, start, end, within, segment))

    def stickiness(self, /, event: str, start: Any, end: Any = None, **segment: Any) -> Stickiness:
        """{n: actors active on exactly n distinct days of [start, end]}, n = 1 .. days."""
        return self._run(analysis.stickiness(self._ns, event, start, end, segment))

    def lifecycle(
        self,
        /,
        event: str,
        start: Any,
        periods: int = 8,
        period: str = "week",
        *,
        now: Any = None,
        **segment: Any,
    ) -> Lifecycle:
        """Per period from start: `new`, `returning`, `resurrecting`, `dormant` actor counts.

        new: first activity ever; returning: active in the previous period too; resurrecting:
        not in the previous period but before it; dormant: active in the previous period, not
        in this one. Periods not begun by `now` have None counts. A segment filter
        (`country="NL"`) narrows the actors active in a period and in the one before; "before"
        looks at every segment (an actor seen in another segment is resurrecting, not new).
        """
        return self._run(analysis.lifecycle(self._ns, event, start, periods, period, now, segment))


from . import analysis  # noqa: E402  (kept beside the analysis methods above)


def clashes(method: Any) -> frozenset[str]:
    """The names a segment filter passed to `method` as keyword arguments cannot have: its own
    parameters (`retention(..., kind=...)` beside a segment property named "kind")."""
    return frozenset(
        name
        for name, p in inspect.signature(method).parameters.items()
        if p.kind is not p.VAR_KEYWORD
    )


# every method that takes a segment filter: for a filter given before its method is known
SEGMENT_CLASHES = clashes(Stats.actors).union(
    *map(
        clashes,
        (
            Stats.unique,
            Stats.series,
            Stats.retention,
            Stats.funnel,
            Stats.stickiness,
            Stats.lifecycle,
        ),
    )
)
