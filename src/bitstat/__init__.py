"""bitstat: real-time event analytics on Redis bitmaps and counters."""

from __future__ import annotations

from pathlib import Path

from .actors import ActorQuery, ActorSet
from .errors import (
    BatchError,
    BitstatError,
    ConnectionError,
    InvalidEvent,
    QueryError,
    SchemaError,
    ServerError,
    UnknownEvent,
)
from .ops import check_namespace
from .record import DEFAULT_DEADLINE
from .schema import Schema, parse_duration
from .stats import DEFAULT_BATCH_TTL, Stats, TrackResult
from .store import Store, resolve_url
from .tracker import Tracker, TrackerCounters
from .tracker_aio import AsyncTracker

__all__ = [
    "ActorQuery",
    "ActorSet",
    "AsyncTracker",
    "BatchError",
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
    socket_timeout: float | None = None,
    deadline: float = DEFAULT_DEADLINE,
    durability: str | None = None,
) -> Stats:
    """Open a namespace: on `url`, on $BITSTAT_URL, or on the embedded server under `data_dir`.

    The schema lives in Redis. Passing one stores it when the namespace has none yet; passing one
    that differs from the stored schema raises SchemaError (use `Stats.configure` to change it).
    Without a schema, the stored one is used, or the default `Schema()` for a new namespace.
    `batch_ttl` is how long a batch id is remembered (seconds, or text like "30d"): a batch sent
    again within that time records nothing. `timeout` is how many seconds a call waits for the
    server's answer before it fails with ConnectionError (default 30; also `?socket_timeout=`
    in the URL; `socket_timeout` is the same): a server gone without closing the connection
    never hangs a call.

    Every batch is recorded once: one sent without a batch id gets one, and a batch whose reply
    is lost (connection reset, timeout, failover, a cluster moving slots, a server loading) is
    sent again under the same id, with backoff, for up to `deadline` seconds (default 60); then
    `BatchError` says whether it may have landed and how to send it again safely.
    `durability="replicated"` (or `?durability=replicated` in the URL) acknowledges a batch only
    once a replica of each master it wrote to has it (WAIT); the default, "fast", once the
    master has it. See docs/guarantees.md.
    """
    check_namespace(namespace)
    address = resolve_url(url, data_dir, appendfsync)
    store = Store.from_url(address, socket_timeout or timeout, durability)
    ttl = parse_duration(batch_ttl)
    stats = Stats(store, namespace, schema or Schema(), batch_ttl=ttl, deadline=deadline)
    stats._run(stats._ns.load_schema(schema))
    return stats
