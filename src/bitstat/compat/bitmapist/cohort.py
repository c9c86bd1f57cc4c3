"""bitmapist.cohort: the cohort (retention) table of one event against another, and its HTML/CSV.

`get_dates_data` returns bitmapist's rows, `[start, cohort size, cell 0, ..., cell N]`, where a
cell is "" (no data), a percentage (float) or a count. bitmapist builds two or three BITOPs per
cell, each its own round trip; here the row sizes take one pipelined round trip and the cells
another (one Lua call per row), with scratch keys deleted in the same call. Rendering needs no
template engine; the form's event selects are made searchable by Tom Select 2.3.1, vendored
from its npm package and inlined, so the form needs no network.
"""

from __future__ import annotations

import calendar
import functools
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any, Literal

from bitstat.signatures import takes_arguments_of

from . import _engine
from .events import Bitmap, DayEvents, MonthEvents, WeekEvents, YearEvents, add_month

__all__ = [
    "CUSTOM_HANDLERS",
    "EVENT_SELECT_CLASS",
    "get_dates_data",
    "render_csv_data",
    "render_html_data",
    "render_html_form",
    "set_custom_handler",
    "tom_select_assets",
]

TimeGroup = Literal["days", "weeks", "months", "years"]
Row = list[Any]

CUSTOM_HANDLERS: dict[str, Callable[..., Any]] = {}


def set_custom_handler(event_name: str, callback: Callable[..., Any]) -> None:
    """Compute the selection `event_name` with `callback(key, cls, cls_args)`.

    `cls` is DayEvents, WeekEvents, MonthEvents or YearEvents and `cls_args` the arguments of
    its constructor after the event name, so `cls("active", *cls_args) & cls("web", *cls_args)`
    makes a selection "active on the web".
    """
    CUSTOM_HANDLERS[event_name] = callback


def _dispatch(key: str, cls: type[Any], cls_args: tuple[Any, ...]) -> Any:
    if key in CUSTOM_HANDLERS:
        return CUSTOM_HANDLERS[key](key, cls, cls_args)
    return cls(key, *cls_args)


def _events(time_group: str, key: str, when: date, system: Any) -> Any:
    if time_group == "days":
        return _dispatch(key, DayEvents, (when.year, when.month, when.day, system))
    if time_group == "weeks":
        iso = when.isocalendar()
        return _dispatch(key, WeekEvents, (iso.year, iso.week, system))
    if time_group == "months":
        return _dispatch(key, MonthEvents, (when.year, when.month, system))
    return _dispatch(key, YearEvents, (when.year, system))


# bitmapist's per-period helpers (3.119 names them so; its code and tests import them)
def _day_events_fn(key: str, date: date, system: Any) -> Any:
    return _events("days", key, date, system)


def _weeks_events_fn(key: str, date: date, system: Any) -> Any:
    return _events("weeks", key, date, system)


def _month_events_fn(key: str, date: date, system: Any) -> Any:
    return _events("months", key, date, system)


def _year_events_fn(key: str, date: date, system: Any) -> Any:
    return _events("years", key, date, system)


def _shift(dt: datetime, time_group: str, n: int) -> datetime:
    """`dt` moved by n periods; months and years keep the day, clamped to the month's end."""
    if time_group == "days":
        return dt + timedelta(days=n)
    if time_group == "weeks":
        return dt + timedelta(weeks=n)
    if time_group == "months":
        year, month = add_month(dt.year, dt.month, n)
    else:
        year, month = dt.year + n, dt.month
    return dt.replace(year=year, month=month, day=min(dt.day, calendar.monthrange(year, month)[1]))


def _selection(
    time_group: str, key: str, extra: str | None, when: date, system: Any
) -> _engine.Node:
    """The node of `key` in the period of `when`, ANDed with `extra` if given (scratch)."""
    with _engine.deferred():  # computed by the table's next evaluation, not one by one
        node = _node(_events(time_group, key, when, system), system)
        if not extra:
            return node
        other = _node(_events(time_group, extra, when, system), system)
    return _engine.Op("AND", _engine.scratch_key("cohort"), (node, other), None)


def _node(events: Any, system: Any) -> _engine.Node:
    if isinstance(events, Bitmap):
        return events._node(system)
    return _engine.Leaf(str(events.redis_key))


