"""CLI queries: one command per `Stats` query, with the Python API's arguments, in any format.

Each command calls one library method and hands the answer to `cli/output.py` as rows or a
number; time arguments go to the library as typed (ISO dates, times, period labels). The
shared arguments and options (a range, `--where`) are here too, for `cli/analysis.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from ..stats import Stats, clashes
from ..tables import part_columns
from . import output as out
from .output import Output, Rows, format_option

if TYPE_CHECKING:
    from .main import Settings

F = TypeVar("F", bound=Callable[..., Any])
PERIOD = click.Choice(("hour", "day", "week", "month", "year"))
pass_settings = click.pass_obj


def event_range(f: F) -> F:
    """EVENT START [END]: a range is [START, END], both inclusive; END defaults to START."""
    f = click.argument("end", required=False)(f)
    f = click.argument("start")(f)
    return click.argument("event")(f)


def time_range(f: F) -> F:
    f = click.argument("end", required=False)(f)
    return click.argument("start")(f)


def property_command(
    short_help: str, *options: Callable[[F], F]
) -> Callable[[Callable[..., None]], click.Command]:
    """A command on EVENT PROPERTY START [END] (a property of the event over a range, as
    `event_range`), with `options`, then -f/--format; it is passed the settings."""

    def make(f: Callable[..., None]) -> click.Command:
        f = format_option(pass_settings(f))
        for option in reversed(options):
            f = option(f)
        f = time_range(f)
        f = click.argument("prop", metavar="PROPERTY")(f)
        return click.command(short_help=short_help)(click.argument("event")(f))

    return make


def where_option(f: F) -> F:
    return click.option(
        "-w",
        "--where",
        "where",
        multiple=True,
        metavar="PROP=VALUE",
        help="Only actors in this segment (a `segment` property of the schema); repeatable"
        " for compound segments.",
    )(f)


def segment(where: Sequence[str], method: Any = Stats.unique) -> dict[str, str]:
    """`("country=NL", "platform=ios")` -> `{"country": "NL", "platform": "ios"}`, the
    segment keywords of `method`."""
    reserved = clashes(method)
    found: dict[str, str] = {}
    for item in where:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected PROP=VALUE, got {item!r}", param_hint="--where")
        if name in found:
            raise click.BadParameter(f"{name!r} is given twice", param_hint="--where")
        if name in reserved:
            raise click.BadParameter(
                f"{name!r} cannot be a segment filter here (an argument is so named)",
                param_hint="--where",
            )
        found[name] = value
    return found


def key_columns(prop: str, own: str) -> list[str]:
    """Column names for the values of a (compound) property, in the order the user named, then
    `own`, the answer's column: a part named like it gets a `_` after it (as in DataFrames),
    so that JSON and CSV keep both."""
    return [*part_columns(prop, (own,)), own]


def key_cells(prop: str, key: Any) -> list[Any]:
    return list(key) if "~" in prop else [key]


def ranked(counts: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """Largest first, then by value, as `top` orders its answer."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


@click.command(short_help="Distinct actors of an event in a time range.")
@event_range
@where_option
@format_option
@pass_settings
def unique(
    settings: Settings, event: str, start: str, end: str | None, where: Sequence[str], fmt: str
) -> None:
    """Distinct actors who did EVENT between START and END (inclusive; END defaults to START).

    START and END are dates, times or period labels: 2026-11-22, 2026-11-22T13:00, 2026-11
    (a month), 2026-W47 (an ISO week), 2026 (a year).

    \b
    Example:
        bitstat unique login 2026-11
        bitstat unique login 2026-11-01 2026-11-30 --where country=NL
    """
    with settings.connect() as st:
        Output(fmt).scalar("unique", st.unique(event, start, end, **segment(where)))


@click.command(short_help="Number of events in a time range.")
@event_range
@format_option
@pass_settings
def total(settings: Settings, event: str, start: str, end: str | None, fmt: str) -> None:
    """How many times EVENT happened between START and END (inclusive).

    \b
    Example:
        bitstat total login 2026-11
        bitstat total purchase 2026-11-01 2026-11-30 --format json
    """
    with settings.connect() as st:
        Output(fmt).scalar("total", st.total(event, start, end))


