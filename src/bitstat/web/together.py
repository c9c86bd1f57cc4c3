"""Bodies of POST /v1/track recorded together (a group commit): while a batch of a namespace is
being written, the bodies that come for it wait, and go as one batch once it is in.

A batch costs Redis and the planner mostly a write a key, and four bodies of one stream write
mostly the same keys: four senders of 1,000-event bodies recorded 41,727 events/s a batch a
body, and 69,692 with bodies of 4,000 (benchmarks/realistic.py, 2026-12-07). Each body gets its
own answer: how many of its events went in, and its rejected events by their index in it.

Bodies go together only without an Idempotency-Key (a key is the batch id of its body alone,
which a retry finds) and into a namespace without expiry (a batch counts its events past
retention per period, not per event, so its count could not be shared out among the bodies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..aio import AsyncStats
from ..record import TrackResult

TOGETHER_MAX = 20_000  # events of the bodies recorded as one batch (whole bodies: maybe more)
LINGER = 0.005  # seconds a batch waits for the senders of the one before to send again
LOG = logging.getLogger("bitstat.web")

Recorder = Callable[[AsyncStats, list[Any]], Awaitable[TrackResult]]


def can_go_together(stats: AsyncStats, batch_id: str | None) -> bool:
    """Whether a body may be recorded with others: no batch id of its own, no expiry."""
    return batch_id is None and not stats.schema.expire and not stats._ns.expire_changes


def shared_out(result: TrackResult, sizes: Sequence[int]) -> list[TrackResult]:
    """The answer of a batch of bodies of `sizes` events, body by body: a body's rejected
    events by their index in it, and its other events recorded."""
    out, first = [], 0
    for size in sizes:
        mine = [(i - first, why) for i, why in result.rejected if first <= i < first + size]
        out.append(TrackResult(size - len(mine), mine))
        first += size
    return out


class Together:
    """`await together.record(stats, events)`: the events recorded with those of the bodies
    waiting meanwhile for the same `stats`, by `recorder` (one batch, no batch id given:
    bitstat makes one). It keeps no hold on `stats` between batches, so that a namespace's
    Together goes with its stats (`_State.together` is keyed by them, weakly)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.waiting: list[tuple[list[Any], asyncio.Future[TrackResult]]] = []
        self.writer: asyncio.Task[None] | None = None
        self.came = asyncio.Event()  # a body came since the writer last looked
        self.senders = 1  # bodies of the last batch: the senders that send again once answered

    async def record(self, stats: AsyncStats, events: list[Any]) -> TrackResult:
        future: asyncio.Future[TrackResult] = asyncio.get_running_loop().create_future()
        self.waiting.append((events, future))
        self.came.set()
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self.write(stats))
        return await future

    async def write(self, stats: AsyncStats) -> None:
        """Batches of the waiting bodies, one after the other, until none waits."""
        while self.waiting:
            # the senders of the last batch were answered at its end, and their next bodies
            # come a moment later: wait for them a little, or batches of one and of the others
            # alternate (four senders: 1, 3, 1, 3 bodies)
            deadline = asyncio.get_running_loop().time() + LINGER
            while len(self.waiting) < self.senders:
                self.came.clear()
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.came.wait(), left)
            taken: list[tuple[list[Any], asyncio.Future[TrackResult]]] = []
            size = 0
            while self.waiting and (not taken or size + len(self.waiting[0][0]) <= TOGETHER_MAX):
                taken.append(self.waiting.pop(0))
                size += len(taken[-1][0])
            try:
                result = await self.recorder(stats, [e for body, _ in taken for e in body])
            except Exception as exc:  # every body's answer: none of them is known to be in
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:  # (cancelled: the server stops) none waits for ever
                for _, future in taken + self.waiting:
                    future.cancel()
                self.waiting.clear()
                raise
            if result.expired:  # (an expiry stored meanwhile)
                LOG.warning(
                    "%d events of %d bodies recorded together fell in buckets past retention;"
                    " their answers do not count them",
                    sum(result.expired.values()),
                    len(taken),
                )
            self.senders = len(taken)
            for (_, future), share in zip(
                taken, shared_out(result, [len(body) for body, _ in taken]), strict=True
            ):
                if not future.done():  # (its request gone: its events are in all the same)
                    future.set_result(share)
