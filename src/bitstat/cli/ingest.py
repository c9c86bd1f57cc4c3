"""`bitstat ingest`: record events from files in batches whose ids make a second run a no-op."""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import Progress, TaskID

from .. import record
from ..errors import ConnectionError, ServerError
from ..events import parse_batch
from ..loads import LOAD_BATCH_TTL, progress_bar
from ..periods import PERIODS
from ..record import TrackResult
from ..schema import Schema
from ..store import resolve_url
from . import output as cli_output
from .files import Output
from .ingest_batches import Batch, batches
from .ingest_rejects import NONE, Rejections, Stop
from .ingest_workers import RERUN, Recorded, Workers, workers_option
from .output import count, ordinal, were
from .read import (
    EPOCH_FORMATS,
    KINDS,
    Decoder,
    FieldMap,
    Reader,
    Source,
    decoded_lines,
    open_source,
    options_salt,
)

if TYPE_CHECKING:
    from ..stats import Stats
    from .main import Settings

BATCH_SIZE = 10_000
SHOWN_REJECTS = 20  # rejected lines the text report shows (JSON: ingest_rejects.SAMPLE)
EXIT_REJECTED = 2
EXIT_STOPPED = 3  # --max-rejects: more lines were rejected than it allows
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as a shell reports a Ctrl-C


class StrictStop(click.ClickException):
    """--strict met a bad line: nothing was recorded."""


class ReadAhead(Iterator[Batch]):
    """The batches of a source, the next one read early by `read()` (while the server writes
    the current one). The lines it refuses meanwhile are told to `refused` when that batch is
    due, as is what reading it raised: --max-rejects then stops where it would have stopped
    reading in turn (the current batch's rejected events counted first). A batch read early
    and never due (the run stopped: `drop`) leaves the decoder's counts as they were before it
    (its text ids made the report's hint about ids: found by review, 2026-12-08)."""

    def __init__(self, refused: Callable[[int, str, int], None], decode: Decoder) -> None:
        self.refused, self.decode = refused, decode
        self.batches: Iterator[Batch] = iter(())
        self._next: list[Batch | Exception] = []  # the next batch, or what reading it raised
        self._early: list[tuple[int, str, int]] | None = None  # its refused lines, held back
        self._told: list[tuple[int, str, int]] = []
        self._counts: tuple[int, int, str | None] | None = None  # the decoder's before it

    def refuse(self, line: int, why: str, held: int) -> None:
        """The reader's callback for a line it refuses."""
        if self._early is None:
            self.refused(line, why, held)
        else:
            self._early.append((line, why, held))

    def read(self) -> None:
        """Read the next batch now, its refused lines held back till it is due."""
        if self._next:
            return
        d = self.decode
        self._counts = (d.actors, d.text_ids, d.text_id)
        self._early = []
        try:
            self._next.append(next(self.batches))
        except Exception as exc:  # (StopIteration included: the end)
            self._next.append(exc)
        finally:
            self._told, self._early = self._early, None

    def drop(self) -> None:
        """The batch read early is not recorded (the run stopped): its decoded ids uncounted."""
        if self._next and self._counts is not None:
            d = self.decode
            d.actors, d.text_ids, d.text_id = self._counts
        self._next, self._told, self._counts = [], [], None

    def __next__(self) -> Batch:
        if not self._next:  # (none read early: nothing held back)
            return next(self.batches)
        told, self._told = self._told, []
        try:
            for refused in told:  # (raises at the line past --max-rejects: the batch dropped)
                self.refused(*refused)
        except BaseException:
            self.drop()
            raise
        got = self._next.pop()
        self._counts = None
        if isinstance(got, Exception):
            raise got
        return got


class _TooManyRejects(Exception):
    """--max-rejects was passed while a file was read: stop reading it."""


