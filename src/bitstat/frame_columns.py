"""Arrow columns read whole, as the dict path reads each value: times, names, actor ids, texts
and numbers. Each reader answers the column's values and the rows it cannot prove clean (those
the dict path would reject, or might read otherwise), which are left to the dict path.

Pure: numpy and pyarrow compute over a column at a time, no per-row Python where avoidable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from . import periods
from .events import Latest, number_text
from .schema import Schema

_MAX_EPOCH = periods.LAST_SECOND
_HUGE = 2**62  # epoch numbers beyond this are out of range anyway (and beyond int64 if larger)
_CHUNK = 1 << 16  # rows of a text time column read at once (bounds the byte matrix)
_UNIT = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_CUMULATIVE_DAYS = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334])
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])

types = pa.types


@dataclass
class Times:
    """A time column read whole: per row seconds (UTC epoch where `utc`, else wall-clock), whether
    it is readable here (`ok`) and whether the row has a time at all (`given`; none = now)."""

    raw: np.ndarray
    utc: np.ndarray
    ok: np.ndarray
    given: np.ndarray
    text: bool  # a text time is checked as a wall time, as `_time_of` reads it

    def sort_key(self) -> np.ndarray:
        """The hour of each row, rows without a readable time first: independent of the clock,
        so a retried frame is cut into the same batches."""
        return np.where(self.ok & self.given, self.raw // 3600, np.iinfo(np.int64).min)

    def checked(
        self, rows: np.ndarray, now_s: int, latest: Latest, schema: Schema
    ) -> tuple[np.ndarray, np.ndarray]:
        """(wall-clock seconds, bad) of `rows`; bad rows are left to the dict path."""
        given = self.given[rows]
        raw = np.where(given, self.raw[rows], now_s)
        utc = np.where(given, self.utc[rows], True)
        ok = self.ok[rows] | ~given
        wall_limit = min(latest.wall, _MAX_EPOCH)
        if self.text:  # converted first, then checked as wall-clock seconds
            ok &= (raw >= -86400) & (raw <= _MAX_EPOCH + 86400)
            wall = _wall(raw, utc & ok, schema)
            bad = ~ok | (given & ((wall < 0) | (wall > wall_limit)))
        else:
            bad = ~ok | (raw < 0) | (raw > np.where(utc, latest.utc, wall_limit))
            wall = _wall(raw, utc & ~bad, schema)
        return wall, bad


def _wall(raw: np.ndarray, convert: np.ndarray, schema: Schema) -> np.ndarray:
    """`events._wall`: the rows to `convert` from UTC, the others naive (a time in a
    daylight-saving gap read as Python reads it)."""
    wall = raw.copy()
    if convert.any():
        wall[convert] = periods.wall_seconds(raw[convert], schema.tz)
    if not convert.all():
        wall[~convert] = periods.real_walls(raw[~convert], schema.tz)
    return wall


def read_times(column: Any, opaque: np.ndarray | None) -> Times:
    """Every row of a time column: timestamps (naive = wall clock, with a zone = an instant),
    dates, epoch numbers, ISO-8601 text in the strict form `timetext` reads."""
    n = len(column)
    arr = column.combine_chunks()
    kind = arr.type
    given = _valid(arr)
    raw = np.zeros(n, dtype=np.int64)
    utc = np.ones(n, dtype=bool)
    ok = np.zeros(n, dtype=bool)
    text = False
    if types.is_timestamp(kind):
        values = _ints(pc.cast(arr, pa.int64()))
        raw, utc, ok = values // _UNIT[kind.unit], np.full(n, kind.tz is not None), given
    elif types.is_date32(kind):
        raw, utc, ok = _ints(pc.cast(arr, pa.int32())) * 86400, np.zeros(n, dtype=bool), given
    elif types.is_date64(kind):
        raw = _ints(pc.cast(arr, pa.int64())) // 86_400_000 * 86400
        utc, ok = np.zeros(n, dtype=bool), given
    elif types.is_integer(kind) or types.is_floating(kind):
        number = floats(arr)
        given = ~np.isnan(number)  # NaN: no time, as null
        ok = given & (np.abs(np.where(given, number, 0)) <= _HUGE)  # inf is not ok
        raw = np.floor(np.where(ok, number, 0)).astype(np.int64)
        if types.is_integer(kind) and not types.is_uint64(kind):  # exact beyond 2**53
            raw = np.where(ok, _ints(pc.cast(arr, pa.int64())), 0)
    elif types.is_string(kind) or types.is_large_string(kind):
        text = True
        for start in range(0, n, _CHUNK):
            part = arr.slice(start, _CHUNK)
            seconds, zoned, strict = strict_times(part)
            raw[start : start + len(part)] = seconds
            utc[start : start + len(part)] = zoned
            ok[start : start + len(part)] = strict
        ok &= given
    if opaque is not None:
        given |= opaque
    return Times(raw, utc, ok, given, text)


def strict_times(arr: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds, has an offset, is strict) per text: `YYYY-MM-DD(T| )HH:MM:SS[.f{1,6}]
    [Z|+HH:MM|-HH:MM]`, read from arrow's byte buffers as `timetext.parse_column` reads its
    texts, but row by row: a text in another form is left to the dict path, not the column."""
    n = len(arr)
    width = np.int64 if types.is_large_string(arr.type) else np.int32
    ends = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + n + 1]
    offsets = np.asarray(ends, dtype=np.int64)
    data_buffer = arr.buffers()[2]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, dtype=np.uint8)
    )
    start, length = offsets[:-1], np.diff(offsets)
    ok = (length >= 19) & (length <= 32)
    zero = np.zeros(n, dtype=np.int64)
    if not ok.any():
        return zero, zero.astype(bool), ok
    longest = int(length[ok].max())
    if (length == longest).all():  # one form throughout: the bytes are the matrix
        m = data[offsets[0] : offsets[0] + n * longest].reshape(n, longest)
    else:
        spots = np.minimum(start[:, None] + np.arange(longest), max(len(data) - 1, 0))
        m = np.where(np.arange(longest) < length[:, None], data[spots], 0).astype(np.uint8)
    if longest < 32:
        m = np.concatenate([m, np.zeros((n, 32 - longest), dtype=np.uint8)], axis=1)
    digit = m[:, :26] - np.uint8(48)  # a non-digit byte wraps above 9
    ok &= digit[:, _DIGITS].max(axis=1) <= 9
    ok &= (m[:, 4] == 45) & (m[:, 7] == 45) & (m[:, 13] == 58) & (m[:, 16] == 58)
    ok &= (m[:, 10] == 84) | (m[:, 10] == 32)  # "T" or " "

    def number(*cols: int) -> np.ndarray:
        out = digit[:, cols[0]].astype(np.int64)
        for c in cols[1:]:
            out = out * 10 + digit[:, c]
        return np.where(ok, out, 1)

    year, month, day = number(0, 1, 2, 3), number(5, 6), number(8, 9)
    hour, minute, second = number(11, 12), number(14, 15), number(17, 18)
    ok &= (year >= 1) & (month >= 1) & (month <= 12)
    month = np.where(ok, month, 1)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days_in = _MONTH_DAYS[month - 1] + ((month == 2) & leap)
    ok &= (day >= 1) & (day <= days_in) & (hour <= 23) & (minute <= 59) & (second <= 59)

    # after the seconds: 1 to 6 fraction digits, then nothing, "Z" or "+HH:MM" / "-HH:MM"
    fraction = (length > 19) & (m[:, 19] == 46)
    tail = (digit[:, 20:26] <= 9) & (np.arange(20, 26) < length[:, None])
    run = np.where(tail.all(axis=1), 6, tail.argmin(axis=1))
    ok &= ~fraction | (run >= 1)
    rest = np.where(fraction, 20 + run, 19)
    suffix = length - rest
    ok &= (suffix == 0) | (suffix == 1) | (suffix == 6)
    rows = np.arange(n)

    def at(k: int) -> np.ndarray:
        return np.asarray(m[rows, np.minimum(rest + k, 31)], dtype=np.int64)

    ok &= (suffix != 1) | (at(0) == 90)  # "Z"
    sign = at(0)
    parts = [at(k) - 48 for k in (1, 2, 4, 5)]
    zoned = suffix == 6
    ok &= ~zoned | (((sign == 43) | (sign == 45)) & (at(3) == 58))
    ok &= ~zoned | np.logical_and.reduce([(p >= 0) & (p <= 9) for p in parts])
    oh, om = parts[0] * 10 + parts[1], parts[2] * 10 + parts[3]
    ok &= ~zoned | ((oh <= 23) & (om <= 59))
    offset = np.where(zoned & ok, np.where(sign == 45, -1, 1) * (oh * 3600 + om * 60), 0)

    y = year - 1  # days since 1970-01-01 of the proleptic Gregorian date
    days = y * 365 + y // 4 - y // 100 + y // 400 + _CUMULATIVE_DAYS[month - 1] + day - 1
    days += (month > 2) & leap
    days -= 719162
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
    return np.where(ok, seconds, 0), suffix != 0, ok