def get_dates_data(
    select1: str,
    select2: str,
    select1b: str | None = None,
    select2b: str | None = None,
    time_group: TimeGroup = "days",
    system: Any = "default",
    as_percent: bool = True,
    num_results: int = 31,
    num_of_rows: int = 12,
    start_date: str | None = None,
) -> list[Row]:
    """The cohort table: who did `select1` (and `select1b`) in each period, and came back.

    One row per period (`num_results` of them, 3 for years), ending at `start_date` +
    `num_results` - 1 periods or now. A row is `[period start, cohort size, cells...]`; cell k
    (0..`num_of_rows`) covers the k-th period from the row's: "" if the cohort is empty or
    nobody did `select2` (and `select2b`) then, else the share of the cohort who did, in
    percent, or their number when `as_percent` is false.
    """
    if time_group not in ("days", "weeks", "months", "years"):
        raise ValueError(f"time_group must be days, weeks, months or years, not {time_group!r}")
    num_results = int(num_results)
    num_of_rows = int(num_of_rows)
    if start_date:
        end = datetime.strptime(start_date, "%Y-%m-%d").replace(tzinfo=UTC)
        end += timedelta(days=num_results - 1)
    else:
        end = datetime.now(tz=UTC)
    if time_group == "years":
        num_results = 3  # after `end`, which counts the days asked for, as bitmapist does
    first = _shift(end, time_group, -(num_results - 1))
    if time_group == "months":
        first -= timedelta(days=first.day - 1)
    starts = [_shift(first, time_group, i) for i in range(num_results)]

    def cohort(start: datetime) -> _engine.Node:
        return _selection(time_group, select1, select1b, start, system)

    sizes = [
        answer[0]
        for answer in _engine.evaluate_batches(
            system, [[("count", cohort(start))] for start in starts]
        )
    ]
    batches: list[list[_engine.Read]] = []
    for start, size in zip(starts, sizes, strict=True):
        if size == 0:
            continue
        base = cohort(start)
        reads: list[_engine.Read] = []
        for k in range(num_of_rows + 1):
            then = _selection(time_group, select2, select2b, _shift(start, time_group, k), system)
            both = _engine.Op("AND", _engine.scratch_key("cohort"), (base, then), None)
            reads += [("count", then), ("count", both)]
        batches.append(reads)
    answers = iter(_engine.evaluate_batches(system, batches))

    rows: list[Row] = []
    for start, size in zip(starts, sizes, strict=True):
        row: Row = [start, size]
        if size == 0:
            row += [""] * (num_of_rows + 1)
        else:
            counts = next(answers)
            for marked, returned in zip(counts[::2], counts[1::2], strict=True):
                if marked == 0:
                    row.append("")
                elif returned == 0:
                    row.append(0.0)
                else:
                    row.append(returned / size * 100 if as_percent else returned)
        rows.append(row)
    _engine.delete_runtime_keys()
    return rows


# --- rendering


def _label(when: datetime, time_group: str, csv: bool) -> str:
    if time_group == "months":
        return when.strftime("%d %b")
    if time_group == "weeks":
        return when.strftime("Week %U %d %b" if csv else "Week %U, %d %b")
    if time_group == "years":
        return when.strftime("%Y")
    return when.strftime("%d %b %Y" if csv else "%d %b, %Y")


@dataclass(slots=True)
class _Table:
    """The arguments of `render_csv_data` and `render_html_data` (bitmapist's: `num_results`
    and `start_date` are taken and not used, as there), and the columns both render."""

    dates_data: Sequence[Row]
    as_percent: bool = True
    time_group: TimeGroup = "days"
    num_results: int = 31
    num_of_rows: int = 12
    start_date: str | None = None

    def periods(self) -> range:
        """The numbers of the period columns, 0 for the cohort's own period."""
        return range(int(self.num_of_rows) + 1)

    def cells(self) -> range:
        """Where the period columns' values are in a row (after the date and the size)."""
        return range(2, int(self.num_of_rows) + 3)


@takes_arguments_of(_Table)
def render_csv_data(table: _Table) -> str:
    """The table of `get_dates_data` as CSV: date, cohort size, then one column per period."""
    lines = ["Date,Total," + ",".join(str(i) for i in table.periods())]
    for row in table.dates_data:
        values = []
        for i in table.cells():
            v = row[i]
            if v == "":
                values.append("")
            else:
                values.append(str(round(v, 2)) if table.as_percent else str(int(v)))
        lines.append(f"{_label(row[0], table.time_group, True)},{row[1]},{','.join(values)}")
    return "\n".join(lines) + "\n"


