"""The `bitstat` command line: the group and its global options in `main`, then one module per
group of commands (`query`, `analysis`, `ingest`, `admin`: schema and server, `web`: serve and
report), each listing its commands in `COMMANDS`; `output` and `read` are what they share.

A new command takes `Settings` with `@click.pass_obj`, calls the library, prints; bitstat
errors become one-line messages through `BitstatGroup`.
"""

from . import admin, analysis, consume, identity, ingest, query, web
from .main import Settings, main

for _module in (query, analysis, ingest, consume, admin, identity, web):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["Settings", "main"]