def _valid(arr: Any) -> np.ndarray:
    if types.is_null(arr.type):
        return np.zeros(len(arr), dtype=bool)
    return np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)


def _ints(arr: Any) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def floats(arr: Any) -> np.ndarray:
    """Numbers as float64, NaN where null (integers rounded to the nearest, as float() does)."""
    if types.is_integer(arr.type):
        out = _ints(arr).astype(np.float64) if not types.is_uint64(arr.type) else None
        if out is None:
            values = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False)
            out = np.asarray(values, dtype=np.uint64).astype(np.float64)
    else:
        out = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
    if arr.null_count:
        out = np.where(_valid(arr), out, np.nan)
    return out


def _lengths_over(text: Any, limit: int) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.greater(pc.utf8_length(text), limit), False), dtype=bool)


def as_text(arr: Any, limit: int) -> tuple[Any, np.ndarray]:
    """(values as recorded, as arrow text or None when there are none; rows the dict path
    rejects): text as it is, numbers and booleans as `events.value_text` writes them."""
    kind = arr.type
    if types.is_string(kind) or types.is_large_string(kind):
        text = arr
    elif types.is_integer(kind):
        text = pc.cast(arr, pa.large_string())
    elif types.is_boolean(kind):
        text = pc.if_else(arr, "true", "false")
    elif types.is_floating(kind):  # the text of each distinct value (NaN: no value)
        number = floats(arr)
        present = np.isfinite(number)
        bits, inverse = np.unique(number[present].view(np.int64), return_inverse=True)
        shown = np.array(
            [number_text(v) for v in bits.view(np.float64).tolist()] + [None], dtype=object
        )
        pick = np.full(len(arr), len(shown) - 1)
        pick[present] = inverse
        text = pa.array(shown[pick], type=pa.large_string())
        return text, _lengths_over(text, limit) | np.isinf(number)  # (infinite: rejected)
    else:  # nothing, or values the dict path refuses (times, decimals, lists, bytes, ...)
        return None, _valid(arr)
    return text, _lengths_over(text, limit)


