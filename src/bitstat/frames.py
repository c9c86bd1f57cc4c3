"""Data frames (pandas, polars, pyarrow) recorded column by column: the door for backfills.

A frame stands for the events `track_many` would take, one a row: the dict of the row's cells
that hold a value (null, and a float NaN, as pandas writes a missing number, hold none). Each
column the schema needs is read whole, with pyarrow compute and numpy, into the `Columns` that
`events.parse_batch` makes of dicts. A row the columns cannot prove clean (a null name, a value
of a type the dict path refuses, a time out of range or in a form other than the strict ISO one,
a text too long) goes to `parse_batch` as that dict, so it is recorded, or rejected with the
reason, exactly as `track_many` would. pyarrow is imported with this module, never by `bitstat`.

A frame larger than a batch is cut into batches in time order (by hour, stable), so that each
batch writes the keys of a few hours instead of every batch writing the keys of the whole range,
as a backfill in random order would; the order of rows changes no answer (it is kept when the
frame's own sums could near the largest total kept, where the order picks what is rejected).
"""

from __future__ import annotations

import hashlib
import sys
import time as _time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np

try:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]
except ImportError as exc:  # the optional extra is missing
    raise ImportError("track_frame needs pyarrow: pip install 'bitstat[frames]'") from exc

from . import sums
from .calls import Op
from .errors import BatchError, InvalidEvent
from .events import Columns, Latest, Spec, parse_batch, rule_specs
from .frame_columns import (
    actor_column,
    as_number,
    as_text,
    floats,
    names_of,
    pick,
    read_times,
)
from .integers import whole
from .record import AUTO_IDS, IN_DOUBT, Recording, TrackResult
from .schema import Schema, name_problem

DEFAULT_BATCH_SIZE = 50_000

types = pa.types


def to_table(frame: Any) -> tuple[Any, dict[str, list[Any]]]:
    """The frame as an arrow table (dictionaries decoded, string views made plain strings), and
    the columns arrow cannot hold as they are as Python lists (a pandas object column of mixed
    kinds, a polars Object column); those stand as null columns in the table."""
    if isinstance(frame, pa.RecordBatch):
        frame = pa.Table.from_batches([frame])
    objects: dict[str, list[Any]] = {}
    if isinstance(frame, pa.Table):
        table = frame
    elif _library(frame) == "pandas":
        table, objects = _from_pandas(frame)
    elif _library(frame) == "polars":
        table, objects = _from_polars(frame)
    else:
        raise TypeError(
            "track_frame takes a pandas.DataFrame, a polars.DataFrame or a pyarrow.Table,"
            f" not {type(frame).__module__}.{type(frame).__name__}"
        )
    names = table.column_names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidEvent(f"the frame has more than one column named {twice[0]!r}")
    columns = []
    for column in table.columns:
        if types.is_run_end_encoded(column.type):  # (arrow takes no rows of it)
            column = pc.run_end_decode(column)
        if types.is_dictionary(column.type):
            values = _plain(column.type.value_type)
            if values != column.type.value_type:  # (polars' Categorical, Enum: arrow cannot
                # cast a dictionary of views to text in one step)
                column = pc.cast(column, pa.dictionary(column.type.index_type, values))
            column = pc.cast(column, values)
        if _plain(column.type) != column.type:
            column = pc.cast(column, _plain(column.type))
        columns.append(column)
    return pa.table(columns, names=names), objects


def _plain(kind: Any) -> Any:
    """`kind` with string and binary views made plain text and bytes, in lists, structs and
    maps too (polars hands text over as views, of which arrow takes no rows)."""
    if types.is_string_view(kind):
        return pa.large_string()
    if types.is_binary_view(kind):
        return pa.large_binary()
    if types.is_struct(kind):
        return pa.struct([field.with_type(_plain(field.type)) for field in kind])
    if types.is_map(kind):
        return pa.map_(_plain(kind.key_type), _plain(kind.item_type), kind.keys_sorted)
    if types.is_list(kind) or types.is_large_list(kind) or types.is_fixed_size_list(kind):
        item = kind.value_field.with_type(_plain(kind.value_type))
        if types.is_fixed_size_list(kind):
            return pa.list_(item, kind.list_size)
        return pa.large_list(item) if types.is_large_list(kind) else pa.list_(item)
    return kind


