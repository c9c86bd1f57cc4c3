"""The days and totals of events that pick the dashboard's defaults: of one event (`GET
/v1/span`), or of every event of a namespace at once, in one round trip whatever their number."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from ..aio import AsyncStats
from ..calls import Op
from ..ops import Namespace, check_name
from ..transport import Transport, call
from .params import EVENT, NAMESPACE

PARAMS = (NAMESPACE, EVENT)  # of GET /v1/span (and its OpenAPI description)
EPOCH = date(1970, 1, 1)  # the stored spans are day numbers from it


async def first_last_day(stats: AsyncStats, event: str) -> tuple[str | None, str | None]:
    """The first and last days `event` was recorded on (ISO dates), None if never."""
    span = await stats.span(event)
    if span is None:
        return None, None
    return span[0].isoformat(), span[1].isoformat()


def spans(ns: Namespace, events: Sequence[str]) -> Op[list[tuple[date, date] | None]]:
    """`Stats.span` of each event: its first and last (local) days, None if never recorded."""
    for event in events:
        check_name(event)
    if not events:
        return []
    keys = ns.keys
    pairs = [(key, event) for event in events for key in (keys.span_first, keys.span_last)]
    raw = yield call(Transport.hget_many, pairs)
    out: list[tuple[date, date] | None] = []
    for first, last in zip(raw[::2], raw[1::2], strict=True):
        if first is None or last is None:
            out.append(None)
        else:
            out.append((EPOCH + timedelta(days=int(first)), EPOCH + timedelta(days=int(last))))
    return out


def totals(ns: Namespace, events: Sequence[str], start: object, end: object) -> Op[list[int]]:
    """`Stats.total` of each event over one range: every counter of every event is read in one
    pipeline (one round trip; one a node on a cluster)."""
    for event in events:
        check_name(event)
    if not events:
        return []
    yield from ns.require_events(events)
    labels = ns.cover_labels(start, end)
    pairs = [(ns.keys.metrics(event, label), "n") for event in events for label in labels]
    raw = iter((yield call(Transport.hget_many, pairs)))
    return [sum(int(next(raw) or 0) for _ in labels) for _ in events]
