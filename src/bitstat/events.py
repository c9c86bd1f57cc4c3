"""Check a batch of raw events and turn it into columns; a bad event is set aside with its reason.

This is the per-event Python loop of the write path, so it does as little as it can per event:
type checks, pulling the few fields the schema records, nothing else. Everything after it
(time zones, buckets, grouping) runs on whole columns.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from . import periods
from .errors import BitstatError, InvalidEvent
from .schema import Rules, Schema

_NAIVE_EPOCH = datetime(1970, 1, 1)
_MIN_EPOCH = 0
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59
_SCALARS = (str, int, float)


def canonical_id(value: Any) -> str:
    """Text form of an actor id in `map` mode: 42 and "42" are the same actor."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(f"actor id must be text or an integer, got {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if not value:
        raise InvalidEvent("actor id is empty text")
    return value


def original_id(text: str) -> str | int:
    """Inverse of canonical_id: canonical integer text comes back as an int."""
    if text.isdigit() and text.isascii() and (text == "0" or text[0] != "0"):
        return int(text)
    if text[:1] == "-" and text[1:].isdigit() and text[1:2] != "0" and text.isascii():
        return int(text)
    return text


def value_text(value: Any, prop: str) -> str | None:
    """A property value as recorded: text as is, numbers via str(); None when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    raise InvalidEvent(f"value must be text or a number, not {type(value).__name__}", field=prop)


def sum_number(value: Any, prop: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidEvent("a summed value must be a number, not a boolean", field=prop)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise InvalidEvent(
                f"a summed value must be a number, got {value!r}", field=prop
            ) from None
    else:
        raise InvalidEvent(
            f"a summed value must be a number, not {type(value).__name__}", field=prop
        )
    if not math.isfinite(number):
        raise InvalidEvent(f"a summed value must be finite, got {value!r}", field=prop)
    return number


@dataclass
class Columns:
    """The accepted events of a batch, column by column (row i is accepted event i)."""

    index: list[int] = field(default_factory=list)  # position in the caller's batch
    names: list[str] = field(default_factory=list)  # distinct event names; codes index this
    codes: list[int] = field(default_factory=list)
    actors: list[Any] = field(default_factory=list)  # int offsets / canonical text / None
    wall: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # property rows: (row, rule index, value); rule index points into `rule_specs`
    props: list[tuple[int, int, Any]] = field(default_factory=list)
    rule_specs: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


class _RuleTable:
    """Per event name, the (rule index, kind, prop parts, by parts) a row must extract."""

    def __init__(self, schema: Schema, columns: Columns) -> None:
        self.schema = schema
        self.columns = columns
        self.by_event: dict[str, list[tuple[int, str, tuple[str, ...], tuple[str, ...]]]] = {}
        self.spec_index: dict[tuple[str, str, str, str | None], int] = {}

    def for_event(self, name: str) -> list[tuple[int, str, tuple[str, ...], tuple[str, ...]]]:
        found = self.by_event.get(name)
        if found is None:
            found = self.by_event[name] = self._build(self.schema.rules_for(name), name)
        return found

    def _spec(self, spec: tuple[str, str, str, str | None]) -> int:
        idx = self.spec_index.get(spec)
        if idx is None:
            idx = self.spec_index[spec] = len(self.columns.rule_specs)
            self.columns.rule_specs.append(spec)
        return idx

    def _build(
        self, rules: Rules, name: str
    ) -> list[tuple[int, str, tuple[str, ...], tuple[str, ...]]]:
        out = []
        for kind, props in (
            ("count", rules.count),
            ("top", rules.top),
            ("unique", rules.unique),
            ("segment", rules.segment),
        ):
            for prop in props:
                out.append((self._spec((name, kind, prop, None)), kind, tuple(prop.split("~")), ()))
        for rule in rules.sum:
            by = tuple(rule.by.split("~")) if rule.by else ()
            out.append((self._spec((name, "sum", rule.prop, rule.by)), "sum", (rule.prop,), by))
        return out


def _compound_value(event: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    if len(parts) == 1:
        return value_text(event.get(parts[0]), parts[0])
    values = []
    for part in parts:
        text = value_text(event.get(part), part)
        if text is None:
            return None
        values.append(text)
    return tuple(values)


def _time_of(value: Any, tz_name: str) -> tuple[int, bool]:
    """(seconds, is_utc): UTC epoch seconds, or wall-clock seconds for naive local times."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (isinstance(value, int) or math.isfinite(value)):
            raise InvalidEvent(f"time must be finite, got {value!r}", field="time")
        return int(math.floor(value)), True
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return int(math.floor(value.timestamp())), True
        return int((value - _NAIVE_EPOCH).total_seconds() // 1), False
    if isinstance(value, date):
        return (value.toordinal() - 719163) * 86400, False
    if isinstance(value, str):
        try:
            wall = periods.parse_time(value, ZoneInfo(tz_name))
        except BitstatError as exc:
            raise InvalidEvent(str(exc), field="time") from None
        return int((wall - _NAIVE_EPOCH).total_seconds() // 1), False
    raise InvalidEvent(
        f"time must be a datetime, an ISO-8601 text or epoch seconds, not {type(value).__name__}",
        field="time",
    )


def parse_batch(events: Iterable[Any], schema: Schema, now: float | None = None) -> Columns:
    """Validate every event; keep the good ones as columns, the bad ones as (index, reason)."""
    cols = Columns()
    table = _RuleTable(schema, cols)
    actor_key = schema.actor
    int_ids = schema.ids == "int"
    max_id = schema.max_id
    tz_name = schema.timezone
    now_s = int(now if now is not None else _time.time())
    codes: dict[str, int] = {}
    seconds: list[int] = []
    utc_flags: list[bool] = []
    props = cols.props
    rejected = cols.rejected
    row = 0
    for i, ev in enumerate(events):
        try:
            if not isinstance(ev, Mapping):
                raise InvalidEvent(f"an event must be a mapping, not {type(ev).__name__}")
            name = ev.get("event")
            if type(name) is not str:
                if name is None:
                    raise InvalidEvent("missing event name", field="event")
                raise InvalidEvent(
                    f"event name must be text, not {type(name).__name__}", field="event"
                )
            if not name:
                raise InvalidEvent("event name is empty", field="event")
            actor = ev.get(actor_key)
            if actor is not None:
                if int_ids:
                    actor = _int_actor(actor, actor_key, max_id)
                else:
                    try:
                        actor = canonical_id(actor)
                    except InvalidEvent as exc:
                        raise InvalidEvent(exc.reason, field=actor_key) from None
            t = ev.get("time")
            sec, is_utc = (now_s, True) if t is None else _time_of(t, tz_name)
            if not _MIN_EPOCH <= sec <= _MAX_EPOCH:
                raise InvalidEvent(f"time {t!r} is outside 1970..9999", field="time")
            rules = table.for_event(name)
            pending = []
            for idx, kind, parts, by in rules:
                if kind == "sum":
                    number = sum_number(ev.get(parts[0]), parts[0])
                    if number is None:
                        continue
                    if by:
                        label = _compound_value(ev, by)
                        if label is None:
                            continue
                        pending.append((row, idx, (number, label)))
                    else:
                        pending.append((row, idx, number))
                else:
                    value = _compound_value(ev, parts)
                    if value is not None:
                        pending.append((row, idx, value))
        except InvalidEvent as exc:
            rejected.append((i, exc.reason if exc.field is None else f"{exc.field}: {exc.reason}"))
            continue
        code = codes.get(name)
        if code is None:
            code = codes[name] = len(cols.names)
            cols.names.append(name)
        cols.index.append(i)
        cols.codes.append(code)
        cols.actors.append(actor)
        seconds.append(sec)
        utc_flags.append(is_utc)
        if pending:
            props.extend(pending)
        row += 1
    raw = np.array(seconds, dtype=np.int64)
    flags = np.array(utc_flags, dtype=bool)
    if flags.all():
        cols.wall = periods.wall_seconds(raw, ZoneInfo(tz_name))
    elif flags.any():
        cols.wall = raw.copy()
        cols.wall[flags] = periods.wall_seconds(raw[flags], ZoneInfo(tz_name))
    else:
        cols.wall = raw
    return cols


def _int_actor(actor: Any, key: str, max_id: int) -> int:
    if type(actor) is int:
        value = actor
    elif (isinstance(actor, str) and actor.isdigit() and actor.isascii()) or (
        isinstance(actor, int) and not isinstance(actor, bool)
    ):
        value = int(actor)
    else:
        raise InvalidEvent(
            f"actor id must be a non-negative integer (ids='int'), got {actor!r}", field=key
        )
    if not 0 <= value <= max_id:
        raise InvalidEvent(f"actor id {value} is outside 0..{max_id}", field=key)
    return value
