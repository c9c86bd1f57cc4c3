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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Sequence
from functools import partial, wraps
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import hiredis
import redis.asyncio as aredis
import redis.exceptions as rex
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from .actors import ActorQuery, SetAlgebra
from .calls import SEAL, Call, Driver, Emit, Links
from .clusters import AsyncCluster, every_master_async, on_every_connection
from .ops import check_name
from .pools import CheckedAsyncPool, checked
from .query import Expr
from .signatures import takes_arguments_of
from .stats import ConnectArguments, Opened, Stats
from .store import (
    SCAN_COUNT,
    Driving,
    cluster_address,
    durability,
    not_connected,
    replies_of,
    reply_text,
    shown_url,
    timeouts,
    wrapped_errors,
)
from .tracker_aio import AsyncTracker
from .transport import (
    Direct,
    Moved,
    Pause,
    Pipe,
    Received,
    Request,
    Scan,
    ScriptMissing,
    Sent,
    Transport,
    patient,
)

NodeParser: type[Any] | None
try:  # older redis-py (5): only the cluster's own parser reads MOVED as a MovedError
    from redis.asyncio.cluster import ClusterParser as NodeParser
except ImportError:  # newer (8): every parser does, and the cluster's is gone
    NodeParser = None

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


# (as the blocking store's NO_RETRY: a call is not sent again on a connection made again)
NO_RETRY_ASYNC = AsyncRetry(NoBackoff(), 0)


def _packed_in_c(cls: type[Any]) -> type[Any]:
    """`cls`, a redis.asyncio connection class, with `_PackedInC`'s packing."""
    return type(f"PackedInC{cls.__name__}", (_PackedInC, cls), {})


def _client(url: str, timeout: float | None, links: Links) -> Any:
    """A redis.asyncio client whose connections pack commands in C, counted by `links`."""
    options = timeouts(url, timeout)
    options.update(redis_connect_func=links.counting_async, retry=NO_RETRY_ASYNC)
    client = aredis.Redis.from_url(url, **options)
    pool = client.connection_pool
    pool.connection_class = _packed_in_c(pool.connection_class)
    pool.__class__ = checked(type(pool), CheckedAsyncPool)
    return client


