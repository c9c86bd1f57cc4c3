"""The named Redis connections ("systems") bitmapist code refers to, as in bitmapist.

bitmapist keeps them in a module-level dict that users mutate through `setup_redis`; the
drop-in keeps that contract, "default" included (localhost:6379, as in bitmapist): a redis-py
client opens no connection until its first command, so importing connects to nothing.
bitmapist's functions look `SYSTEMS` and `get_redis` up in its module at each call, so code
that replaces either (a test's `mock.patch.object(bitmapist, "SYSTEMS", {...})`) redirects
every call; the drop-in looks them up in its package the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import urlsplit

import redis

from bitstat.store import CLUSTER_SCHEMES, client_from_url

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379

SYSTEMS: dict[str, Any] = {"default": redis.StrictRedis(host=DEFAULT_HOST, port=DEFAULT_PORT)}


def setup_redis(name: str, host: str, port: int, **kw: Any) -> None:
    """Register the Redis at `host`:`port` as system `name`.

    Extra keywords go to the client class, `redis_client` (default `redis.StrictRedis`),
    e.g. `db=1`, `password=...` or `unix_socket_path=...`.
    """
    factory: Callable[..., Any] = kw.pop("redis_client", redis.StrictRedis)
    systems()[name] = factory(host=host, port=port, **kw)


def setup_redis_url(name: str, url: str) -> None:
    """Register the Redis at a redis://, rediss:// or unix:// URL as system `name` (bitstat only).

    Redis Cluster is refused: bitmapist's key names carry no hash tags, so its bit operations
    would cross slots.
    """
    if urlsplit(url).scheme in CLUSTER_SCHEMES:
        raise ValueError(
            f"{url!r} is a Redis Cluster; bitmapist's key layout needs a single server "
            "(use bitstat's own API for a cluster)"
        )
    systems()[name] = client_from_url(url)[0]


def systems() -> dict[str, Any]:
    """The package's `SYSTEMS` as it is now: the dict above unless a caller replaced it."""
    found: dict[str, Any] = getattr(sys.modules.get(__package__), "SYSTEMS", SYSTEMS)
    return found


def get_redis(system: Any = "default") -> Any:
    """The redis-py client of `system`: a name given to `setup_redis`, or a client or pipeline."""
    if isinstance(system, redis.Redis):
        return system
    return systems()[system]


def client_of(system: Any) -> Any:
    """The client of `system` by the package's `get_redis` as it is now (a caller may patch it)."""
    lookup: Callable[[Any], Any] = getattr(sys.modules.get(__package__), "get_redis", get_redis)
    return lookup(system)


def is_pipeline(system: Any) -> bool:
    """Whether `system` is a caller's pipeline, whose commands wait for the caller's execute()."""
    return isinstance(system, redis.client.Pipeline)


def direct_client(system: Any) -> Any:
    """A client of `system` whose commands run at once: for a pipeline, one on its connection
    pool (reads must answer, not join the caller's queue)."""
    client = client_of(system)
    if is_pipeline(client):
        return redis.Redis(connection_pool=client.connection_pool)
    return client


def server_id(system: Any) -> Hashable:
    """The server and database `system` points at: what decides which keys it sees.

    Two names for one database ("default" and a copy) share their bit operation results, as
    they share the keys.
    """
    client = client_of(system)
    pool = getattr(client, "connection_pool", None)
    kw = getattr(pool, "connection_kwargs", None)
    if not isinstance(kw, dict):
        return id(client)
    return (kw.get("host"), kw.get("port"), kw.get("path"), kw.get("db", 0))