_TABLE_STYLE = """<style>
.cohort_table { width: 1250px !important; font-family: sans-serif; }
.cohort_table .entry { width: 6%; }
.cohort_table td, .cohort_table th { padding: 5px 0; text-align: center;
  border-right: 1px solid #aaa; }
.cohort_table td { border-bottom: 1px solid #aaa; }
.cohort_table .date { display: inline-block; width: 125px; }
.cohort_table .total_count { display: inline-block; width: 50px; }
.cohort_table td.avg_row { border-top: 1px solid #aaa !important; }
</style>"""


def _cell(value: Any, as_percent: bool) -> str:
    if value == "":
        return "<td></td>"
    if not as_percent:
        return f"<td>{int(value)}</td>"
    shade = round(float(value / 100), 1)
    ink = round(float(value / 100) + 0.5, 1)
    return (
        f'<td style="background-color: hsla(200, 80%, 50%, {shade}); '
        f'color: hsla(200, 100%, 0%, {ink});">{round(value, 2)}%</td>'
    )


@takes_arguments_of(_Table)
def render_html_data(table: _Table) -> str:
    """The table of `get_dates_data` as an HTML heat map, with a row of column averages."""
    out = [_TABLE_STYLE, '<table class="cohort_table" cellpadding="0" cellspacing="0">']
    head = "".join(f'<th class="entry">{i}</th>' for i in table.periods())
    out.append(f'<tr><th width="200"></th>{head}</tr>')
    for row in table.dates_data:
        label = html.escape(_label(row[0], table.time_group, False))
        first = f'<td><div class="date">{label}</div><div class="total_count">{row[1]}</div></td>'
        cells = "".join(_cell(row[i], table.as_percent) for i in table.cells())
        out.append(f"<tr>{first}{cells}</tr>")
    averages = []
    for i in table.cells():
        present = [row[i] for row in table.dates_data if row[i] != ""]
        average = sum(present) / len(present) if present else 0
        shown = f"{round(average, 2)}%" if table.as_percent else str(int(average))
        averages.append(f'<td class="avg_row">{shown}</td>')
    out.append(f'<tr><td class="avg_row"></td>{"".join(averages)}</tr>')
    out.append("</table>")
    out.append(
        '<div style="padding-top: 20px;"><a href="#" target="_blank" onclick="window.open('
        "location.href + '&export_csv=1'); return false;\">Export as CSV</a></div>"
    )
    return "\n".join(out)


def _options(
    name: str, selections: Sequence[Any], current: str | None, css_class: str | None = None
) -> str:
    tag = f'<select name="{html.escape(name)}"'
    out = [tag + (f' class="{css_class}">' if css_class else ">")]
    for option in selections:
        if option == "---":
            out.append('<option value="" disabled="disabled">----</option>')
            continue
        label, value = (html.escape(str(x)) for x in option)
        chosen = ' selected="selected"' if current == option[1] else ""
        out.append(f'<option value="{value}"{chosen}>{label}</option>')
    out.append("</select>")
    return "".join(out)


def _choice(name: str, choices: Sequence[tuple[str, str]], current: str) -> str:
    return _options(name, [(label, value) for value, label in choices], current)


EVENT_SELECT_CLASS = "cohort-event-select"
"""The class of the form's four event selects, which Tom Select turns into searchable ones."""

_VENDOR = ("vendor", "tom-select")
_SOURCE_MAP = re.compile(r"\n?(?://|/\*)# sourceMappingURL=[^\n]*\s*$")


@functools.cache
def tom_select_assets() -> tuple[str, str]:
    """The CSS and JavaScript of Tom Select 2.3.1, vendored from its npm package (Apache-2.0).

    Read from the files beside this module (see vendor/tom-select/SOURCE.md), less their
    trailing source-map comments: inlined in a page, those would make a browser's developer
    tools ask the page's server for .map files it does not have.
    """
    folder = resources.files("bitstat.compat.bitmapist").joinpath(*_VENDOR)
    css = folder.joinpath("tom-select.min.css").read_text(encoding="utf-8")
    js = folder.joinpath("tom-select.complete.min.js").read_text(encoding="utf-8")
    return _SOURCE_MAP.sub("", css), _SOURCE_MAP.sub("", js)


