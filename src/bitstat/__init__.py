"""bitstat: real-time event analytics on Redis bitmaps and counters."""

from __future__ import annotations

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
from .schema import Schema
from .signatures import takes_arguments_of
from .stats import ConnectArguments, Stats, TrackResult
from .store import Store
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


@takes_arguments_of(ConnectArguments)
def connect(arguments: ConnectArguments) -> Stats:
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

    `track()` queues an event in Redis (one round trip) and applies the queue as one batch by
    `flush_at` events (default 500, 2,000 with `track_ahead`; 1: every event alone, at once)
    or once its oldest has waited `flush_interval` seconds (default 1); a read of this Stats
    applies it first, and `Stats.flush()` does at any time (docs/guarantees.md).

    `track_ahead=N` (N > 0) lets `track()` return once its event is written to the server,
    before the reply: the replies are read N calls later, and by any read, `flush()` and
    `close()` (and at exit); a push they show failed is sent again under its token, so each
    event still counts once, and one that cannot be within `deadline` raises BatchError at that
    later call, its `events` the ones to track() again. Blocking Stats only
    (docs/performance.md, "One event per call").
    """
    stats = arguments.opened(Stats, Store.from_url(*arguments.store_options()))
    stats._unsettled(stats._ns.opened(arguments.schema))
    return stats
