"""CLI analyses: `retention`, `funnel`, `stickiness` and `lifecycle`, each one `Stats` call.

In a table the answers get pictures: a heat map for retention, bars for funnels and
stickiness; JSON and CSV carry the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from ..analysis import ADJECTIVES
from ..stats import Stats
from . import output as out
from .output import F, Output, Rows, format_option
from .query import PERIOD, event_range, pass_settings, segment, time_range, where_option

if TYPE_CHECKING:
    from .main import Settings


def periods_options(rows: str) -> Callable[[F], F]:
    """`--periods N`, how many `rows` (default 8), and `--period`, their length (a week)."""

    def add(f: F) -> F:
        period = click.option(
            "--period", type=PERIOD, default="week", show_default=True, help="Length of a period."
        )
        periods = click.option(
            "--periods",
            type=click.IntRange(min=1),
            default=8,
            show_default=True,
            help=f"Number of {rows} (rows).",
        )
        return periods(period(f))

    return add


@click.command(short_help="Cohort retention table (a heat map in the terminal).")
@click.argument("first_event")
@click.argument("return_event")
@click.argument("start")
@periods_options("cohorts")
@click.option(
    "--kind",
    type=click.Choice(("first", "recurring")),
    default="first",
    show_default=True,
    help="first: a cohort is the actors whose first-ever FIRST_EVENT falls in it;"
    " recurring: all who did it then.",
)
@click.option(
    "--columns", type=click.IntRange(min=1), help="Periods after each cohort (default: --periods)."
)
@click.option("--now", metavar="TIME", help="Periods after this are not begun (default: now).")
@click.option("--rates", is_flag=True, help="CSV: shares of the cohort instead of counts.")
@where_option
@format_option
@pass_settings
def retention(
    settings: Settings,
    first_event: str,
    return_event: str,
    start: str,
    periods: int,
    period: str,
    kind: str,
    columns: int | None,
    now: str | None,
    rates: bool,
    where: Sequence[str],
    fmt: str,
) -> None:
    """Of the actors who did FIRST_EVENT in each period from START, the share who did
    RETURN_EVENT in each following period. Column 0 is the cohort's own period; empty cells
    are periods that have not begun.

    \b
    Example:
        bitstat retention signup login 2026-09-01 --period week --periods 8
        bitstat retention purchase purchase 2026-01 --period month --format csv --rates
    """
    with settings.connect() as st:
        table = st.retention(
            first_event,
            return_event,
            start,
            periods,
            period,
            kind,
            columns=columns,
            now=now,
            **segment(where, Stats.retention),
        )
    output = Output(fmt)

    def heat_map() -> None:
        title = (
            f"{return_event} after {first_event}, {ADJECTIVES[period]} cohorts"
            f" ({'first time' if kind == 'first' else 'recurring'})"
        )

        def heat_table(shown: int) -> Table:
            rows = Rows(["cohort", "size", *map(str, range(shown))], [], title=title)
            rows.styles = []
            for r in table.rows:
                shares = r.rates()[:shown]
                rows.rows.append([r.cohort, r.size, *map(out.percent, shares)])
                rows.styles.append(["", "", *map(out.heat, shares)])
            return _right_aligned(out.rich_table(rows))

        # columns a terminal cannot hold are left out and said so: squeezed, cells turn to mush
        shown = table.columns
        while shown > 1 and not out.fits(output.console, heat_table(shown)):
            shown -= 1
        output.console.print(heat_table(shown))
        if shown < table.columns:
            output.console.print(
                f"Columns 0 to {shown - 1} of {table.columns} fit in {output.console.width}"
                " characters: --format csv or json has them all.",
                style="dim",
            )

    if fmt == "csv":
        click.echo(table.to_csv(rates=rates), nl=False)
    elif fmt == "json":
        click.echo(out.to_json(table.as_dicts()))
    else:
        heat_map()


def _right_aligned(table: Table, stop: int | None = None) -> Table:
    """Right-align columns 1 .. stop-1 (numbers shown as text, like percentages)."""
    for column in table.columns[1:stop]:
        column.justify = "right"
    return table


@click.command(short_help="Ordered funnel: actors reaching each step.")
@click.argument("steps")
@time_range
@click.option(
    "--within",
    default="7d",
    show_default=True,
    help="Window after the first step: whole days, e.g. 7d, 2w, 48h.",
)
@where_option
@format_option
@pass_settings
def funnel(
    settings: Settings,
    steps: str,
    start: str,
    end: str | None,
    within: str,
    where: Sequence[str],
    fmt: str,
) -> None:
    """Actors who did the comma-separated STEPS in order, the first step between START and
    END, the rest within --within of it (at day resolution: one day counts as in order).

    \b
    Example:
        bitstat funnel visit,signup,purchase 2026-11-01 2026-11-30 --within 7d
        bitstat funnel visit,signup 2026-11 --where country=NL --format json
    """
    names = [s.strip() for s in steps.split(",")]
    with settings.connect() as st:
        answer = st.funnel(names, start, end, within=within, **segment(where, Stats.funnel))
    first = answer[0][1] if answer else 0
    rows: list[list[Any]] = []
    previous = first
    for step, n in answer:
        rows.append([step, n, n / first if first else None, n / previous if previous else None])
        previous = n
    output = Output(fmt)
    if not output.table:
        output.rows(Rows(["step", "actors", "of_first", "of_previous"], rows))
        return
    shown = Rows(
        ["step", "actors", "of first", "of previous", ""],
        [[s, n, out.percent(a), out.percent(b), out.bar(n, first)] for s, n, a, b in rows],
    )
    output.console.print(_right_aligned(out.rich_table(shown), stop=4))


@click.command(short_help="Actors per number of active days in a range.")
@event_range
@where_option
@format_option
@pass_settings
def stickiness(
    settings: Settings, event: str, start: str, end: str | None, where: Sequence[str], fmt: str
) -> None:
    """How many actors did EVENT on exactly 1, 2, ... N distinct days of START..END.

    \b
    Example:
        bitstat stickiness login 2026-11-01 2026-11-07
        bitstat stickiness login 2026-11 --format csv
    """
    with settings.connect() as st:
        answer = st.stickiness(event, start, end, **segment(where, Stats.stickiness))
    rows = Rows(["days", "actors"], [[d, n] for d, n in answer.items()])
    output = Output(fmt)
    if not output.table:
        output.rows(rows)
        return
    largest = max(answer.values(), default=0)
    rows.columns.append("")
    for row in rows.rows:
        row.append(out.bar(row[1], largest))
    output.console.print(out.rich_table(rows))


@click.command(short_help="New, returning, resurrecting and dormant actors per period.")
@click.argument("event")
@click.argument("start")
@periods_options("periods")
@click.option("--now", metavar="TIME", help="Periods after this are not begun (default: now).")
@where_option
@format_option
@pass_settings
def lifecycle(
    settings: Settings,
    event: str,
    start: str,
    periods: int,
    period: str,
    now: str | None,
    where: Sequence[str],
    fmt: str,
) -> None:
    """Per period from START: actors new (first time ever), returning (also active the period
    before), resurrecting (back after a gap) and dormant (active before, not now).

    \b
    Example:
        bitstat lifecycle login 2026-09-01 --period week --periods 8
        bitstat lifecycle purchase 2026-01 --period month --format json
    """
    with settings.connect() as st:
        by = segment(where, Stats.lifecycle)
        answer = st.lifecycle(event, start, periods, period, now=now, **by)
    columns = ["period", "new", "returning", "resurrecting", "dormant"]
    rows = [[p.as_dict()[c] for c in columns] for p in answer]
    Output(fmt).rows(Rows(columns, rows))


COMMANDS: list[click.Command] = [retention, funnel, stickiness, lifecycle]
