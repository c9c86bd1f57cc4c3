"""The asyncio API: `AsyncStats` runs the very operations of ops.py on redis.asyncio.

st = await bitstat.aio.connect("redis://localhost:6379/0", namespace="shop")
await st.track("login", user=42)
await st.unique("login", "2026-11")
nov = st.actors("login").month(2026, 11)
await (nov & st.actors("purchase").month(2026, 11)).count()
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Generator, Iterable, Mapping, Sequence
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import hiredis
import redis.asyncio as aredis
import redis.exceptions as rex

from . import analysis
from .actors import ActorQuery, SetAlgebra
from .calls import Call, Emit, patient, step
from .clusters import AsyncCluster
from .errors import BitstatError
from .identity import Aliased, Forgotten, Identity
from .ops import Namespace, check_name, check_namespace
from .query import Expr, Program
from .record import DEFAULT_BATCH_TTL, DEFAULT_DEADLINE, TrackResult, retrying
from .schema import Schema, parse_duration
from .store import (
    UNLINK_BATCH,
    Script,
    apply_call,
    cluster_address,
    durability,
    evaluate_answers,
    evaluate_calls,
    ids_call,
    lua_script,
    not_replicated,
    queue_sum_reads,
    replicated_calls,
    resolve_url,
    scores,
    server_summary,
    timeouts,
    top_args,
    unlinks,
    values_call,
    wrapped_errors,
)
from .sums import Target
from .tables import Counts, Funnel, Lifecycle, Series, Stickiness, Sum, Sums, Top
from .tracker_aio import AsyncTracker
from .writes import Group

T = TypeVar("T")


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


async def _script(script: Script, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except rex.NoScriptError:
        return await client.eval(script.source, len(keys), *keys, *args)


class AsyncStore:
    """The Store's calls on redis.asyncio (one Redis, a unix socket or a Cluster)."""

    def __init__(self, client: Any, cluster: bool, replicas: int = 0) -> None:
        self.client = client
        self.cluster = cluster
        self.replicas = replicas  # replicas that must confirm a batch (durability="replicated")
        self.stale = False  # the cluster's slot map must be read again (a replicated write failed)
        self.nodes: dict[str, Any] = {}  # a plain client per cluster node, for replicated writes
        self.node_options: dict[str, Any] = {}
        self.apply_script = Script("apply.lua")
        self.ids_script = Script("ids.lua")
        self.evaluate_script = Script("sets.lua")
        self.counters_script = Script("counters.lua")
        self.values_script = Script("values.lua")

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

    async def sleep(self, seconds: float) -> None:
        """Wait before a batch is tried again."""
        await asyncio.sleep(seconds)

    async def apply(self, groups: Sequence[Group], batch_ttl: int) -> list[int | bytes]:
        if self.replicas:
            return await self.apply_replicated(groups, batch_ttl)
        results: list[int | bytes] = []
        with wrapped_errors("recording a batch"):
            for g in groups:
                keys, args = apply_call(g, batch_ttl)
                results.append(await _script(self.apply_script, self.client, keys, args))
                if results[-1] == -1:
                    break
        return results

    def _node_client(self, key: str) -> Any:
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

    async def apply_replicated(self, groups: Sequence[Group], batch_ttl: int) -> list[int | bytes]:
        """`Store.apply_replicated` on asyncio."""
        results: list[int | bytes] = []
        with wrapped_errors("recording a batch"):
            try:
                if self.stale:
                    await self.client.nodes_manager.initialize()
                    self.stale = False
                for g in groups:
                    client = self._node_client(g.batch_key)
                    for _ in range(2):  # a second time when the server had lost the script
                        pipe = client.pipeline(transaction=False)
                        replicated_calls(pipe, self.apply_script.sha, g, batch_ttl, self.replicas)
                        result, _, acked = await pipe.execute(raise_on_error=False)
                        if not isinstance(result, rex.NoScriptError):
                            break
                        await client.script_load(self.apply_script.source)
                    if isinstance(result, Exception):
                        raise result
                    results.append(result)
                    if result == -1:
                        break
                    if isinstance(acked, Exception):
                        raise acked
                    if acked < self.replicas:
                        raise not_replicated(acked, self.replicas)
            except (rex.RedisError, rex.RedisClusterException):
                self.stale = self.cluster
                raise
        return results

    async def read_sums(self, targets: Sequence[Target]) -> list[float]:
        if not targets:
            return []
        with wrapped_errors("reading sums"):
            pipe = self.client.pipeline(transaction=False)
            queue_sum_reads(pipe, targets)
            return [float(v or 0) for v in await pipe.execute()]

    async def map_ids(
        self,
        next_key: str,
        reverse_prefix: str,
        reverse_bits: int,
        forward: Sequence[str],
        ids: Sequence[str],
    ) -> list[int]:
        keys, args = ids_call(next_key, reverse_prefix, reverse_bits, forward, ids)
        with wrapped_errors("mapping actor ids"):
            return [int(x) for x in await _script(self.ids_script, self.client, keys, args)]

    async def evaluate(self, programs: Sequence[Program]) -> list[list[Any]]:
        with wrapped_errors("evaluating actor sets"):
            return evaluate_answers(
                [
                    await _script(self.evaluate_script, self.client, k, a)
                    for k, a in evaluate_calls(programs, self.cluster)
                ]
            )

    async def map_values(
        self, next_key: str, old_key: str, buckets: str, values: Sequence[str]
    ) -> list[int]:
        keys, args = values_call(next_key, old_key, buckets, values)
        with wrapped_errors("numbering distinct values"):
            found = await _script(self.values_script, self.client, keys, args)
        return [int(x) for x in found]

    async def evaluate_checked(
        self, shards_key: str, programs: Sequence[Program]
    ) -> tuple[list[int], list[list[Any]]]:
        if self.cluster:
            shards = sorted(int(x) for x in await self.smembers(shards_key))
            return shards, await self.evaluate(programs)
        calls = evaluate_calls(programs, cluster=False)

        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.smembers(shards_key)
            for k, a in calls:
                pipe.evalsha(self.evaluate_script.sha, len(k), *k, *a)
            return list(await pipe.execute())

        with wrapped_errors("evaluating actor sets"):
            try:
                raw, *replies = await run()
            except rex.NoScriptError:  # a restarted server forgot the script: load, run again
                await self.client.script_load(self.evaluate_script.source)
                raw, *replies = await run()
        return sorted(int(x) for x in raw), evaluate_answers(replies)

    async def pfcount(self, keys: Sequence[str]) -> int:
        with wrapped_errors("estimating distinct values"):
            return int(await self.client.pfcount(*keys))

    async def hsum(self, keys: Sequence[str], fields: Sequence[str] = ()) -> dict[bytes, float]:
        if not keys:
            return {}
        with wrapped_errors("reading counters"):
            flat = await _script(self.counters_script, self.client, keys, ["hsum", *fields])
        return scores(flat)

    async def zsum(self, scratch: str, keys: Sequence[str]) -> dict[bytes, float]:
        if not keys:
            return {}
        with wrapped_errors("reading counters"):
            flat = await _script(self.counters_script, self.client, [scratch, *keys], ["zsum"])
        return scores(flat)

    async def top(
        self, scratch: str, keys: Sequence[str], limit: int, all_ties: bool = False
    ) -> list[tuple[bytes, float]]:
        if not keys:
            return []
        with wrapped_errors("ranking top values"):
            args = top_args(limit, all_ties)
            flat = await _script(self.counters_script, self.client, [scratch, *keys], args)
        return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def hget_many(self, pairs: Sequence[tuple[str, str]]) -> list[bytes | None]:
        if not pairs:
            return []
        with wrapped_errors("reading counters"):
            pipe = self.client.pipeline(transaction=False)
            for key, f in pairs:
                pipe.hget(key, f)
            return list(await pipe.execute())

    async def getrange(self, key: str, start: int, end: int) -> bytes:
        with wrapped_errors("reading actor ids"):
            return bytes(await self.client.getrange(key, start, end))

    async def get(self, key: str) -> bytes | None:
        with wrapped_errors(f"reading {key}"):
            return await self.client.get(key)  # type: ignore[no-any-return]

    async def set(self, key: str, value: str) -> None:
        with wrapped_errors(f"writing {key}"):
            await self.client.set(key, value)

    async def mark(self, key: str, note: str, ttl: int) -> None:
        """Mark a batch id that wrote nothing (all its events rejected), for `ttl` seconds."""
        with wrapped_errors(f"writing {key}"):
            await self.client.set(key, note, ex=ttl)

    async def hget(self, key: str, field: str) -> bytes | None:
        with wrapped_errors(f"reading {key}"):
            return await self.client.hget(key, field)  # type: ignore[no-any-return]

    async def smembers(self, key: str) -> builtins.set[bytes]:
        with wrapped_errors(f"reading {key}"):
            return set(await self.client.smembers(key))

    async def info(self) -> dict[str, Any]:
        with wrapped_errors("reading server info"):
            info = await self.client.info()
        return server_summary(info, self.cluster)

    async def delete(self, *keys: str) -> None:
        with wrapped_errors("deleting keys"):
            for key in keys:
                await self.client.delete(key)

    async def delete_matching(self, patterns: Sequence[str]) -> int:
        deleted = 0
        with wrapped_errors("deleting keys"):
            for pattern in patterns:
                batch: list[bytes] = []
                async for key in self.client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= UNLINK_BATCH:
                        deleted += await self._unlink(batch)
                        batch = []
                deleted += await self._unlink(batch)
        return deleted

    async def _unlink(self, keys: list[bytes]) -> int:
        return sum([int(await self.client.unlink(*c)) for c in unlinks(keys, self.cluster)])

    async def scan_keys(self, pattern: str) -> list[bytes]:
        """The keys matching a glob pattern, found with SCAN (on every node of a cluster)."""
        with wrapped_errors("listing keys"):
            return [key async for key in self.client.scan_iter(match=pattern, count=1000)]

    async def run_lua(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script `name` of scripts/ (keys of one slot on a cluster)."""
        with wrapped_errors(f"running {name}"):
            return await _script(lua_script(name), self.client, keys, args)


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
            reply, error = await getattr(store, call.method)(*call.args), None
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
                reply = await getattr(store, call.method)(*call.args)
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
        return await self._store.info()

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
