"""CLI commands of the web face: `bitstat serve` (HTTP API + dashboard) and `bitstat report`."""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import re
import socket
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .files import Output, read_text
from .ingest_workers import workers_option
from .query import PERIOD

if TYPE_CHECKING:
    from ..web import ServerConfig
    from .main import Settings

MAX_EVENTS = 100_000  # web.config.DEFAULT_MAX_EVENTS, not imported: the web extra may be missing
_SIZE = re.compile(r"\s*([0-9]+)\s*([kmg]?)b?\s*", re.IGNORECASE)


def _size(text: str) -> int:
    m = _SIZE.fullmatch(text)
    if m is None:
        raise click.BadParameter(f"expected a size like 10MB, 512k or 1000000, got {text!r}")
    power = " kmg".index(m.group(2).lower() or " ")
    return int(m.group(1)) << (10 * power)


@click.command(short_help="Run the HTTP API and the dashboard.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8600, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--read-token",
    envvar="BITSTAT_READ_TOKEN",
    metavar="TOKEN",
    help="Bearer token the read endpoints require. Env: BITSTAT_READ_TOKEN (prefer it: options"
    " show in the process list).",
)
@click.option(
    "--write-token",
    envvar="BITSTAT_WRITE_TOKEN",
    metavar="TOKEN",
    help="Bearer token the writes (POST /v1/track, DELETE /v1/actors) require. Env:"
    " BITSTAT_WRITE_TOKEN.",
)
@click.option(
    "--write-keys-file",
    envvar="BITSTAT_WRITE_KEYS_FILE",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SDKs' write keys (Segment, RudderStack, PostHog), a line 'KEY NAMESPACE' each: a"
    " key writes to its namespace. Env: BITSTAT_WRITE_KEYS_FILE; BITSTAT_WRITE_KEYS"
    " ('KEY=NAMESPACE,...') adds keys. The write token writes to --namespace.",
)
@click.option(
    "--max-body", default="10MB", show_default=True, help="Largest request body accepted (413)."
)
@click.option(
    "--max-events",
    default=MAX_EVENTS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most events (or SDK messages) in one request (413).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    envvar="BITSTAT_CORS_ORIGINS",
    help="A browser origin whose pages may call the API, such as https://shop.example.com"
    " (repeat it; * for any). Pages of other origins cannot write. Env: BITSTAT_CORS_ORIGINS"
    " (separated by spaces). Default: none.",
)
@click.option(
    "--refresh",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seconds between dashboard refreshes (0: never).",
)
@workers_option(
    "Server processes sharing the port, or `auto` (one a core): POST /v1/track parses and"
    " plans in Python, one core a process."
)
@click.option(
    "--log-level",
    type=click.Choice(("critical", "error", "warning", "info", "debug")),
    default="warning",
    show_default=True,
    help="uvicorn's log level; `info` logs every request.",
)
@click.pass_obj
def serve(
    settings: Settings,
    host: str,
    port: int,
    read_token: str | None,
    write_token: str | None,
    write_keys_file: Path | None,
    max_body: str,
    max_events: int,
    cors_origins: tuple[str, ...],
    refresh: int,
    workers: int,
    log_level: str,
) -> None:
    """Serve the HTTP API (/v1/...) and the live dashboard (/) with uvicorn.

    Without tokens the server listens on loopback only, and refuses any other --host. The
    OpenAPI document is at /openapi.json.

    The Segment, RudderStack and PostHog SDKs send to the server's root URL unchanged
    (/v1/batch, /batch/, /i/v1/analytics/events, ...; docs/ingest.md). Their write key is the
    write token (for --namespace) or a key of BITSTAT_WRITE_KEYS / --write-keys-file, each
    naming the namespace it writes to.

    With --workers N, N processes accept connections on the same socket, each with its own
    connection to Redis; one that dies is replaced. They share nothing but Redis: a batch
    id (Idempotency-Key) is recorded once whichever process gets its retry.

    \b
    Example:
        bitstat serve                                   # http://127.0.0.1:8600/
        bitstat serve --workers auto                    # one process a core
        BITSTAT_READ_TOKEN=r BITSTAT_WRITE_TOKEN=w bitstat serve --host 0.0.0.0
        BITSTAT_WRITE_KEYS=wk_shop=shop,wk_blog=blog bitstat serve
        bitstat serve --write-keys-file /etc/bitstat/write-keys
    """
    import uvicorn

    from ..store import resolve_url
    from ..web import ServerConfig, check_bind, create_app
    from ..web.app import check_server
    from ..web.config import WRITE_KEYS_FILE_ENV, write_keys_from_env

    env = dict(os.environ)
    if write_keys_file is not None:
        read_text(str(write_keys_file))  # a file that cannot be read is told as other files are
        env[WRITE_KEYS_FILE_ENV] = str(write_keys_file)
    write_keys = write_keys_from_env(env)  # a bad key or file is told before the banner
    config = ServerConfig(
        url=settings.url,
        namespace=settings.namespace,
        data_dir=settings.data_dir,
        read_token=read_token or None,
        write_token=write_token or None,
        max_body=_size(max_body),
        max_events=max_events,
        cors_origins=cors_origins,
        refresh_seconds=refresh,
        write_keys=write_keys,
    )
    check_bind(host, config)
    # What can fail at start is tried before the banner, each failure told in one line: the
    # server (a bitstat error, through BitstatGroup), then the address.
    url = resolve_url(settings.url, settings.data_dir, "everysec")
    asyncio.run(check_server(url))
    sock = _listen(host, port)
    port = sock.getsockname()[1]  # the port bound, also with --port 0
    shown = _shown(host)
    click.echo(f"bitstat serve: dashboard http://{shown}:{port}/  API http://{shown}:{port}/v1/")
    click.echo(f"  data: {settings.server()}, namespace {settings.namespace!r}")
    if not config.read_token or not config.write_token:
        open_sides = [s for s, t in (("reads", read_token), ("writes", write_token)) if not t]
        click.echo(
            f"  no token for {' and '.join(open_sides)}: listening on loopback only"
            " (set BITSTAT_READ_TOKEN and BITSTAT_WRITE_TOKEN to listen elsewhere)"
        )
    if write_keys:
        names = ", ".join(repr(n) for n in sorted(set(write_keys.values())))
        click.echo(f"  {len(write_keys)} SDK write key(s), writing to {names}")
    if config.cors_origins:
        click.echo(f"  pages of {', '.join(config.cors_origins)} may call the API (CORS)")
    if workers > 1:
        click.echo(f"  {workers} server processes")
        _serve_in_processes(replace(config, url=url), sock, workers, log_level)
        return
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(replace(config, url=url)),
            log_level=log_level,
            access_log=log_level in ("info", "debug"),
            server_header=False,
        )
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn has shut down and raises the Ctrl-C again: the way to stop a server run by
        # hand, not a failure (several processes exit 0 alike)
        return
    if not server.started:
        raise click.ClickException("the server did not start (see the message above)")


