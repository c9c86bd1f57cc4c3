"""How CLI answers are printed: one `--format` option, and tables, JSON or CSV from plain rows.

A command turns the library's answer into `Rows` (named columns, one list per row) or a scalar,
and `Output` prints it: a rich table for people, JSON (a list of objects) or CSV for programs.
Table mode may add a picture (a sparkline, a heat map, bars); JSON and CSV carry only the data.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from .. import analysis
from ..schema import duration_short

FORMATS = ("table", "json", "csv")
SPARKS = "▁▂▃▄▅▆▇█"
BAR_WIDTH = 24
JSON_WIDTH = 100

F = TypeVar("F", bound=Callable[..., Any])


def formats_option(formats: tuple[str, ...], help: str) -> Callable[[F], F]:
    """A `-f/--format` option, one of `formats` (the first by default), passed as `fmt`."""
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=click.Choice(formats),
        default=formats[0],
        show_default=True,
        help=help,
    )


format_option = formats_option(
    FORMATS, "Output: a table for reading, JSON (a list of objects) or CSV for programs."
)
"""The shared `-f/--format table|json|csv` option, passed to the command as `fmt`."""


@dataclass
class Rows:
    """A tabular answer: column names and rows of plain values (numbers, text, None)."""

    columns: list[str]
    rows: list[list[Any]]
    title: str | None = None
    caption: str | None = None
    # table mode only: per-cell styles (e.g. a heat map), same shape as rows
    styles: list[list[str]] | None = None
    extra: list[RenderableType] = field(default_factory=list)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def console() -> Console:
    """A console on stdout (looked up at each write, so CliRunner captures it), no highlighting."""
    return Console(highlight=False, soft_wrap=False)


def count(n: int, noun: str) -> str:
    """`1 event`, `2 events`, `10,000 events`."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def ordinal(n: int) -> str:
    """`1st`, `2nd`, `3rd`, `4th`, `11th`, `22nd`, `1,001st`."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def were(n: int) -> str:
    """The verb after `count(n, ...)`: `1 event was`, `2 events were`."""
    return "was" if n == 1 else "were"


def cell(value: Any) -> str:
    """A value as people read it in a table: 12,345 and 1,234.50 (floats are sums, often
    money: two decimals); nothing for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.2f}"
    return str(value)


def _numeric(rows: Sequence[Sequence[Any]], column: int) -> bool:
    values = [r[column] for r in rows if r[column] is not None]
    return bool(values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )


def rich_table(rows: Rows) -> Table:
    table = Table(
        title=rows.title,
        caption=rows.caption,
        title_justify="left",
        caption_justify="left",
        title_style="bold",
        header_style="bold",
        min_width=len(rows.title or ""),  # a title wider than the columns would wrap
    )
    for i, name in enumerate(rows.columns):
        table.add_column(name, justify="right" if _numeric(rows.rows, i) else "left")
    for r, row in enumerate(rows.rows):
        styles = rows.styles[r] if rows.styles else [""] * len(row)
        table.add_row(
            *(
                v if isinstance(v, Text) else Text(cell(v), style=s)
                for v, s in zip(row, styles, strict=True)
            )
        )
    return table


def fits(console: Console, renderable: RenderableType) -> bool:
    """Whether `renderable` at its natural width fits the console's width."""
    natural = console.measure(renderable, options=console.options.update(max_width=1 << 20))
    return natural.maximum <= console.width


def tidy(value: Any) -> Any:
    """Floats to 12 significant digits, so sums read 5490.98, not 5490.979999999996."""
    if isinstance(value, float):
        return float(f"{value:.12g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: tidy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [tidy(v) for v in value]
    return value


def to_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(columns)
    out.writerows(["" if v is None else tidy(v) for v in row] for row in rows)
    return buf.getvalue()


def to_json(value: Any, indent: int = 0) -> str:
    """Indented JSON; an object or array that fits in a line (a row, a cohort) takes one."""
    if not indent:
        value = tidy(value)
    flat = json.dumps(value, ensure_ascii=False)
    nested = isinstance(value, dict | list) and any(
        isinstance(v, dict | list) for v in (value.values() if isinstance(value, dict) else value)
    )
    if (indent or not nested) and indent + len(flat) <= JSON_WIDTH:
        return flat
    if not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [
            f"{pad}{json.dumps(k, ensure_ascii=False)}: {to_json(v, indent + 2)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + to_json(v, indent + 2) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


class Output:
    """Prints answers in the format the user chose."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.console = console()

    @property
    def table(self) -> bool:
        return self.fmt == "table"

    def rows(self, rows: Rows) -> None:
        if self.fmt == "json":
            click.echo(to_json(rows.dicts()))
        elif self.fmt == "csv":
            click.echo(to_csv(rows.columns, rows.rows), nl=False)
        else:
            self.console.print(rich_table(rows))
            for renderable in rows.extra:
                self.console.print(renderable)

    def scalar(self, name: str, value: Any) -> None:
        """One number: bare in a table (12,345) and in JSON (12345); `name` heads the CSV."""
        if self.fmt == "json":
            click.echo(to_json(value))
        elif self.fmt == "csv":
            click.echo(to_csv([name], [[value]]), nl=False)
        else:
            click.echo(cell(value))

    def data(self, value: Any, csv_rows: Rows, table: Callable[[], None]) -> None:
        """An answer with its own JSON shape, CSV rows and table drawing."""
        if self.fmt == "json":
            click.echo(to_json(value))
        elif self.fmt == "csv":
            click.echo(to_csv(csv_rows.columns, csv_rows.rows), nl=False)
        else:
            table()


def sparkline(values: Sequence[float]) -> str:
    """▁▂▃▄▅▆▇█, scaled from the smallest value to the largest; all zeros lie flat at the
    bottom, other equal values half way up."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo
    top = len(SPARKS) - 1
    level = 0 if hi == 0 else top // 2
    return "".join(SPARKS[level if span == 0 else round((v - lo) / span * top)] for v in values)


def bar(value: float, largest: float, width: int = BAR_WIDTH) -> Text:
    """A horizontal bar of `width` cells at most, in eighths of a cell."""
    if largest <= 0 or value <= 0:
        return Text("")
    eighths = round(value / largest * width * 8)
    full, part = divmod(eighths, 8)
    return Text("█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[part], style="cyan")


def heat(rate: float | None) -> str:
    """A cell style on the ramp of the HTML retention table (`analysis.heat`)."""
    if rate is None:
        return ""
    (red, green, blue), light = analysis.heat(rate)
    return f"{'white' if light else 'black'} on rgb({red},{green},{blue})"


def duration(seconds: int) -> str | int:
    """3600 -> "1h", 1209600 -> "2w": a duration as the schema's `expire` takes it back (plain
    seconds stay a number)."""
    text = duration_short(seconds)
    return int(text) if text.isdigit() else text


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"
