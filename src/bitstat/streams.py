"""Events in from a Redis Stream, exactly once: a consumer group, a batch per read, each batch
recorded under a batch id made of its first and last stream ids, acknowledged after.

A consumer takes entries with XREADGROUP, records them with `track_many(batch_id=...)` and
XACKs them. Killed between the two, its entries stay pending: when it (or another consumer)
starts, it takes its own pending entries again (XREADGROUP from 0) and claims those left idle
by others (XAUTOCLAIM), and records them under the same batch id, which the namespace recorded
once already, so nothing counts twice.

The same batch id needs the same batch: the entries' grouping must not change between the
first try and the retry. Before it records a batch the consumer notes the batch's bounds (its
first id -> its last id) in a hash beside the stream; a retry regroups what it takes by those
bounds, claiming the rest of a batch a read cut short, whoever took the entries and whatever
its batch size. An entry with no noted bounds was never recorded, so any grouping is right.
A retry must come within the namespace's batch-id TTL (`connect(batch_ttl=)`, 7 days by
default): past it the batch id is forgotten and a batch recorded but not acknowledged would
count twice.

An entry is one event: a field `data` (`field=`) holding a JSON object, or else its fields
as the event's properties (text values).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from .errors import BitstatError
from .keys import stream_bounds
from .stats import Stats

LOG = logging.getLogger("bitstat.consume")
Entry = tuple[str, dict[str, str]]


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _entries(raw: Iterable[Any]) -> list[Entry]:
    """[(id, {field: value})] of a reply; an entry deleted while pending comes as (id, None)
    and is kept with no fields, so that it is acknowledged."""
    return [(_text(i), {_text(k): _text(v) for k, v in (f or {}).items()}) for i, f in raw]


def event_of(fields: dict[str, str], data_field: str) -> Any:
    """The event an entry stands for: the JSON object in `data_field`, else the fields."""
    if data_field in fields:
        try:
            return json.loads(fields[data_field])
        except json.JSONDecodeError as exc:
            return f"not JSON: {exc}"  # track_many rejects it with the reason
    return dict(fields)


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Progress:
    """What a consumer did: events recorded and rejected, batches, entries taken again."""

    recorded: int = 0
    rejected: int = 0
    batches: int = 0
    retried: int = 0
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (entry id, reason), last 100


class StreamConsumer:
    """One consumer of a group reading `stream` into the namespace of `stats`."""

    def __init__(
        self,
        stats: Stats,
        stream: str,
        *,
        group: str = "bitstat",
        consumer: str = "bitstat-1",
        client: Any = None,
        batch: int = 500,
        block_ms: int = 2000,
        min_idle_ms: int = 60_000,
        data_field: str = "data",
        start: str = "0",
    ) -> None:
        if batch < 1:
            raise BitstatError(f"batch must be at least 1, got {batch}")
        self.stats = stats
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.client = client if client is not None else stats._store.client
        self.batch = batch
        self.block_ms = block_ms
        self.min_idle_ms = min_idle_ms
        self.data_field = data_field
        self.bounds_key = stream_bounds(stream, group)
        self.progress = Progress()
        self._create_group(start)

    def _create_group(self, start: str) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # a batch: note its bounds, record it, acknowledge it
    def _record(self, entries: Sequence[Entry]) -> None:
        first, last = entries[0][0], entries[-1][0]
        batch_id = f"stream:{self.stream}:{self.group}:{first}:{last}"
        self.client.hset(self.bounds_key, first, last)
        events = [event_of(fields, self.data_field) for _, fields in entries]
        result = self.stats.track_many(events, batch_id=batch_id)
        self.client.xack(self.stream, self.group, *(i for i, _ in entries))
        self.client.hdel(self.bounds_key, first)
        self.progress.recorded += result.recorded
        self.progress.rejected += len(result.rejected)
        self.progress.batches += 1
        for at, reason in result.rejected:
            LOG.warning("stream entry %s rejected: %s", entries[at][0], reason)
            self.progress.reasons = [*self.progress.reasons[-99:], (entries[at][0], reason)]

    def _regrouped(self, taken: list[Entry]) -> list[list[Entry]]:
        """Entries taken again, in the batches they were first recorded in (claiming the rest
        of a batch that was taken apart), then the never-recorded ones in batches."""
        bounds = {_text(k): _text(v) for k, v in self.client.hgetall(self.bounds_key).items()}
        spans = sorted((_order(f), _order(lt), f, lt) for f, lt in bounds.items())
        batches: dict[str, list[Entry]] = {}
        loose: list[Entry] = []
        for entry in sorted(taken, key=lambda e: _order(e[0])):
            at = _order(entry[0])
            home = next((f for lo, hi, f, _ in spans if lo <= at <= hi), None)
            if home is None:
                loose.append(entry)
            else:
                batches.setdefault(home, []).append(entry)
        out: list[list[Entry]] = []
        for first, group in batches.items():
            have = {i for i, _ in group}
            rest = self._claim_range(first, bounds[first], have)
            out.append(sorted(group + rest, key=lambda e: _order(e[0])))
        out += [loose[j : j + self.batch] for j in range(0, len(loose), self.batch)]
        return out

    def _claim_range(self, first: str, last: str, have: set[str]) -> list[Entry]:
        """The entries of the batch [first, last] still pending in other hands, claimed."""
        pending = self.client.xpending_range(self.stream, self.group, first, last, 10**6)
        ids = [i for i in (_text(p["message_id"]) for p in pending) if i not in have]
        if not ids:
            return []
        return _entries(self.client.xclaim(self.stream, self.group, self.consumer, 0, ids))

    def _take_again(self) -> int:
        """Own pending entries, then others' idle ones: recorded in their first batches."""
        # own pending entries (a restart under the same name): at most a batch or two
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: "0"})
        taken = _entries(reply[0][1]) if reply else []
        cursor = "0-0"
        while True:  # entries idle past min_idle_ms in other consumers' hands
            reply = self.client.xautoclaim(
                self.stream, self.group, self.consumer, self.min_idle_ms, cursor, count=1000
            )
            cursor = _text(reply[0])
            taken += _entries(reply[1])
            if cursor == "0-0":
                break
        for group in self._regrouped(taken):
            self._record(group)
        self.progress.retried += len(taken)
        return len(taken)

    def run(self, *, stop: Callable[[Progress], bool] | None = None) -> Progress:
        """Consume until `stop(progress)` is true (checked after every read), or forever."""
        self._take_again()
        last_claim = time.monotonic()
        while stop is None or not stop(self.progress):
            reply = self.client.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self.batch,
                block=self.block_ms,
            )
            entries = _entries(reply[0][1]) if reply else []
            if entries:
                self._record(entries)
            if time.monotonic() - last_claim > self.min_idle_ms / 1000:
                self._take_again()
                last_claim = time.monotonic()
            if not entries and stop is not None and stop(self.progress):
                break
        return self.progress
