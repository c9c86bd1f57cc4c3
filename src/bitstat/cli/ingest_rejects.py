"""`bitstat ingest`'s rejected lines: counted, the first `SAMPLE` kept for the report, every
one written to --rejects FILE as it comes, in line order within each file; and `Stop`, where
--max-rejects ended a run.

A line is rejected by the reader (invalid JSON, a time not in --time-format: known as it is
read, in line order) or by the library when its batch is recorded (known later, and with
`--workers` batches finish in any order). A rejected line is written once no earlier line of
its file can still be rejected: once every event before it is in a recorded batch. Until
then the reader's lines wait on disk (a file of millions of bad lines waits in a spool, not in
memory) and the library's in memory, no more of them than the batches in flight hold.
"""

from __future__ import annotations

import heapq
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SAMPLE = 1_000  # rejected lines listed in the JSON report (the text report shows 20 of them)
NONE = sys.maxsize  # no line: past every line of a file


class Writer(Protocol):
    """Where rejected lines go: the --rejects file (`files.Output`)."""

    def write(self, text: str) -> object: ...


@dataclass(frozen=True)
class Stop:
    """Where --max-rejects stopped a run: the rejected line that went over the limit."""

    limit: int
    file: str
    line: int
    why: str


class Rejections:
    """Every line rejected in one run: the count, the first `SAMPLE` (in file order, then line
    order) and, given `out`, all of them written to it as FILE:LINE: reason."""

    def __init__(self, out: Writer | None, spool: Path) -> None:
        self.total = 0
        self._out = out
        self._spool = spool
        self._names: list[str] = []
        self._first: list[tuple[int, int, str]] = []  # a heap of (-file, -line, reason)
        self._order: _LineOrder | None = None

    def start(self, name: str) -> None:
        """The lines from here on are of the file `name` (the one before it is done)."""
        self.close()
        self._names.append(name)
        if self._out is not None:
            path = self._spool / f"rejects-{len(self._names)}"
            self._order = _LineOrder(name, self._out, path)

    def refused(self, line: int, why: str, held: int) -> None:
        """The reader refused `line`; `held`: the first line of an event it has read and not
        yet handed out in a batch (`NONE`: it holds none)."""
        self._keep(line, why)
        if self._order is not None:
            self._order.refused(line, why, held)

    def sent(self, batch: int, lines: list[int], held: int) -> None:
        """Batch number `batch`, of the events on `lines`, goes to be recorded; `held` as in
        `refused`."""
        if self._order is not None:
            self._order.sent(batch, min(lines), held)

    def recorded(self, batch: int, rejected: list[tuple[int, str]]) -> None:
        """Batch `batch` is recorded; the library rejected these (line, reason)."""
        for line, why in rejected:
            self._keep(line, why)
        if self._order is not None:
            self._order.recorded(batch, rejected)

    def close(self) -> None:
        """The current file is done (read whole, or stopped): write what still waits."""
        if self._order is not None:
            self._order.close()
            self._order = None

    def first(self) -> list[tuple[str, int, str]]:
        """The first rejected lines, up to `SAMPLE`: (file, line, reason) in file order."""
        return [(self._names[-f], -line, why) for f, line, why in sorted(self._first)[::-1]]

    def _keep(self, line: int, why: str) -> None:
        self.total += 1
        key = (1 - len(self._names), -line, why)  # the heap's top is the last line kept
        if len(self._first) < SAMPLE:
            heapq.heappush(self._first, key)
        elif key > self._first[0]:
            heapq.heapreplace(self._first, key)


class _LineOrder:
    """One file's rejected lines, written to `out` in line order, each once no line before it
    can still be rejected: before the first line of a batch not yet recorded, and before the
    first line of an event the reader holds (`held`)."""

    def __init__(self, name: str, out: Writer, spool: Path) -> None:
        self._name = name
        self._out = out
        self._path = spool
        self._spool_in = spool.open("w", encoding="utf-8")  # the reader's lines, in line order
        self._spool_out = spool.open("r", encoding="utf-8")
        self._spooled = 0  # lines in the spool not read back yet
        self._used = False  # lines were spooled since the spool was last emptied
        self._next: tuple[int, str] | None = None  # read back from the spool, not yet written
        self._library: list[tuple[int, str]] = []  # a heap: the library's, not yet written
        self._unrecorded: dict[int, int] = {}  # batch number: its first line
        self._held = NONE

    def refused(self, line: int, why: str, held: int) -> None:
        self._held = held
        if self._spooled or self._next is not None or line >= self._settled():
            self._spool_in.write(json.dumps([line, why]) + "\n")
            self._spooled += 1
            self._used = True
        else:  # nothing before it waits: no spool (a file of nothing but bad lines)
            self._write(line)
            self._out.write(f"{self._name}:{line}: {why}\n")

    def sent(self, batch: int, first: int, held: int) -> None:
        self._unrecorded[batch] = first
        self._held = held
        self._write(self._settled())

    def recorded(self, batch: int, rejected: list[tuple[int, str]]) -> None:
        del self._unrecorded[batch]
        for item in rejected:
            heapq.heappush(self._library, item)
        self._write(self._settled())

    def close(self) -> None:
        """Write all that waits (lines of batches never recorded are not rejected)."""
        self._write(NONE)
        self._spool_in.close()
        self._spool_out.close()
        self._path.unlink()

    def _settled(self) -> int:
        """The first line that can still be rejected."""
        return min(self._held, *self._unrecorded.values(), NONE)

    def _write(self, before: int) -> None:
        """Write the lines waiting before line `before`, the spool's and the library's merged."""
        if self._spooled:
            self._spool_in.flush()
        while True:
            if self._next is None and self._spooled:
                line, why = json.loads(self._spool_out.readline())
                self._next = (line, why)
                self._spooled -= 1
            spooled = self._next if self._next is not None and self._next[0] < before else None
            library = self._library[0] if self._library and self._library[0][0] < before else None
            if spooled is not None and (library is None or spooled < library):
                line, why = spooled
                self._next = None
            elif library is not None:
                line, why = heapq.heappop(self._library)
            else:
                if self._used and not self._spooled and self._next is None:
                    self._empty()
                return
            self._out.write(f"{self._name}:{line}: {why}\n")

    def _empty(self) -> None:
        """Every spooled line is written: the spool starts again from nothing, so that it holds
        the lines that wait, not every line the reader refused (a /tmp may be memory)."""
        self._spool_in.seek(0)
        self._spool_in.truncate()
        self._spool_out.seek(0)
        self._used = False