@dataclass
class Tally:
    """What happened to one input."""

    name: str
    records: int = 0  # lines (rows, array items) read
    events: int = 0  # records read as events and offered to the library
    recorded: int = 0
    refused: int = 0  # offered, and rejected by the library
    rejected: int = 0  # lines rejected, by the reader or the library
    # per period, recorded events older than its retention: that period keeps nothing of them
    expired: Counter[str] = field(default_factory=Counter)

    @property
    def seen_before(self) -> int:
        """Events of batches an earlier run recorded (their batch ids were seen)."""
        return self.events - self.recorded - self.refused

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "records": self.records,
            "recorded": self.recorded,
            "seen_before": self.seen_before,
            "rejected": self.rejected,
            "expired": dict(self.expired),
        }


@dataclass(frozen=True)
class IdCounts:
    """Events with an actor id, and (int ids) those whose id is text, such as `text_id`: the
    first in the files, at (file, line) `at`, whatever order workers finish their batches in."""

    actors: int = 0
    text_ids: int = 0
    text_id: str | None = None
    at: tuple[int, int] = (0, 0)

    def plus(self, other: Recorded, at: tuple[int, int]) -> IdCounts:
        first = self.text_id is None or (other.text_id is not None and at < self.at)
        return IdCounts(
            self.actors + other.actors,
            self.text_ids + other.text_ids,
            other.text_id if first else self.text_id,
            at if first else self.at,
        )


def _label(name: str, width: int = 24) -> str:
    """A file's name for the progress bar: its last part, cut to `width`."""
    short = Path(name).name if name != "<stdin>" else name
    return short if len(short) <= width else "…" + short[-(width - 1) :]


