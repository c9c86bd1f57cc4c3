"""The first and last day an event was recorded on, for default date ranges."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..aio import AsyncStats
from ..keys import Keys

_EPOCH = datetime(1970, 1, 1)


async def first_last_day(stats: AsyncStats, event: str) -> tuple[str | None, str | None]:
    """The first and last wall days `event` was recorded on (ISO dates), None if never.

    The library keeps these day numbers (for its analyses) but has no public reader yet, so
    this reads the two hash fields through the namespace's store.
    """
    keys = Keys(stats.namespace)
    days = [await stats._store.hget(k, event) for k in (keys.span_first, keys.span_last)]
    first, last = (
        None if d is None else (_EPOCH + timedelta(days=int(d))).date().isoformat() for d in days
    )
    return first, last
