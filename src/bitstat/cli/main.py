"""The `bitstat` group: its global options, `Settings`, error reporting and the `demo` command.

Global options say where the data is (`--url`, `--namespace`, `--data-dir`, each also read from
an environment variable); `Settings.connect` turns them into a `Stats`. A new command takes
`Settings` with `@click.pass_obj`, calls the library, prints; bitstat errors become clean
one-line messages through `BitstatGroup`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from .. import __version__, connect, demo, embedded
from ..errors import BitstatError, SchemaError, UnknownEvent
from ..loads import LOAD_BATCH_TTL
from ..schema import Schema
from ..stats import Stats
from ..store import shown_url

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass(frozen=True)
class Settings:
    """Where the data is, from the global options; every command connects through it."""

    url: str | None
    namespace: str
    data_dir: Path | None

    def connect(
        self, namespace: str | None = None, schema: Schema | None = None, **options: Any
    ) -> Stats:
        return connect(
            self.url,
            namespace=namespace or self.namespace,
            schema=schema,
            data_dir=self.data_dir,
            **options,
        )

    def server(self) -> str:
        """Which server the commands use, in words (never its password)."""
        if self.url:
            return shown_url(self.url)
        return f"embedded server, data in {self.data_dir or embedded.default_data_dir()}"


class BitstatGroup(click.Group):
    """A click group that reports bitstat errors as messages, not tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UnknownEvent as exc:
            raise click.ClickException(unknown_event(exc, ctx.obj)) from exc
        except BitstatError as exc:
            raise click.ClickException(str(exc)) from exc


SHOWN_EVENTS = 8


def unknown_event(exc: UnknownEvent, settings: Settings) -> str:
    """The library's words, with the namespace named and, when no name is close, the names it
    does hold: a mistyped --namespace looks like a mistyped event otherwise."""
    said = f"no event {exc.event!r} is recorded in namespace {settings.namespace!r}"
    if exc.suggestions:
        return f"{said}; did you mean {' or '.join(map(repr, exc.suggestions))}?"
    try:
        with settings.connect() as st:
            names = st.events()
    except BitstatError:
        return str(exc)
    if not names:
        return f"{said}, nor any other event: is the namespace right (--namespace)?"
    shown = ", ".join(names[:SHOWN_EVENTS])
    more = (
        f" and {len(names) - SHOWN_EVENTS:,} more (bitstat events)"
        if len(names) > SHOWN_EVENTS
        else ""
    )
    return f"{said}; it records {shown}{more}"


@click.group(cls=BitstatGroup, context_settings=CONTEXT)
@click.option(
    "--url",
    envvar="BITSTAT_URL",
    metavar="URL",
    help="Redis URL: redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://."
    " Env: BITSTAT_URL. Default: the embedded server.",
)
@click.option(
    "--namespace",
    envvar="BITSTAT_NAMESPACE",
    default="bitstat",
    show_default=True,
    help="Dataset (key prefix) to use. Env: BITSTAT_NAMESPACE.",
)
@click.option(
    "--data-dir",
    envvar="BITSTAT_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data dir of the embedded server. Env: BITSTAT_DATA. Default: ~/.local/share/bitstat.",
)
@click.version_option(__version__, prog_name="bitstat")
@click.pass_context
def main(ctx: click.Context, url: str | None, namespace: str, data_dir: Path | None) -> None:
    """Real-time event analytics on Redis bitmaps and counters.

    With no URL configured, bitstat starts its own embedded server, which keeps its data in the
    data dir and keeps running for the next command.

    \b
    Example:
        bitstat demo                                  # load a sample, show a summary
        BITSTAT_URL=redis://localhost:6379/0 bitstat demo
    """
    ctx.obj = Settings(url or None, namespace, data_dir)


@main.command("demo", short_help="Load a sample shop's events and show what bitstat answers.")
@click.option(
    "--namespace",
    default="demo",
    show_default=True,
    help="Namespace to load the sample into (the global --namespace is not used here).",
)
@click.pass_obj
def demo_command(settings: Settings, namespace: str) -> None:
    """Load the Online Retail sample and print what bitstat answers about it.

    Records 47,492 invoice lines of a UK online shop (2010-12 to 2011-12, one customer in ten)
    in batches with fixed ids, so running it again records nothing twice; then prints customers
    per month, totals, top items, revenue per country and a retention table.

    \b
    Example:
        bitstat demo
        bitstat demo --namespace demo2
    """
    started = time.perf_counter()
    console = Console(highlight=False)
    try:
        stats = settings.connect(namespace, schema=demo.SCHEMA, batch_ttl=LOAD_BATCH_TTL)
    except SchemaError as exc:
        raise click.ClickException(
            f"namespace {namespace!r} already holds data with another schema;"
            " pick another namespace with --namespace"
        ) from exc
    with stats:
        demo.run(stats, console, server=settings.server(), started=started)
