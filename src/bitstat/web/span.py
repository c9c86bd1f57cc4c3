"""The first and last day an event was recorded on, for default date ranges."""

from __future__ import annotations

from ..aio import AsyncStats
from .params import EVENT, NAMESPACE

PARAMS = (NAMESPACE, EVENT)  # of GET /v1/span (and its OpenAPI description)


async def first_last_day(stats: AsyncStats, event: str) -> tuple[str | None, str | None]:
    """The first and last days `event` was recorded on (ISO dates), None if never."""
    span = await stats.span(event)
    if span is None:
        return None, None
    return span[0].isoformat(), span[1].isoformat()