def _library(frame: Any) -> str:
    kind = type(frame)
    if kind.__name__ == "LazyFrame":
        raise TypeError("track_frame takes a polars.DataFrame: collect() the LazyFrame first")
    return kind.__module__.split(".")[0] if kind.__name__ == "DataFrame" else ""


def _missing(value: Any) -> bool:
    """None, a float NaN, pandas' NA and NaT: no value."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def _from_pandas(df: Any) -> tuple[Any, dict[str, list[Any]]]:
    names = [str(c) for c in df.columns]
    arrays: list[Any] = []
    objects: dict[str, list[Any]] = {}
    for name, (_, series) in zip(names, df.items(), strict=True):
        if series.dtype == object:
            values = [None if _missing(v) else v for v in series.tolist()]
            kinds = set(map(type, values)) - {type(None)}
            zones = {v.tzinfo for v in values if isinstance(v, datetime)}
            # arrow would make 1 and 2.5 both floats, or every zone one zone: kept as they are
            if len(kinds) > 1 or len(zones) > 1:
                objects[name] = values
                arrays.append(pa.nulls(len(values)))
                continue
        try:
            arrays.append(pa.array(series, from_pandas=True))
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            objects[name] = [None if _missing(v) else v for v in series.tolist()]
            arrays.append(pa.nulls(len(series)))
    return pa.table(arrays, names=names), objects


def _from_polars(df: Any) -> tuple[Any, dict[str, list[Any]]]:
    # (arrow reads no 128-bit integers: those go by their values, as Object columns do)
    opaque = [n for n, dtype in df.schema.items() if str(dtype) in ("Object", "Int128", "UInt128")]
    objects = {name: [None if _missing(v) else v for v in df[name].to_list()] for name in opaque}
    rest = df.drop(opaque) if opaque else df
    compat = getattr(sys.modules["polars"], "CompatLevel", None)
    # the newest level hands strings over as views, without a copy
    table = rest.to_arrow(compat_level=compat.newest()) if compat else rest.to_arrow()
    for name in opaque:
        table = table.append_column(name, pa.nulls(len(df)))
    return table.select(df.columns), objects


class Frame:
    """A frame ready to record: its table, the time of every row, and the order to cut it in."""

    def __init__(self, frame: Any, schema: Schema, event: str | None) -> None:
        self.table, self.objects = to_table(frame)
        self.schema = schema
        self.event = event
        if event is not None and "event" in self.table.column_names:
            raise InvalidEvent("the event name is given twice: event= and an 'event' column")
        self.rows = self.table.num_rows
        self.times = read_times(self._column(self.table, "time"), self._opaque("time"))

    def batches(self, size: int, sort: bool) -> Iterator[np.ndarray]:
        """Frame positions, `size` a batch; in time order when `sort` and there is more than
        one batch (a batch then touches the keys of a few hours, not of the whole frame)."""
        order = None
        if sort and self.rows > size and self._may_reorder():
            key = self.times.sort_key()
            if (np.diff(key) < 0).any():  # in time order already: nothing to do
                order = np.argsort(key, kind="stable")
        for start in range(0, self.rows, size):
            if order is not None:
                yield order[start : start + size]
            else:
                yield np.arange(start, min(start + size, self.rows))

    def _column(self, table: Any, name: str) -> Any:
        if name in table.column_names:
            return table.column(name)
        return pa.chunked_array([pa.nulls(table.num_rows)])

    def _opaque(self, name: str, rows: np.ndarray | None = None) -> np.ndarray | None:
        values = self.objects.get(name)
        if values is None:
            return None
        if rows is not None:
            values = [values[r] for r in rows.tolist()]
        return np.array([v is not None for v in values], dtype=bool)

    def _may_reorder(self) -> bool:
        """Rows may be recorded in time order unless a sum in the frame could pass the largest
        total kept: then the events to reject for it are found in the frame's own order."""
        if self.event is not None:
            names = [self.event]
        else:
            found = pc.unique(self._column(self.table, "event")).to_pylist()
            names = sorted(x for x in found if isinstance(x, str) and not name_problem(x))
        summed = {prop for kind, prop, _ in rule_specs(self.schema, tuple(names)) if kind == "sum"}
        for prop in summed & set(self.table.column_names):
            if prop in self.objects:
                return False
            arr = self.table.column(prop).combine_chunks()
            if types.is_null(arr.type):
                continue
            if not (types.is_integer(arr.type) or types.is_floating(arr.type)):
                return False
            with np.errstate(over="ignore"):
                if not np.nansum(np.abs(floats(arr))) <= sums.LIMIT:
                    return False
        return True

    def columns(self, rows: np.ndarray, now_s: int, latest: Latest) -> Columns:
        """The rows (frame positions) as `Columns`; rows the columns cannot prove clean go
        through `parse_batch` as dicts and join in frame order."""
        schema = self.schema
        n = len(rows)
        contiguous = n and (np.diff(rows) == 1).all()
        picked = pa.array(rows)

        def column(name: str) -> Any:  # only the columns the rules read are taken
            if name == "event" and self.event is not None:  # (a rule may read the name too)
                return pa.repeat(pa.scalar(self.event, pa.large_string()), n)
            whole = self._column(self.table, name)
            return (whole.slice(rows[0], n) if contiguous else whole.take(picked)).combine_chunks()

        def refused(name: str, bad: np.ndarray) -> np.ndarray:
            opaque = self._opaque(name, rows)
            return bad if opaque is None else bad | opaque

        if self.event is not None:
            distinct, code = [self.event], np.zeros(n, dtype=np.int64)
        else:
            distinct, code = names_of(column("event"))
        named = np.array([name_problem(x) is None for x in distinct] + [False])
        suspect = refused("event", ~named[code])
        ids, absent, bad = actor_column(column(schema.actor), schema)
        suspect |= refused(schema.actor, bad | (absent & (not schema.anonymous)))
        wall, bad = self.times.checked(rows, now_s, latest, schema)
        suspect |= bad

        # every rule of each name, its columns checked on the rows of that name
        rules = {k: rule_specs(schema, (x,)) for k, x in enumerate(distinct) if named[k]}
        every: dict[Spec, list[int]] = {}
        for k, found in rules.items():
            for spec in found:
                every.setdefault(spec, []).append(k)
        texts: dict[str, tuple[Any, np.ndarray]] = {}
        numbers: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def text_of(prop: str) -> tuple[Any, np.ndarray]:
            if prop not in texts:
                text, bad = as_text(column(prop), schema.max_value_length)
                texts[prop] = text, refused(prop, bad)
            return texts[prop]

        def number_of(prop: str) -> tuple[np.ndarray, np.ndarray]:
            if prop not in numbers:
                number, bad = as_number(column(prop))
                numbers[prop] = number, refused(prop, bad)
            return numbers[prop]

        for (kind, prop, by), codes in every.items():
            applies = np.isin(code, codes)
            if kind == "sum":
                number, bad = number_of(prop)
                suspect |= applies & bad
                applies &= ~np.isnan(number)  # a label is read only beside a value
                prop = by or ""
            for part_name in prop.split("~") if prop else ():
                suspect |= applies & text_of(part_name)[1]

        good = np.flatnonzero(~suspect)
        cols = self._clean(good, distinct, code, ids, wall, rows, text_of, number_of)
        if not suspect.any():
            return cols
        odd = np.flatnonzero(suspect)
        checked = parse_batch(self._dicts(rows[odd]), schema, now_s)
        checked.index = rows[odd][checked.index].tolist()
        checked.rejected = [(int(rows[odd][i]), why) for i, why in checked.rejected]
        return _merge(cols, checked, schema)

    def _clean(
        self,
        good: np.ndarray,
        distinct: list[str],
        code: np.ndarray,
        ids: Any,
        wall: np.ndarray,
        rows: np.ndarray,
        text_of: Callable[[str], tuple[Any, np.ndarray]],
        number_of: Callable[[str], tuple[np.ndarray, np.ndarray]],
    ) -> Columns:
        present = np.unique(code[good])
        ordered = sorted(distinct[k] for k in present.tolist())
        renumber = np.zeros(len(distinct) + 1, dtype=np.int64)
        renumber[present] = [ordered.index(distinct[k]) for k in present.tolist()]
        codes = renumber[code[good]]
        applies = rule_specs(self.schema, tuple(ordered))
        specs = list(applies)
        take = None if len(good) == len(code) else pa.array(good)
        values: dict[int, list[Any]] = {}
        amounts: dict[int, np.ndarray] = {}
        whole: dict[str, list[Any]] = {}  # a property's values in every row, made once

        def values_of(prop: str, keep: np.ndarray | None) -> list[Any]:
            if keep is not None:
                return pick(text_of(prop)[0], take, len(good), keep)
            if prop not in whole:
                whole[prop] = pick(text_of(prop)[0], take, len(good), None)
            return whole[prop]

        for idx, (kind, prop, by) in enumerate(specs):
            names = applies[(kind, prop, by)]
            keep = (
                None
                if len(names) == len(ordered)
                else np.isin(codes, [ordered.index(x) for x in names])
            )
            if kind == "sum":
                number = number_of(prop)[0][good]
                if keep is not None:
                    number = np.where(keep, number, np.nan)
                amounts[idx] = number
                if by is None:
                    continue
                keep, prop = ~np.isnan(number), by
            parts = [values_of(p, keep) for p in prop.split("~")]
            if len(parts) == 1:
                values[idx] = parts[0]
            elif not any(None in p for p in parts):  # the usual case: every part in every row
                values[idx] = list(zip(*parts, strict=True))
            else:
                rows_of = zip(*parts, strict=True)
                values[idx] = [None if None in row else row for row in rows_of]
        if isinstance(ids, np.ndarray):
            actors: np.ndarray | list[Any] = ids[good]
        else:
            actors = pick(ids, take, len(good), None)
        index = rows[good].tolist()
        return Columns(index, ordered, codes, actors, wall[good], specs, values, amounts, [])

    def _dicts(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """The rows (frame positions) as the dicts they stand for."""
        picked = self.table.take(pa.array(rows))
        out: list[dict[str, Any]] = [{} for _ in rows]
        for name in picked.column_names:
            if name in self.objects:
                cells = [self.objects[name][r] for r in rows.tolist()]
            else:
                cells = _cells(picked.column(name).combine_chunks())
            for row, value in zip(out, cells, strict=True):
                if not _missing(value):
                    row[name] = value
        if self.event is not None:
            for row in out:
                row["event"] = self.event
        return out


def _cells(arr: Any) -> list[Any]:
    """Python values of a column; a timestamp or date beyond Python's years 1-9999 becomes its
    epoch seconds (the dict path then says it is out of range)."""
    try:
        return list(arr.to_pylist())
    except (OverflowError, ValueError):
        if not (types.is_timestamp(arr.type) or types.is_date(arr.type)):
            raise
    times = read_times(pa.chunked_array([arr]), None)
    out: list[Any] = []
    for k, (ok, seconds) in enumerate(zip(times.given, times.raw.tolist(), strict=True)):
        try:
            out.append(arr[k].as_py() if ok else None)
        except (OverflowError, ValueError):
            out.append(seconds)
    return out


def _merge(a: Columns, b: Columns, schema: Schema) -> Columns:
    """Two batches of columns as one, rows in index order."""
    if not len(b):
        a.rejected = a.rejected + b.rejected
        return a
    names = sorted(set(a.names) | set(b.names))
    specs = list(rule_specs(schema, tuple(names)))
    codes = np.concatenate(
        [np.array([names.index(x) for x in c.names], dtype=np.int64)[c.codes] for c in (a, b)]
    )
    values: dict[int, list[Any]] = {}
    amounts: dict[int, np.ndarray] = {}
    for idx, spec in enumerate(specs):
        have = [c.specs.index(spec) if spec in c.specs else None for c in (a, b)]
        if spec[0] == "sum":
            amounts[idx] = np.concatenate(
                [
                    c.amounts[k] if k is not None else np.full(len(c), np.nan)
                    for c, k in zip((a, b), have, strict=True)
                ]
            )
            if spec[2] is None:
                continue
        values[idx] = [
            v
            for c, k in zip((a, b), have, strict=True)
            for v in (c.values[k] if k is not None else [None] * len(c))
        ]
    if isinstance(a.actors, np.ndarray) and isinstance(b.actors, np.ndarray):
        actors: np.ndarray | list[Any] = np.concatenate([a.actors, b.actors])
    else:
        actors = list(a.actors) + list(b.actors)
    both = Columns(
        a.index + b.index,
        names,
        codes,
        actors,
        np.concatenate([a.wall, b.wall]),
        specs,
        values,
        amounts,
        sorted(a.rejected + b.rejected),
    )
    return both.take(np.argsort(np.array(both.index), kind="stable"))


def track_frame(
    ns: Recording,
    frame: Any,
    batch_id: str | None,
    event: str | None,
    now: float | None,
    batch_size: int | None,
    sort: bool,
) -> Op[TrackResult]:
    """Record every row of a frame, `batch_size` rows a batch (batch ids `{batch_id}:{n}`)."""
    if batch_id is not None and (not isinstance(batch_id, str) or not batch_id):
        raise InvalidEvent(f"batch_id must be non-empty text, got {batch_id!r}")
    size = DEFAULT_BATCH_SIZE if batch_size is None else whole(batch_size)
    if size is None or size < 1:
        raise InvalidEvent(f"batch_size must be a positive integer, got {batch_size!r}")
    if event is not None and not isinstance(event, str):
        raise InvalidEvent(f"event must be text, got {type(event).__name__}", field="event")
    yield from ns.schema_fresh()
    prepared = Frame(frame, ns.schema, event)
    now_s = int(now if now is not None else _time.time())
    latest = Latest.of(now_s, ns.schema)
    total = TrackResult(0)
    # no id given: bitstat makes one, and the same frame sent again after a BatchError (cut
    # alike) goes under the id it failed under, so what went in is not counted twice
    same = FrameContent(prepared, event, size, sort) if batch_id is None else None
    found = None if same is None else IN_DOUBT.find(ns.name, same)
    auto = found or AUTO_IDS.next()
    for number, rows in enumerate(prepared.batches(size, sort)):
        cols = prepared.columns(rows, now_s, latest)
        part_id = f"{batch_id or auto}:{number}"
        try:
            result = yield from ns.track_columns(
                cols, part_id, auto=same is not None, fresh=same is not None and found is None
            )
        except BatchError as exc:
            # the batches before this one are in even when nothing of this one is
            if same is not None and (exc.may_have_landed or number > 0):
                IN_DOUBT.remember(ns.name, same, auto, ns.auto_ttl)
            raise
        except GeneratorExit:  # cut short (a task cancelled), maybe after some batches
            if same is not None:
                IN_DOUBT.remember(ns.name, same, auto, ns.auto_ttl)
            raise
        total.recorded += result.recorded
        total.rejected += result.rejected
        for period, count in result.expired.items():
            total.expired[period] = total.expired.get(period, 0) + count
    if found is not None and same is not None:
        IN_DOUBT.forget(ns.name, same)
    total.rejected.sort()
    return total


class FrameContent(Sequence[Any]):
    """A frame as `IN_DOUBT` knows a batch: its rows (their number) and a text of its whole
    content and of how it was cut (read only when a failed frame of as many rows waits)."""

    def __init__(self, prepared: Frame, event: str | None, size: int, sort: bool) -> None:
        self.prepared, self.how = prepared, (event, size, sort)

    def __len__(self) -> int:
        return int(self.prepared.rows)

    def __getitem__(self, index: Any) -> Any:
        raise TypeError("a frame's content is compared whole")

    def __repr__(self) -> str:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.prepared.table.schema) as writer:
            writer.write_table(self.prepared.table)
        digest = hashlib.blake2b(sink.getvalue().to_pybytes(), digest_size=16).hexdigest()
        return f"frame {digest} {self.prepared.objects!r} {self.how!r}"
