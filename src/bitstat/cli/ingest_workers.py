"""`bitstat ingest --workers N`: N processes record the batches that one reader cuts.

The parent reads every file as a single run does and cuts the same batches (a batch counts
events, not lines, so only a reader that parses every line knows where one ends), each with
the id a single run gives it; it hands each batch's records as they were read (a JSON line's
bytes, an array element's text, a CSV row) to a process of the pool. Each process has its own
connection; it parses the records again, decodes them and records them with `track_many`.
Parsing twice cost less than handing parsed events over (pickling dicts and reading them back).
At most two batches a worker are in flight, so memory holds a few batches whatever the size of
the file, and the parent reads ahead of the workers by no more than that.

Workers ignore Ctrl-C: the parent stops handing out batches, lets the ones already running
finish (a batch is recorded whole or, cut off, completed by a re-run), and waits for them.
A worker whose parent is gone (killed) exits by itself.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..errors import BitstatError, ConnectionError, ServerError
from ..schema import Schema
from .read import Decoder, FieldMap, raw_records

F = TypeVar("F", bound=Callable[..., Any])

IN_FLIGHT = 2  # batches handed to the pool per worker: one running, one waiting


def cores() -> int:
    """The cores this process may run on (`--workers auto`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_workers(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """A --workers option (ingest, serve): a number (1 or more), or `auto`: one a core."""
    text = value.strip().lower()
    if text == "auto":
        return cores()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise click.BadParameter(f"expected a number (1 or more) or auto, got {value!r}")


def workers_option(help: str) -> Callable[[F], F]:
    """The --workers option of ingest and serve: how many processes, or `auto`."""
    return click.option(
        "--workers",
        metavar="N|auto",
        default="1",
        callback=parse_workers,
        show_default=True,
        help=help,
    )


@dataclass(frozen=True)
class Recorded:
    """What a worker did with one batch: `track_many`'s answer and the decoder's id counts."""

    recorded: int
    rejected: list[tuple[int, str]]  # (index in the batch, reason)
    expired: dict[str, int]
    actors: int
    text_ids: int
    text_id: str | None


# what a run that failed on the server leaves, for a user of the command, not of the library
RERUN = (
    "The batches recorded so far stay recorded: run the same command again, once the server"
    " takes writes, to record the rest; nothing is recorded twice."
)


class WorkerFailed(Exception):
    """A bitstat error in a worker, as its message (exception classes with arguments of their
    own do not always survive the trip between processes)."""


@dataclass(frozen=True)
class _Setup:
    url: str
    namespace: str
    schema: str  # as JSON: what the parent records with, which the worker must find stored
    fields: FieldMap
    batch_ttl: int


# The one piece of process-wide state, in worker processes only: the pool's initializer sets
# what to connect to, and the first batch opens the connection that the later ones reuse.
_worker: dict[str, Any] = {}


def _start_worker(setup: _Setup) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _worker["setup"] = setup
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)  # the parent is gone: nobody reads what this process does

    threading.Thread(target=watch, name="bitstat-parent-watch", daemon=True).start()


def _connection() -> tuple[Any, Decoder]:
    if "stats" not in _worker:
        import bitstat

        setup: _Setup = _worker["setup"]
        st = bitstat.connect(setup.url, namespace=setup.namespace, batch_ttl=setup.batch_ttl)
        if st.schema != Schema.from_json(setup.schema):
            st.close()
            raise WorkerFailed(
                f"the schema of namespace {setup.namespace!r} changed while the files were"
                " being ingested; run again to record the rest with the new schema"
            )
        _worker["stats"] = st
        _worker["decoder"] = Decoder(setup.fields, st.schema)
    return _worker["stats"], _worker["decoder"]


def record_batch(batch_id: str, kind: str, header: list[str] | None, raws: list[Any]) -> Recorded:
    """In a worker: parse, decode and record one batch under its id."""
    try:
        st, decode = _connection()
        decode.actors = decode.text_ids = 0
        decode.text_id = None
        events = []
        for record in raw_records(kind, raws, header):
            event = decode(record)
            if isinstance(event, str):  # the parent asked Decoder.refusal: never
                raise WorkerFailed(f"batch {batch_id}: a record the reader took is refused")
            events.append(event)
        done = st.track_many(events, batch_id=batch_id)
    except (ConnectionError, ServerError) as exc:
        raise WorkerFailed(f"{exc}\n{RERUN}") from None
    except BitstatError as exc:
        raise WorkerFailed(str(exc)) from None
    return Recorded(
        done.recorded,
        done.rejected,
        dict(done.expired),
        decode.actors,
        decode.text_ids,
        decode.text_id,
    )


def _nothing() -> None:
    pass


def _context() -> multiprocessing.context.BaseContext:
    """fork where it is safe (no other thread of this process could hold a lock the child
    needs): nothing to import again, so workers start at once. Else spawn."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


Done = Callable[[Recorded], None]


class Workers:
    """A pool of `n` worker processes recording batches; `submit` hands one over (waiting while
    `IN_FLIGHT` a worker are in flight) and calls `done` with its `Recorded`, in this thread."""

    def __init__(
        self,
        n: int,
        *,
        url: str,
        namespace: str,
        schema: Schema,
        fields: FieldMap,
        batch_ttl: int,
    ) -> None:
        self.n = n
        self._setup = _Setup(url, namespace, schema.to_json(), fields, batch_ttl)
        self._pool: ProcessPoolExecutor | None = None
        self._pending: dict[Future[Recorded], Done] = {}

    def __enter__(self) -> Workers:
        self._pool = ProcessPoolExecutor(
            self.n, mp_context=_context(), initializer=_start_worker, initargs=(self._setup,)
        )
        # forked workers start with the first call: here, before the caller starts threads
        self._pool.submit(_nothing).result()
        return self

    def submit(
        self, done: Done, batch_id: str, kind: str, header: list[str] | None, raws: list[Any]
    ) -> None:
        assert self._pool is not None, "use Workers in a with statement"
        while len(self._pending) >= IN_FLIGHT * self.n:
            self._settle(FIRST_COMPLETED)
        self._pending[self._pool.submit(record_batch, batch_id, kind, header, raws)] = done

    def finish(self) -> None:
        """Wait for every batch handed over."""
        while self._pending:
            self._settle(FIRST_COMPLETED)

    def _settle(self, when: str) -> None:
        finished, _ = wait(self._pending, return_when=when)
        for future in finished:
            done = self._pending.pop(future)
            try:
                recorded = future.result()
            except WorkerFailed as exc:
                raise click.ClickException(str(exc)) from None
            except BrokenProcessPool as exc:
                raise click.ClickException(
                    f"a worker process ended abruptly ({exc}); what was recorded stays"
                    " recorded, and a re-run records the rest"
                ) from None
            done(recorded)

    def __exit__(self, *exc: object) -> None:
        """Stop: batches not started are dropped, running ones finish (also after Ctrl-C)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
