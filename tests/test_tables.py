"""Every answer as a table: rows for CSV, pandas and polars DataFrames, on a real server.

The shop's known events are recorded once; each answer's table is checked cell by cell against
the plain answer it comes from, and the plain shapes are checked unchanged (a list of pairs, a
dict, a float) so code reading them as before keeps working.
"""

from __future__ import annotations

import csv
import io
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime

import pandas as pd
import polars as pl
import pytest

import bitstat
from bitstat.analysis import LifecyclePeriod, Retention, RetentionRow
from bitstat.errors import BitstatError
from bitstat.tables import Counts, Funnel, Lifecycle, Stickiness, Sums, Top
from webserver import SHOP, shop_events

NOV = ("2025-11-01", "2025-11-30")


@pytest.fixture(scope="module")
def st(embedded_url: str) -> Iterator[bitstat.Stats]:
    stats = bitstat.connect(embedded_url, namespace=f"tab-{uuid.uuid4().hex[:8]}", schema=SHOP)
    assert not stats.track_many(shop_events()).rejected
    yield stats
    stats.drop()
    stats.close()


def test_series_keeps_its_shape_and_converts(st: bitstat.Stats) -> None:
    series = st.series("visit", *NOV, by="week", metric="total")
    plain = list(series)
    assert series == plain and all(isinstance(p, tuple) for p in plain)
    frame = series.to_pandas()
    assert list(frame.columns) == ["period", "start", "total"]
    assert list(zip(frame["period"], frame["total"], strict=True)) == plain
    assert frame["start"].iloc[0] == datetime(2025, 10, 27)  # ISO week 44 starts on a Monday
    assert str(frame["total"].dtype) == "int64"
    polars = series.to_polars()
    assert polars.columns == ["period", "start", "total"]
    assert polars.rows() == [(lb, s, v) for lb, s, v in series.to_rows(header=False)]
    assert polars.schema["start"] == pl.Datetime
    assert series.to_rows()[0] == ("period", "start", "total")


def test_unique_series_names_its_metric(st: bitstat.Stats) -> None:
    series = st.series("visit", *NOV, by="day", country="NL")
    assert series.to_records()[0].keys() == {"period", "start", "unique"}
    assert [r["unique"] for r in series.to_records()] == [v for _, v in series]


def test_counts_of_a_compound_property_get_a_column_per_part(st: bitstat.Stats) -> None:
    counts = st.counts("visit", "country~platform", *NOV)
    assert isinstance(counts, dict) and all(isinstance(k, tuple) for k in counts)
    frame = counts.to_pandas()
    assert list(frame.columns) == ["country", "platform", "count"]
    got = {(c, p): n for c, p, n in frame.itertuples(index=False)}
    assert got == dict(counts)
    assert list(frame["count"]) == sorted(counts.values(), reverse=True)
    assert counts.to_polars().shape == (len(counts), 3)


def test_sums_total_and_by_value(st: bitstat.Stats) -> None:
    total = st.sums("purchase", "amount", *NOV)
    assert isinstance(total, float) and total > 0
    assert total.to_rows() == [("sum",), (float(total),)]
    assert total.to_pandas()["sum"].iloc[0] == pytest.approx(float(total))
    by = st.sums("purchase", "amount", *NOV, by="country")
    frame = by.to_polars()
    assert frame.columns == ["country", "sum"]
    assert dict(frame.iter_rows()) == pytest.approx(dict(by))
    assert sum(by.values()) == pytest.approx(float(total))


def test_top_ranks_from_one(st: bitstat.Stats) -> None:
    top = st.top("purchase", "item", *NOV, limit=3)
    frame = top.to_pandas()
    assert list(frame.columns) == ["rank", "item", "count"]
    assert list(frame["rank"]) == [1, 2, 3]
    assert list(zip(frame["item"], frame["count"], strict=True)) == list(top)


