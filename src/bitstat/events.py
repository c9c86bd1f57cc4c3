"""Check a batch of raw events and turn it into columns; a bad event is set aside with its reason.

This is the per-event Python loop of the write path, so it does as little as it can per event:
type checks, pulling the few fields the schema records, nothing else. Everything after it
(time zones, buckets, grouping) runs on whole columns.
"""

from __future__ import annotations

import math
import sys
import time as _time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import repeat
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from . import periods, timetext
from .errors import BitstatError, InvalidEvent, Reason
from .schema import Schema, duration_text, name_problem

_NAIVE_EPOCH = datetime(1970, 1, 1)
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_EPOCH = 0
_MAX_EPOCH = periods.LAST_SECOND  # 9998-12-31T23:59:59
_HUGE = 2.0**62  # float epochs beyond this are out of range (and past int64 if larger)
# a datetime's seconds as a float keep its microseconds below this (2038): past it, a float
# may round .999999 up into the next second, and the next day at midnight
_FLOAT_SECONDS_EXACT = 2**31
_FIXED_ZONES = (timezone, ZoneInfo)  # tzinfo kinds that always give an offset


def unicode_problem(text: str) -> str | None:
    """Why `text` cannot be stored (None if it can): a lone surrogate, as JSON's `\\ud800`
    escape or a JavaScript string cut inside an emoji makes one, is not UTF-8 text."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds the lone surrogate {text[exc.start]!r}, which is not Unicode text"
    return None


def canonical_id(value: Any) -> str:
    """Text form of an actor id in `map` mode: 42 and "42" are the same actor."""
    if isinstance(value, np.integer):  # (numpy's integers, a DataFrame's rows: as Python's)
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(f"actor id must be text or an integer, got {type(value).__name__}")
    if isinstance(value, int):
        text = int_text(value)
        if text is None:
            raise InvalidEvent(f"actor id is an integer of more than {digit_limit():,} digits")
        return text
    if not value:
        raise InvalidEvent("actor id is empty text")
    if problem := unicode_problem(value):
        raise InvalidEvent(f"actor id {problem}")
    return value


def original_id(text: str) -> str | int:
    """Inverse of canonical_id: canonical integer text comes back as an int (text of more
    digits than Python reads as an integer, given as text, stays text)."""
    if digit_limit() and len(text.removeprefix("-")) > digit_limit():  # (int() would raise
        # ValueError; the limit counts digits, not a sign)
        return text
    if text.isdigit() and text.isascii() and (text == "0" or text[0] != "0"):
        return int(text)
    if text[:1] == "-" and text[1:].isdigit() and text[1:2] != "0" and text.isascii():
        return int(text)
    return text


def digit_limit() -> int:
    """How many digits Python converts between an integer and text (0: no limit); int() and
    str() raise ValueError past it (4,300 by default)."""
    return sys.get_int_max_str_digits()


def int_text(value: int) -> str | None:
    """An integer's digits, or None when it has more than Python writes (digit_limit)."""
    try:
        return str(value)
    except ValueError:
        return None


def number_text(value: float) -> str | None:
    """A number (or boolean) as a property value's text, as JavaScript writes it, so that
    senders in any language agree: true and false; an integer in digits; a float as
    `js_number` (19.0 is 19, what a JavaScript client sends for it). None if not finite."""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    value = float(value)  # (a subclass, numpy's float64, has a repr of its own)
    return js_number(value) if math.isfinite(value) else None


def js_number(value: float) -> str:
    """A finite float as JavaScript's String(x) writes it (ECMAScript Number::toString): the
    shortest digits that read back the same, in plain notation from 1e-6 to below 1e21 (19,
    0.5, 10000000000000000), else with an exponent (1e+21, 1e-7); -0 is 0."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, power = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # the value is 0.DIGITS x 10^point
    point = len(whole) + int(power or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        text = digits + "0" * (point - k)
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if point > 0 else '-'}{abs(point - 1)}"
    return sign + text


def value_text(value: Any, prop: str, limit: int) -> str | None:
    """A property value as recorded: text as is, numbers and booleans as `number_text` writes
    them; None when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
        if not text.isascii() and (problem := unicode_problem(text)):
            raise InvalidEvent(f"value {problem}", field=prop)
    elif isinstance(value, (int, float)):
        try:
            number = number_text(value)
        except ValueError:  # (Python writes no integer of over 4,300 digits)
            raise InvalidEvent(
                f"value is a number of over {limit:,} digits; at most {limit:,} characters are"
                " recorded (Schema max_value_length)",
                field=prop,
            ) from None
        if number is None:
            raise InvalidEvent(f"a number value must be finite, got {value!r}", field=prop)
        text = number
    elif isinstance(value, np.generic) and isinstance(value.item(), (bool, int, float, str)):
        return value_text(value.item(), prop, limit)  # (numpy's scalars, as Python's)
    else:
        raise InvalidEvent(
            f"value must be text or a number, not {type(value).__name__}", field=prop
        )
    if len(text) > limit:
        raise InvalidEvent(
            f"value is {len(text):,} characters long; at most {limit:,} are recorded"
            " (Schema max_value_length)",
            field=prop,
        )
    return text


