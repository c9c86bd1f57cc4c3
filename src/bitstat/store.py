"""Runs plans on redis-py: one Redis, a unix socket, or a Redis Cluster. Thin: no decisions."""

from __future__ import annotations

import builtins
import functools
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.exceptions as rex

from .clusters import Cluster
from .errors import ConnectionError, ServerError
from .keys import register, tag_of, value_bucket_of
from .query import SCRATCH_TTL_MS, Program
from .sums import Target
from .writes import Group

T = TypeVar("T")
CLUSTER_SCHEME = "redis+cluster"


def load_script(name: str) -> str:
    return resources.files("bitstat").joinpath("scripts", name).read_text("utf-8")


# replies of a server that cannot take the call for the moment: a cluster moving slots or
# failing over, a server loading its data, a replica promoted or demoted; nothing was written
FOR_NOW = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "LOADING", "READONLY")
FOR_NOW_ERRORS = (rex.AskError, rex.TryAgainError, rex.ReadOnlyError)  # the cluster parser's


def classified(error: ConnectionError | ServerError, *, transient: bool, refused: bool) -> Any:
    error.transient = transient
    error.refused = refused
    return error


@contextmanager
def wrapped_errors(what: str) -> Iterator[None]:
    """Redis failures surface as bitstat errors, with the cause chained, each saying whether it
    may pass (`transient`) and whether the server answered it (`refused`: nothing written)."""
    try:
        yield
    except (rex.AuthenticationError, rex.AuthorizationError) as exc:
        raise classified(
            ConnectionError(f"{what}: the server refused the credentials: {exc}"),
            transient=False,
            refused=True,
        ) from exc
    except rex.BusyLoadingError as exc:
        raise classified(
            ConnectionError(f"{what}: the server is loading its data: {exc}"),
            transient=True,
            refused=True,
        ) from exc
    except (rex.ConnectionError, rex.TimeoutError) as exc:
        raise ConnectionError(f"{what}: cannot reach the server: {exc}") from exc
    except (rex.ClusterError, rex.RedisClusterException) as exc:
        # the cluster client gave up (slots not covered, redirected too often, nodes
        # unreachable): unless a node answered so, the last try may have reached one
        raise classified(
            ServerError(f"{what}: the cluster cannot take the call now: {exc!r}"),
            transient=True,
            refused=isinstance(exc, rex.ResponseError),
        ) from exc
    except rex.OutOfMemoryError as exc:
        raise ServerError(
            f"{what}: the server is out of memory (maxmemory reached; under the noeviction"
            f" policy it refuses writes until memory is freed or the limit raised): {exc}"
        ) from exc
    except rex.RedisError as exc:
        error = ServerError(f"{what}: the server answered with an error: {exc}")
        transient = isinstance(exc, FOR_NOW_ERRORS) or str(exc).startswith(FOR_NOW)
        raise classified(error, transient=transient, refused=True) from exc


def resolve_url(url: str | None, data_dir: Any, appendfsync: str) -> str:
    """`url`, else $BITSTAT_URL, else the embedded server of `data_dir` (started if needed)."""
    if url is None:
        url = os.environ.get("BITSTAT_URL") or None
    if url is None:
        from . import embedded

        url = embedded.ensure_server(data_dir, appendfsync=appendfsync)
    return url


DEFAULT_TIMEOUT = 30.0  # seconds a call waits for the server's answer (a big batch takes ~1 s)
CONNECT_TIMEOUT = 10.0  # seconds to open a connection
HEALTH_CHECK = 30  # seconds
TIMEOUT_PARAMS = ("socket_timeout", "socket_connect_timeout")


def timeouts(url: str, timeout: float | None) -> dict[str, Any]:
    """Client options that keep a call from waiting forever on a server that vanished without
    closing the connection (a half-open TCP connection): a read timeout (`timeout`, else
    `?socket_timeout=` in the URL, else DEFAULT_TIMEOUT), a connect timeout, TCP keep-alive,
    and a health check of a connection idle for HEALTH_CHECK seconds."""
    given = {
        k: float(v[-1]) for k, v in parse_qs(urlsplit(url).query).items() if k in TIMEOUT_PARAMS
    }
    options: dict[str, Any] = {
        "socket_timeout": timeout or given.get("socket_timeout", DEFAULT_TIMEOUT),
        "socket_connect_timeout": given.get("socket_connect_timeout", CONNECT_TIMEOUT),
        # a connection idle this long is checked (PING) before it carries a call again
        "health_check_interval": HEALTH_CHECK,
    }
    if not url.startswith("unix:"):  # TCP only: a unix socket has no keep-alive to ask for
        options["socket_keepalive"] = True
    return options


