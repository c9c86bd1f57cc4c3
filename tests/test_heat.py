"""One heat-map ramp for retention: the HTML table's, the terminal's and the dashboard's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bitstat import analysis
from bitstat.cli import output

DASHBOARD_JS = Path(analysis.__file__).parent / "web" / "static" / "dashboard.js"


@pytest.mark.parametrize("rate", [-1.0, 0.0, 0.25, 0.5, 0.51, 1.0, 1.5])
def test_the_html_and_the_terminal_draw_the_ramp_of_analysis(rate: float) -> None:
    (red, green, blue), light = analysis.heat(rate)
    assert output.heat(rate) == f"{'white' if light else 'black'} on rgb({red},{green},{blue})"
    assert analysis._heat(rate).startswith(f"background:rgb({red},{green},{blue});")


def test_the_ramp_runs_from_white_to_blue() -> None:
    assert analysis.heat(0.0) == ((255, 255, 255), False)
    assert analysis.heat(1.0) == (analysis.HEAT_RGB, True)


def test_the_dashboard_draws_the_same_ramp() -> None:
    found = re.search(r"function heat\(rate\) \{(.*?)\n  \}", DASHBOARD_JS.read_text(), re.S)
    assert found, "dashboard.js has no heat(rate)"
    body = found.group(1)
    assert f"[{', '.join(map(str, analysis.HEAT_RGB))}].map(" in body
    assert f"r > {analysis.HEAT_LIGHT_TEXT}" in body