@dataclass
class Ingest:
    """One `bitstat ingest` run over its sources."""

    stats: Stats
    sources: list[Source]
    fields: FieldMap
    batch_size: int
    progress: Progress
    rejects: Rejections
    workers: Workers | None = None  # None: record in this process
    sort_window: int = 0  # events read and put in time order before batches are cut (0: none)
    max_rejects: int | None = None  # stop once more lines than this are rejected
    stop: Stop | None = None  # where max_rejects stopped the run
    tallies: list[Tally] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    ids: IdCounts = field(default_factory=IdCounts)
    _read: dict[TaskID, int] = field(default_factory=dict)  # bytes read, per file's progress

    def check(self) -> None:
        """--strict: read and check every event of every source; stop at the first bad line."""
        for source in self.sources:
            self._check(source)

    def _check(self, source: Source) -> None:
        schema: Schema = self.stats.schema
        reader = Reader(source, self.fields, schema.actor)
        task = self.progress.add_task(f"checking {_label(source.name, 15)}", total=source.size or 1)
        first: list[tuple[int, str]] = []  # the first line the reader refused

        def refused(line: int, why: str, held: int) -> None:
            if held == NONE:  # every event before it is checked, and good
                raise _strict_stop(source.name, line, why)
            first[:] = first or [(line, why)]

        events = 0
        for batch in batches(reader, Decoder(self.fields, schema), self.batch_size, refused):
            rejected = [
                (batch.lines[i], why) for i, why in parse_batch(batch.events, schema).rejected
            ]
            if first or rejected:
                raise _strict_stop(source.name, *min(first + rejected))
            events += len(batch.events)
            self.progress.update(task, completed=reader.tell(), events=events)
        if first:
            raise _strict_stop(source.name, *first[0])
        self.progress.update(task, completed=source.size or 1)

    def record(self) -> None:
        began = time.perf_counter()
        decode = Decoder(self.fields, self.stats.schema)
        try:
            for source in self.sources:
                if self.stop is not None:
                    break
                self._record(source, decode)
        finally:
            self.rejects.close()
        if self.workers is None:
            self.ids = IdCounts(decode.actors, decode.text_ids, decode.text_id)
        if self.ids.text_ids and self.ids.text_ids * 2 >= self.ids.actors:  # not a stray typo
            self.notes.append(
                f"{count(self.ids.text_ids, 'event')} had a text actor id (such as"
                f' {self.ids.text_id!r}), but this namespace takes integer ids (ids = "int");'
                ' text ids need a schema with ids = "map", stored before any event is recorded'
                " (see bitstat schema set --help)"
            )
        self.seconds = time.perf_counter() - began

    def _record(self, source: Source, decode: Decoder) -> None:
        """Record the batches of one source; with a stop, those handed out before it."""
        tally = Tally(source.name)
        self.tallies.append(tally)
        self.rejects.start(source.name)
        task = self.progress.add_task(_label(source.name), total=source.size or 1, events=0)
        reader = Reader(source, self.fields, decode.schema.actor)
        # a window of JSON lines is held as read, each batch decoded once cut: its dicts are
        # then made in time order, not scattered in memory over the window (the parse of a
        # batch took 1.5-2 us an event more), and the window holds a fifth of the memory
        as_read = self.workers is None and bool(self.sort_window) and source.kind == "jsonl"
        ahead = ReadAhead(partial(self._refused, tally), decode)
        ahead.batches = batches(
            reader,
            decode,
            self.batch_size,
            ahead.refuse,
            raw=self.workers is not None or as_read,
            window=self.sort_window,
        )
        again = Decoder(self.fields, decode.schema)  # (its counts are `decode`'s already)
        with contextlib.suppress(_TooManyRejects):
            for number, batch in enumerate(ahead):
                tally.records += len(batch.events)
                batch_id = f"ingest:{source.digest[:32]}:{number}"
                self.rejects.sent(number, batch.lines, batch.held)
                done = partial(self._count, tally, number, batch.lines, task, reader.tell())
                if self.workers is None:
                    events = decoded_lines(again, batch.events) if as_read else batch.events
                    meanwhile = record.MEANWHILE.set(ahead.read)  # (the next batch read while
                    # the server writes this one's last parts)
                    try:
                        done(self.stats.track_many(events, batch_id=batch_id))
                    finally:
                        record.MEANWHILE.reset(meanwhile)
                else:
                    self.workers.submit(done, batch_id, source.kind, reader.header, batch.events)
                if self.stop is not None:
                    break
        ahead.drop()  # (a batch read early, when the run stopped before it)
        if self.workers is not None:
            self.workers.finish()  # a stop too: the batches handed out are recorded whole
        if self.stop is None:
            self.progress.update(task, completed=source.size or 1)
        self.notes += reader.notes

    def _refused(self, tally: Tally, line: int, why: str, held: int) -> None:
        """A line the reader refused; past --max-rejects, reading stops here."""
        tally.records += 1
        tally.rejected += 1
        self.rejects.refused(line, why, held)
        self._limit(tally, [(line, why)])
        if self.stop is not None:
            raise _TooManyRejects

    def _count(
        self,
        tally: Tally,
        number: int,
        lines: list[int],
        task: TaskID,
        read: int,
        done: TrackResult | Recorded,
    ) -> None:
        """Count what became of one batch (recorded here, or by a worker)."""
        tally.events += len(lines)
        tally.recorded += done.recorded
        tally.refused += len(done.rejected)
        rejected = sorted((lines[i], why) for i, why in done.rejected)
        tally.rejected += len(rejected)
        self.rejects.recorded(number, rejected)
        self._limit(tally, rejected)
        if done.recorded:  # a batch recorded before expires nothing now
            tally.expired.update(done.expired)
        if isinstance(done, Recorded):
            self.ids = self.ids.plus(done, (self.tallies.index(tally), min(lines)))
        self._read[task] = read = max(read, self._read.get(task, 0))  # workers finish unordered
        self.progress.update(task, completed=read, events=tally.events)

    def _limit(self, tally: Tally, rejected: list[tuple[int, str]]) -> None:
        """Stop at the line that takes the rejected lines past --max-rejects (`rejected`: the
        (line, reason) just counted, in line order)."""
        limit, total = self.max_rejects, self.rejects.total
        if self.stop is None and limit is not None and total > limit:
            line, why = rejected[limit - (total - len(rejected))]
            self.stop = Stop(limit, tally.name, line, why)

    @property
    def recorded(self) -> int:
        return sum(t.recorded for t in self.tallies)

    @property
    def seen_before(self) -> int:
        return sum(t.seen_before for t in self.tallies)

    @property
    def expired(self) -> dict[str, int]:
        """Per period (in the schema's order), events older than its retention."""
        total: Counter[str] = sum((t.expired for t in self.tallies), Counter())
        return {p: total[p] for p in PERIODS if total[p]}