def cluster_address(url: str) -> dict[str, Any] | None:
    """RedisCluster arguments for a redis+cluster:// URL, None for a single-server URL; any
    other scheme is refused. Shared by the blocking and the asyncio stores."""
    parts = urlsplit(url)
    if parts.scheme == CLUSTER_SCHEME:
        return {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 6379,
            "username": parts.username,
            "password": parts.password,
        }
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConnectionError(
            f"unsupported URL scheme {parts.scheme!r} in {url!r}: "
            "use redis://, rediss://, unix:// or redis+cluster://"
        )
    return None


DURABILITY = ("fast", "replicated")
WAIT_MS = 5000  # how long a replica has to confirm a batch (WAIT) before the try fails


def durability(url: str, given: str | None) -> tuple[str, int]:
    """(`url` without its `?durability=`, how many replicas must confirm a batch): `given`, else
    the URL's, else "fast" (0: acknowledged once the master has it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    in_url = [v for k, v in query if k == "durability"]
    mode = given or (in_url[-1] if in_url else "fast")
    if mode not in DURABILITY:
        raise ConnectionError(f"durability must be one of {', '.join(DURABILITY)}, got {mode!r}")
    if in_url:
        rest = urlencode([(k, v) for k, v in query if k != "durability"])
        url = urlunsplit(parts._replace(query=rest))
        if parts.scheme == "unix" and not parts.netloc:  # urlunsplit drops an empty "//"
            url = url.replace("unix:", "unix://", 1)
    return url, int(mode == "replicated")


def not_replicated(acked: int, wanted: int) -> ServerError:
    """The error of a batch the master took and no replica confirmed in time: tried again (the
    batch id makes it land once), the write is waited for anew."""
    error = ServerError(
        f"recording a batch: {acked} of {wanted} replica(s) confirmed it within {WAIT_MS} ms"
        " (durability='replicated'); the master has it"
    )
    return classified(error, transient=True, refused=False)  # type: ignore[no-any-return]


def replicated_calls(pipe: Any, sha: str, g: Group, batch_ttl: int, replicas: int) -> None:
    """Queue a group's apply.lua, a write after it (its marker's expiry set again: something
    to wait for even when the batch was in before) and the WAIT for `replicas` replicas, on
    one pipeline: WAIT waits for the writes of its own connection."""
    keys, args = apply_call(g, batch_ttl)
    pipe.evalsha(sha, len(keys), *keys, *args)
    pipe.expire(g.batch_key, batch_ttl)
    pipe.wait(replicas, WAIT_MS)


def client_from_url(url: str, timeout: float | None = None) -> tuple[Any, bool]:
    """(redis-py client, is_cluster) for redis://, rediss://, unix:// or redis+cluster:// URLs."""
    address = cluster_address(url)
    options = timeouts(url, timeout)
    if address is not None:
        return Cluster(**address, **options), True
    return redis.Redis.from_url(url, **options), False


def server_summary(info: dict[str, Any], cluster: bool) -> dict[str, Any]:
    if cluster:  # one answer per node: keep the first, add memory up
        nodes = list(info.values())
        merged = dict(nodes[0])
        merged["used_memory"] = sum(int(n.get("used_memory", 0)) for n in nodes)
        info = merged
    return {
        "version": info.get("valkey_version") or info.get("redis_version"),
        "used_memory": int(info.get("used_memory", 0)),
        "used_memory_human": info.get("used_memory_human"),
        "cluster": cluster,
    }


def _with_buckets(
    keys: list[str], args: list[Any], buckets: Sequence[str], items: Sequence[str]
) -> tuple[list[str], list[Any]]:
    """Append (item, index in KEYS of its bucket) pairs, each bucket named once in KEYS."""
    index: dict[str, int] = {}
    for key, item in zip(buckets, items, strict=True):
        idx = index.get(key)
        if idx is None:
            keys.append(key)
            idx = index[key] = len(keys)
        args += [item, idx]
    return keys, args


