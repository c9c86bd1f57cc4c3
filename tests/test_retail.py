"""End to end on the full Online Retail data set: bitstat's answers against plain Python.

All 541,909 invoice lines are recorded once (module fixture) into the embedded server, mapped to
events as the demo maps them; every expected value is computed from the raw CSV rows with sets,
dicts and Decimal, without bitstat.
"""

from __future__ import annotations

import csv
import gzip
import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import NamedTuple

import pytest

import bitstat
from bitstat.demo import SCHEMA, retail_event

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "online-retail"
FILES = sorted(DATA.glob("online_retail_*.csv.gz"))
BATCH = 20_000
CENT = Decimal("0.01")

pytestmark = pytest.mark.skipif(
    not FILES, reason=f"the Online Retail data set is not in {DATA} (online_retail_*.csv.gz)"
)


class Line(NamedTuple):
    invoice: str
    item: str
    month: str  # YYYY-MM of the naive UK local time
    customer: int | None
    country: str
    amount: Decimal  # Quantity * UnitPrice, rounded to cents

    @property
    def cancel(self) -> bool:
        return self.invoice.startswith("C")


def raw_rows() -> Iterator[dict[str, str]]:
    for path in FILES:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return list(raw_rows())


@pytest.fixture(scope="module")
def lines(rows: list[dict[str, str]]) -> list[Line]:
    return [
        Line(
            invoice=r["InvoiceNo"],
            item=r["StockCode"],
            month=r["InvoiceDate"][:7],
            customer=int(r["CustomerID"].partition(".")[0]) if r["CustomerID"] else None,
            country=r["Country"],
            amount=(Decimal(r["Quantity"]) * Decimal(r["UnitPrice"])).quantize(
                CENT, ROUND_HALF_EVEN
            ),
        )
        for r in rows
    ]


@pytest.fixture(scope="module")
def purchases(lines: list[Line]) -> list[Line]:
    return [x for x in lines if not x.cancel]


@pytest.fixture(scope="module")
def st(embedded_url: str, rows: list[dict[str, str]]) -> Iterator[bitstat.Stats]:
    """A fresh namespace holding every line. Module-scoped: loading takes most of the time,
    so it cannot use the function-scoped `namespace` fixture; it makes its name the same way."""
    stats = bitstat.connect(embedded_url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=SCHEMA)
    recorded, rejected = 0, []
    for first in range(0, len(rows), BATCH):
        events = [retail_event(r) for r in rows[first : first + BATCH]]
        result = stats.track_many(events, batch_id=f"retail-{first}")
        recorded += result.recorded
        rejected += result.rejected
    assert rejected == []
    assert recorded == len(rows) == 541_909
    yield stats
    stats.close()


def test_the_data_set_is_the_documented_one(lines: list[Line]) -> None:
    assert len(lines) == 541_909
    assert len({x.customer for x in lines if x.customer is not None}) == 4_372
    assert len({x.invoice for x in lines}) == 25_900
    assert sum(x.amount for x in lines) == Decimal("9747747.93")


def test_distinct_customers_overall(st: bitstat.Stats, lines: list[Line]) -> None:
    everyone = st.actors("purchase").year(2010) | st.actors("purchase").year(2011)
    everyone |= st.actors("cancel").between("2010-12-01", "2011-12-31")
    assert len(everyone) == 4_372
    buyers = {x.customer for x in lines if x.customer is not None and not x.cancel}
    assert st.unique("purchase", "2010-12-01", "2011-12-09") == len(buyers)


def test_distinct_customers_per_month(st: bitstat.Stats, purchases: list[Line]) -> None:
    expected: dict[str, set[int]] = defaultdict(set)
    for x in purchases:
        if x.customer is not None:
            expected[x.month].add(x.customer)
    got = st.series("purchase", "2010-12", "2011-12", by="month", metric="unique")
    assert dict(got) == {month: len(ids) for month, ids in expected.items()}


def test_distinct_invoices_per_month(st: bitstat.Stats, lines: list[Line]) -> None:
    for event in ("purchase", "cancel"):
        expected: dict[str, set[str]] = defaultdict(set)
        for x in lines:
            if x.cancel == (event == "cancel"):
                expected[x.month].add(x.invoice)
        got = {month: st.distinct(event, "invoice", month) for month in expected}
        assert got == {month: len(invoices) for month, invoices in expected.items()}
    year = st.distinct("purchase", "invoice", "2010-12-01", "2011-12-09")
    year += st.distinct("cancel", "invoice", "2010-12-01", "2011-12-09")
    assert year == 25_900


def test_purchases_per_country(st: bitstat.Stats, purchases: list[Line]) -> None:
    expected = Counter(x.country for x in purchases)
    assert st.counts("purchase", "country", "2010-12-01", "2011-12-09") == expected
    assert st.total("purchase", "2010-12-01", "2011-12-09") == len(purchases)


def test_revenue_in_total_and_per_country(st: bitstat.Stats, lines: list[Line]) -> None:
    purchase = st.sums("purchase", "amount", "2010-12-01", "2011-12-09")
    cancel = st.sums("cancel", "amount", "2010-12-01", "2011-12-09")
    assert isinstance(purchase, float) and isinstance(cancel, float)
    assert math.isclose(purchase + cancel, 9_747_747.93, rel_tol=1e-9)
    assert math.isclose(cancel, float(sum(x.amount for x in lines if x.cancel)), rel_tol=1e-9)

    expected: dict[str, Decimal] = defaultdict(Decimal)
    for x in lines:
        if not x.cancel:
            expected[x.country] += x.amount
    got = st.sums("purchase", "amount", "2010-12-01", "2011-12-09", by="country")
    assert isinstance(got, dict)
    assert set(got) == set(expected)
    for country, value in expected.items():
        assert math.isclose(got[country], float(value), rel_tol=1e-9, abs_tol=1e-6), country


def test_top_items_of_a_month(st: bitstat.Stats, purchases: list[Line]) -> None:
    counts = Counter(x.item for x in purchases if x.month == "2011-11")
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert st.top("purchase", "item", "2011-11", limit=10) == expected


def test_customers_of_a_segment_in_a_month(st: bitstat.Stats, purchases: list[Line]) -> None:
    for month in ("2011-05", "2011-11"):
        expected = {
            x.customer
            for x in purchases
            if x.month == month and x.country == "Germany" and x.customer is not None
        }
        assert expected
        assert st.unique("purchase", month, country="Germany") == len(expected)
        y, m = map(int, month.split("-"))
        assert len(st.actors("purchase", country="Germany").month(y, m)) == len(expected)


def test_retention_cells(st: bitstat.Stats, purchases: list[Line]) -> None:
    by_month: dict[str, set[int]] = defaultdict(set)
    for x in purchases:
        if x.customer is not None:
            by_month[x.month].add(x.customer)
    cohort = st.actors("purchase").month(2010, 12)
    for y, m in ((2011, 1), (2011, 6), (2011, 11)):
        later = st.actors("purchase").month(y, m)
        expected = by_month["2010-12"] & by_month[f"{y}-{m:02d}"]
        assert len(cohort & later) == len(expected)
        assert len(later - cohort) == len(by_month[f"{y}-{m:02d}"] - by_month["2010-12"])
    some = min(by_month["2010-12"] & by_month["2011-01"])
    assert some in cohort & st.actors("purchase").month(2011, 1)