def test_a_property_named_like_a_column_of_the_answer_keeps_its_values() -> None:
    # a property `count` (or `sum` by `sum`, a top `rank`) made two columns of one name: the
    # DataFrames and records kept one of them, and the values or the counts were gone
    answers = [
        (Counts({"a": 3, "b": 1}, prop="count"), ["count_", "count"], [("a", 3), ("b", 1)]),
        (
            Counts({("x", "a"): 2}, prop="count~count_"),
            ["count__", "count_", "count"],
            [("x", "a", 2)],
        ),
        (Sums({"s": 2.5}, by="sum"), ["sum_", "sum"], [("s", 2.5)]),
        (
            Top([("r1", 4), ("r2", 1)], prop="rank"),
            ["rank", "rank_", "count"],
            [(1, "r1", 4), (2, "r2", 1)],
        ),
        (
            Top([(("r", "c"), 4)], prop="rank~count"),
            ["rank", "rank_", "count_", "count"],
            [(1, "r", "c", 4)],
        ),
    ]
    for answer, columns, rows in answers:
        assert answer.to_rows() == [tuple(columns), *rows]
        assert answer.to_records() == [dict(zip(columns, row, strict=True)) for row in rows]
        frame = answer.to_pandas()
        assert list(frame.columns) == columns
        assert list(frame.itertuples(index=False, name=None)) == rows
        assert answer.to_polars().rows() == rows and answer.to_polars().columns == columns


def test_an_empty_answer_has_the_column_types_of_a_full_one() -> None:
    # a day without events made columns of no type (pandas object, polars Null): concatenated
    # with other days the counts turned object, and polars refused `.str` on the values
    answers = [
        (Counts({}, prop="country~platform"), Counts({("NL", "ios"): 2}, prop="country~platform")),
        (Sums({}, by="country"), Sums({"NL": 2.5}, by="country")),
        (Top([], prop="item"), Top([("sku-1", 3)], prop="item")),
        (Stickiness({}), Stickiness({1: 4})),
    ]
    for empty, full in answers:
        assert empty.to_pandas().dtypes.to_dict() == full.to_pandas().dtypes.to_dict()
        assert pd.concat([full.to_pandas(), empty.to_pandas()]).equals(full.to_pandas())
        assert empty.to_polars().schema == full.to_polars().schema
        assert pl.concat([full.to_polars(), empty.to_polars()]).equals(full.to_polars())
    lowered = Counts({}, prop="country").to_polars().select(pl.col("country").str.to_lowercase())
    assert lowered.schema == {"country": pl.String} and lowered.height == 0


def test_retention_shares_of_periods_not_begun_are_float_columns() -> None:
    # a period no cohort has reached made its share column Int64 in pandas (so the shares read
    # as an object array) and Null in polars, beside the float columns of the others
    rows = [RetentionRow("2026-W48", 4, [4, 2, None]), RetentionRow("2026-W49", 0, [0, None, None])]
    table = Retention("signup", "login", "week", "first", rows)
    shares = table.to_pandas(rates=True)
    assert [str(t) for t in shares.dtypes.iloc[2:]] == ["float64"] * 3
    assert shares.iloc[:, 2:].to_numpy().dtype == "float64"
    assert shares.iloc[:, 2:].isna().to_numpy().tolist() == [[False, False, True], [True] * 3]
    assert table.to_polars(rates=True).schema == {
        "cohort": pl.String,
        "size": pl.Int64,
        **dict.fromkeys(["0", "1", "2"], pl.Float64),
    }
    assert table.to_polars(rates=True).rows() == [
        ("2026-W48", 4, 1.0, 0.5, None),
        ("2026-W49", 0, None, None, None),
    ]
    assert [str(t) for t in table.to_pandas().dtypes.iloc[2:]] == ["int64", "Int64", "Int64"]
    assert table.to_polars().schema["2"] == pl.Int64


def test_a_funnel_of_no_actors_and_a_lifecycle_not_begun_keep_their_column_types() -> None:
    # a funnel whose first step had no actors made its shares Int64 (pandas) and Null (polars);
    # a lifecycle of periods not begun made Null counts in polars
    funnel = Funnel([("visit", 0), ("buy", 0)])
    assert [str(t) for t in funnel.to_pandas().dtypes.iloc[1:]] == ["int64", "float64", "float64"]
    assert funnel.to_pandas()["conversion"].isna().all()
    assert list(funnel.to_polars().schema.values()) == [pl.String, pl.Int64, pl.Float64, pl.Float64]
    later = Lifecycle([LifecyclePeriod("2026-12-08", None, None, None, None)])
    assert list(later.to_polars().schema.values())[2:] == [pl.Int64] * 4
    assert later.to_polars().row(0) == ("2026-12-08", datetime(2026, 12, 8), None, None, None, None)