@click.command(short_help="One value per hour/day/week/month/year of a range.")
@event_range
@click.option("--by", type=PERIOD, default="day", show_default=True, help="Bucket size.")
@click.option(
    "--metric",
    type=click.Choice(("unique", "total")),
    default="unique",
    show_default=True,
    help="Distinct actors or number of events.",
)
@where_option
@format_option
@pass_settings
def series(
    settings: Settings,
    event: str,
    start: str,
    end: str | None,
    by: str,
    metric: str,
    where: Sequence[str],
    fmt: str,
) -> None:
    """Unique actors (or events) of EVENT per bucket of START..END; a sparkline in table mode.

    \b
    Example:
        bitstat series login 2026-11-01 2026-11-30
        bitstat series purchase 2026 --by month --metric total --format csv
    """
    with settings.connect() as st:
        answer = st.series(event, start, end, by=by, metric=metric, **segment(where, Stats.series))
    values = [v for _, v in answer]
    rows = Rows([by, metric], [[label, v] for label, v in answer])
    if values:
        spark = Text(out.sparkline(values), style="cyan")
        spark.append(f"  min {out.cell(min(values))}, max {out.cell(max(values))}", style="dim")
        rows.extra.append(spark)
    Output(fmt).rows(rows)


@property_command("Events per value of a `count` property.")
def counts(
    settings: Settings, event: str, prop: str, start: str, end: str | None, fmt: str
) -> None:
    """Events per value of PROPERTY (a `count` property; compound with ~), largest first.

    \b
    Example:
        bitstat counts purchase country 2026-11
        bitstat counts purchase country~platform 2026-11-01 2026-11-30 --format json
    """
    with settings.connect() as st:
        answer = st.counts(event, prop, start, end)
    rows = [[*key_cells(prop, k), n] for k, n in ranked(answer)]
    Output(fmt).rows(Rows(key_columns(prop, "count"), rows))


@property_command(
    "Sum of a numeric `sum` property, in total or per label.",
    click.option("--by", metavar="PROPERTY", help="A total per value of this property."),
)
def sums(
    settings: Settings,
    event: str,
    prop: str,
    start: str,
    end: str | None,
    by: str | None,
    fmt: str,
) -> None:
    """Sum of PROPERTY (a `sum` property) over the range; with --by, one sum per value.

    \b
    Example:
        bitstat sums purchase amount 2026-11
        bitstat sums purchase amount 2026-11 --by country
    """
    with settings.connect() as st:
        answer = st.sums(event, prop, start, end, by=by)
    if not isinstance(answer, dict):
        Output(fmt).scalar("sum", answer)
        return
    assert by is not None
    rows = [[*key_cells(by, k), v] for k, v in ranked(answer)]
    Output(fmt).rows(Rows(key_columns(by, "sum"), rows))


@property_command(
    "Most frequent values of a `top` property.",
    click.option(
        "-n",
        "--limit",
        type=click.IntRange(min=1),
        default=10,
        show_default=True,
        help="How many values, most frequent first.",
    ),
)
def top(
    settings: Settings,
    event: str,
    prop: str,
    start: str,
    end: str | None,
    limit: int,
    fmt: str,
) -> None:
    """The LIMIT most frequent values of PROPERTY (a `top` property), exact over any range.

    \b
    Example:
        bitstat top purchase item 2026-11
        bitstat top purchase item 2026-01-01 2026-12-31 --limit 3 --format csv
    """
    with settings.connect() as st:
        answer = st.top(event, prop, start, end, limit=limit)
    rows = [[*key_cells(prop, k), n] for k, n in answer]
    Output(fmt).rows(Rows(key_columns(prop, "count"), rows))


@property_command("Distinct values of a `unique` or `approx` property.")
def distinct(
    settings: Settings, event: str, prop: str, start: str, end: str | None, fmt: str
) -> None:
    """How many distinct values PROPERTY took in the range: exact for a `unique` property,
    a HyperLogLog estimate (standard error 0.81%) for an `approx` one.

    \b
    Example:
        bitstat distinct login ip 2026-11
        bitstat distinct purchase invoice 2026-11-01 2026-11-30
    """
    with settings.connect() as st:
        Output(fmt).scalar("distinct", st.distinct(event, prop, start, end))


@click.command(short_help="Event names recorded in the namespace.")
@format_option
@pass_settings
def events(settings: Settings, fmt: str) -> None:
    """Every event name recorded in the namespace, sorted.

    \b
    Example:
        bitstat events
        bitstat --namespace shop events --format json
    """
    with settings.connect() as st:
        names = st.events()
    output = Output(fmt)
    if output.table:
        if not names:  # on stderr: a script reading the names gets none
            click.echo(f"No events are recorded in namespace {settings.namespace!r}.", err=True)
        for name in names:  # one a line: a name recorded before names had to be printable
            click.echo(name if name.isprintable() else json.dumps(name, ensure_ascii=False))
    else:
        output.rows(Rows(["event"], [[n] for n in names]))


