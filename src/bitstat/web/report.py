"""`bitstat report`: the dashboard as one self-contained HTML file, for sharing.

The page is the dashboard's own (index.html, its CSS and script, the chart library), with every
file inlined and the `GET /v1/dashboard` answer embedded, so it opens offline, anywhere.
"""

from __future__ import annotations

import json
from typing import Any

from ..aio import AsyncStats
from . import dashboard
from .app import STATIC
from .params import read


def _script(text: str) -> str:
    # "</" would end the script element early; "<\/" means the same inside JS strings
    return "<script>" + text.replace("</", "<\\/") + "</script>"


def _json_in_script(value: Any) -> str:
    """JSON to inline in a script element. The data holds names anyone with a write key chose:
    every `<` is escaped (JSON has it only inside strings), so no `</script>` or `<!--` in an
    event name can end the element early or hide its end from the HTML parser."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def render(data: dict[str, Any]) -> str:
    """The dashboard page with `data` (a /v1/dashboard answer) and every file inlined."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "dashboard.css").read_text(encoding="utf-8")
    inlined = {
        '<link rel="stylesheet" href="static/dashboard.css">': f"<style>\n{css}</style>",
        '<script src="static/chart.umd.min.js"></script>': _script(
            (STATIC / "chart.umd.min.js").read_text(encoding="utf-8")
        ),
        '<script src="static/dashboard.js"></script>': _script(
            "window.BITSTAT_REPORT = " + _json_in_script({"data": data}) + ";"
        )
        + "\n"
        + _script((STATIC / "dashboard.js").read_text(encoding="utf-8")),
        '<a href="openapi.json">API</a>': "static report",
    }
    for tag, replacement in inlined.items():
        if tag not in page:
            raise RuntimeError(f"index.html lost {tag!r}; the report cannot inline it")
        page = page.replace(tag, replacement)
    return page


async def build(stats: AsyncStats, query: list[tuple[str, str]]) -> str:
    """The report of one dashboard view; `query` holds /v1/dashboard parameters as pairs."""
    args = read(dashboard.PARAMS, [("namespace", stats.namespace), *query])
    return render(await dashboard.view(stats, args))