def _strict_stop(name: str, line: int, why: str) -> StrictStop:
    return StrictStop(
        f"{name}:{line}: {why}\n--strict: stopped at the first bad line; nothing was recorded"
    )


def report(run: Ingest, fmt: str, rejects: Path | None) -> None:
    """Print what was recorded and rejected (the first rejected lines: `rejects` has them all)."""
    first, total = run.rejects.first(), run.rejects.total
    offered = sum(t.events for t in run.tallies)
    if fmt == "json":
        stop = run.stop
        click.echo(
            cli_output.to_json(
                {
                    "recorded": run.recorded,
                    "seen_before": run.seen_before,
                    "expired": run.expired,
                    "rejected": [
                        {"file": name, "line": line, "reason": why} for name, line, why in first
                    ],
                    "rejected_total": total,
                    "rejected_cut": total > len(first),
                    "stopped": None
                    if stop is None
                    else {
                        "max_rejects": stop.limit,
                        "file": stop.file,
                        "line": stop.line,
                        "reason": stop.why,
                    },
                    "files": [t.as_dict() for t in run.tallies],
                    "seconds": round(run.seconds, 3),
                }
            )
        )
        return
    for t in run.tallies:
        parts = [f"{t.recorded:,} recorded"]
        if t.seen_before:
            parts.append(f"{t.seen_before:,} recorded before")
        parts.append(f"{t.rejected:,} rejected")
        click.echo(f"{t.name}: {count(t.records, 'record')}: {', '.join(parts)}")
    rate = ""
    if run.seconds > 0 and run.recorded:  # (of the events read: a re-run reads the recorded too)
        read = f" read, {count(offered, 'event')} in all" if run.seen_before else ""
        rate = f" ({offered / run.seconds:,.0f} events/s{read})"
    if run.recorded == 0 and run.seen_before:
        click.echo(
            f"Nothing new: the {count(run.seen_before, 'event')} {were(run.seen_before)}"
            " recorded by an earlier run"
            " (same data, same options, same batch ids)."
        )
    else:
        click.echo(f"Recorded {count(run.recorded, 'event')} in {run.seconds:.2f} s{rate}.")
    retention = run.stats.schema.expire
    for period, n in run.expired.items():
        kept = cli_output.duration(retention[period]) if period in retention else "?"
        click.echo(
            f"{count(n, 'event')} older than the {period} retention ({kept}):"
            f" no {period} buckets kept for {'it' if n == 1 else 'them'}."
        )
    if not total:
        return
    shown = first[:SHOWN_REJECTS]
    click.echo(
        f"Rejected {count(total, 'line')}"
        + (":" if len(shown) == total else f" (the first {len(shown)}):")
    )
    for name, line, why in shown:
        click.echo(f"  {name}:{line}: {why}")
    if rejects is not None:
        click.echo(f"All rejected lines are in {rejects}.")
    elif total > len(shown):
        click.echo("Write them all to a file with --rejects FILE.")


def stopped(run: Ingest, stop: Stop) -> str:
    """What --max-rejects stopped, and why a re-run is safe."""
    unread = len(run.sources) - len(run.tallies)
    rest = (
        f", and the {count(unread, 'file')} after {stop.file} {were(unread)} not read"
        if unread
        else ""
    )
    return (
        f"Stopped at {stop.file}:{stop.line}: {stop.why}\n"
        f"That is the {ordinal(stop.limit + 1)} rejected line, past --max-rejects {stop.limit}:"
        f" reading stopped there{rest}.\n"
        f"The batches before it are recorded ({count(run.recorded, 'event')} by this run,"
        f" {run.seen_before:,} by an earlier one), the rest not at all"
        + (" but whole batches the workers had taken already" if run.workers else "")
        + ".\n"
        "Run the same command on the same files with a higher --max-rejects, or none, to record"
        " the rest: nothing is recorded twice.\n"
        "(Fixed lines go in a file of their own: an edited file is new data.)"
    )