class AsyncStore:
    """Runs `Transport` requests on redis.asyncio (one Redis, a unix socket or a Cluster)."""

    def __init__(
        self, client: Any, cluster: bool, replicas: int = 0, read_timeout: float | None = None
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.io = Transport(cluster, replicas, read_timeout)
        self.nodes: dict[str, Any] = {}  # a plain client per cluster node, for replicated writes
        self.node_options: dict[str, Any] = {}
        self.links = Links()  # (from_url's counts the connections its client makes)

    @classmethod
    async def from_url(
        cls, url: str, timeout: float | None = None, durable: str | None = None
    ) -> AsyncStore:
        url, replicas = durability(url, durable)
        address = cluster_address(url)
        limits = timeouts(url, timeout)
        read_timeout = limits["socket_timeout"]
        links = Links()
        if address is not None:  # (its nodes' connection class is not the caller's to choose)
            # credentials and TLS options, not the address: every node has its own
            options = {**limits}
            options.update((k, v) for k, v in address.items() if k not in ("host", "port"))
            client = AsyncCluster(**address, **limits)
            on_every_connection(client, links.counting_async)
            store = cls(client, True, replicas, read_timeout)
            store.node_options = options
        else:
            store = cls(_client(url, timeout, links), False, replicas, read_timeout)
        store.links = links
        shown = shown_url(url)
        try:
            with wrapped_errors(f"connecting to {shown}"):
                try:
                    await store.client.ping()
                except (rex.RedisClusterException, rex.NoPermissionError) as exc:
                    # as the blocking client says (not a cluster "that cannot take the call")
                    raise not_connected(shown, exc) from exc
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.aclose()
        await self.client.aclose()

    async def perform(self, call: Call) -> Any:
        """`Store.perform` on asyncio."""
        run = Driving(call, self.io)
        sealed = SEAL.set(call.seal)  # (the task's own: another task's calls are not sealed)
        try:
            while (step := run.next_step()) or run.going:
                try:
                    run.reply = await self.take(step)
                except Exception as exc:  # thrown in at the step, which may handle it
                    run.error = exc
        finally:
            SEAL.reset(sealed)
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
                return await self.scan(step.pattern)
            if isinstance(step, Sent):  # each on a connection of its own, answered meanwhile
                ticket = asyncio.gather(*(self._answer_or_error(c) for c in step.commands))
                await asyncio.sleep(0)  # (their requests go out before the caller works on)
                return ticket
            if isinstance(step, Received):
                return replies_of(await step.ticket)
            if isinstance(step, Direct):
                return await self.client.execute_command(*step.command)
            result = step(self.client)
            return await result if inspect.isawaitable(result) else result
        except rex.NoScriptError as exc:
            raise ScriptMissing(str(exc)) from exc
        except rex.MovedError as exc:  # (only a `Pipe` on a key's master meets one)
            raise Moved(reply_text(exc)) from exc

    async def scan(self, pattern: str) -> list[Any]:
        """`Store.scan` on asyncio."""
        if not self.cluster:
            return [k async for k in self.client.scan_iter(match=pattern, count=SCAN_COUNT)]
        found = []
        for node in await every_master_async(self.client):
            scan = self.client.scan_iter(match=pattern, count=SCAN_COUNT, target_nodes=node)
            found += [k async for k in scan]
        return found

    async def _answer_or_error(self, command: tuple[Any, ...]) -> Any:
        try:
            return await self.client.execute_command(*command)
        except rex.ResponseError as exc:
            return exc

    def _master_of(self, key: str) -> Any:
        """The client of the master that holds `key` (the store's own on a single server)."""
        if not self.cluster:
            return self.client
        node = self.client.get_node_from_key(key)
        found = self.nodes.get(node.name)
        if found is None:
            found = self.nodes[node.name] = aredis.Redis(
                host=node.host,
                port=node.port,
                **self.node_options,
                redis_connect_func=self.links.counting_async,
                retry=NO_RETRY_ASYNC,
            )
            if NodeParser is not None:  # a redirect read as the cluster client reads it
                found.connection_pool.connection_kwargs["parser_class"] = NodeParser
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
    driver = Driver(patient(op, deadline) if deadline > 0 else op)
    try:
        while (call := driver.next()) is not None:
            with driver.replying():
                driver.reply = await store.perform(call)
    except BaseException:  # (the task cancelled: asyncio.wait_for's timeout, a client gone)
        driver.stop(op)
        raise
    return driver.answer


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
        """`ActorSet.ids` for `async for`: the actors' original ids, read as `ids` reads them."""
        ns = self._runner._ns
        op = ns.settled(ns.ids(self.expr))
        driver = Driver(patient(op, ns.deadline))
        try:
            while (asked := driver.next()) is not None:
                if isinstance(asked, Emit):
                    for actor in asked.values:
                        yield actor
                    continue
                with driver.replying():
                    driver.reply = await self._runner._store.perform(asked)
        except BaseException:
            driver.stop(op)
            raise


def awaited(
    method: Callable[Concatenate[Stats, P], T],
) -> Callable[Concatenate[AsyncStats, P], Coroutine[Any, Any, T]]:
    """`Stats.method` for `AsyncStats`, with its signature and docstring: the very method,
    called on the AsyncStats and awaited. A Stats method returns what `_run`, `_record` or
    `_store.call` return, untouched; on an AsyncStats they return coroutines of the answers."""

    @wraps(method)
    async def twin(self: AsyncStats, /, *args: P.args, **kwargs: P.kwargs) -> T:
        answer: Awaitable[T] = cast(Any, method)(self, *args, **kwargs)
        return await answer

    return twin


class AsyncStats(Opened[AsyncStore]):
    """`Stats` for asyncio code: the same methods, awaited. Made by `bitstat.aio.connect()`."""

    async def _run(self, op: Generator[Call, Any, T]) -> T:
        return await run(self._store, self._ns.settled(op), self._ns.deadline)

    async def _unsettled(self, op: Generator[Call, Any, T]) -> T:
        return await run(self._store, op, self._ns.deadline)

    async def _record(self, op: Generator[Call, Any, T]) -> T:
        # a batch is tried again by the operation itself, for the call's own deadline
        return await run(self._store, op)

    async def close(self) -> None:
        """Close the connection (`Stats.close`), awaited."""
        await self._store.close()

    async def __aenter__(self) -> AsyncStats:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def tracker(self, **options: Any) -> AsyncTracker:
        """A fire-and-forget `AsyncTracker` (call it inside the running loop): `track()` queues,
        a task sends batches; the options are `Tracker`'s but `block`."""
        return AsyncTracker(self, **options)

    def actors(self, event: str, **segment: Any) -> ActorQuery[AsyncActorSet]:
        """`Stats.actors`: the actors of `event`, as `AsyncActorSet`s once a time is picked."""
        check_name(event)
        seg = self._ns.segment(event, segment)
        return ActorQuery(partial(AsyncActorSet, self), self._ns, event, seg)

    async def _count_exprs(self, exprs: Sequence[Expr]) -> list[int]:
        return await self._run(self._ns.count_exprs(exprs))

    # every other method is Stats', awaited
    configure = awaited(Stats.configure)
    server_info = awaited(Stats.server_info)
    drop = awaited(Stats.drop)
    track = awaited(Stats.track)
    flush = awaited(Stats.flush)
    track_many = awaited(Stats.track_many)
    track_frame = awaited(Stats.track_frame)
    alias = awaited(Stats.alias)
    forget = awaited(Stats.forget)
    unique = awaited(Stats.unique)
    total = awaited(Stats.total)
    series = awaited(Stats.series)
    counts = awaited(Stats.counts)
    sums = awaited(Stats.sums)
    averages = awaited(Stats.averages)
    top = awaited(Stats.top)
    distinct = awaited(Stats.distinct)
    query = awaited(Stats.query)
    query_days = awaited(Stats.query_days)
    span = awaited(Stats.span)
    events = awaited(Stats.events)
    retention = awaited(Stats.retention)
    funnel = awaited(Stats.funnel)
    stickiness = awaited(Stats.stickiness)
    lifecycle = awaited(Stats.lifecycle)


@takes_arguments_of(ConnectArguments)
async def connect(arguments: ConnectArguments) -> AsyncStats:
    """`bitstat.connect()` for asyncio: the same arguments (but `track_ahead`), an
    `AsyncStats`."""
    if arguments.track_ahead:
        raise ValueError(
            "track_ahead is for the blocking Stats: AsyncStats.track() waits for its push"
            " without holding up other tasks; AsyncStats.tracker() sends without waiting"
        )
    store = await AsyncStore.from_url(*arguments.store_options())
    stats = arguments.opened(AsyncStats, store)
    await stats._unsettled(stats._ns.opened(arguments.schema))
    return stats
