"""CLI housekeeping: `bitstat schema show|set` and `bitstat server start|stop|status`."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import embedded
from ..errors import SchemaError
from ..schema import Schema
from ..transport import Transport
from .files import read_bytes
from .output import duration, format_option, formats_option, to_csv, to_json

if TYPE_CHECKING:
    from ..stats import Stats
    from .main import Settings

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
DURATIONS = ("horizon",)  # keys stored in seconds, shown as "1d"


@click.group(short_help="Show or set the namespace's schema.")
def schema() -> None:
    """The schema says what the namespace records for each event. It is stored in Redis, so
    every reader of the namespace uses the same one.

    \b
    Example:
        bitstat schema show
        bitstat schema set shop.toml
    """


@schema.command("show", short_help="Print the schema (TOML or JSON).")
@formats_option(("toml", "json"), "TOML reads best and is what `schema set` takes back.")
@click.pass_obj
def schema_show(settings: Settings, fmt: str) -> None:
    """Print the namespace's schema. Exit 1 if none is stored and nothing is recorded there
    (a namespace nobody has used, or a mistyped name); a namespace with events but no stored
    schema records with the default one, which is printed.

    \b
    Example:
        bitstat schema show
        bitstat --namespace shop schema show --format json > shop.json
    """
    with settings.connect() as st:
        stored = schema_is_stored(st)
        if not stored and not st.events():
            raise click.ClickException(
                f"no schema is stored for namespace {settings.namespace!r}, and nothing is"
                " recorded there (store one with `bitstat schema set FILE`)"
            )
        data = st.schema.to_dict()
    if not stored:
        click.echo(
            f"note: no schema is stored for namespace {settings.namespace!r}; its events are"
            " recorded with the default schema, shown here",
            err=True,
        )
    click.echo(to_json(data) if fmt == "json" else to_toml(data))


def schema_is_stored(st: Stats) -> bool:
    """Whether the namespace has a schema of its own, not just the default in effect."""
    # Stats has no public way to ask this yet: read the key its schema is stored under
    return st._store.call(Transport.get, st._ns.keys.schema) is not None


@schema.command("set", short_help="Store a schema from a TOML or JSON file.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.pass_obj
def schema_set(settings: Settings, file: str) -> None:
    """Store the schema in FILE (TOML, or JSON; `-` reads stdin) as the namespace's schema.

    \b
    Keys (each optional):
      actor             the property holding the actor id (default "user")
      ids               what actor ids are, fixed once the namespace holds data:
                        "int" (default): integers 0..max_id, used as bit offsets (fastest);
                        "map": any text or integer (UUIDs, emails, 64-bit ids), mapped to
                        dense offsets
      timezone          the IANA zone days, weeks, months and years are counted in ("UTC")
      periods           which of hour, day, week, month, year are recorded (all but hour)
      count             properties whose values are counted; "a~b" counts pairs of values
      sum               numeric properties summed: "amount", or "amount by country"
      top               properties whose most frequent values are ranked
      unique            properties whose distinct values are counted exactly
      approx            the same, estimated (HyperLogLog, at most 12 KB a bucket)
      segment           properties that split actor sets, for --where PROP=VALUE
      expire            per period, how long its keys are kept after it ends: hour = "14d"
      max_id            the largest id with ids = "int" (default 4294967295)
      anonymous         true: record events without an actor (not in unique actors);
                        false (default): reject them
      max_value_length  the longest value or text id recorded, in characters (1024)
      horizon           how far ahead of the clock an event may be ("1d")
      hourly            with hour in periods: the families above also kept per hour
                        (default none: only unique actors and totals; "all" for every one)
      [events.NAME]     count, sum, top, unique, approx or segment for one event instead

    Events recorded from now on follow the new rules; what is already recorded stays as it was.

    \b
    Example (shop.toml, for UUID or other text user ids):
        actor = "user"
        ids = "map"
        timezone = "Europe/Amsterdam"
        count = ["country", "country~platform"]
        sum = ["amount", "amount by country"]
        top = ["item"]
        segment = ["country"]

    \b
    Example:
        bitstat schema set shop.toml
        bitstat --namespace shop schema show --format json | bitstat --namespace copy schema set -
    """
    data = read_schema_file(file)
    new = Schema.from_dict(data)
    with settings.connect() as st:
        st.configure(new)
    click.echo(f"Stored the schema of namespace {settings.namespace!r}:")
    click.echo(to_toml(new.to_dict()))


def read_schema_file(file: str) -> dict[str, Any]:
    """A schema mapping from TOML or JSON: by extension, else JSON when it parses, else TOML."""
    raw = sys.stdin.buffer.read() if file == "-" else read_bytes(file)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text") from exc
    suffix = Path(file).suffix.lower()
    if suffix == ".json" or (suffix != ".toml" and text.lstrip().startswith("{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{file}: not valid JSON: {exc}") from exc
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise click.ClickException(f"{file}: not valid TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"{file}: a schema is a table (object) of keys")
    return data


def to_toml(data: dict[str, Any]) -> str:
    """A schema dict as TOML (plain values first, then the [expire] and [events.*] tables)."""
    lines = [
        f"{_key(k)} = {_value(duration(v) if k in DURATIONS else v)}"
        for k, v in data.items()
        if not isinstance(v, dict)
    ]
    if data.get("expire"):
        lines += ["", "[expire]"]
        lines += [f"{_key(p)} = {_value(duration(s))}" for p, s in data["expire"].items()]
    for name, rules in data.get("events", {}).items():
        lines += ["", f"[events.{_key(name)}]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in rules.items()]
    return "\n".join(lines)


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _value(value: Any) -> str:
    # JSON strings, numbers and arrays of them are valid TOML
    return json.dumps(value, ensure_ascii=False)


@click.group(short_help="Start, stop or check the embedded server.")
def server() -> None:
    """The embedded server: a private valkey-server keeping its data in the data dir
    (--data-dir, $BITSTAT_DATA, or ~/.local/share/bitstat). Commands start it when they need
    it and leave it running; these commands manage it by hand.

    \b
    Example:
        bitstat server status
        bitstat --data-dir /tmp/bitstat-data server start
    """


def _data_dir(settings: Settings) -> Path:
    if settings.url:
        click.echo(
            "note: a URL is set (--url or BITSTAT_URL); this manages the embedded server,"
            " which that URL does not use",
            err=True,
        )
    return settings.data_dir or embedded.default_data_dir()


def _status(status: embedded.ServerStatus) -> dict[str, Any]:
    return {
        "url": status.url,
        "pid": status.pid,
        "data_dir": str(status.data_dir),
        "version": status.version,
        "used_memory": status.used_memory,
    }


@server.command("start", short_help="Start the embedded server (or find it running).")
@click.pass_obj
def server_start(settings: Settings) -> None:
    """Start the embedded server of the data dir, or find the one already running there.

    \b
    Example:
        bitstat server start
        BITSTAT_DATA=/srv/bitstat bitstat server start
    """
    data_dir = _data_dir(settings)
    url = embedded.ensure_server(data_dir)
    status = embedded.status(data_dir)
    click.echo(f"Embedded server running at {url}")
    click.echo(f"pid {status.pid if status else '?'}, data in {data_dir}")


@server.command("stop", short_help="Stop the embedded server (its data stays).")
@click.pass_obj
def server_stop(settings: Settings) -> None:
    """Shut the embedded server down cleanly; its data stays in the data dir.

    \b
    Example:
        bitstat server stop
    """
    data_dir = _data_dir(settings)
    if embedded.stop(data_dir):
        click.echo(f"Stopped the embedded server of {data_dir}.")
    else:
        click.echo(f"No embedded server was running for {data_dir}.")


@server.command("status", short_help="Is the embedded server running? Exit 1 if not.")
@format_option
@click.pass_obj
def server_status(settings: Settings, fmt: str) -> None:
    """Say whether the embedded server runs, with its URL, pid, version and memory.

    Exit status 0 when it runs, 1 when it does not.

    \b
    Example:
        bitstat server status
        bitstat server status --format json
    """
    data_dir = _data_dir(settings)
    status = embedded.status(data_dir)
    if status is None:
        if fmt == "json":
            click.echo(to_json({"running": False, "data_dir": str(data_dir)}))
        else:
            click.echo(f"No embedded server is running for {data_dir}.")
        raise SystemExit(1)
    found = _status(status)
    if fmt == "json":
        click.echo(to_json({"running": True, **found}))
    elif fmt == "csv":
        click.echo(to_csv(list(found), [list(found.values())]), nl=False)
    else:
        click.echo(f"Embedded server running at {status.url}")
        click.echo(
            f"pid {status.pid}, version {status.version}, {status.used_memory / 2**20:.1f} MiB"
            f" used, data in {status.data_dir}"
        )


COMMANDS: list[click.Command] = [schema, server]
