"""The asyncio API: `AsyncStats` runs the very operations of ops.py on redis.asyncio.

st = await bitstat.aio.connect("redis://localhost:6379/0", namespace="shop")
await st.track("login", user=42)
await st.unique("login", "2026-11")
nov = st.actors("login").month(2026, 11)
await (nov & st.actors("purchase").month(2026, 11)).count()
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import hiredis
import redis.asyncio as aredis
import redis.exceptions as rex

from . import analysis
from .actors import ActorQuery, SetAlgebra
from .calls import Call, Emit, step
from .clusters import AsyncCluster
from .errors import BitstatError
from .identity import Aliased, Forgotten, Identity
from .ops import Namespace, check_name, check_namespace
from .query import Expr
from .record import DEFAULT_BATCH_TTL, DEFAULT_DEADLINE, TrackResult, retrying
from .schema import Schema, parse_duration
from .store import Driving, cluster_address, durability, resolve_url, timeouts, wrapped_errors
from .tables import Counts, Funnel, Lifecycle, Series, Stickiness, Sum, Sums, Top
from .tracker_aio import AsyncTracker
from .transport import (
    Pause,
    Pipe,
    Request,
    Scan,
    ScriptMissing,
    Transport,
    patient,
)

T = TypeVar("T")
P = ParamSpec("P")


class _PackedInC:
    """Commands packed by hiredis, in C, as the blocking client packs them: redis.asyncio packs
    them in Python, argument by argument (~20 µs an event of a batch's write)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):  # "CONFIG GET": words are arguments of their own
            args = (*first.encode().split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise rex.DataError(str(exc)) from exc


def _packed_in_c(cls: type[Any]) -> type[Any]:
    """`cls`, a redis.asyncio connection class, with `_PackedInC`'s packing."""
    return type(f"PackedInC{cls.__name__}", (_PackedInC, cls), {})


def _client(url: str, timeout: float | None) -> Any:
    """A redis.asyncio client whose connections pack commands in C."""
    client = aredis.Redis.from_url(url, **timeouts(url, timeout))
    pool = client.connection_pool
    pool.connection_class = _packed_in_c(pool.connection_class)
    return client


class AsyncStore:
    """Runs `Transport` requests on redis.asyncio (one Redis, a unix socket or a Cluster)."""

    def __init__(self, client: Any, cluster: bool, replicas: int = 0) -> None:
        self.client = client
        self.cluster = cluster
        self.io = Transport(cluster, replicas)
        self.nodes: dict[str, Any] = {}  # a plain client per cluster node, for replicated writes
        self.node_options: dict[str, Any] = {}

    @classmethod
    async def from_url(
        cls, url: str, timeout: float | None = None, durable: str | None = None
    ) -> AsyncStore:
        url, replicas = durability(url, durable)
        address = cluster_address(url)
        if address is not None:  # (its nodes' connection class is not the caller's to choose)
            options = {**timeouts(url, timeout), "username": address["username"]}
            options["password"] = address["password"]
            store = cls(AsyncCluster(**address, **timeouts(url, timeout)), True, replicas)
            store.node_options = options
        else:
            store = cls(_client(url, timeout), False, replicas)
        with wrapped_errors(f"connecting to {url}"):
            await store.client.ping()
        return store

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.aclose()
        await self.client.aclose()

    async def perform(self, call: Call) -> Any:
        """`Store.perform` on asyncio."""
        run = Driving(call, self.io)
        while (step := run.next_step()) or run.going:
            try:
                run.reply = await self.take(step)
            except Exception as exc:  # thrown in at the step, which may handle it
                run.error = exc
        return run.answer

    async def take(self, step: Any) -> Any:
        try:
            if isinstance(step, Pipe):
                client = self.client if step.on is None else self._master_of(step.on)
                pipe = client.pipeline(transaction=False)
                step.fill(pipe)
                return await pipe.execute()
            if isinstance(step, Pause):
                return await asyncio.sleep(step.seconds)
            if isinstance(step, Scan):
                return [k async for k in self.client.scan_iter(match=step.pattern, count=1000)]
            result = step(self.client)
            return await result if inspect.isawaitable(result) else result
        except rex.NoScriptError as exc:
            raise ScriptMissing(str(exc)) from exc

    def _master_of(self, key: str) -> Any:
        """The client of the master that holds `key` (the store's own on a single server)."""
        if not self.cluster:
            return self.client
        node = self.client.get_node_from_key(key)
        found = self.nodes.get(node.name)
        if found is None:
            found = self.nodes[node.name] = aredis.Redis(
                host=node.host, port=node.port, **self.node_options
            )
        return found

    async def call(
        self,
        method: Callable[Concatenate[Transport, P], Request[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """One request, run now: `await store.call(Transport.get, key)`."""
        return await self.perform(Call(method, args, kwargs))  # type: ignore[no-any-return]


async def run(store: AsyncStore, op: Generator[Call, Any, T], deadline: float = 0.0) -> T:
    """Drive an operation with the asyncio store (`calls.run`, awaited)."""
    if deadline > 0:
        op = patient(op, deadline)
    reply: Any = None
    error: BitstatError | None = None
    while True:
        try:
            call = step(op, reply, error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            reply, error = await store.perform(call), None
        except BitstatError as exc:
            reply, error = None, exc


class AsyncActorSet(SetAlgebra["AsyncStats"]):
    """An actor set for the asyncio API: `await s.count()`, `await s.contains(x)`,
    `async for actor in s.ids()`; the operators are the same as ActorSet's."""

    async def count(self) -> int:
        """`len(actor_set)`, awaited: how many actors the set holds."""
        return (await self._runner._count_exprs([self.expr]))[0]

    async def contains(self, actor: object) -> bool:
        """`actor in actor_set`, awaited: whether the set holds `actor`."""
        return bool(await self._runner._run(self._runner._ns.contains(self.expr, actor)))

    async def ids(self) -> AsyncIterator[Any]:
        """`ActorSet.ids` for `async for`: the actors' original ids, read in chunks."""
        op = patient(self._runner._ns.ids(self.expr), self._runner._ns.deadline)
        store = self._runner._store
        reply: Any = None
        error: BitstatError | None = None
        while True:
            try:
                call = op.throw(error) if error is not None else op.send(reply)
            except StopIteration:
                return
            reply, error = None, None
            if isinstance(call, Emit):
                for actor in call.values:
                    yield actor
                continue
            try:
                reply = await store.perform(call)
            except BitstatError as exc:
                error = exc


class AsyncStats:
    """`Stats` for asyncio code: the same methods, awaited. Made by `bitstat.aio.connect()`."""

    def __init__(
        self,
        store: AsyncStore,
        namespace: str,
        schema: Schema,
        batch_ttl: int = DEFAULT_BATCH_TTL,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self._store = store
        self._ns = retrying(Namespace(namespace, schema, store.cluster, batch_ttl), store, deadline)
        self.namespace = namespace

    async def _run(self, op: Generator[Call, Any, T]) -> T:
        return await run(self._store, op, self._ns.deadline)

    async def _record(self, op: Generator[Call, Any, T]) -> T:
        # a batch is tried again by the operation itself, for the call's own deadline
        return await run(self._store, op)

    @property
    def schema(self) -> Schema:
        """The namespace's schema (`Stats.schema`)."""
        return self._ns.schema

    async def configure(self, schema: Schema) -> None:
        """`Stats.configure`, awaited: store `schema` as the namespace's schema."""
        await self._run(self._ns.configure(schema))

    async def server_info(self) -> dict[str, Any]:
        """`Stats.server_info`, awaited: the server's version, memory use and mode."""
        return await self._store.call(Transport.info)

    async def drop(self) -> int:
        """`Stats.drop`, awaited: delete every key of this namespace; how many."""
        return await self._run(self._ns.drop())

    async def close(self) -> None:
        """Close the connection (`Stats.close`), awaited."""
        await self._store.close()

    async def __aenter__(self) -> AsyncStats:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def track(self, event: str | Mapping[str, Any], /, **props: Any) -> None:
        """`Stats.track`, awaited: record one event (kwargs or trk's object form)."""
        await self._record(self._ns.track(event, props))

    async def track_many(
        self,
        events: Iterable[Mapping[str, Any]],
        batch_id: str | None = None,
        *,
        now: float | None = None,
        deadline: float | None = None,
    ) -> TrackResult:
        """`Stats.track_many`, awaited."""
        return await self._record(self._ns.track_many(events, batch_id, now, deadline))

    async def track_frame(
        self,
        frame: Any,
        batch_id: str | None = None,
        *,
        event: str | None = None,
        now: float | None = None,
        batch_size: int | None = None,
        sort: bool = True,
    ) -> TrackResult:
        """`Stats.track_frame`: a data frame recorded column by column, in batches."""
        from . import frames  # pyarrow is imported when a frame is recorded, not with bitstat

        op = frames.track_frame(self._ns, frame, batch_id, event, now, batch_size, sort)
        return await self._record(op)

    def tracker(self, **options: Any) -> AsyncTracker:
        """A fire-and-forget `AsyncTracker` (call it inside the running loop): `track()` queues,
        a task sends batches; the options are `Tracker`'s but `block`."""
        return AsyncTracker(self, **options)

    async def alias(self, anon: Any, user: Any) -> Aliased:
        """`Stats.alias`: link `anon` to `user`, merging what `anon` did into `user`."""
        return await self._run(Identity(self._ns).alias(anon, user))

    async def forget(self, actor: Any) -> Forgotten:
        """`Stats.forget`: erase `actor` from every actor set and free its id mapping."""
        return await self._run(Identity(self._ns).forget(actor))

    def actors(self, event: str, **segment: Any) -> ActorQuery[AsyncActorSet]:
        """`Stats.actors`: the actors of `event`, as `AsyncActorSet`s once a time is picked."""
        check_name(event)
        seg = self._ns.segment(event, segment)
        return ActorQuery(partial(AsyncActorSet, self), self._ns, event, seg)

    async def _count_exprs(self, exprs: Sequence[Expr]) -> list[int]:
        return await self._run(self._ns.count_exprs(exprs))

    async def unique(self, event: str, start: Any, end: Any = None, **segment: Any) -> int:
        """`Stats.unique`, awaited: distinct actors who did `event` in [start, end]."""
        return await self._run(self._ns.unique(event, start, end, segment))

    async def total(self, event: str, start: Any, end: Any = None) -> int:
        """`Stats.total`, awaited: how many times `event` happened in [start, end]."""
        return await self._run(self._ns.total(event, start, end))

    async def series(
        self,
        event: str,
        start: Any,
        end: Any = None,
        *,
        by: str = "day",
        metric: str = "unique",
        **segment: Any,
    ) -> Series:
        """`Stats.series`, awaited: one value per `by` bucket of the range."""
        return await self._run(self._ns.series(event, start, end, by, metric, segment))

    async def counts(self, event: str, prop: str, start: Any, end: Any = None) -> Counts:
        """`Stats.counts`, awaited: events per value of a `count` property."""
        return await self._run(self._ns.counts(event, prop, start, end))

    async def sums(
        self, event: str, prop: str, start: Any, end: Any = None, by: str | None = None
    ) -> Sum | Sums:
        """`Stats.sums`, awaited: the sum of a `sum` property, or per value of `by`."""
        return await self._run(self._ns.sums(event, prop, start, end, by))

    async def averages(self, event: str, prop: str, start: Any, end: Any = None) -> float | None:
        """`Stats.averages`, awaited: the mean of a `sum` property (None: no values)."""
        return await self._run(self._ns.averages(event, prop, start, end))

    async def top(self, event: str, prop: str, start: Any, end: Any = None, limit: int = 10) -> Top:
        """`Stats.top`, awaited: the `limit` most frequent values of a `top` property."""
        return await self._run(self._ns.top(event, prop, start, end, limit))

    async def distinct(self, event: str, prop: str, start: Any, end: Any = None) -> int:
        """`Stats.distinct`, awaited: how many distinct values a property took."""
        return await self._run(self._ns.distinct(event, prop, start, end))

    async def query(self, event: str, start: Any, end: Any = None) -> dict[str, Any]:
        """`Stats.query`, awaited: every metric the schema records for `event`, in one dict."""
        return await self._run(self._ns.query(event, start, end))

    async def query_days(self, event: str, days: int, end: Any = None) -> list[dict[str, Any]]:
        """`Stats.query_days`, awaited: `query` for each of the last `days` days."""
        return await self._run(self._ns.query_days(event, days, end))

    async def span(self, event: str) -> tuple[date, date] | None:
        """`Stats.span`, awaited: the first and last days `event` was recorded on, or None."""
        return await self._run(self._ns.span(event))

    async def events(self) -> list[str]:
        """`Stats.events`, awaited: every event name recorded in the namespace, sorted."""
        return await self._run(self._ns.events())

    # analyses: the generators of analysis.py, as Stats runs them
    async def retention(
        self,
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
        """`Stats.retention`, awaited: a cohort retention table (`analysis.Retention`)."""
        args = (first_event, return_event, start, periods, period, kind, columns, now, segment)
        return await self._run(analysis.retention(self._ns, *args))

    async def funnel(
        self, steps: Sequence[str], start: Any, end: Any = None, within: Any = "7d", **segment: Any
    ) -> Funnel:
        """`Stats.funnel`, awaited: [(step, actors who reached it), ...] at day resolution."""
        op = analysis.funnel(self._ns, steps, start, end, within, segment)
        return await self._run(op)

    async def stickiness(
        self, event: str, start: Any, end: Any = None, **segment: Any
    ) -> Stickiness:
        """`Stats.stickiness`, awaited: {n: actors active on exactly n days}."""
        return await self._run(analysis.stickiness(self._ns, event, start, end, segment))

    async def lifecycle(
        self, event: str, start: Any, periods: int = 8, period: str = "week", *, now: Any = None
    ) -> Lifecycle:
        """`Stats.lifecycle`, awaited: new, returning, resurrecting, dormant actors per period."""
        op = analysis.lifecycle(self._ns, event, start, periods, period, now=now)
        return await self._run(op)


async def connect(
    url: str | None = None,
    *,
    namespace: str = "bitstat",
    schema: Schema | None = None,
    data_dir: str | Path | None = None,
    appendfsync: str = "everysec",
    batch_ttl: int | str = DEFAULT_BATCH_TTL,
    timeout: float | None = None,
    socket_timeout: float | None = None,
    deadline: float = DEFAULT_DEADLINE,
    durability: str | None = None,
) -> AsyncStats:
    """`bitstat.connect()` for asyncio: the same arguments, an `AsyncStats`."""
    check_namespace(namespace)
    address = resolve_url(url, data_dir, appendfsync)
    store = await AsyncStore.from_url(address, socket_timeout or timeout, durability)
    ttl = parse_duration(batch_ttl)
    stats = AsyncStats(store, namespace, schema or Schema(), batch_ttl=ttl, deadline=deadline)
    await run(store, stats._ns.load_schema(schema))
    return stats
