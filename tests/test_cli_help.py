"""What a new user reads: every option of every command says what it does."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bitstat.cli import main
from test_cli import Cli, command_paths
from test_cli_ingest_report import shop

__all__ = ["shop"]  # the fixture (a namespace with the default schema), by name


def test_every_option_has_help() -> None:
    missing = []
    for path in command_paths(main):
        command: click.Command = main
        for name in path:
            assert isinstance(command, click.Group)
            found = command.get_command(click.Context(command), name)
            assert found is not None
            command = found
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"bitstat {' '.join(path)} {param.opts[-1]}")
    assert missing == []


def test_report_shows_the_event_its_help_says_it_defaults_to(shop: Cli, tmp_path: Path) -> None:
    """`report` without --event shows the range's most frequent event (the dashboard's choice),
    not the first recorded one its help named: here 'arrive', first in time and by name."""
    with shop.stats() as st:
        st.track_many(
            [{"event": "arrive", "user": 1, "time": "2026-11-02T09:00:00"}]
            + [{"event": "visit", "user": u, "time": "2026-11-03T10:00:00"} for u in range(3)]
        )
    out = tmp_path / "report.html"
    assert shop("report", "--out", str(out)).exit_code == 0
    inlined = out.read_text().split("window.BITSTAT_REPORT = ", 1)[1].split(";</script>", 1)[0]
    assert json.loads(inlined)["data"]["event"] == "visit"
    help_text = " ".join(shop("report", "--help").output.split())
    assert "--event TEXT Event to show (default: the most frequent of the range)." in help_text