_FORM_STYLE = """<style>
.cohort_form dd { display: inline-block; margin-right: 5px; }
.cohort_form select { max-width: 150px; }
.cohort_form .ts-wrapper { display: inline-block; min-width: 200px; vertical-align: middle; }
</style>"""

# Runs after each form; a select enhanced by an earlier form's run is left alone. Without the
# library (include_assets=False and a page that loads none) the selects stay native ones.
_ENHANCE = """<script>
(function () {
  function enhance() {
    if (typeof TomSelect === "undefined") {
      return false;
    }
    document.querySelectorAll(".cohort_form select.EVENT_SELECT_CLASS").forEach(function (select) {
      if (!select.tomselect) {
        new TomSelect(select, {
          maxOptions: null,
          allowEmptyOption: true,
          searchField: ["text", "value"]
        });
      }
    });
    return true;
  }
  function enhanceOrWarn() {
    if (!enhance()) {
      console.warn("cohort form: Tom Select is not loaded, the event selects stay plain");
    }
  }
  if (!enhance()) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", enhanceOrWarn);
    } else {
      enhanceOrWarn();
    }
  }
})();
</script>""".replace("EVENT_SELECT_CLASS", EVENT_SELECT_CLASS)


def render_html_form(
    action_url: str,
    selections1: Sequence[Any],
    selections1b: Sequence[Any] | None = None,
    selections2: Sequence[Any] | None = None,
    selections2b: Sequence[Any] | None = None,
    time_group: TimeGroup = "days",
    select1: str | None = None,
    select1b: str | None = None,
    select2: str | None = None,
    select2b: str | None = None,
    as_percent: bool = True,
    num_results: int = 31,
    num_of_rows: int = 12,
    start_date: str | None = None,
    include_assets: bool = True,
) -> str:
    """An HTML form (GET to `action_url`) choosing the arguments of `get_dates_data`.

    `selections*` are `(label, event name)` pairs, or "---" for a separator; the optional
    second selections (`*b`) default to the first ones, with an empty choice on top. The four
    event selects (class `cohort-event-select`) become searchable with Tom Select, whose CSS
    and JavaScript are inlined (no CDN: the form works offline) unless `include_assets` is
    false, for a page that shows several forms or loads Tom Select itself; the small script
    that enhances the selects is always there.
    """
    selections2 = list(selections2 or selections1)
    none = [("------", "")]
    extra1 = none + list(selections1b or selections1)
    extra2 = none + list(selections2b or selections2)
    groups = [("days", "Days"), ("weeks", "Weeks"), ("months", "Months"), ("years", "Years")]
    results = [(str(n), str(n)) for n in (7, 28, 31, 12, 24, 4, 52, 104)]
    rows = [(str(n), str(n)) for n in (3, 6, 12, 24, 48)]
    percent = [("1", "Yes"), ("0", "No")]
    cls = EVENT_SELECT_CLASS
    css, js = tom_select_assets() if include_assets else ("", "")
    return "\n".join(
        ([f"<style>{css}</style>"] if include_assets else [])
        + [
            _FORM_STYLE,
            '<form action="' + html.escape(action_url) + '" method="GET" class="cohort_form">',
            "<dl><dd>Show me people who "
            + _options("select1", selections1, select1, cls)
            + " AND "
            + _options("select1b", extra1, select1b, cls)
            + " and then came back to "
            + _options("select2", selections2, select2, cls)
            + " AND "
            + _options("select2b", extra2, select2b, cls)
            + "</dd></dl>",
            "<dl>",
            "<dd>Group By: " + _choice("time_group", groups, time_group) + "</dd>",
            "<dd>As percent: " + _choice("as_percent", percent, "1" if as_percent else "0"),
            "</dd>",
            "<dd>Number of results: "
            + _choice("num_results", results, str(int(num_results)))
            + "</dd>",
            "<dd>Number of rows: " + _choice("num_of_rows", rows, str(int(num_of_rows))) + "</dd>",
            '<dd>Start date: <input name="start_date" type="date" value="'
            + html.escape(start_date or "")
            + '" /></dd>',
            "</dl>",
            '<dl><dd><input type="submit" value="Show me results" /></dd></dl>',
            "</form>",
        ]
        # after the form, so that a browser shows the form before it runs ~50 KB of script
        + ([f"<script>{js}</script>"] if include_assets else [])
        + [_ENHANCE]
    )
