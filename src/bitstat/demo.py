"""The demo: load the shipped Online Retail sample into a namespace and show what bitstat answers.

`retail_event` maps one invoice line of the Online Retail data set to a bitstat event; `load`
records events in batches with deterministic batch ids, so loading twice records nothing twice;
`summarise` asks the questions and `render` prints the answers as rich tables.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .loads import progress_bar
from .schema import Schema
from .stats import Stats

SAMPLE_FILE = "online_retail_sample.csv.gz"
ITEMS_FILE = "online_retail_items.csv.gz"
BATCH_SIZE = 5_000

SCHEMA = Schema(
    actor="customer",
    ids="int",
    timezone="Europe/London",
    periods=("day", "week", "month", "year"),
    count=["country"],
    sum=["amount", "amount by country"],
    top=["item"],
    unique=["invoice"],
    segment=["country"],
    anonymous=True,  # a quarter of the lines have no CustomerID: revenue, not customers
)


def retail_event(row: Mapping[str, str]) -> dict[str, Any]:
    """One Online Retail invoice line as an event: `purchase`, or `cancel` for "C" invoices.

    `InvoiceDate` is naive UK local time, so it stays naive: the schema's Europe/London zone
    gives it its meaning. A line without a CustomerID is an event without an actor.
    """
    invoice = row["InvoiceNo"]
    event: dict[str, Any] = {
        "event": "cancel" if invoice.startswith("C") else "purchase",
        "time": datetime.fromisoformat(row["InvoiceDate"]),
        "country": row["Country"],
        "item": row["StockCode"],
        "invoice": invoice,
        "amount": round(int(row["Quantity"]) * float(row["UnitPrice"]), 2),
    }
    if row["CustomerID"]:
        event["customer"] = int(float(row["CustomerID"]))
    return event


def _data_bytes(name: str) -> bytes:
    return resources.files("bitstat").joinpath("data", name).read_bytes()


def _csv_rows(data: bytes) -> Iterator[dict[str, str]]:
    with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(data)), "utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


@dataclass
class Sample:
    """The shipped sample: its rows, its stock code descriptions, and a digest of its bytes."""

    rows: list[dict[str, str]]
    items: dict[str, str]
    digest: str

    @classmethod
    def read(cls) -> Sample:
        data = _data_bytes(SAMPLE_FILE)
        items = {r["StockCode"]: r["Description"] for r in _csv_rows(_data_bytes(ITEMS_FILE))}
        return cls(list(_csv_rows(data)), items, hashlib.sha256(data).hexdigest()[:12])

    def events(self) -> list[dict[str, Any]]:
        return [retail_event(r) for r in self.rows]

    def span(self) -> tuple[date, date]:
        """First and last day of the sample (its rows are in time order)."""
        first, last = self.rows[0]["InvoiceDate"], self.rows[-1]["InvoiceDate"]
        return date.fromisoformat(first[:10]), date.fromisoformat(last[:10])


@dataclass
class LoadResult:
    """What `load` did: events offered, recorded now, and rejected (index, reason)."""

    events: int = 0
    recorded: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def load(
    st: Stats,
    events: Sequence[Mapping[str, Any]],
    batch_prefix: str,
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> LoadResult:
    """Record `events` with `track_many` in batches whose ids are `batch_prefix:NNNNN`.

    The same events under the same prefix always make the same batches, so a second load is
    recognised batch by batch and records nothing.
    """
    result = LoadResult(events=len(events))
    began = time.perf_counter()
    for number, first in enumerate(range(0, len(events), batch_size)):
        batch = events[first : first + batch_size]
        done = st.track_many(batch, batch_id=f"{batch_prefix}:{number:05d}")
        result.recorded += done.recorded
        result.rejected += [(first + i, reason) for i, reason in done.rejected]
        if on_batch is not None:
            on_batch(len(batch))
    result.seconds = time.perf_counter() - began
    return result


@dataclass
class Month:
    label: str
    customers: int
    invoices: int
    lines: int
    revenue: float


@dataclass
class Country:
    name: str
    revenue: float
    lines: int
    customers: int


@dataclass
class Summary:
    """Every answer the demo prints, as plain data."""

    start: date
    end: date
    months: list[Month]
    purchases: int
    cancels: int
    customers: int
    invoices: int
    revenue: float
    cancelled: float
    top_items: list[tuple[str, str, int]]
    countries: list[Country]
    cohort: str
    cohort_size: int
    retention: list[tuple[str, int]]
    seconds: float


def _months(start: date, end: date) -> list[tuple[int, int]]:
    out, (y, m) = [], (start.year, start.month)
    while (y, m) <= (end.year, end.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _sum(st: Stats, event: str, start: Any, end: Any = None) -> float:
    value = st.sums(event, "amount", start, end)
    assert isinstance(value, float)
    return value


def summarise(st: Stats, start: date, end: date, items: Mapping[str, str]) -> Summary:
    """Ask the namespace the demo's questions about [start, end]."""
    began = time.perf_counter()
    months = _months(start, end)
    labels = [f"{y:04d}-{m:02d}" for y, m in months]
    customers = dict(st.series("purchase", start, end, by="month", metric="unique"))
    lines = dict(st.series("purchase", start, end, by="month", metric="total"))
    month_rows = [
        Month(
            label,
            customers.get(label, 0),
            st.distinct("purchase", "invoice", label),
            lines.get(label, 0),
            _sum(st, "purchase", label),
        )
        for label in labels
    ]

    by_country = st.sums("purchase", "amount", start, end, by="country")
    assert isinstance(by_country, dict)
    country_lines = st.counts("purchase", "country", start, end)
    ranked = sorted(by_country.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    countries = [
        Country(
            name,
            revenue,
            country_lines.get(name, 0),
            st.unique("purchase", start, end, country=name),
        )
        for name, revenue in ranked
    ]

    top = st.top("purchase", "item", start, end, limit=10)
    cohort = st.actors("purchase").month(*months[0])
    retention = [
        (label, len(cohort & st.actors("purchase").month(y, m)))
        for (y, m), label in zip(months[1:], labels[1:], strict=True)
    ]
    return Summary(
        start=start,
        end=end,
        months=month_rows,
        purchases=st.total("purchase", start, end),
        cancels=st.total("cancel", start, end),
        customers=st.unique("purchase", start, end),
        invoices=st.distinct("purchase", "invoice", start, end),
        revenue=_sum(st, "purchase", start, end),
        cancelled=_sum(st, "cancel", start, end),
        top_items=[(code, items.get(code, ""), n) for code, n in top],
        countries=countries,
        cohort=labels[0],
        cohort_size=len(cohort),
        retention=retention,
        seconds=time.perf_counter() - began,
    )


def _title_case(text: str) -> str:
    """`PAPER CHAIN KIT 50'S CHRISTMAS` -> `Paper Chain Kit 50's Christmas` (str.title gives 'S)."""
    return " ".join(w[:1].upper() + w[1:].lower() for w in text.split())


def _day(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


def _money(value: float) -> str:
    return f"£{value:,.2f}" if value >= 0 else f"-£{-value:,.2f}"


def _table(title: str, *columns: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        header_style="bold",
        min_width=len(title),  # a title wider than the columns would wrap
    )
    for name in columns:
        left = name in ("Month", "Code", "Item", "Country", "")
        table.add_column(name, justify="left" if left else "right")
    return table


def render(summary: Summary, console: Console) -> None:
    """Print a summary as tables that fit an 80-column terminal."""
    s = summary
    period = f"{_day(s.start)} to {_day(s.end)}"

    totals = Table.grid(padding=(0, 2))
    totals.add_column(style="bold")
    totals.add_column(justify="right")
    totals.add_row("Purchases (invoice lines)", f"{s.purchases:,}")
    totals.add_row("Cancelled lines", f"{s.cancels:,}")
    totals.add_row("Invoices", f"{s.invoices:,}")
    totals.add_row("Customers", f"{s.customers:,}")
    totals.add_row("Revenue", _money(s.revenue))
    totals.add_row("Cancelled", _money(s.cancelled))
    totals.add_row("Net revenue", _money(s.revenue + s.cancelled))
    console.print()
    console.print(Text(f"Totals, {period}", style="bold"))
    console.print(totals)

    months = _table("Per month", "Month", "Customers", "Invoices", "Lines", "Revenue")
    for m in s.months:
        months.add_row(
            m.label, f"{m.customers:,}", f"{m.invoices:,}", f"{m.lines:,}", _money(m.revenue)
        )
    if s.months and s.end.day < 28:
        months.caption = f"{s.months[-1].label} is partial: the data ends on {_day(s.end)}."
    console.print()
    console.print(months)

    items = _table("Top 10 items (invoice lines)", "#", "Code", "Item", "Lines")
    for rank, (code, description, n) in enumerate(s.top_items, 1):
        items.add_row(str(rank), code, _title_case(description), f"{n:,}")
    console.print()
    console.print(items)

    countries = _table("Revenue per country (top 10)", "Country", "Revenue", "Lines", "Customers")
    for c in s.countries:
        countries.add_row(c.name, _money(c.revenue), f"{c.lines:,}", f"{c.customers:,}")
    console.print()
    console.print(countries)

    title = f"Retention of the {s.cohort_size:,} customers who bought in {s.cohort}"
    retention = _table(title, "Month", "Bought again", "Share", "")
    for label, n in s.retention:
        share = n / s.cohort_size if s.cohort_size else 0.0
        retention.add_row(label, f"{n:,}", f"{share:.0%}", Text("█" * round(share * 30), "cyan"))
    console.print()
    console.print(retention)


def run(
    st: Stats, console: Console, *, server: str = "", started: float | None = None
) -> LoadResult:
    """The whole demo: load the sample into `st` with a progress bar, then print the summary.

    `server` says in words where the data goes; `started` is the `time.perf_counter()` the
    caller began at (before connecting), for the total time.
    """
    began = time.perf_counter() if started is None else started
    sample = Sample.read()
    events = sample.events()
    if server:
        console.print(f"Server: {server}")
    console.print(
        f"Loading {len(events):,} Online Retail invoice lines into namespace"
        f" [bold]{st.namespace}[/bold]"
    )
    progress = progress_bar(console)
    with progress:
        task = progress.add_task("Recording", total=len(events))
        result = load(
            st,
            events,
            f"demo-{sample.digest}",
            on_batch=lambda n: progress.advance(task, n),
        )
    _report_load(result, console)
    start, end = sample.span()
    summary = summarise(st, start, end, sample.items)
    render(summary, console)
    console.print()
    console.print(
        f"Time: loading {result.seconds:.2f} s ({result.rate:,.0f} events/s"
        # (a run that finds the sample loaded reads it all the same, recording none of it)
        f"{'' if result.recorded == result.events else ' read'}),"
        f" queries {summary.seconds * 1000:.0f} ms, {time.perf_counter() - began:.1f} s in all."
    )
    console.print(f"Redis memory used: {memory_used(st)}")
    busiest = max(summary.months, key=lambda m: m.customers, default=None)
    if busiest is not None:
        console.print("Ask it yourself, in Python:")
        console.print(
            f'  bitstat.connect(namespace="{st.namespace}")'
            f'.unique("purchase", "{busiest.label}")  # {busiest.customers}',
            soft_wrap=True,
        )
        console.print("Or on the dashboard (then open http://127.0.0.1:8600/):")
        console.print(f"  bitstat --namespace {st.namespace} serve", soft_wrap=True)
    return result


def _report_load(result: LoadResult, console: Console) -> None:
    if result.recorded == 0 and result.events:
        console.print("Sample already loaded: 0 new events (its batch ids were seen before).")
    else:
        before = result.events - result.recorded - len(result.rejected)
        note = f"; {before:,} were already loaded" if before > 0 else ""
        console.print(f"Recorded {result.recorded:,} new events{note}.")
    if result.rejected:
        index, reason = result.rejected[0]
        console.print(
            f"[yellow]{len(result.rejected):,} events rejected[/yellow]"
            f" (first: line {index + 2} of the sample: {reason})"
        )


def memory_used(st: Stats) -> str:
    """Memory the server uses (added up over the masters of a cluster)."""
    return f"{st.server_info()['used_memory'] / 2**20:.2f}M"


__all__ = [
    "BATCH_SIZE",
    "SCHEMA",
    "Country",
    "LoadResult",
    "Month",
    "Sample",
    "Summary",
    "load",
    "memory_used",
    "render",
    "retail_event",
    "run",
    "summarise",
]