def test_funnel_with_conversion_shares(st: bitstat.Stats) -> None:
    funnel = st.funnel(["visit", "signup", "purchase"], *NOV, within="10d")
    (_, visits), (_, signups), (_, buys) = funnel
    records = funnel.to_records()
    assert [r["actors"] for r in records] == [visits, signups, buys]
    assert [r["conversion"] for r in records] == [1.0, signups / visits, buys / visits]
    assert [r["from_previous"] for r in records] == [1.0, signups / visits, buys / signups]
    assert funnel.to_polars().columns == ["step", "actors", "conversion", "from_previous"]


def test_stickiness_rows_by_days(st: bitstat.Stats) -> None:
    sticky = st.stickiness("visit", *NOV)
    frame = sticky.to_pandas()
    assert list(frame["days"]) == list(range(1, 31))
    assert dict(zip(frame["days"], frame["actors"], strict=True)) == dict(sticky)


def test_lifecycle_periods_not_begun_are_missing_not_nan(st: bitstat.Stats) -> None:
    life = st.lifecycle("visit", "2025-10-06", 6, now="2025-11-01")
    frame = life.to_pandas()
    assert list(frame.columns) == ["period", "start", "new", "returning", "resurrecting", "dormant"]
    assert str(frame["new"].dtype) == "Int64"
    assert list(frame["period"]) == [p.period for p in life]
    assert frame["new"].isna().tolist() == [p.new is None for p in life]
    assert any(p.new is None for p in life) and any(p.new is not None for p in life)
    got = life.to_polars()
    assert got["dormant"].to_list() == [p.dormant for p in life]
    assert got["dormant"].dtype == pl.Int64


def test_retention_counts_and_rates(st: bitstat.Stats) -> None:
    table = st.retention("signup", "purchase", "2025-10-01", 6, now="2025-11-20")
    frame = table.to_pandas()
    assert list(frame.columns) == ["cohort", "size", *map(str, range(6))]
    for row, (_, cells) in zip(table.rows, frame.iterrows(), strict=True):
        assert cells["cohort"] == row.cohort and cells["size"] == row.size
        assert [None if pd.isna(cells[str(k)]) else cells[str(k)] for k in range(6)] == row.counts
    rates = table.to_polars(rates=True)
    assert rates["0"].to_list() == [r.rates()[0] for r in table.rows]
    assert any(c is None for r in table.rows for c in r.counts)
    assert table.to_rows()[0] == ("cohort", "size", "0", "1", "2", "3", "4", "5")


def test_rows_write_as_csv(st: bitstat.Stats) -> None:
    top = st.top("purchase", "item", *NOV, limit=5)
    buf = io.StringIO()
    csv.writer(buf).writerows(top.to_rows())
    assert buf.getvalue().replace("\r\n", "\n") == top.to_csv()
    read = list(csv.DictReader(io.StringIO(top.to_csv())))
    assert [(r["item"], int(r["count"])) for r in read] == list(top)
    life = st.lifecycle("visit", "2025-10-06", 6, now="2025-11-01")
    last = life.to_csv().splitlines()[-1]
    assert last.endswith(",,,,")  # a period not begun: empty cells, not "None"


def test_async_answers_convert_too(embedded_url: str, st: bitstat.Stats) -> None:
    import asyncio

    from bitstat.aio import connect

    async def ask() -> tuple[Counts, Stickiness]:
        ast = await connect(embedded_url, namespace=st.namespace)
        try:
            return await ast.counts("visit", "country", *NOV), await ast.stickiness("visit", *NOV)
        finally:
            await ast.close()

    counts, sticky = asyncio.run(ask())
    assert counts.to_pandas().equals(st.counts("visit", "country", *NOV).to_pandas())
    assert sticky.to_rows() == st.stickiness("visit", *NOV).to_rows()


def test_a_missing_library_says_what_to_install(
    st: bitstat.Stats, monkeypatch: pytest.MonkeyPatch
) -> None:
    series = st.series("visit", *NOV)
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(BitstatError, match=r"bitstat\[polars\]"):
        series.to_polars()
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(BitstatError, match=r"bitstat\[pandas\]"):
        series.to_pandas()
    assert series.to_rows(header=False) == [(lb, s, v) for lb, s, v in series.to_rows()[1:]]