def kind_of(value: Any) -> str:
    """What a value is, for messages: None as None, not Python's NoneType."""
    return "None" if value is None else type(value).__name__


def describe_time(value: Any) -> str:
    """A time as the caller wrote it, for messages: never a Python repr of a datetime."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (int, float)):
        return f"{value!r} (epoch seconds)"
    return repr(value)


@dataclass(frozen=True)
class Latest:
    """The latest time a batch may hold: the clock plus the schema's horizon, as UTC epoch
    seconds and as wall-clock seconds in the namespace's zone (naive times are wall times)."""

    utc: int
    wall: int
    horizon: int

    @classmethod
    def of(cls, now_s: int, schema: Schema) -> Latest:
        utc = min(now_s + schema.horizon, _MAX_EPOCH)
        offset = datetime.fromtimestamp(utc, schema.tz).utcoffset()
        wall = utc + (int(offset.total_seconds()) if offset is not None else 0)
        return cls(utc, wall, schema.horizon)


def time_problem(value: Any, sec: int, is_utc: bool, latest: Latest) -> str | None:
    """Why a time cannot be recorded (None if it can): outside the supported dates, or more
    than the schema's horizon ahead of the clock."""
    if sec < _MIN_EPOCH:
        return (
            f"{describe_time(value)} is before {periods.FIRST_DAY}; bitstat records"
            f" times from {periods.SUPPORTED}"
        )
    if sec > _MAX_EPOCH:
        hint = periods.milliseconds_hint(sec) if isinstance(value, (int, float)) else ""
        return (
            f"{describe_time(value)} is after {periods.LAST_DAY}; bitstat records"
            f" times from {periods.SUPPORTED}{hint}"
        )
    if sec > (latest.utc if is_utc else latest.wall):
        return (
            f"{describe_time(value)} is more than {duration_text(latest.horizon)} ahead of"
            " now; a later time is a clock or unit mistake (Schema horizon sets how far ahead"
            " times are accepted)"
        )
    return None


def sum_number(value: Any, prop: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, np.generic):  # (numpy's scalars, as Python's)
        value = value.item()
    if isinstance(value, bool):
        raise InvalidEvent("a summed value must be a number, not a boolean", field=prop)
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise InvalidEvent(f"a summed value is too large: {value!r:.40}", field=prop) from None
    elif isinstance(value, str):
        try:
            if "_" in value:  # (Python reads 1_000; no JSON or CSV number is written so)
                raise ValueError(value)
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


_UNREAD = object()  # a property not read yet (`check_event`'s texts)


def _compound_value(
    event: Mapping[str, Any], prop: str, limit: int, texts: dict[str, str | None]
) -> Any:
    """The value of a property, or of a compound "a~b" (a tuple; None if a part is absent),
    each part's text checked once an event (`texts` keeps them: a property read by several
    rules, as "country" by a count, a segment and "country~plan", is read once)."""
    parts = _PARTS.get(prop)
    if parts is None:
        parts = _PARTS[prop] = tuple(prop.split("~"))
    values = []
    for part in parts:  # (every part is checked, present or not)
        if part in texts:
            values.append(texts[part])
        else:
            values.append(value_text(event.get(part), part, limit))
            texts[part] = values[-1]
    if len(values) == 1:
        return values[0]
    return None if None in values else tuple(values)


_PARTS: dict[str, tuple[str, ...]] = {}  # a property's parts, by its name in the schema


def whole_seconds(span: timedelta) -> int:
    """The whole seconds of `span`, floored, exactly (a float of total_seconds() rounds a
    time's microseconds into the next second from the year 2286 on)."""
    return span.days * 86400 + span.seconds


