"""bitstat: real-time event analytics on Redis bitmaps and counters."""

from __future__ import annotations

from pathlib import Path

from .actors import ActorQuery, ActorSet
from .errors import (
    BitstatError,
    ConnectionError,
    InvalidEvent,
    QueryError,
    SchemaError,
    ServerError,
    UnknownEvent,
)
from .ops import check_namespace
from .schema import Schema, parse_duration
from .stats import DEFAULT_BATCH_TTL, Stats, TrackResult
from .store import Store, resolve_url
from .tracker import Tracker, TrackerCounters
from .tracker_aio import AsyncTracker

__all__ = [
    "ActorQuery",
    "ActorSet",
    "AsyncTracker",
    "BitstatError",
    "ConnectionError",
    "InvalidEvent",
    "QueryError",
    "Schema",
    "SchemaError",
    "ServerError",
    "Stats",
    "TrackResult",
    "Tracker",
    "TrackerCounters",
    "UnknownEvent",
    "connect",
]
__version__ = "0.1.0"


def connect(
    url: str | None = None,
    *,
    namespace: str = "bitstat",
    schema: Schema | None = None,
    data_dir: str | Path | None = None,
    appendfsync: str = "everysec",
    batch_ttl: int | str = DEFAULT_BATCH_TTL,
    timeout: float | None = None,
) -> Stats:
    """Open a namespace: on `url`, on $BITSTAT_URL, or on the embedded server under `data_dir`.

    The schema lives in Redis. Passing one stores it when the namespace has none yet; passing one
    that differs from the stored schema raises SchemaError (use `Stats.configure` to change it).
    Without a schema, the stored one is used, or the default `Schema()` for a new namespace.
    `batch_ttl` is how long a batch id is remembered (seconds, or text like "30d"): a batch sent
    again within that time records nothing. `timeout` is how many seconds a call waits for the
    server's answer before it fails with ConnectionError (default 30; also `?socket_timeout=`
    in the URL): a server gone without closing the connection never hangs a call.
    """
    check_namespace(namespace)
    store = Store.from_url(resolve_url(url, data_dir, appendfsync), timeout)
    stats = Stats(store, namespace, schema or Schema(), batch_ttl=parse_duration(batch_ttl))
    stats._run(stats._ns.load_schema(schema))
    return stats