def _numbers(answer: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(metric, property, value) for each single number of a `query` answer."""
    found = [("total", "", answer["total"]), ("unique", "", answer["unique"])]
    found += [("distinct", p, n) for p, n in answer.get("distinct", {}).items()]
    found += [("sums", r, v) for r, v in answer.get("sums", {}).items() if not isinstance(v, dict)]
    return found


def _breakdowns(answer: dict[str, Any]) -> Iterator[tuple[str, str, Rows]]:
    """(metric, property, rows) for each breakdown of a `query` answer, largest first."""
    for prop, c in answer.get("counts", {}).items():
        rows = [[*key_cells(prop, k), n] for k, n in ranked(c)]
        yield "counts", prop, Rows(key_columns(prop, "count"), rows, title=f"counts {prop}")
    for rule, value in answer.get("sums", {}).items():
        if isinstance(value, dict):
            by = rule.partition(" by ")[2]
            rows = [[*key_cells(by, k), v] for k, v in ranked(value)]
            yield "sums", rule, Rows(key_columns(by, "sum"), rows, title=f"sum {rule}")
    for prop, t in answer.get("top", {}).items():
        rows = [[*key_cells(prop, k), n] for k, n in t]
        yield "top", prop, Rows(key_columns(prop, "count"), rows, title=f"top {prop}")


def _label(metric: str, prop: str) -> str:
    return f"{'sum' if metric == 'sums' else metric} {prop}".strip()


def _query_json(answer: dict[str, Any]) -> dict[str, Any]:
    """A `query` answer made JSON: breakdowns (tuple keys for compounds) become rows."""
    out_ = {k: dict(v) if isinstance(v, dict) else v for k, v in answer.items()}
    for metric, prop, rows in _breakdowns(answer):
        out_[metric][prop] = rows.dicts()
    return out_


def _query_rows(answer: dict[str, Any]) -> list[list[Any]]:
    """metric, property, key, value: one row per number; compound keys joined with ~."""
    rows = [[metric, prop, "", value] for metric, prop, value in _numbers(answer)]
    for metric, prop, found in _breakdowns(answer):
        rows += [[metric, prop, "~".join(map(str, r[:-1])), r[-1]] for r in found.rows]
    return rows


def _query_table(answer: dict[str, Any], output: Output) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    for metric, prop, value in _numbers(answer):
        grid.add_row(_label(metric, prop), out.cell(value))
    output.console.print(grid)
    for _, _, rows in _breakdowns(answer):
        output.console.print()
        output.console.print(out.rich_table(rows))


@click.command(short_help="Every metric the schema records for an event (trk's query).")
@click.argument("event")
@click.argument("start", required=False)
@click.argument("end", required=False)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Instead of a range: the same per day, for the last DAYS days (query_days).",
)
@click.option("--until", metavar="DAY", help="With --days: the last day (default: today).")
@format_option
@pass_settings
def query(
    settings: Settings,
    event: str,
    start: str | None,
    end: str | None,
    days: int | None,
    until: str | None,
    fmt: str,
) -> None:
    """Total, unique actors and every count, sum, top and distinct the schema records.

    With --days N, the same for each of the last N days (one row per day).

    \b
    Example:
        bitstat query purchase 2026-11
        bitstat query purchase --days 7 --format json
    """
    if (days is None) == (start is None):
        raise click.UsageError("give either START [END] or --days N")
    if until is not None and days is None:
        raise click.UsageError("--until goes with --days")
    output = Output(fmt)
    with settings.connect() as st:
        if days is None:
            answer = st.query(event, start, end)
            output.data(
                _query_json(answer),
                Rows(["metric", "property", "key", "value"], _query_rows(answer)),
                lambda: _query_table(answer, output),
            )
            return
        per_day = st.query_days(event, days, until)
    csv_rows = [[d["day"], *row] for d in per_day for row in _query_rows(d)]
    output.data(
        [{"day": d["day"], **_query_json(d)} for d in per_day],
        Rows(["day", "metric", "property", "key", "value"], csv_rows),
        lambda: output.rows(_days_table(per_day)),
    )


def _days_table(per_day: list[dict[str, Any]]) -> Rows:
    """One row per day with the single numbers; breakdowns are left to JSON and CSV."""
    first = per_day[0] if per_day else {"total": 0, "unique": 0}
    columns = ["day", *(_label(m, p) for m, p, _ in _numbers(first))]
    rows = [[d["day"], *(v for _, _, v in _numbers(d))] for d in per_day]
    has_breakdowns = any(True for _ in _breakdowns(first))
    caption = "Counts, top values and sums by label: --format json or csv."
    return Rows(columns, rows, caption=caption if has_breakdowns else None)


COMMANDS: list[click.Command] = [
    unique,
    total,
    series,
    counts,
    sums,
    top,
    distinct,
    query,
    events,
]