def _time_of(value: Any, tz_name: str) -> tuple[int, bool]:
    """(seconds, is_utc): UTC epoch seconds, or wall-clock seconds for naive local times."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (isinstance(value, int) or math.isfinite(value)):
            raise InvalidEvent(f"time must be finite, got {value!r}", field="time")
        return math.floor(value), True
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return whole_seconds(value - _UTC_EPOCH), True
        return whole_seconds(value - _NAIVE_EPOCH), False
    if isinstance(value, date):
        return (value.toordinal() - 719163) * 86400, False
    if isinstance(value, str):
        try:
            wall = periods.parse_time(value, ZoneInfo(tz_name))
        except BitstatError as exc:
            raise InvalidEvent(str(exc), field="time") from None
        return whole_seconds(wall - _NAIVE_EPOCH), False
    raise InvalidEvent(
        f"time must be a datetime, an ISO-8601 text or epoch seconds, not {type(value).__name__}",
        field="time",
    )


Spec = tuple[str, str, str | None]  # (kind, property, by): one rule of the schema


@dataclass
class Columns:
    """The accepted events of a batch, column by column (row i is accepted event i).

    `values[s]` holds, per row, the value of rule spec `s` (text, or a tuple for compound
    properties) or None where the row has none; for sums, `amounts[s]` holds the number (NaN
    where absent) and `values[s]` the label of the `by` property when there is one.
    """

    index: list[int]
    names: list[str]
    codes: np.ndarray
    actors: np.ndarray | list[Any]  # int mode: int64 offsets, -1 = no actor; map mode: text/None
    wall: np.ndarray
    specs: list[Spec]
    values: dict[int, list[Any]]
    amounts: dict[int, np.ndarray]
    rejected: list[tuple[int, str]]

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows: np.ndarray) -> Columns:
        """The columns of `rows` alone (positions, in order); event codes renumbered so that
        every name left has rows."""
        codes = self.codes[rows]
        present = np.unique(codes)
        renumber = np.full(len(self.names), -1, dtype=np.int64)
        renumber[present] = np.arange(len(present))
        pick = _picker(rows.tolist())
        actors = self.actors[rows] if isinstance(self.actors, np.ndarray) else pick(self.actors)
        return Columns(
            pick(self.index),
            [self.names[c] for c in present.tolist()],
            renumber[codes],
            actors,
            self.wall[rows],
            self.specs,
            {k: pick(v) for k, v in self.values.items()},
            {k: a[rows] for k, a in self.amounts.items()},
            list(self.rejected),
        )


def _picker(rows: list[int]) -> Callable[[Sequence[Any]], list[Any]]:
    """A function picking `rows` of a list column, in C (a large batch's part: ~10 columns of
    tens of thousands of rows)."""
    if len(rows) < 2:
        return lambda column: [column[r] for r in rows]
    get = itemgetter(*rows)
    return lambda column: list(get(column))


def rule_specs(schema: Schema, names: tuple[str, ...]) -> dict[Spec, set[str]]:
    """Every rule that applies to any of the event names, with the names it applies to (the
    caller must not change the answer: it is remembered)."""
    memo = schema.derived.setdefault("rule_specs", {})
    found = memo.get(names)
    if found is None:
        if len(memo) > 1024:
            memo.clear()
        found = memo[names] = _find_rule_specs(schema, names)
    return found  # type: ignore[no-any-return]


def _find_rule_specs(schema: Schema, names: tuple[str, ...]) -> dict[Spec, set[str]]:
    specs: dict[Spec, set[str]] = {}
    for name in names:
        rules = schema.rules_for(name)
        found: list[Spec] = [("sum", r.prop, r.by) for r in rules.sum]
        for kind in ("count", "top", "unique", "approx", "segment"):
            found += [(kind, prop, None) for prop in getattr(rules, kind)]
        for spec in found:
            specs.setdefault(spec, set()).add(name)
    return specs


def parse_batch(events: Iterable[Any], schema: Schema, now: float | None = None) -> Columns:
    """Validate every event; keep the good ones as columns, the bad ones as (index, reason)."""
    batch = events if isinstance(events, list) else list(events)
    now_s = int(now if now is not None else _time.time())
    latest = Latest.of(now_s, schema)
    fast = _parse_clean(batch, schema, now_s, latest)
    return fast if fast is not None else _parse_each(batch, schema, now_s, latest)


def _wall(raw: np.ndarray, utc: np.ndarray, tz_name: str) -> np.ndarray:
    """Wall-clock seconds: UTC ones converted, naive ones as given but for a time that never
    happened (a daylight-saving gap), which is read as Python reads it (`real_walls`)."""
    tz = ZoneInfo(tz_name)
    if utc.all():
        return periods.wall_seconds(raw, tz)
    if not utc.any():
        return periods.real_walls(raw, tz)
    wall = raw.copy()
    wall[utc] = periods.wall_seconds(raw[utc], tz)
    wall[~utc] = periods.real_walls(raw[~utc], tz)
    return wall


_NONE = type(None)
FEW = 16  # batches up to this size read text times one by one: numpy's set-up costs more


def _read_texts(texts: list[str], tz_name: str) -> timetext.Parsed | None:
    """`timetext.parse_column` for a few texts, read as `_time_of` reads them (every ISO form,
    as wall-clock seconds); None when one cannot be read."""
    try:
        seconds = [_time_of(t, tz_name)[0] for t in texts]
    except InvalidEvent:
        return None
    return np.array(seconds, dtype=np.int64), np.zeros(len(texts), dtype=bool)


def _parse_clean(batch: list[Any], schema: Schema, now_s: int, latest: Latest) -> Columns | None:
    """The whole batch at once, column by column; None when anything is unusual.

    The usual batch (dicts, text names, integer ids, epoch or naive times, plain values) needs
    no per-event Python beyond a few list comprehensions; anything else takes `_parse_each`,
    which checks event by event and says what is wrong.
    """
    n = len(batch)
    if n == 0 or set(map(type, batch)) != {dict}:
        return None
    names: list[Any] = list(map(dict.get, batch, repeat("event", n)))
    try:
        "".join(names)  # every name is text (C speed); empty names are caught below
    except TypeError:
        return None
    distinct = set(names)
    if any(name_problem(x) for x in distinct):
        return None
    ordered = sorted(distinct)
    code_of = {x: i for i, x in enumerate(ordered)}
    if len(ordered) == 1:
        codes = np.zeros(n, dtype=np.int64)
    else:
        codes = np.fromiter(map(code_of.__getitem__, names), dtype=np.int64, count=n)

    raw_actors: list[Any] = list(map(dict.get, batch, repeat(schema.actor, n)))
    kinds = set(map(type, raw_actors))
    if _NONE in kinds and not schema.anonymous:
        return None
    actors: np.ndarray | list[Any]
    if schema.ids == "int":
        if not kinds <= {int, _NONE}:
            return None
        absent = raw_actors.count(None)
        if absent:
            raw_actors = [-1 if a is None else a for a in raw_actors]
        try:
            actors = np.array(raw_actors, dtype=np.int64)
        except OverflowError:
            return None
        # -1 marks "no actor": any other negative, or a -1 the caller gave, takes the slow path
        if actors.max() > schema.max_id or int((actors < 0).sum()) != absent:
            return None
    else:
        if not kinds <= {str, int, _NONE} or "" in raw_actors:
            return None
        try:
            actors = (
                [str(a) if type(a) is int else a for a in raw_actors]
                if int in kinds
                else raw_actors
            )
        except ValueError:  # an integer of more digits than str() writes: refused one by one
            return None
        longest = max(map(len, filter(None, actors)), default=0)
        if longest > schema.max_value_length or unicode_problem("".join(filter(None, actors))):
            return None

    times: list[Any] = list(map(dict.get, batch, repeat("time", n)))
    tkinds = set(map(type, times))
    if tkinds <= {int, float, _NONE}:
        if _NONE in tkinds:
            times = [now_s if t is None else t for t in times]
        try:
            if float in tkinds:
                ft = np.array(times, dtype=np.float64)
                if not (np.abs(ft) < _HUGE).all():  # (not finite, or past int64: row by row)
                    return None
                raw = np.floor(ft).astype(np.int64)
            else:
                raw = np.array(times, dtype=np.int64)
        except OverflowError:
            return None
        if raw.min() < _MIN_EPOCH or raw.max() > latest.utc:
            return None
        wall = _wall(raw, np.ones(n, dtype=bool), schema.timezone)
    elif tkinds == {datetime}:
        zones = {t.tzinfo for t in times}
        if zones == {None}:
            # (t - epoch).total_seconds() is ten times faster than numpy's datetime conversion
            seconds = [(t - _NAIVE_EPOCH).total_seconds() for t in times]
            utc = np.zeros(n, dtype=bool)
        elif zones == {UTC}:
            # same tzinfo object on both sides: subtraction skips the offset lookups
            seconds = [(t - _UTC_EPOCH).total_seconds() for t in times]
            utc = np.ones(n, dtype=bool)
        elif None not in zones and all(isinstance(z, _FIXED_ZONES) for z in zones):
            seconds = [t.timestamp() for t in times]  # aware: zones whose offsets are known
            utc = np.ones(n, dtype=bool)
        else:
            return None
        raw = np.floor(seconds).astype(np.int64)
        if raw.max() >= _FLOAT_SECONDS_EXACT:  # (far ahead, as `_time_of` floors them)
            epoch = _NAIVE_EPOCH if zones == {None} else _UTC_EPOCH
            raw = np.array([whole_seconds(t - epoch) for t in times], dtype=np.int64)
        if raw.min() < _MIN_EPOCH or raw.max() > (latest.utc if utc[0] else latest.wall):
            return None
        wall = _wall(raw, utc, schema.timezone)
    elif tkinds == {str}:
        parsed = timetext.parse_column(times) if n > FEW else _read_texts(times, schema.timezone)
        if parsed is None:
            return None
        raw, utc = parsed
        if raw.min() < _MIN_EPOCH - 86400 or raw.max() > _MAX_EPOCH + 86400:
            return None  # far out of range: the event-by-event path says why
        wall = _wall(raw, utc, schema.timezone)
        # a text time is checked as a wall time, offset or not (as `_time_of` reads it)
        if wall.min() < _MIN_EPOCH or wall.max() > min(latest.wall, _MAX_EPOCH):
            return None
    else:
        return None

    applies = rule_specs(schema, tuple(ordered))
    specs = list(applies)
    values: dict[int, list[Any]] = {}
    amounts: dict[int, np.ndarray] = {}
    columns: dict[str, list[Any]] = {}

    complete: set[str] = set()  # columns with text in every row
    limit = schema.max_value_length

    def column(prop: str) -> list[Any] | None:
        col = columns.get(prop)
        if col is None:
            col = list(map(dict.get, batch, repeat(prop, n)))
            try:
                text = "".join(col)  # all text, the usual case: checked at C speed
                complete.add(prop)
            except TypeError:
                ck = set(map(type, col))
                if not ck <= {str, int, float, _NONE}:
                    return None
                if float in ck and not all(map(math.isfinite, filter(_is_float, col))):
                    return None  # (the event-by-event path says which)
                if int in ck or float in ck:
                    try:
                        col = [v if v is None or type(v) is str else number_text(v) for v in col]
                    except ValueError:  # (an integer of over 4,300 digits: said event by event)
                        return None
                if _NONE not in ck:
                    complete.add(prop)
                text = "".join(filter(None, col))
            if unicode_problem(text):
                return None
            present = col if prop in complete else [v for v in col if v is not None]
            if max(map(len, present), default=0) > limit:
                return None
            columns[prop] = col
        return col

    def compound_column(name: str) -> list[Any] | None:
        names = name.split("~")
        parts = [column(p) for p in names]
        if any(p is None for p in parts):
            return None
        if len(parts) == 1:
            return parts[0]
        if complete.issuperset(names):
            return list(zip(*parts, strict=True))
        return [None if None in row else row for row in zip(*parts, strict=True)]

    codes_list: list[int] | None = None
    for idx, (kind, prop, by) in enumerate(specs):
        # rows of events this rule does not apply to must hold nothing for it
        others = None
        if len(applies[(kind, prop, by)]) < len(ordered):
            others = {code_of[x] for x in ordered if x not in applies[(kind, prop, by)]}
            if codes_list is None:
                codes_list = codes.tolist()
        if kind == "sum":
            nums = list(map(dict.get, batch, repeat(prop, n)))
            nk = set(map(type, nums))
            if not nk <= {int, float, _NONE}:
                return None
            absent = nums.count(None)
            if absent:
                nums = [math.nan if v is None else v for v in nums]
            try:
                arr = np.array(nums, dtype=np.float64)
            except OverflowError:  # an integer beyond float range: rejected on the slow path
                return None
            present = ~np.isnan(arr)
            # a NaN given by the caller must be rejected, not mistaken for an absent value
            if int(present.sum()) != n - absent or not np.isfinite(arr[present]).all():
                return None
            if others is not None:
                arr[np.isin(codes, list(others))] = math.nan
            amounts[idx] = arr
            if by is not None:
                labels = compound_column(by)
                if labels is None:
                    return None
                values[idx] = labels
            continue
        col = compound_column(prop)
        if col is None:
            return None
        if others is not None and codes_list is not None:
            col = [None if c in others else v for v, c in zip(col, codes_list, strict=True)]
        values[idx] = col
    return Columns(list(range(n)), ordered, codes, actors, wall, specs, values, amounts, [])


Checked = tuple[str, Any, int, bool, dict[Spec, Any]]  # name, actor, seconds, is_utc, values


def rejection(exc: InvalidEvent) -> Reason:
    """How a rejected event's reason is reported: the field, then why."""
    return Reason(exc.reason if exc.field is None else f"{exc.field}: {exc.reason}", exc.field)


