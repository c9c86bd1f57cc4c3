"""Reading event files for `bitstat ingest`: JSON lines, JSON arrays and CSV, gzip or not.

`open_source` looks at a file once (gzip, format, a digest of its content and of the options
that shape its events) and `Reader` reads it, streaming (a JSON array too: its elements are
parsed one by one from a buffer that grows only to hold the element being read): it yields
`(line number, record, raw)` for each record, a chunk at a time, where `raw` is the record as
read (a JSON line's bytes, an array element's text, a CSV row), or `(line number, reason, None)`
for a line it cannot read. `raw_records` turns raws back into records, in another process
(`ingest --workers`), or once a batch is cut (`decoded_lines`, `ingest --sort-window`).
`Decoder` maps columns to the event's fields and turns text into the types the library takes
on its fast path (digit ids into ints, numeric text of summed properties into floats); `many`
does so for a chunk of records that need nothing but counting, at C speed.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import hashlib
import io
import itertools
import json
import math
import operator
import os
import re
import shutil
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

import click

from .. import jsontext
from ..schema import Schema
from .files import cannot

KINDS = ("jsonl", "json", "csv", "tsv")
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
LINES_AT_ONCE = 1000  # JSON lines parsed in one call
# The most text a JSON array's element may span: an element that cannot be parsed is read on
# until it can, the file ends, or it spans this much (its error then stands).
MAX_ELEMENT = 16 << 20
# The longest CSV cell read (the csv module's default, 128 KiB, stopped the whole run at a longer
# one): past the reader, the library keeps or refuses a value as it does a JSON line's.
MAX_CELL = (1 << 31) - 1
EPOCH_FORMATS = ("epoch", "epoch-ms")
_EPOCH_TEXT = re.compile(r"\d{9,}(?:\.\d*)?")  # 9+ digits: shorter digit runs are ISO dates
_WHITESPACE = re.compile(r"\s*")
_END = "\0bitstat: the end of the file\0"  # a CSV file's last line, as the csv module reads it

# (line, record, raw) or (line, why it was not read, None); raw: a JSON line's bytes, an array
# element's text, a CSV row's cells
Raw = bytes | str | list[str]
Item = tuple[int, "dict[str, Any] | str", Raw | None]


@dataclass(frozen=True)
class FieldMap:
    """Where an event's fields are in a record (`--event`, `--actor`, `--time`, ...)."""

    event: str = "event"
    event_name: str | None = None
    actor: str | None = None
    time: str = "time"
    time_format: str | None = None


@dataclass(frozen=True)
class Source:
    """One input: its name as shown, the file read (a spooled copy for stdin), what it holds."""

    name: str
    path: Path
    size: int
    gzipped: bool
    kind: str
    digest: str


def _stream(raw: IO[bytes], gzipped: bool) -> IO[bytes]:
    if gzipped:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    return raw