@contextlib.contextmanager
def terminated_as_interrupted() -> Iterator[None]:
    """SIGTERM (a service manager stopping the run) ends it as Ctrl-C does: the batches
    handed out settle or are left whole for a re-run, the workers stop and the temporary
    files go (the default action killed the process where it stood, leaving them)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (signal handlers belong to the main thread)
        return
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def rerun_when_interrupted(ctx: click.Context) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) ends the run saying what to do next, once everything after this
    has settled: click's bare "Aborted!" left open whether a re-run would count twice."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(
            "Interrupted: the batches recorded so far stay recorded. Run the same command again"
            " to record the rest: nothing is recorded twice.",
            err=True,
        )
        ctx.exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def rerun_when_refused() -> Iterator[None]:
    """A server that failed the run (gone past the deadline, out of memory) ends it saying
    what to do next: the library's words name a batch id and events a user never handled."""
    try:
        yield
    except (ConnectionError, ServerError) as exc:
        raise click.ClickException(f"{exc}\n{RERUN}") from exc


@click.command(short_help="Record events from JSON lines, JSON or CSV files (gzip too).")
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
)
@click.option(
    "--event",
    "event_column",
    default="event",
    show_default=True,
    metavar="COLUMN",
    help="Column holding the event name.",
)
@click.option("--event-name", metavar="NAME", help="Give every line this event name.")
@click.option(
    "--actor",
    "actor_column",
    metavar="COLUMN",
    help="Column holding the actor id (default: the schema's actor property, e.g. user).",
)
@click.option(
    "--time",
    "time_column",
    default="time",
    show_default=True,
    metavar="COLUMN",
    help="Column holding the event time (a line without one happened now).",
)
@click.option(
    "--time-format",
    metavar="FORMAT",
    help="strptime format of the time column (e.g. '%d/%m/%Y %H:%M'), or epoch or epoch-ms."
    " Default: ISO-8601 text or epoch seconds.",
)
@click.option(
    "--input-format",
    "kind",
    type=click.Choice(KINDS),
    help="Default: from the extension (.csv, .tsv) or the first character ([ array, { lines).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=BATCH_SIZE,
    show_default=True,
    help="Events per batch (one exactly-once unit).",
)
@workers_option(
    "Processes recording batches at once, or `auto` (one a core). Batch ids do not depend"
    " on it: a re-run with any number of workers records nothing twice."
)
@click.option(
    "--sort-window",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="EVENTS",
    help="Read this many events at a time and record them in time order (0: in file order)."
    " For files out of time order, such as exports: each batch then spans few hours, and"
    " a backfill records up to 2x faster. Holds that many events in memory; at least"
    " --batch-size.",
)
@click.option("--strict", is_flag=True, help="Check every line first; stop at a bad one.")
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write every rejected line here as it is found, as FILE:LINE: reason, in line order"
    " within each file.",
)
@click.option(
    "--max-rejects",
    type=click.IntRange(min=0),
    metavar="N",
    help="Stop reading once more than N lines are rejected (0: at the first bad line), exit"
    " status 3. Events go in whole batches: those handed out before the stop are recorded,"
    " the rest not at all, so the same files run again with a higher limit (or none) record"
    " the rest and nothing twice. Default: no limit.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@cli_output.formats_option(("table", "json"), "The closing report as text or as JSON.")
@click.pass_context
def ingest(
    ctx: click.Context,
    files: tuple[str, ...],
    event_column: str,
    event_name: str | None,
    actor_column: str | None,
    time_column: str,
    time_format: str | None,
    kind: str | None,
    batch_size: int,
    workers: int,
    sort_window: int,
    strict: bool,
    rejects: Path | None,
    max_rejects: int | None,
    no_progress: bool,
    fmt: str,
) -> None:
    """Record the events in FILES: JSON lines, JSON arrays or CSV/TSV, gzipped or not; `-`
    reads stdin.

    Each JSON object or CSV row is one event: `event` (its name), the schema's actor
    property (default `user`), `time` (ISO-8601 or epoch seconds; a time without a zone is in
    the namespace's zone; no time means now) and any other properties. Other column names
    are mapped with --event, --actor and --time; --event-name names every line's event.

    Events go in batches whose ids come from the file's content, the options and the
    batch's position, and bitstat remembers batch ids for 10 years: running the same file
    again with the same options records nothing twice, and an interrupted run can just be run
    again. (An edited file is new data: put fixed lines in a file of their own.)

    A bad line is rejected alone, with its line number and reason: the first 20 are shown
    (the first 1,000 in -f json, with rejected_total and rejected_cut), --rejects FILE gets
    them all. --max-rejects N stops once more than N are; with --strict every line is checked
    first, and one bad line stops it before anything is recorded.

    \b
    Exit status:
          0  every event was recorded (now or by an earlier run)
          2  some lines were rejected (click's usage errors exit 2 too)
          3  --max-rejects stopped it
          1  an error, or --strict met a bad line
        130  Ctrl-C or SIGTERM stopped it (run it again to record the rest)

    \b
    Example:
        bitstat ingest events.jsonl
        bitstat ingest orders.csv.gz --event-name purchase --actor customer --time ordered_at
        zcat logs/*.jsonl.gz | bitstat ingest - --rejects rejects.txt
    """
    if event_name is not None and event_column != "event":
        raise click.UsageError("give --event COLUMN or --event-name NAME, not both")
    if time_format is not None and "%" not in time_format and time_format not in EPOCH_FORMATS:
        raise click.BadParameter(
            f"{time_format!r}: expected a strptime format such as '%Y-%m-%d %H:%M',"
            " or epoch or epoch-ms",
            param_hint="--time-format",
        )
    if 0 < sort_window < batch_size:
        raise click.BadParameter(
            f"{sort_window:,} events is less than a batch ({batch_size:,}, --batch-size):"
            " give 0 (file order) or at least the batch size",
            param_hint="--sort-window",
        )
    if rejects is not None and rejects.exists():
        for f in files:
            if f != "-" and Path(f).exists() and Path(f).samefile(rejects):
                raise click.BadParameter(
                    f"{rejects} is one of the files to record: it would be emptied before it"
                    " is read; give another file",
                    param_hint="--rejects",
                )
    settings: Settings = ctx.obj
    fields = FieldMap(event_column, event_name, actor_column, time_column, time_format)
    salt = options_salt(fields, kind, batch_size, sort_window)
    stderr = Console(stderr=True, highlight=False)
    with (
        rerun_when_interrupted(ctx),  # (left last: the workers stopped, the spool gone)
        rerun_when_refused(),
        terminated_as_interrupted(),
        # opened first, before the files are read: a --rejects that cannot be written fails at once
        contextlib.nullcontext(None) if rejects is None else Output(rejects) as out,
        tempfile.TemporaryDirectory(prefix="bitstat-ingest-") as spool,
        settings.connect(batch_ttl=LOAD_BATCH_TTL) as st,
        contextlib.ExitStack() as stack,
    ):
        sources = [open_source(f, kind, salt, Path(spool)) for f in files]
        pool = None
        if workers > 1:  # started before the progress bar's thread: see Workers
            pool = stack.enter_context(
                Workers(
                    workers,
                    url=resolve_url(settings.url, settings.data_dir, "everysec"),
                    namespace=st.namespace,
                    schema=st.schema,
                    fields=fields,
                    batch_ttl=LOAD_BATCH_TTL,
                )
            )
        progress = progress_bar(stderr)
        progress.disable = no_progress
        run = Ingest(
            st,
            sources,
            fields,
            batch_size,
            progress,
            Rejections(None if out is None else out.begin(), Path(spool)),
            workers=pool,
            sort_window=sort_window,
            max_rejects=max_rejects,
        )
        with progress:
            if strict:
                run.check()
            run.record()
    for note in dict.fromkeys(run.notes):
        stderr.print(f"[yellow]note:[/yellow] {note}")
    report(run, fmt, rejects)
    if run.stop is not None:
        click.echo(stopped(run, run.stop), err=True)
        ctx.exit(EXIT_STOPPED)
    if run.rejects.total:
        ctx.exit(EXIT_REJECTED)


COMMANDS: list[click.Command] = [ingest]
