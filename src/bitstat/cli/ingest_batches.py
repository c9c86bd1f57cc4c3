"""Cutting the records `Reader` reads into the batches `bitstat ingest` records: the same
batches, so the same batch ids, whether this process decodes the records or workers do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, cast

from ..events import time_order
from ..schema import Schema
from .ingest_rejects import NONE
from .read import Decoder, Item, Reader


@dataclass
class Batch:
    """Events read in a row (decoded, or with `raw` the records as read, for a worker to
    decode), their line numbers, and `held`: the first line of an event read and not handed
    out yet (the rest of a --sort-window; `NONE`: no such event)."""

    events: list[Any] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    held: int = NONE


# what to do with a line that makes no event: refused(line, reason, held), `held` as in Batch
Refused = Callable[[int, str, int], None]


def batches(
    reader: Reader,
    decode: Decoder,
    size: int,
    refused: Refused,
    *,
    raw: bool = False,
    window: int = 0,
) -> Iterator[Batch]:
    """`size` events at a time; `refused` hears of each line that makes no event as it is
    read, so that none is held. The same lines make each batch with `raw` or without, so a
    batch has the same id however many workers record it. With a `window`, that many events
    are read, put in time order and then cut (`--sort-window`). A chunk of records that all
    make events as they are (the usual file: `Decoder.many`) goes in whole."""
    batch = Batch()
    times: list[Any] = []  # with a window: each event's time, to order them by
    full = window or size
    for chunk in reader.chunks():
        whole = _whole(chunk, decode, raw, window)
        if whole is not None:
            events, lines, their_times = whole
            start = 0
            while start < len(events):
                end = start + full - len(batch.events)
                batch.events += events[start:end]
                batch.lines += lines[start:end]
                times += their_times[start:end]
                start = end
                if len(batch.events) == full:
                    yield from (
                        _in_time_order(batch, times, size, decode.schema) if window else [batch]
                    )
                    batch, times = Batch(), []
            continue
        for line, item, text in chunk:
            if isinstance(item, str):
                refused(line, item, batch.lines[0] if batch.lines else NONE)
                continue
            event: Any
            if raw and not window:
                why, event = decode.refusal(item), text
            else:
                decoded = decode(dict(item) if raw else item)
                why, event = (decoded, None) if isinstance(decoded, str) else (None, decoded)
                if why is None and window:
                    times.append(event.get("time"))
                    if raw:
                        event = text
            if why is not None:
                refused(line, why, batch.lines[0] if batch.lines else NONE)
                continue
            batch.events.append(event)
            batch.lines.append(line)
            if len(batch.events) == full:
                yield from _in_time_order(batch, times, size, decode.schema) if window else [batch]
                batch, times = Batch(), []
    if batch.events:
        yield from _in_time_order(batch, times, size, decode.schema) if window else [batch]


def _whole(
    chunk: list[Item], decode: Decoder, raw: bool, window: int
) -> tuple[list[Any], list[int], list[Any]] | None:
    """The events of a chunk whose every record makes one as it is (decoded at once, `Decoder
    .many`: nothing refused, nothing to read one by one), their lines, and with a `window`
    their times; None for any other chunk, which is taken record by record."""
    items = [item for _, item, _ in chunk]
    if str in set(map(type, items)):  # (a line that could not be read: its reason)
        return None
    records = cast(list[dict[str, Any]], items)
    lines = [line for line, _, _ in chunk]
    if raw and not window:  # (a worker decodes them: refused only for a --time-format)
        if decode.fields.time_format is not None:
            return None
        return [text for _, _, text in chunk], lines, []
    if not decode.many(records):  # (it changes none when it says no: no copies to make)
        return None
    times = list(map(dict.get, records, repeat("time"))) if window else []
    return ([text for _, _, text in chunk] if raw else records), lines, times


def _in_time_order(read: Batch, times: list[Any], size: int, schema: Schema) -> Iterator[Batch]:
    """The events read, in time order, `size` at a time."""
    order = time_order(times, schema.timezone).tolist()
    parts = [order[start : start + size] for start in range(0, len(order), size)]
    firsts = [read.lines[min(part)] for part in parts]  # read.lines ascend
    for k, part in enumerate(parts):
        held = min(firsts[k + 1 :], default=NONE)  # the batches still to come hold these
        yield Batch([read.events[i] for i in part], [read.lines[i] for i in part], held)