def open_source(arg: str, kind: str | None, salt: str, spool: Path) -> Source:
    """Inspect one input (`-` is stdin, copied to `spool` first) in one pass over its bytes.

    The digest covers the decompressed content and `salt` (the options that shape the
    events), so the same data read the same way always gives the same batch ids.
    """
    if arg == "-":
        path, name = spool / f"stdin-{len(list(spool.iterdir()))}", "<stdin>"
        with path.open("wb") as copy:
            shutil.copyfileobj(sys.stdin.buffer, copy, CHUNK)
    else:
        path, name = Path(arg), arg
    digest = hashlib.sha256(salt.encode() + b"\0")
    first = b""
    utf8 = _Utf8()
    try:
        with path.open("rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            gzipped = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            with _stream(raw, gzipped) as stream:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    utf8.feed(chunk)
                    if not first.strip():
                        first = (first + chunk[:64]).removeprefix(b"\xef\xbb\xbf")
                utf8.feed(b"", final=True)
    except (OSError, EOFError, zlib.error) as exc:  # the file's (gzip's errors among them)
        raise cannot("read", name, exc) from exc
    kind = kind or _detect(name, first)
    if why := utf8.refusal(kind):
        raise click.ClickException(f"{name}{why}; nothing was recorded")
    return Source(name, path, size, gzipped, kind, digest.hexdigest())


class _Utf8:
    """Whether a file's bytes, fed chunk by chunk, are UTF-8 text, and where they stop being so.

    A file in another encoding is refused before anything is recorded: a CSV file or a JSON
    array stopped at its first such byte, after recording the batches before it (a re-run of
    the converted file, new data, recorded them again), and UTF-16 JSON lines read in part.
    JSON lines are read line by line: a line that is not UTF-8 (a log's damaged line) is
    rejected alone."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._lines = 0  # newlines fed
        self.start = b""  # the first bytes
        self.bad: tuple[int, int] | None = None  # (line, byte) of the first byte not UTF-8

    def feed(self, chunk: bytes, final: bool = False) -> None:
        self.start = self.start or chunk[:4]
        if self.bad is not None:
            return
        try:
            if not chunk.isascii() or self._decoder.getstate()[0]:  # (ASCII: nothing to check)
                self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:  # (its bytes: the chunk after a few held back)
            line = self._lines + exc.object.count(b"\n", 0, exc.start) + 1
            self.bad = (line, exc.object[exc.start] if exc.start < len(exc.object) else 0)
        self._lines += chunk.count(b"\n")

    def refusal(self, kind: str) -> str | None:
        """Why a file of `kind` is refused (to follow its name), or None."""
        wide = _wide_encoding(self.start)
        if wide:
            encoding, told = wide
            return (
                f" {told}: bitstat reads UTF-8 (convert it first, e.g. iconv -f {encoding} -t"
                " UTF-8)"
            )
        if self.bad is None or kind == "jsonl":
            return None
        line, byte = self.bad
        return (
            f": line {line} is not UTF-8 text (byte 0x{byte:02x}): bitstat reads UTF-8 (a"
            " spreadsheet's export may be Windows-1252 or Latin-1: convert it first, e.g."
            " iconv -f WINDOWS-1252 -t UTF-8)"
        )


def _wide_encoding(start: bytes) -> tuple[str, str] | None:
    """(encoding, how it is told) of UTF-16 or UTF-32 text, known by its byte order mark or by
    the NUL bytes between its characters; None for other text."""
    if start.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32", "is UTF-32 text (it starts with a byte order mark)"
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16", "is UTF-16 text (it starts with a byte order mark)"
    if b"\0" in start:
        encoding = "UTF-16LE" if start[1:2] == b"\0" else "UTF-16BE"
        return encoding, f"looks like {encoding} text (NUL bytes between its characters)"
    return None


def _detect(name: str, head: bytes) -> str:
    """The format from the extension (.csv, .tsv), else from the first character: [ or {,
    else a header line of tabs and no comma is TSV (stdin has no extension: the same data
    piped in is then read, and numbered, as the .tsv file it came from)."""
    suffix = Path(name.removesuffix(".gz")).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    start = head.lstrip()[:1]
    if start == b"[":
        return "json"
    if start == b"{" or not start or suffix in (".json", ".jsonl", ".ndjson"):
        return "jsonl"
    line = head.lstrip().split(b"\n", 1)[0]
    return "tsv" if b"\t" in line and b"," not in line else "csv"


class Reader:
    """Reads one source: `chunks()` yields lists of (line, record or reason, raw); `tell()` says
    how far."""

    def __init__(self, source: Source, fields: FieldMap, actor: str) -> None:
        self.source = source
        self.fields = fields
        self.actor = actor
        self.notes: list[str] = []  # things worth telling the user, e.g. a missing actor column
        self.header: list[str] | None = None  # a CSV file's, once read
        self._raw: IO[bytes] | None = None

    def tell(self) -> int:
        """Bytes of the file read so far (of the compressed file, when it is gzipped)."""
        return self._raw.tell() if self._raw is not None and not self._raw.closed else 0

    def chunks(self) -> Iterator[list[Item]]:
        """The items, a list at a time (of JSON lines: those parsed in one go), so that a
        chunk of plain records can be taken at C speed (`ingest_batches.batches`)."""
        try:
            with self.source.path.open("rb") as raw:
                self._raw = raw
                with _stream(raw, self.source.gzipped) as stream:
                    if self.source.kind == "jsonl":
                        yield from self._json_lines(stream)
                        return
                    if self.source.kind == "json":
                        items = _JsonArray(stream, self.source.name).items()
                    else:
                        items = self._csv(stream, "\t" if self.source.kind == "tsv" else ",")
                    while chunk := list(itertools.islice(items, LINES_AT_ONCE)):
                        yield chunk
        except (OSError, EOFError, zlib.error) as exc:  # reading the file (gzip's errors too)
            raise cannot("read", self.source.name, exc) from exc

    @staticmethod
    def _json_lines(stream: IO[bytes]) -> Iterator[list[Item]]:
        numbers: list[int] = []
        lines: list[bytes] = []
        for number, line in enumerate(stream, 1):
            if not line.isspace():  # (a line holds its newline, or is the last: never empty)
                numbers.append(number)
                lines.append(line)
                if len(lines) == LINES_AT_ONCE:
                    yield _json_chunk(numbers, lines)
                    numbers, lines = [], []
        if lines:
            yield _json_chunk(numbers, lines)

    def _csv(self, stream: IO[bytes], delimiter: str) -> Iterator[Item]:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        csv.field_size_limit(MAX_CELL)  # (the module's own setting, for every reader)
        # the end marked by a line of its own: a quote never closed takes it into its cell
        reader = csv.reader(itertools.chain(text, [_END]), delimiter=delimiter)
        try:
            header: list[str] | None = []
            while header == []:  # blank lines before the header, skipped as blank rows are
                first = reader.line_num + 1
                header = next(reader, None)
            if header is None or header == [_END]:
                return
            if header[-1].endswith(_END):
                raise click.ClickException(
                    f"{self.source.name}: a quote opened in the header (line {first}) is never"
                    " closed, so the whole file was read as its last column; nothing of this"
                    " file was recorded"
                )
            self._check_header(header)
            self.header = header
            width = len(header)
            unnamed = [i for i, column in enumerate(header) if column == ""]
            start = reader.line_num + 1
            for row in reader:
                number, start = start, reader.line_num + 1
                if not row:
                    continue
                if row[-1].endswith(_END):  # the end of the file
                    if row != [_END]:
                        yield number, _unclosed(number, reader.line_num - 1), None
                    return
                if len(row) != width:
                    yield number, _width(len(row), width, number, reader.line_num), None
                    continue
                if unnamed and (why := _unnamed_value(row, unnamed)):
                    yield number, why, None
                    continue
                yield number, csv_record(header, row), row
        except UnicodeDecodeError as exc:
            raise click.ClickException(
                f"{self.source.name}: not UTF-8 text near line {reader.line_num + 1} ({exc})"
            ) from exc
        except csv.Error as exc:
            raise click.ClickException(
                f"{self.source.name}: line {reader.line_num}: {exc}"
            ) from exc

    def _check_header(self, header: list[str]) -> None:
        f, name = self.fields, self.source.name
        twice = _named_twice(header)
        if twice:
            names = " and ".join(f"{c!r} (columns {_and(at)})" for c, at in twice.items())
            raise click.ClickException(
                f"{name}: the header names {names} more than once: give each column a name"
                " of its own (nothing of this file was recorded)"
            )
        if f.event_name is None and f.event not in header:
            raise click.UsageError(
                f"{name} has no {f.event!r} column (columns: {', '.join(map(repr, header))});"
                " name the event column with --event COLUMN, or name every line's event with"
                f" --event-name NAME{_separated_otherwise(header)}"
            )
        for option, column in (("--actor", f.actor), ("--time", f.time)):
            if column is not None and column != "time" and column not in header:
                raise click.UsageError(f"{name} has no {column!r} column for {option}")
        if f.actor is None and self.actor not in header:
            self.notes.append(
                f"{name} has no {self.actor!r} column: its events are recorded without an"
                " actor (name the actor column with --actor COLUMN)"
            )


def _separated_otherwise(header: list[str]) -> str:
    """A hint for a header read as one column that another separator splits (an export of a
    spreadsheet set to a language that writes decimal commas uses ';'), else ""."""
    if len(header) != 1:
        return ""
    for mark, what in ((";", "semicolons"), ("|", "bars"), ("\t", "tabs")):
        if mark in header[0]:
            return (
                f". Its header is one column holding {what}: bitstat reads CSV with commas and"
                " TSV (.tsv, --input-format tsv) with tabs; write the file with one of"
                " those"
            )
    return ""


def _unclosed(first: int, last: int) -> str:
    """Why the row that a quote never closed is refused (it was read as one cell, to the end)."""
    if first == last:
        return "a quote opened in this row is never closed (the file ends on this line)"
    return (
        f"a quote opened in this row is never closed: lines {first} to {last} (the end of the"
        " file) were read as one cell"
    )


def _width(fields: int, width: int, first: int, last: int) -> str:
    """Why a row of `fields` cells is refused, when the header has `width`; a row over several
    lines is likely a stray quote's doing (its cell runs on to the next quote)."""
    why = f"{fields} fields, but the header has {width}"
    if last > first:
        why += f" (the row runs from line {first} to line {last}: a quote closed too late?)"
    return why


def _named_twice(header: list[str]) -> dict[str, list[int]]:
    """The names the header gives to more than one column, each with their column numbers
    (from 1). Unnamed columns are not named twice: they are left out."""
    columns: dict[str, list[int]] = {}
    for number, column in enumerate(header, 1):
        if column:
            columns.setdefault(column, []).append(number)
    return {c: at for c, at in columns.items() if len(at) > 1}


def _unnamed_value(row: list[str], unnamed: list[int]) -> str | None:
    """Why `row` is refused: a value in a column the header leaves unnamed (such a column is
    left out, as long as it is empty: an export's trailing delimiter)."""
    for i in unnamed:
        if row[i] != "":
            return f"column {i + 1} has no name in the header, but holds {row[i]!r}"
    return None


def _and(numbers: list[int]) -> str:
    """`2 and 4`, `2, 4 and 7`."""
    return ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


class _JsonArray:
    """The elements of a JSON array, parsed one by one as its text streams in.

    `buf` holds the text read and not yet consumed. An element cut short by the end of `buf`
    fails to parse (or parses short, a number, and then touches the end), and is parsed again
    once more text is read. Consumed text is dropped a chunk at a time, so memory holds about
    two chunks and the element being read, never the file (a minified array is one line)."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self.name = name
        self.text = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf = ""
        self.ended = False
        self.at = 0  # a position in buf and the line it is on, to count lines forward
        self.line = 1
        self.column = 0  # the column buf[0] is at: text before it on its line was dropped

    def items(self) -> Iterator[Item]:
        decoder = json.JSONDecoder()
        i = self._skip(0)
        if self.buf[i : i + 1] != "[":
            yield 1, "invalid JSON: expected a JSON array", None
            return
        i = self._skip(i + 1)
        expect_more = False  # after a comma: an element must follow
        while i < len(self.buf) and (self.buf[i] != "]" or expect_more):
            line = self._line_of(i)
            while True:
                try:
                    record, end = decoder.raw_decode(self.buf, i)
                except ValueError as exc:
                    if not isinstance(exc, json.JSONDecodeError):  # an integer of too many digits
                        exc = jsontext.too_many_digits(self.buf)
                    elif len(self.buf) - i < MAX_ELEMENT and self._more():
                        continue
                    where, why = self._error(exc)
                    yield where, f"{why}; the rest of the file is not read", None
                    return
                # an object ends with its brace; a number near the end of buf may go on
                # ("12." then "5"): read more and parse it again
                if type(record) is dict or len(self.buf) - end > 2 or not self._more():
                    break
            if isinstance(record, dict):
                yield line, record, self.buf[i:end]
            else:
                yield line, f"not a JSON object but {_json_type(record)}", None
            i = self._skip(end)
            expect_more = self.buf[i : i + 1] == ","
            if expect_more:
                i = self._skip(i + 1)
            elif self.buf[i : i + 1] != "]":
                yield (
                    self._line_of(i),
                    "invalid JSON: expected ',' or ']'; the rest of the file is not read",
                    None,
                )
                return
            i = self._drop(i)
        if i >= len(self.buf):
            yield self._line_of(i), "invalid JSON: the array is not closed", None
            return
        # text after the closing bracket (a second array, JSON lines) was dropped without a word
        closed, after = self._line_of(i), self._skip(i + 1)
        if after < len(self.buf):
            yield (
                self._line_of(after),
                f"invalid JSON: text after the array, which closed on line {closed} (a file"
                " holds one array); the rest of the file is not read",
                None,
            )

    def _more(self) -> bool:
        """Read a chunk more into buf; False when the file has ended."""
        if self.ended:
            return False
        data = self.stream.read(CHUNK)
        self.ended = not data
        try:
            self.buf += self.text.decode(data, final=self.ended)
        except UnicodeDecodeError as exc:
            raise click.ClickException(f"{self.name}: not UTF-8 text ({exc})") from exc
        return not self.ended

    def _skip(self, i: int) -> int:
        """The first position from i that is not blank, reading on as needed (at the end of the
        file: the length of buf)."""
        while True:
            i = _skip(self.buf, i)
            if i < len(self.buf) or not self._more():
                return i

    def _line_of(self, i: int) -> int:
        """The line position i is on (positions asked for never go back)."""
        self.line += self.buf.count("\n", self.at, i)
        self.at = i
        return self.line

    def _drop(self, i: int) -> int:
        """Drop the consumed text before i once there is a chunk of it; i's new position."""
        if i < CHUNK:
            return i
        self._line_of(i)
        newline = self.buf.rfind("\n", 0, i)
        self.column = i - newline - 1 if newline >= 0 else self.column + i
        self.buf = self.buf[i:]
        self.at = 0
        return 0

    def _error(self, exc: json.JSONDecodeError) -> tuple[int, str]:
        """(line, reason) of an element that cannot be parsed."""
        column = exc.colno + (self.column if exc.lineno == 1 else 0)
        ends = self.ended and exc.pos >= len(self.buf)
        return self._line_of(exc.pos), json_error(exc, "file", column=column, ends=ends)


def csv_record(header: list[str], row: list[str]) -> dict[str, Any]:
    """A CSV row as a record: its cells by column name, empty cells left out (absent values)."""
    return {k: v for k, v in zip(header, row, strict=True) if v}  # (cells are text)


def raw_records(kind: str, raws: list[Any], header: list[str] | None) -> list[dict[str, Any]]:
    """The records whose raws `Reader.chunks` yielded, parsed again (by a worker of `ingest
    --workers`, handed the raws of a batch): each raw is known to make one record."""
    if kind in ("csv", "tsv"):
        assert header is not None
        return [csv_record(header, row) for row in raws]
    text: bytes | str = b"[" + b",".join(raws) + b"]" if kind == "jsonl" else f"[{','.join(raws)}]"
    try:
        records: list[dict[str, Any]] = jsontext.loads(text)
    except ValueError:  # a first line led by a byte order mark: read alone, as the reader did
        records = [json.loads(raw) for raw in raws]
    return records


def decoded_lines(decode: Decoder, lines: list[bytes]) -> list[dict[str, Any]]:
    """The events of JSON lines the reader took (each a record that makes an event), parsed and
    decoded again, in their order (`ingest --sort-window` holds its window as read)."""
    records = raw_records("jsonl", lines, None)
    if decode.many(records):
        return records
    events = [decode(r) for r in records]
    for event in events:
        if isinstance(event, str):  # (the reader decoded each of them once: never)
            raise RuntimeError(f"a line the reader took is refused when decoded again: {event}")
    return cast(list[dict[str, Any]], events)


def _json_chunk(numbers: list[int], lines: list[bytes]) -> list[Item]:
    """Parse many JSON lines (numbered) at C speed, each alone (a line that is not exactly one
    JSON value is refused); line by line in Python, saying why, only when one is not a JSON
    object that msgspec reads."""
    values = jsontext.loads_each(lines)
    if values is not None and set(map(type, values)) == {dict}:
        return list(zip(numbers, values, lines, strict=True))
    return list(_json_one_by_one(zip(numbers, lines, strict=True)))


def _json_one_by_one(chunk: Iterable[tuple[int, bytes]]) -> Iterator[Item]:
    for number, line in chunk:
        try:
            # without its newline: else an error at the end of the line is at "line 2 column 1"
            record = jsontext.loads(line.rstrip(b"\r\n"))
        except json.JSONDecodeError as exc:
            yield number, json_error(exc, "line"), None
            continue
        except UnicodeDecodeError:
            yield number, "not UTF-8 text", None
            continue
        if isinstance(record, dict):
            yield number, record, line
        else:
            yield number, f"not a JSON object but {_json_type(record)}", None


def json_error(
    exc: json.JSONDecodeError, unit: str, *, column: int | None = None, ends: bool | None = None
) -> str:
    """`invalid JSON: Expecting ',' delimiter at column 89`: the column in the line (of the
    line or file that was parsed), and a hint when the text ends there. `column` and `ends`
    say so for text that is not all of the line or file."""
    what = exc.msg.removesuffix(" at")  # "Unterminated string starting at", "... character at"
    if ends is None:
        ends = exc.pos >= len(exc.doc)
    hint = f", where the {unit} ends (is it cut short?)" if ends else ""
    return f"invalid JSON: {what} at column {exc.colno if column is None else column}{hint}"


def _skip(text: str, i: int) -> int:
    match = _WHITESPACE.match(text, i)
    return match.end() if match else i


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


class Decoder:
    """Maps a record's columns to event fields; text to the types of the library's fast path."""

    def __init__(self, fields: FieldMap, schema: Schema) -> None:
        self.fields = fields
        self.schema = schema
        self.actor = schema.actor
        self.int_ids = schema.ids == "int"
        moves = [(fields.actor, schema.actor), (fields.time, "time")]
        if fields.event_name is None:
            moves.insert(0, (fields.event, "event"))
        self._moves = [(a, b) for a, b in moves if a is not None and a != b]
        rules = [schema.rules_for(""), *schema.events.values()]
        self._sums = any(r.sum for r in rules)
        self._summed: dict[str, tuple[str, ...]] = {}
        self._any_summed = tuple(dict.fromkeys(r.prop for rule in rules for r in rule.sum))
        # records are taken as they are but for their times' and sums' text (`many`)
        self._plain = not self._moves and fields.event_name is None and fields.time_format is None
        self.actors = 0  # events with an actor id
        self.text_ids = 0  # int ids: how many of them were text that is not an integer
        self.text_id: str | None = None  # the first of them

    def refusal(self, record: dict[str, Any]) -> str | None:
        """The reason `self(record)` would give instead of an event (None: it gives one), with
        `record` left as it is. Only a --time-format can refuse a record, so without one this
        costs nothing. It counts ids as `self(...)` does: `ingest --workers` asks a decoder of
        its own, whose counts it does not read."""
        if self.fields.time_format is None:
            return None
        decoded = self(dict(record))
        return decoded if isinstance(decoded, str) else None

    def many(self, records: list[dict[str, Any]]) -> bool:
        """`self(record)` of each record, in place, at C speed when the records need no more
        than their actors counted and their sums' text read (nothing moved or renamed, ISO
        text or numbers as times, no text id where ids are integers): whether it was done
        (else nothing was changed, and each record is decoded alone)."""
        if not self._plain:
            return False
        n = len(records)
        times: list[Any] = list(map(dict.get, records, itertools.repeat("time", n)))
        kinds = set(map(type, times))
        if str in kinds:
            texts = times if kinds == {str} else [t for t in times if type(t) is str]
            if set(map(_FIFTH, texts)) != {"-"}:
                return False  # (times to read: `__call__` reads them, or says why not)
        actors = list(map(dict.get, records, itertools.repeat(self.actor, n)))
        if self.int_ids and str in set(map(type, actors)):
            return False  # (text ids: digits made integers, others counted, one by one)
        self.actors += n - actors.count(None)
        for prop in self._any_summed:  # text to sum (CSV cells): made numbers where it reads
            if str in set(map(type, map(dict.get, records, itertools.repeat(prop, n)))):
                for record in records:
                    self._sum_numbers(record)
                break
        return True

    def __call__(self, record: dict[str, Any]) -> dict[str, Any] | str:
        if self.fields.event_name is not None:
            record["event"] = self.fields.event_name
        for source, target in self._moves:
            _move(record, source, target)
        t = record.get("time")
        if t is not None and (
            self.fields.time_format is not None or (type(t) is str and t[4:5] != "-")
        ):  # ISO text ("2026-...") goes on as it is, and most times are
            decoded = decode_time(t, self.fields.time_format)
            if isinstance(decoded, _Bad):
                return decoded.reason
            record["time"] = decoded
        actor = record.get(self.actor)
        self.actors += actor is not None
        if self.int_ids and type(actor) is str:
            # CSV cells are text; exports with empty cells often write ids as floats (17850.0)
            digits = actor[:-2] if actor.endswith(".0") else actor
            if digits.isdigit() and digits.isascii():
                record[self.actor] = int(digits)
            elif not digits.removeprefix("-").isdecimal():  # UUIDs, e-mails, names: the library
                self.text_ids += 1  # rejects them; the run ends with a hint about ids = "map"
                self.text_id = self.text_id or actor
        if self._sums:
            self._sum_numbers(record)
        return record

    def _sum_numbers(self, record: dict[str, Any]) -> None:
        """Numeric text of summed properties (CSV cells) as floats."""
        name = record.get("event")
        if type(name) is not str:
            return
        summed = self._summed.get(name)
        if summed is None:
            summed = self._summed[name] = tuple(r.prop for r in self.schema.rules_for(name).sum)
        for prop in summed:
            value = record.get(prop)
            if type(value) is str:
                with contextlib.suppress(ValueError):  # else the library says why
                    record[prop] = float(value)


_FIFTH = operator.itemgetter(slice(4, 5))  # a time's fifth character: "-" in ISO text


def _move(record: dict[str, Any], source: str, target: str) -> None:
    """The field `target` takes the value of column `source` (or is absent without one)."""
    value = record.pop(source, None)
    if value is None:
        record.pop(target, None)
    else:
        record[target] = value


@dataclass(frozen=True)
class _Bad:
    reason: str


def decode_time(value: Any, time_format: str | None) -> Any:
    """A time as the library takes it fastest; `_Bad` when it does not match the format.

    Default: numbers are epoch seconds, text of 9+ digits too, other text goes to the library
    as it is (it reads a column of ISO-8601 texts at once, faster than datetimes made here).
    """
    if time_format == "epoch-ms":
        number = _number(value)
        if number is None:
            return _Bad(f"time: {value!r} is not epoch milliseconds")
        return number / 1000
    if time_format == "epoch":
        number = _number(value)
        return _Bad(f"time: {value!r} is not epoch seconds") if number is None else number
    if not isinstance(value, str):
        return value
    if time_format is not None:
        try:
            return datetime.strptime(value, time_format)
        except ValueError:
            return _Bad(f"time: {value!r} does not match --time-format {time_format!r}")
    if _EPOCH_TEXT.fullmatch(value):
        return float(value) if "." in value else int(value)
    return value


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value) if not value.isdigit() else int(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def options_salt(fields: FieldMap, kind: str | None, batch_size: int, sort_window: int = 0) -> str:
    """The options that decide which events a file makes, as text for its digest (with no
    --sort-window, the text of the versions before it: their runs keep their batch ids)."""
    options = {**asdict(fields), "kind": kind, "batch": batch_size}
    if sort_window:
        options["sort_window"] = sort_window
    return json.dumps(options, sort_keys=True)
