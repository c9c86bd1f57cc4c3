"""What a new user reads: every option of every command says what it does."""

from __future__ import annotations

import click

from bitstat.cli import main
from test_cli import command_paths


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
