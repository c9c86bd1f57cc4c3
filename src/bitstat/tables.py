"""Answers as tables: rows for CSV, pandas and polars DataFrames.

Every answer of a metric or an analysis (series, counts, sums, top values, funnels, stickiness,
lifecycle, retention) keeps its plain Python shape (a list of pairs, a dict, a float), so code
that reads it as such goes on working, and adds `to_rows()`, `to_records()`, `to_csv()`,
`to_pandas()` and `to_polars()`. pandas and polars are optional: each is imported only when its
method is called, with an error saying what to install when it is missing.
"""

from __future__ import annotations

import csv
import importlib
import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import ModuleType
from typing import Any

from . import periods as P
from .errors import BitstatError

Header = tuple[str, ...]
Row = tuple[Any, ...]
Kinds = tuple[type, ...]  # the Python type of each column's values


def _optional(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BitstatError(
            f"{module} is not installed: pip install 'bitstat[{extra}]' (or pip install {module})"
        ) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def pandas_frame(header: Header, rows: list[Row], kinds: Kinds | None = None) -> Any:
    """A pandas DataFrame of the rows; integer columns with missing cells are `Int64`, not
    floats, so a count stays a count. `kinds` (each column's type) types the columns of no
    rows, and a float column of missing cells only (a share of a period not begun)."""
    pd = _optional("pandas", "pandas")
    frame = pd.DataFrame.from_records(rows, columns=list(header))
    for i, name in enumerate(header):
        cells = [row[i] for row in rows]
        kind = None if kinds is None else kinds[i]
        if kind is float or (kind is not None and not rows):
            frame[name] = frame[name].astype("datetime64[us]" if kind is datetime else kind)
        elif None in cells and all(c is None or _is_int(c) for c in cells):
            frame[name] = pd.array(cells, dtype="Int64")
    return frame


def polars_frame(header: Header, rows: list[Row], kinds: Kinds | None = None) -> Any:
    """A polars DataFrame of the rows (missing cells are nulls), of `kinds` where given (a
    column of no value has polars' Null type otherwise)."""
    pl = _optional("polars", "polars")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    frame = pl.DataFrame(columns, strict=False)
    if kinds is None:
        return frame
    types = {int: pl.Int64, float: pl.Float64, str: pl.String, datetime: pl.Datetime("us")}
    return frame.cast({n: types[k] for n, k in zip(header, kinds, strict=True)})


def csv_text(header: Header, rows: Iterable[Row]) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(header)
    out.writerows(["" if c is None else c for c in row] for row in rows)
    return buf.getvalue()


class Tabular:
    """The table methods of an answer; a subclass says what its header and rows are."""

    __slots__ = ()

    def _table(self) -> tuple[Header, list[Row]]:
        raise NotImplementedError

    def _kinds(self) -> Kinds | None:
        """Each column's type, so that an answer of no rows (a day without events) makes a
        DataFrame of the columns a full one has; None where an answer always has rows."""
        return None

    def to_rows(self, header: bool = True) -> list[Row]:
        """The answer as rows of plain values, the header first (`header=False`: without it),
        ready for `csv.writer(f).writerows(...)`."""
        names, rows = self._table()
        return [names, *rows] if header else rows

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per row, keyed by column name."""
        names, rows = self._table()
        return [dict(zip(names, row, strict=True)) for row in rows]

    def to_csv(self) -> str:
        """The rows as CSV text with a header line; missing cells are empty."""
        return csv_text(*self._table())

    def to_pandas(self) -> Any:
        """A `pandas.DataFrame` of the rows (needs pandas)."""
        return pandas_frame(*self._table(), self._kinds())

    def to_polars(self) -> Any:
        """A `polars.DataFrame` of the rows (needs polars)."""
        return polars_frame(*self._table(), self._kinds())


def part_columns(prop: str, own: Header) -> Header:
    """A column name per part of the property; a part named like one of the answer's own
    columns (`own`: count, sum, rank) gets a `_` after it, so that neither column loses its
    values to the other in a DataFrame or a record."""
    parts = prop.split("~")
    names: list[str] = []
    for part in parts:
        name = part
        while name in own or name in names or (name != part and name in parts):
            name += "_"
        names.append(name)
    return tuple(names)


def _texts(prop: str) -> Kinds:
    return (str,) * len(prop.split("~"))


def _valued(prop: str, mapping: Mapping[Any, Any], value: str) -> tuple[Header, list[Row]]:
    """Rows of a mapping keyed by property values (tuples for a compound property): one
    column per part, then the value; largest value first, ties by key."""
    names = part_columns(prop, (value,))
    items = sorted(mapping.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = [(*(k if isinstance(k, tuple) else (k,)), v) for k, v in items]
    return (*names, value), rows


def _start(label: str) -> datetime:
    return P.parse_label(label).start


class Series(list[tuple[str, int]], Tabular):
    """`[(label, value)]` per bucket: columns `period` (the label), `start` (the bucket's first
    instant, wall time of the namespace's time zone) and the metric (`unique` or `total`)."""

    def __init__(self, points: Iterable[tuple[str, int]] = (), metric: str = "value") -> None:
        super().__init__(points)
        self.metric = metric

    def _table(self) -> tuple[Header, list[Row]]:
        return ("period", "start", self.metric), [(lb, _start(lb), v) for lb, v in self]


class Counts(dict[Any, int], Tabular):
    """`{value: events}` of a `count` property: a column per part of the property, `count`."""

    def __init__(self, counts: Mapping[Any, int] | None = None, prop: str = "value") -> None:
        super().__init__(counts or {})
        self.prop = prop

    def _table(self) -> tuple[Header, list[Row]]:
        return _valued(self.prop, self, "count")

    def _kinds(self) -> Kinds:
        return (*_texts(self.prop), int)


class Sums(dict[Any, float], Tabular):
    """`{value: sum}` of a sum by another property: a column per part of `by`, `sum`."""

    def __init__(self, sums: Mapping[Any, float] | None = None, by: str = "value") -> None:
        super().__init__(sums or {})
        self.by = by

    def _table(self) -> tuple[Header, list[Row]]:
        return _valued(self.by, self, "sum")

    def _kinds(self) -> Kinds:
        return (*_texts(self.by), float)


class Sum(float, Tabular):
    """The sum of a `sum` property over a range: a float, and a table of one row (`sum`)."""

    def _table(self) -> tuple[Header, list[Row]]:
        return ("sum",), [(float(self),)]


class Top(list[tuple[Any, int]], Tabular):
    """`[(value, count)]`, most frequent first: `rank` (1 up), a column per part, `count`."""

    def __init__(self, ranked: Iterable[tuple[Any, int]] = (), prop: str = "value") -> None:
        super().__init__(ranked)
        self.prop = prop

    def _table(self) -> tuple[Header, list[Row]]:
        rows = [
            (n, *(v if isinstance(v, tuple) else (v,)), c) for n, (v, c) in enumerate(self, start=1)
        ]
        return ("rank", *part_columns(self.prop, ("rank", "count")), "count"), rows

    def _kinds(self) -> Kinds:
        return (int, *_texts(self.prop), int)


class Funnel(list[tuple[str, int]], Tabular):
    """`[(step, actors)]`: columns `step`, `actors`, `conversion` (the share of step 1's actors,
    None when step 1 has none) and `from_previous` (the share of the step before)."""

    def _table(self) -> tuple[Header, list[Row]]:
        first = self[0][1] if self else 0
        rows: list[Row] = []
        for i, (step, actors) in enumerate(self):
            before = self[i - 1][1] if i else actors
            share = actors / first if first else None
            rows.append((step, actors, share, actors / before if before else None))
        return ("step", "actors", "conversion", "from_previous"), rows

    def _kinds(self) -> Kinds:
        return (str, int, float, float)


class Stickiness(dict[int, int], Tabular):
    """`{days: actors}`: columns `days` (active on exactly that many days) and `actors`."""

    def _table(self) -> tuple[Header, list[Row]]:
        return ("days", "actors"), sorted(self.items())

    def _kinds(self) -> Kinds:
        return (int, int)


class Lifecycle(list[Any], Tabular):
    """A list of `analysis.LifecyclePeriod`: columns `period`, `start`, `new`, `returning`,
    `resurrecting`, `dormant` (None for a period not begun)."""

    def _table(self) -> tuple[Header, list[Row]]:
        names = ("period", "start", "new", "returning", "resurrecting", "dormant")
        rows = [
            (p.period, _start(p.period), p.new, p.returning, p.resurrecting, p.dormant)
            for p in self
        ]
        return names, rows

    def _kinds(self) -> Kinds:
        return (str, datetime, int, int, int, int)