def check_event(
    ev: Any, schema: Schema, now_s: int, latest: Latest, rule_cache: dict[str, list[Spec]]
) -> Checked:
    """One event checked: (name, actor, seconds, is_utc, values by rule spec), or InvalidEvent
    saying what is wrong. `rule_cache` remembers each name's rule specs across calls."""
    actor_key = schema.actor
    int_ids = schema.ids == "int"
    limit = schema.max_value_length
    if type(ev) is not dict and not isinstance(ev, Mapping):  # (an ABC's check costs)
        raise InvalidEvent(f"an event must be a mapping, not {kind_of(ev)}")
    name = ev.get("event")
    if type(name) is not str:
        if name is None:
            raise InvalidEvent("missing event name", field="event")
        raise InvalidEvent(f"event name must be text, not {type(name).__name__}", field="event")
    if name not in rule_cache and (problem := name_problem(name)):  # (a name met: checked)
        raise InvalidEvent(f"event name {problem}", field="event")
    actor = ev.get(actor_key)
    if actor is not None:
        if int_ids:
            actor = int_actor(actor, actor_key, schema.max_id)
        elif type(actor) is str and actor and len(actor) <= limit and actor.isascii():
            pass  # (`canonical_id` of short ASCII text, inlined: most ids are)
        else:
            try:
                actor = canonical_id(actor)
            except InvalidEvent as exc:
                raise InvalidEvent(exc.reason, field=actor_key) from None
            if len(actor) > limit:
                raise InvalidEvent(
                    f"actor id is {len(actor):,} characters long; at most {limit:,}"
                    " are recorded (Schema max_value_length)",
                    field=actor_key,
                )
    elif not schema.anonymous:
        raise InvalidEvent(
            "no actor: every event names who did it (a schema with anonymous=True"
            " records events without one in totals, counts and sums)",
            field=actor_key,
        )
    t = ev.get("time")
    # (numpy's epoch seconds, as queries take them; a text skips the check of a union)
    if type(t) is not str and isinstance(t, np.integer | np.floating):
        t = t.item()
    sec, is_utc = (now_s, True) if t is None else _time_of(t, schema.timezone)
    if problem := time_problem(t, sec, is_utc, latest):
        raise InvalidEvent(problem, field="time")
    specs = rule_cache.get(name)
    if specs is None:
        specs = rule_cache[name] = list(rule_specs(schema, (name,)))
    row: dict[Spec, Any] = {}
    texts: dict[str, str | None] = {}
    for spec in specs:
        kind, prop, by = spec
        if kind == "sum":
            number = sum_number(ev.get(prop), prop)
            if number is not None:
                label = _compound_value(ev, by, limit, texts) if by else None
                row[spec] = (number, label)
        else:
            value = texts.get(prop, _UNREAD)  # (a property read by an earlier rule: once)
            if value is _UNREAD:
                if "~" in prop:
                    value = _compound_value(ev, prop, limit, texts)
                else:
                    value = ev.get(prop)
                    # (`value_text` of plain short ASCII text, inlined: most values are)
                    if type(value) is not str or len(value) > limit or not value.isascii():
                        value = value_text(value, prop, limit)
                    texts[prop] = value
            if value is not None:
                row[spec] = value
    return name, actor, sec, is_utc, row