def _serve_in_processes(
    config: ServerConfig, sock: socket.socket, workers: int, level: str
) -> None:
    """uvicorn's supervisor: `workers` processes (spawned: each builds the app itself, from a
    picklable factory) serve the listening socket; it restarts one that dies and stops them
    all on Ctrl-C or SIGTERM. They publish their metrics to a directory of their own, so a
    scrape, which reaches any one, answers for all."""
    with tempfile.TemporaryDirectory(prefix="bitstat-metrics-") as shared:
        _supervise(replace(config, metrics_dir=Path(shared)), sock, workers, level)


def _supervise(config: ServerConfig, sock: socket.socket, workers: int, level: str) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from ..web import create_app

    settings = uvicorn.Config(
        partial(create_app, config),
        factory=True,
        workers=workers,
        log_level=level,
        access_log=level in ("info", "debug"),
        server_header=False,
    )
    # older uvicorn releases take the function each process runs; newer ones make it themselves
    extra: dict[str, Any] = {}
    if "target" in inspect.signature(Multiprocess).parameters:
        extra["target"] = uvicorn.Server(settings).run
    supervisor = Multiprocess(settings, sockets=[sock], **extra)
    supervisor.run()
    failed = getattr(uvicorn.config, "STARTUP_FAILURE", 3)  # the exit status it gives then
    if any(p.exitcode == failed for p in supervisor.processes):
        raise click.ClickException("the server did not start (see the message above)")


def _shown(host: str) -> str:
    """`host` as it goes before `:port` in a URL."""
    return f"[{host.strip('[]')}]" if ":" in host else host


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening: a client that connects as soon as the banner
    shows waits until the server accepts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = "the address is already in use (another server? choose another --port)"
        else:
            why = exc.strerror or str(exc)
        raise click.ClickException(f"cannot listen on {_shown(host)}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


@click.command(short_help="Write the dashboard as one self-contained HTML file.")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML file to write.",
)
@click.option("--event", help="Event to show (default: the most frequent of the range).")
@click.option("--start", help="Range start: a date or period label (default: 30 days before end).")
@click.option("--end", help="Range end (default: the last day with data, of --event when given).")
@click.option("--period", type=PERIOD, help="Bucket size (default: from the range's length).")
@click.option("--count", "count_prop", metavar="PROPERTY", help="`count` property to chart.")
@click.option("--top", "top_prop", metavar="PROPERTY", help="`top` property to chart.")
@click.option("--sum", "sum_rule", metavar="RULE", help="`sum` rule: amount, 'amount by country'.")
@click.option("--step", "steps", multiple=True, metavar="EVENT", help="Funnel step (repeat).")
@click.option("--within", default="7d", show_default=True, help="Funnel window.")
@click.pass_obj
def report(
    settings: Settings,
    out: Path,
    event: str | None,
    start: str | None,
    end: str | None,
    period: str | None,
    count_prop: str | None,
    top_prop: str | None,
    sum_rule: str | None,
    steps: tuple[str, ...],
    within: str,
) -> None:
    """Write a static HTML report with the dashboard's charts, data and chart library inlined.

    The file opens offline in any browser: series, counts, top values, sums, funnel,
    retention heat map and lifecycle of one event over one range.

    \b
    Example:
        bitstat --namespace demo report --out demo.html
        bitstat report --out nov.html --event purchase --start 2026-11-01 --end 2026-11-30
    """
    from .. import aio
    from ..web import report as web_report

    given: dict[str, Any] = {
        "event": event,
        "start": start,
        "end": end,
        "period": period,
        "count": count_prop,
        "top": top_prop,
        "sum": sum_rule,
        "within": within,
    }
    query = [(k, v) for k, v in given.items() if v is not None]
    query += [("step", s) for s in steps]

    async def build() -> str:
        async with await aio.connect(
            settings.url, namespace=settings.namespace, data_dir=settings.data_dir
        ) as stats:
            return await web_report.build(stats, query)

    with Output(out) as target:  # opened before the queries: a bad --out fails at once
        page = asyncio.run(build())
        target.begin().write(page)
    click.echo(f"wrote {out} ({len(page.encode()) // 1024} KiB)")


COMMANDS: list[click.Command] = [serve, report]
