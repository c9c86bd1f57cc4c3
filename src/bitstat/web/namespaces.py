"""The namespaces a running server answers for, over one shared asyncio connection.

Every request names a namespace (or gets the server's default). Its `AsyncStats` is kept, so
its id cache lives across requests, and its stored schema is read again at most every
`schema_ttl` seconds, so `bitstat schema set` on another machine reaches a running server
(and every process of `serve --workers N` within that time).

The dashboard lists the namespaces holding data that the server has met. With several
processes each meets some of them, so they note them in Redis too, in a set in the default
namespace's slot (`{N}:web:namespaces`), and the list is that set, kept to namespaces that
still hold a schema or events.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from ..aio import AsyncStats, AsyncStore
from ..keys import Keys
from ..ops import check_namespace
from ..record import DEFAULT_BATCH_TTL
from ..schema import Schema, name_problem
from ..transport import Transport
from .params import BadParameter

MAX_OPEN = 256  # namespaces kept open; the least recently used is forgotten beyond that


@dataclass
class _Open:
    stats: AsyncStats
    schema_text: bytes | None
    checked: float


class Namespaces:
    """`await namespaces.get(name)` -> the `AsyncStats` of that namespace, with a fresh schema."""

    def __init__(
        self,
        store: AsyncStore,
        default: str,
        *,
        schema_ttl: float = 5.0,
        batch_ttl: int = DEFAULT_BATCH_TTL,
    ) -> None:
        check_namespace(default)
        self.store = store
        self.default = default
        self.schema_ttl = schema_ttl
        self.batch_ttl = batch_ttl
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self.seen: list[str] = [default]  # noted by this process, oldest first
        self.noted = Keys(default).web_namespaces  # by every process

    async def get(self, name: str | None) -> AsyncStats:
        name = name or self.default
        check_namespace(name)
        if problem := name_problem(name):  # printable and short, as event names are
            raise BadParameter("namespace", f"the namespace {problem}")
        now = time.monotonic()
        entry = self._open.get(name)
        if entry is not None:
            self._open.move_to_end(name)
            # (a namespace with no stored schema yet is read every time: another process may
            # store one, the SDK routes' Schema(ids="map"), at any moment)
            if entry.schema_text is not None and now - entry.checked < self.schema_ttl:
                return entry.stats
        text = await self.store.call(Transport.get, Keys(name).schema)
        if entry is not None and text == entry.schema_text:
            entry.checked = now
            return entry.stats
        schema = Schema.from_json(text) if text is not None else Schema()
        stats = AsyncStats(self.store, name, schema, batch_ttl=self.batch_ttl)
        self._open[name] = _Open(stats, text, now)
        self._open.move_to_end(name)
        while len(self._open) > MAX_OPEN:
            self._open.popitem(last=False)
        if text is not None:
            await self.note(name)
        return stats

    async def note(self, name: str) -> None:
        """Remember `name` as a namespace holding data (a stored schema, or events just sent)."""
        if name not in self.seen:
            await self.store.client.sadd(self.noted, name)
            self.seen.append(name)
            del self.seen[1:-MAX_OPEN]

    async def listed(self) -> list[str]:
        """The namespaces noted by any process of the server that hold a schema or events,
        and the default, sorted."""
        noted = {n.decode() for n in await self.store.call(Transport.smembers, self.noted)} | set(
            self.seen
        )
        names = sorted(noted - {self.default})[:MAX_OPEN]
        held = await asyncio.gather(
            *(self.store.client.exists(Keys(n).schema, Keys(n).events) for n in names)
        )
        return sorted([self.default, *(n for n, h in zip(names, held, strict=True) if h)])