def _parse_each(batch: list[Any], schema: Schema, now_s: int, latest: Latest) -> Columns:
    """Event by event, with a precise reason for each rejected one."""
    int_ids = schema.ids == "int"
    tz_name = schema.timezone
    index: list[int] = []
    names: list[str] = []
    actors: list[Any] = []
    seconds: list[int] = []
    utc_flags: list[bool] = []
    found: list[dict[Spec, Any]] = []
    rejected: list[tuple[int, str]] = []
    rule_cache: dict[str, list[Spec]] = {}
    for i, ev in enumerate(batch):
        try:
            name, actor, sec, is_utc, row = check_event(ev, schema, now_s, latest, rule_cache)
        except InvalidEvent as exc:
            rejected.append((i, rejection(exc)))
            continue
        index.append(i)
        names.append(name)
        actors.append(actor)
        seconds.append(sec)
        utc_flags.append(is_utc)
        found.append(row)
    ordered = sorted(set(names))
    code_of = {x: k for k, x in enumerate(ordered)}
    n = len(index)
    codes = np.fromiter(map(code_of.__getitem__, names), dtype=np.int64, count=n)
    wall = _wall(np.array(seconds, dtype=np.int64), np.array(utc_flags, dtype=bool), tz_name)
    specs = list(rule_specs(schema, tuple(ordered)))
    values: dict[int, list[Any]] = {}
    amounts: dict[int, np.ndarray] = {}
    for idx, spec in enumerate(specs):
        if spec[0] == "sum":
            pairs = [row.get(spec) for row in found]
            amounts[idx] = np.array(
                [math.nan if p is None else p[0] for p in pairs], dtype=np.float64
            )
            if spec[2] is not None:
                values[idx] = [None if p is None else p[1] for p in pairs]
        else:
            values[idx] = [row.get(spec) for row in found]
    actor_col: np.ndarray | list[Any]
    if int_ids:
        actor_col = np.array([-1 if a is None else a for a in actors], dtype=np.int64)
    else:
        actor_col = actors
    return Columns(index, ordered, codes, actor_col, wall, specs, values, amounts, rejected)