def ids_call(
    next_key: str,
    reverse_prefix: str,
    reverse_bits: int,
    forward: Sequence[str],
    ids: Sequence[str],
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ids.lua."""
    return _with_buckets([next_key], [reverse_bits, reverse_prefix], forward, ids)


def values_call(
    next_key: str, old_key: str, buckets: str, values: Sequence[str]
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of values.lua."""
    args: list[Any] = [buckets]
    for value in values:
        args += [value, value_bucket_of(value)]
    return [next_key, old_key], args


UNLINK_BATCH = 500  # keys found by SCAN deleted per UNLINK


def unlinks(keys: list[bytes], cluster: bool) -> list[list[bytes]]:
    """The UNLINK calls that delete `keys`: all at once on one server, one key per call on a
    cluster (the keys of a batch may live in different slots)."""
    if not keys:
        return []
    return [[k] for k in keys] if cluster else [keys]


def apply_call(g: Group, batch_ttl: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the apply.lua call of one group of a write plan."""
    return [g.batch_key, g.scratch_key, *g.keys], [batch_ttl, *g.args]


def queue_sum_reads(pipe: Any, targets: Sequence[Target]) -> None:
    """Queue the read of each total on a pipeline (blocking or asyncio: queuing is the same)."""
    for t in targets:
        if t.kind == "hash":
            pipe.hget(t.key, t.field)
        else:
            pipe.zscore(t.key, t.field)


def evaluate_call(programs: Sequence[Program]) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one sets.lua call running `programs` in order, each with fresh register
    key names in its own slot."""
    keys: list[str] = []
    args: list[Any] = [SCRATCH_TTL_MS]
    token = secrets.token_hex(6)  # programs of different tags (shards) can share one
    tags: set[str] = set()
    previous: list[str | int] | None = None
    for p in programs:
        tag = tag_of(p.operands[0])
        if tag in tags:
            token = secrets.token_hex(6)
            tags.clear()
        tags.add(tag)
        keys += p.operands
        keys += [register(tag, token, i) for i in range(p.registers)]
        if p.code is previous:  # a retagged program: its code is sent once
            args += [len(p.operands), p.registers, -1]
        else:
            args += [len(p.operands), p.registers, len(p.code), *p.code]
            previous = p.code
    return keys, args


def evaluate_calls(programs: Sequence[Program], cluster: bool) -> list[tuple[list[str], list[Any]]]:
    """sets.lua calls for `programs`: one call on a single server (its per-call cost is paid
    once, not once per shard), one per program (per slot) on a cluster."""
    if not programs:
        return []
    if cluster:
        return [evaluate_call([p]) for p in programs]
    return [evaluate_call(programs)]


def evaluate_answers(replies: Sequence[Any]) -> list[list[Any]]:
    """Answers per program from the replies of `evaluate_calls`."""
    return [list(answers) for reply in replies for answers in reply]


def scores(flat: Sequence[Any]) -> dict[bytes, float]:
    """A flat [member, score, ...] reply as a dict."""
    return {flat[i]: float(flat[i + 1]) for i in range(0, len(flat), 2)}


def top_args(limit: int, all_ties: bool) -> list[Any]:
    return ["top", limit, SCRATCH_TTL_MS, "all-ties" if all_ties else "cut"]


class Script:
    """A Lua script run by SHA, loaded again when the server has forgotten it."""

    def __init__(self, name: str) -> None:
        import hashlib

        self.name = name
        self.source = load_script(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)


@functools.cache
def lua_script(name: str) -> Script:
    """A script of scripts/ by name, loaded once per process (identity.py's, run by name)."""
    return Script(name)


class Store:
    """Executes write plans and read programs; all bitstat I/O goes through here."""

    def __init__(self, client: Any, cluster: bool, replicas: int = 0) -> None:
        self.client = client
        self.cluster = cluster
        self.replicas = replicas  # replicas that must confirm a batch (durability="replicated")
        self.stale = False  # the cluster's slot map must be read again (a replicated write failed)
        self.apply_script = Script("apply.lua")
        self.ids_script = Script("ids.lua")
        self.evaluate_script = Script("sets.lua")
        self.counters_script = Script("counters.lua")
        self.values_script = Script("values.lua")

    @classmethod
    def from_url(cls, url: str, timeout: float | None = None, durable: str | None = None) -> Store:
        url, replicas = durability(url, durable)
        client, cluster = client_from_url(url, timeout)
        store = cls(client, cluster, replicas)
        with wrapped_errors(f"connecting to {url}"):
            client.ping()
        return store

    def close(self) -> None:
        self.client.close()

    def sleep(self, seconds: float) -> None:
        """Wait before a batch is tried again."""
        time.sleep(seconds)

    # writes
    def apply(self, groups: Sequence[Group], batch_ttl: int) -> list[int | bytes]:
        """Apply groups in order, each with apply.lua; its answer per group sent (1, the note of
        a batch seen before, or -1: a sum would overflow), stopping after the first -1."""
        if self.replicas:
            return self.apply_replicated(groups, batch_ttl)
        results: list[int | bytes] = []
        with wrapped_errors("recording a batch"):
            for g in groups:
                results.append(self.apply_script(self.client, *apply_call(g, batch_ttl)))
                if results[-1] == -1:
                    break
        return results

    def apply_replicated(self, groups: Sequence[Group], batch_ttl: int) -> list[int | bytes]:
        """`apply`, each group acknowledged once `replicas` replicas of its master have it."""
        results: list[int | bytes] = []
        with wrapped_errors("recording a batch"):
            try:
                if self.stale:
                    self.client.nodes_manager.initialize()
                    self.stale = False
                for g in groups:
                    client = (
                        self.client.get_node_from_key(g.batch_key).redis_connection
                        if self.cluster
                        else self.client
                    )
                    for _ in range(2):  # a second time when the server had lost the script
                        pipe = client.pipeline(transaction=False)
                        replicated_calls(pipe, self.apply_script.sha, g, batch_ttl, self.replicas)
                        result, _, acked = pipe.execute(raise_on_error=False)
                        if not isinstance(result, rex.NoScriptError):
                            break
                        client.script_load(self.apply_script.source)
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

    def read_sums(self, targets: Sequence[Target]) -> list[float]:
        """The stored value of each total (0 where there is none), in one round trip."""
        if not targets:
            return []
        with wrapped_errors("reading sums"):
            pipe = self.client.pipeline(transaction=False)
            queue_sum_reads(pipe, targets)
            return [float(v or 0) for v in pipe.execute()]

    def map_ids(
        self,
        next_key: str,
        reverse_prefix: str,
        reverse_bits: int,
        forward: Sequence[str],
        ids: Sequence[str],
    ) -> list[int]:
        keys, args = ids_call(next_key, reverse_prefix, reverse_bits, forward, ids)
        with wrapped_errors("mapping actor ids"):
            return [int(x) for x in self.ids_script(self.client, keys, args)]

    def map_values(
        self, next_key: str, old_key: str, buckets: str, values: Sequence[str]
    ) -> list[int]:
        keys, args = values_call(next_key, old_key, buckets, values)
        with wrapped_errors("numbering distinct values"):
            found = self.values_script(self.client, keys, args)
        return [int(x) for x in found]

    # reads
    def evaluate_checked(
        self, shards_key: str, programs: Sequence[Program]
    ) -> tuple[list[int], list[list[Any]]]:
        """The shard set and the answers of programs compiled for the shards believed current,
        in one round trip on a single server; the caller compiles again if the set moved."""
        if self.cluster:
            with wrapped_errors("listing shards"):
                shards = sorted(int(x) for x in self.client.smembers(shards_key))
            return shards, self.evaluate(programs)
        calls = evaluate_calls(programs, cluster=False)

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.smembers(shards_key)
            for k, a in calls:
                pipe.evalsha(self.evaluate_script.sha, len(k), *k, *a)
            return list(pipe.execute())

        with wrapped_errors("evaluating actor sets"):
            try:
                raw, *replies = run()
            except rex.NoScriptError:  # a restarted server forgot the script: load, run again
                self.client.script_load(self.evaluate_script.source)
                raw, *replies = run()
        return sorted(int(x) for x in raw), evaluate_answers(replies)

    def evaluate(self, programs: Sequence[Program]) -> list[list[Any]]:
        """Answers of sets.lua programs (one per shard): one call on a single server."""
        with wrapped_errors("evaluating actor sets"):
            return evaluate_answers(
                [
                    self.evaluate_script(self.client, k, a)
                    for k, a in evaluate_calls(programs, self.cluster)
                ]
            )

    def pfcount(self, keys: Sequence[str]) -> int:
        """The estimated size of the union of HyperLogLogs of one slot."""
        with wrapped_errors("estimating distinct values"):
            return int(self.client.pfcount(*keys))

    def hsum(self, keys: Sequence[str], fields: Sequence[str] = ()) -> dict[bytes, float]:
        if not keys:
            return {}
        with wrapped_errors("reading counters"):
            flat = self.counters_script(self.client, keys, ["hsum", *fields])
        return scores(flat)

    def zsum(self, scratch: str, keys: Sequence[str]) -> dict[bytes, float]:
        """Scores of the union of sorted sets (one slot), added up per member."""
        if not keys:
            return {}
        with wrapped_errors("reading counters"):
            flat = self.counters_script(self.client, [scratch, *keys], ["zsum"])
        return scores(flat)

    def top(
        self, scratch: str, keys: Sequence[str], limit: int, all_ties: bool = False
    ) -> list[tuple[bytes, float]]:
        if not keys:
            return []
        with wrapped_errors("ranking top values"):
            args = top_args(limit, all_ties)
            flat = self.counters_script(self.client, [scratch, *keys], args)
        return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]

    def hget_many(self, pairs: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """HGET of many (key, field) pairs in one round trip (per node on a cluster)."""
        if not pairs:
            return []
        with wrapped_errors("reading counters"):
            pipe = self.client.pipeline(transaction=False)
            for key, f in pairs:
                pipe.hget(key, f)
            return list(pipe.execute())

    def getrange(self, key: str, start: int, end: int) -> bytes:
        with wrapped_errors("reading actor ids"):
            return bytes(self.client.getrange(key, start, end))

    def get(self, key: str) -> bytes | None:
        with wrapped_errors(f"reading {key}"):
            return self.client.get(key)  # type: ignore[no-any-return]

    def set(self, key: str, value: str) -> None:
        with wrapped_errors(f"writing {key}"):
            self.client.set(key, value)

    def mark(self, key: str, note: str, ttl: int) -> None:
        """Mark a batch id that wrote nothing (all its events rejected), for `ttl` seconds."""
        with wrapped_errors(f"writing {key}"):
            self.client.set(key, note, ex=ttl)

    def hget(self, key: str, field: str) -> bytes | None:
        with wrapped_errors(f"reading {key}"):
            return self.client.hget(key, field)  # type: ignore[no-any-return]

    def smembers(self, key: str) -> builtins.set[bytes]:
        with wrapped_errors(f"reading {key}"):
            return set(self.client.smembers(key))

    def info(self) -> dict[str, Any]:
        """Version, memory use and mode of the server (memory added up over a cluster)."""
        with wrapped_errors("reading server info"):
            info = self.client.info()
        return server_summary(info, self.cluster)

    def delete_matching(self, patterns: Sequence[str]) -> int:
        """Delete the keys matching glob patterns, found with SCAN (on every node of a cluster)."""
        deleted = 0
        with wrapped_errors("deleting keys"):
            for pattern in patterns:
                batch: list[bytes] = []
                for key in self.client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= UNLINK_BATCH:
                        deleted += sum(self.client.unlink(*c) for c in unlinks(batch, self.cluster))
                        batch = []
                deleted += sum(self.client.unlink(*c) for c in unlinks(batch, self.cluster))
        return deleted

    def delete(self, *keys: str) -> None:
        with wrapped_errors("deleting keys"):
            for key in keys:
                self.client.delete(key)

    def scan_keys(self, pattern: str) -> list[bytes]:
        """The keys matching a glob pattern, found with SCAN (on every node of a cluster)."""
        with wrapped_errors("listing keys"):
            return list(self.client.scan_iter(match=pattern, count=1000))

    def run_lua(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script `name` of scripts/ (keys of one slot on a cluster)."""
        with wrapped_errors(f"running {name}"):
            return lua_script(name)(self.client, keys, args)