def as_number(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """(summed values as float64, NaN where none; rows the dict path rejects): numbers, and
    text float() reads, finite."""
    n = len(arr)
    kind = arr.type
    if types.is_integer(kind) or types.is_floating(kind):
        number = floats(arr)
        return np.where(np.isinf(number), np.nan, number), np.isinf(number)
    if types.is_string(kind) or types.is_large_string(kind):
        coded = arr.dictionary_encode()
        found = [_float_of(t) for t in coded.dictionary.to_pylist()]
        values = np.array([np.nan if v is None else v for v in found] + [np.nan])
        refused = np.array([v is None for v in found] + [False])
        pick = _ints(pc.fill_null(pc.cast(coded.indices, pa.int64()), len(found)))
        return values[pick], refused[pick]
    return np.full(n, np.nan), _valid(arr)


def _float_of(text: str) -> float | None:
    if "_" in text:  # (Python's 1_000, which no JSON or CSV number is: as `sum_number`)
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def names_of(arr: Any) -> tuple[list[str], np.ndarray]:
    """(distinct names, per row the index of its name, -1 where null or not text)."""
    if not (types.is_string(arr.type) or types.is_large_string(arr.type)):
        return [], np.full(len(arr), -1, dtype=np.int64)
    coded = arr.dictionary_encode()
    return coded.dictionary.to_pylist(), _ints(pc.fill_null(pc.cast(coded.indices, pa.int64()), -1))


def actor_column(arr: Any, schema: Schema) -> tuple[Any, np.ndarray, np.ndarray]:
    """(ids: int64 offsets (-1 none) or arrow text; rows without an actor; rows refused)."""
    kind = arr.type
    absent = ~_valid(arr)
    if schema.ids == "int":
        if types.is_integer(kind):
            number = floats(arr)  # only to find ids out of range, whatever their width
            refused = ~absent & ((number < 0) | (number > schema.max_id))
            ids = np.where(absent | refused, -1, _ints(pc.cast(arr, pa.int64(), safe=False)))
            return ids, absent, refused
        return np.full(len(arr), -1, dtype=np.int64), absent, ~absent
    if types.is_string(kind) or types.is_large_string(kind):
        empty = np.asarray(pc.fill_null(pc.equal(pc.utf8_length(arr), 0), False), dtype=bool)
        return arr, absent, empty | _lengths_over(arr, schema.max_value_length)
    if types.is_integer(kind):
        text = pc.cast(arr, pa.large_string())
        return text, absent, _lengths_over(text, schema.max_value_length)
    return None, absent, ~absent


def pick(text: Any, rows: Any, count: int, keep: np.ndarray | None) -> list[Any]:
    """Python values of `rows` (None: all) of an arrow column, None where `keep` is false."""
    if text is None:
        return [None] * count
    taken = text if rows is None else text.take(rows)
    if keep is not None and not keep.all():
        taken = pc.if_else(pa.array(keep), taken, pa.scalar(None, taken.type))
    return list(taken.to_pylist())