def int_actor(actor: Any, key: str, max_id: int) -> int:
    if isinstance(actor, np.integer):  # (numpy's integers, a DataFrame's rows: as Python's)
        actor = int(actor)
    if isinstance(actor, bool):
        raise InvalidEvent(f"actor id must be an integer, not a boolean ({actor!r})", field=key)
    if isinstance(actor, str) and actor.isdigit() and actor.isascii():
        digits = actor.lstrip("0") or "0"
        if len(digits) > len(str(max_id)):  # (int() of too many digits would raise)
            raise InvalidEvent(
                f"actor id of {len(digits):,} digits is outside 0..{max_id}", field=key
            )
        value = int(digits)
    elif isinstance(actor, int):
        value = actor
    else:
        hint = (
            "; text ids such as UUIDs or e-mails need a schema with ids='map'"
            if isinstance(actor, str)
            else ""
        )
        raise InvalidEvent(
            f"actor id must be a non-negative integer (ids='int'), got {actor!r}{hint}",
            field=key,
        )
    if not 0 <= value <= max_id:
        shown = int_text(value) or f"of more than {digit_limit():,} digits"
        raise InvalidEvent(f"actor id {shown} is outside 0..{max_id}", field=key)
    return value


def time_order(times: list[Any], tz_name: str) -> np.ndarray:
    """A stable order of events by their times (`time` values as `track_many` takes them), for
    cutting a backfill into batches that each span few hours: a batch then writes each key
    once for many events, not once for one. Only speed depends on it, so it may be rough:
    texts with an offset order by UTC, naive ones by wall clock. Events without a readable
    time (None means now) come last, in their order."""
    if times and all(type(t) is str for t in times):  # most files: a column read at once
        parsed = timetext.parse_column(times)
        if parsed is not None:
            return np.argsort(parsed[0], kind="stable")
    keys = np.full(len(times), np.iinfo(np.int64).max, dtype=np.int64)
    texts = [(i, t) for i, t in enumerate(times) if type(t) is str]
    parsed = timetext.parse_column([t for _, t in texts]) if texts else None
    if parsed is not None:
        keys[[i for i, _ in texts]] = parsed[0]
    for i, t in enumerate(times):
        if t is None or (parsed is not None and type(t) is str):
            continue
        try:
            keys[i] = _time_of(t, tz_name)[0]
        except (InvalidEvent, OverflowError, ValueError):
            continue  # rejected when recorded; where it goes does not matter
    return np.argsort(keys, kind="stable")


def _is_float(value: Any) -> bool:
    return type(value) is float
