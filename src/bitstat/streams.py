"""Events in from a Redis Stream, exactly once: a consumer group, a batch per read, each batch
recorded under a batch id of its own, acknowledged after.

A consumer takes entries with XREADGROUP, records them with `track_many(batch_id=...)` and
XACKs them. Killed between the two, its entries stay pending: when it (or another consumer)
starts, it takes its own pending entries again (XREADGROUP from 0) and claims those left idle
by others (XAUTOCLAIM), and records them under the same batch id, which the namespace recorded
once already, so nothing counts twice.

The same batch id needs the same batch: before it records a batch the consumer notes the
batch's id and entry ids (first entry id -> [batch id, every entry id]) in a hash beside the
stream; a retry regroups what it takes by those notes, claiming the entries of a batch still
in other hands, whoever took them and whatever its batch size, under the batch id noted, not
one made of the entries in hand (some may have been trimmed or deleted since). A batch is
noted only if no note holds any of its entries (at once, scripts/notes.lua), so an entry is
in one note at most, and it is recorded as the entries of its note still pending, claimed
first: an entry acknowledged since was recorded and is not sent again under another batch
id. So a consumer may claim another's entries at any idle time, even a live consumer's it
has not noted yet. The hash also keeps a random
identity of the stream, part of every batch id, so that streams of the same name on two
servers never share batch ids.
A retry must come within the namespace's batch-id TTL (`connect(batch_ttl=)`, 7 days by
default): past it the batch id is forgotten and a batch recorded but not acknowledged would
count twice.

An entry is one event: a field `data` (`field=`) holding a JSON object, or else its fields
as the event's properties (text values).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis

from .errors import BitstatError, InvalidEvent
from .keys import stream_bounds
from .stats import Stats
from .transport import lua_script

LOG = logging.getLogger("bitstat.consume")
Entry = tuple[str, dict[str, str]]
IDENTITY = "identity"  # the notes' field of the stream's identity (an entry id holds a '-')
HELD = "@"  # the notes' field HELD + entry id: the first entry id of the note holding it
# a read waits at most this long, whatever --block (0: until an entry comes), so the consumer
# still claims idle entries and asks whether to stop
WAIT_SLICE_MS = 10_000
# the notes none of whose entries is pending are looked for at start and, when claiming, at
# most this often (a pending-list read a note)
DONE_NOTES_EVERY_S = 60.0
PENDING_PAGE = 1000
ENTRY_ID = re.compile(r"[0-9]+-[0-9]+")


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _entries(raw: Iterable[Any]) -> list[Entry]:
    """[(id, {field: value})] of a reply; an entry deleted while pending comes as (id, None)
    and is kept with no fields, so that it is acknowledged."""
    return [(_text(i), {_text(k): _text(v) for k, v in (f or {}).items()}) for i, f in raw]


def event_of(fields: dict[str, str], data_field: str) -> Any:
    """The event an entry stands for: the JSON object in `data_field`, else the fields.
    InvalidEvent says why text in `data_field` is not JSON that can be read."""
    if data_field not in fields:
        return dict(fields)
    try:
        return json.loads(fields[data_field])
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:  # JSONDecodeError, or an integer past Python's digit limit
        reason = str(exc)
    raise InvalidEvent(f"not JSON: {reason}", field=data_field)


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _after(entry_id: str) -> str:
    """The least entry id after `entry_id`."""
    ms, seq = _order(entry_id)
    return f"{ms}-{seq + 1}" if seq < 2**64 - 1 else f"{ms + 1}-0"


def batch_id_of(identity: str, stream: str, group: str, first: str, last: str) -> str:
    """The batch id of a noted batch: the stream's identity, and the stream's and group's names
    length-prefixed (`a:b`/`c` and `a`/`b:c` differ), then its first and last ids."""
    return f"stream:{identity}:{len(stream)}:{stream}:{len(group)}:{group}:{first}:{last}"


def read_wait_ms(block_ms: int, socket_timeout: float | None) -> int:
    """The BLOCK of one read: `block_ms` (0: until an entry comes) cut to WAIT_SLICE_MS, and to
    half the client's socket timeout, which a read waiting longer would fail with."""
    most = WAIT_SLICE_MS
    if socket_timeout:
        most = min(most, max(1, int(socket_timeout * 500)))
    return min(block_ms, most) if block_ms > 0 else most


def _socket_timeout(client: Any) -> float | None:
    """A redis-py client's read timeout in seconds (None: none)."""
    pool = getattr(client, "connection_pool", None) or getattr(client, "nodes_manager", None)
    timeout = getattr(pool, "connection_kwargs", {}).get("socket_timeout")
    return None if timeout is None else float(timeout)


class Note(NamedTuple):
    """A noted batch: its batch id, every entry id, and the note's text as stored."""

    name: str
    ids: list[str]
    text: str


@dataclass
class Progress:
    """What a consumer did: events recorded and rejected, batches, entries taken again."""

    recorded: int = 0
    rejected: int = 0
    batches: int = 0
    retried: int = 0
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (entry id, reason), last 100


class StreamConsumer:
    """One consumer of a group reading `stream` into the namespace of `stats`."""

    def __init__(
        self,
        stats: Stats,
        stream: str,
        *,
        group: str = "bitstat",
        consumer: str = "bitstat-1",
        client: Any = None,
        batch: int = 500,
        block_ms: int = 2000,
        min_idle_ms: int = 60_000,
        data_field: str = "data",
        start: str = "0",
    ) -> None:
        if batch < 1:
            raise BitstatError(f"batch must be at least 1, got {batch}")
        if block_ms < 0:
            raise BitstatError(f"block_ms must be at least 0, got {block_ms}")
        self.stats = stats
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.client = client if client is not None else stats._store.client
        self.batch = batch
        self.block_ms = block_ms
        self.min_idle_ms = min_idle_ms
        self.data_field = data_field
        self.bounds_key = stream_bounds(stream, group)
        self.progress = Progress()
        self.notes_checked: float | None = None  # when done notes were last looked for
        self._create_group(start)
        self.identity = self._identity()

    def _create_group(self, start: str) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _identity(self) -> str:
        """The stream's identity, made by its group's first consumer and kept with the notes:
        a restart names its batches as before, another stream of the same name otherwise."""
        if not self.client.hexists(self.bounds_key, IDENTITY):
            self._upgrade_notes()
        self.client.hsetnx(self.bounds_key, IDENTITY, secrets.token_hex(8))
        return _text(self.client.hget(self.bounds_key, IDENTITY))

    def _upgrade_notes(self) -> None:
        """Notes of a bitstat of before 2026-12-06 (first id -> last id, and no identity) made
        notes of this one: the entries of the range still pending, under the batch id they had
        (a batch recorded, not acknowledged, when it stopped counts once). Only those: a
        consumer started at the same time may have made the identity and noted batches since
        this one found no identity."""
        bounds = {_text(k): _text(v) for k, v in self.client.hgetall(self.bounds_key).items()}
        for first, last in bounds.items():
            if not (ENTRY_ID.fullmatch(first) and ENTRY_ID.fullmatch(last)):
                continue
            pending = self.client.xpending_range(self.stream, self.group, first, last, 10**6)
            ids = [_text(p["message_id"]) for p in pending]
            if ids:
                name = f"stream:{self.stream}:{self.group}:{first}:{last}"
                index = {f"{HELD}{i}": ids[0] for i in ids}
                note = {ids[0]: json.dumps([name, ids]), **index}
                self.client.hset(self.bounds_key, mapping=note)
            if ids[:1] != [first]:
                self.client.hdel(self.bounds_key, first)

    # a batch: note its ids, claim them, record them, acknowledge them, forget the note
    def _settle(self, entries: Iterable[Entry], *, new: bool = False) -> None:
        """Record `entries` (`new`: just read, else taken again), each under the one batch id
        a note gives it: those a note holds in that note's batch (claiming its entries in other
        hands), the rest in new batches, each noted only if no note holds one of its entries
        yet (at once, notes.lua: another consumer may have noted some since the notes were
        read, or, for entries just read, may have claimed and noted them; the notes are then
        read again)."""
        hand = {i: (i, f) for i, f in entries}
        while hand:
            notes = {} if new else self._notes_of(hand)
            new = False
            home = {i: first for first, note in notes.items() for i in note.ids}
            for first in sorted({home[i] for i in hand if i in home}, key=_order):
                self._record(notes[first], hand)
            loose = sorted(hand, key=_order)
            for j in range(0, len(loose), self.batch):
                note = self._note(loose[j : j + self.batch])
                if note is None:
                    break
                self._record(note, hand)

    def _note(self, ids: list[str]) -> Note | None:
        """`ids` noted as a new batch; None if a note holds one of them already."""
        name = batch_id_of(self.identity, self.stream, self.group, ids[0], ids[-1])
        note = Note(name, ids, json.dumps([name, ids]))
        return note if self._notes_script("note", ids[0], note.text) == 1 else None

    def _record(self, note: Note, hand: dict[str, Entry]) -> None:
        """The batch of `note` recorded, acknowledged and forgotten; its entries leave `hand`.

        The batch is the entries of the note still pending, claimed first (those in hand and
        those in other hands). An entry acknowledged since is not sent again: a consumer
        recorded it, with this note's batch, or (in hand from before this note was written)
        with the note that held it then, which was forgotten once none of its entries was
        pending. An entry in hand pending just before the claim, that the claim drops as
        deleted from the stream since it was read (trimmed, XDEL), is recorded from the hand."""
        have = [i for i in note.ids if i in hand]
        held = set()
        if have:
            # pending now: acknowledged by no one yet (by a consumer recording this note, if
            # at all, as no other note can hold them), so those the claim drops, deleted from
            # the stream since they were read (trimmed, XDEL), are recorded as in hand
            pending = self._pending(have)
            claimed = self.client.xclaim(
                self.stream, self.group, self.consumer, 0, have, justid=True
            )
            held = {_text(i) for i in claimed}
            held |= {i for i in pending - held if hand[i][1]}  # (read with its fields)
        entries = [hand[i] for i in have if i in held]  # in the note's order, the stream's
        rest = self._claim([i for i in note.ids if i not in hand])
        if rest:
            entries = sorted(entries + rest, key=lambda e: _order(e[0]))
        for i in note.ids:
            hand.pop(i, None)
        if entries:
            events, sent, bad = self._events(entries)
            result = self.stats.track_many(events, batch_id=note.name)
            self.client.xack(self.stream, self.group, *note.ids)
            self.progress.recorded += result.recorded
            self.progress.batches += 1
            for entry_id, reason in bad + [(sent[at], why) for at, why in result.rejected]:
                LOG.warning("stream entry %s rejected: %s", entry_id, reason)
                self.progress.rejected += 1
                self.progress.reasons = [*self.progress.reasons[-99:], (entry_id, reason)]
        # none of its entries pending now (acknowledged above, or before): never read again
        self._forget(note)

    def _events(
        self, entries: Sequence[Entry]
    ) -> tuple[list[Any], list[str], list[tuple[str, str]]]:
        """The events of a batch's entries, the ids they came from, and the entries that are
        none, each with the reason (they are acknowledged with the batch, not retried)."""
        events: list[Any] = []
        sent: list[str] = []
        bad: list[tuple[str, str]] = []
        for entry_id, fields in entries:
            try:
                events.append(event_of(fields, self.data_field))
                sent.append(entry_id)
            except InvalidEvent as exc:
                bad.append((entry_id, str(exc)))
        return events, sent, bad

    def _notes(self) -> dict[str, Note]:
        """The noted batches by first entry id."""
        found = self.client.hgetall(self.bounds_key)
        notes = {_text(k): _text(v) for k, v in found.items()}
        notes.pop(IDENTITY, None)
        out = {}
        for first, text in notes.items():
            if first.startswith(HELD):  # an entry's note (notes.lua)
                continue
            name, ids = json.loads(text)
            out[first] = Note(name, ids, text)
        return out

    def _notes_of(self, ids: Iterable[str]) -> dict[str, Note]:
        """The noted batches holding an entry of `ids`, by first entry id: read by the entries'
        fields (notes.lua), not every note of the group, and by the notes starting at them
        (as notes.lua looks, so a batch it refuses to note is found here)."""
        fields = [f for i in ids for f in (f"{HELD}{i}", i)]
        pipe = self.client.pipeline(transaction=False)  # (one round trip)
        for at in range(0, len(fields), PENDING_PAGE):
            pipe.hmget(self.bounds_key, fields[at : at + PENDING_PAGE])
        found = [value for page in pipe.execute() for value in page]
        firsts: set[str] = set()
        for held, value in zip(fields, found, strict=True):
            if value is not None:
                firsts.add(_text(value) if held.startswith(HELD) else held)
        out = {}
        if firsts:
            ordered = sorted(firsts, key=_order)
            texts = self.client.hmget(self.bounds_key, ordered)
            for first, text in zip(ordered, texts, strict=True):
                if text is not None:  # (forgotten since)
                    name, note_ids = json.loads(_text(text))
                    out[first] = Note(name, note_ids, _text(text))
        return out

    def _forget(self, note: Note) -> None:
        """Delete `note`, unless its first entry's note is another since."""
        self._notes_script("forget", note.ids[0], note.text)

    def _notes_script(self, *args: str) -> Any:
        script = lua_script("notes.lua")
        call = (1, self.bounds_key, *args)
        try:
            return self.client.evalsha(script.sha, *call)
        except redis.exceptions.NoScriptError:
            return self.client.eval(script.source, *call)

    def _forget_done_notes(self) -> None:
        """Delete the notes none of whose entries is pending: left by a consumer stopped
        between XACK and forgetting its note, or of entries trimmed while pending (a claim
        drops them from the pending list). An entry acknowledged or dropped is never taken
        again, so such a note would never be read again; one with an entry still pending, in
        any consumer's hands, stays (a retry must find it)."""
        for note in self._notes().values():
            if not self._pending(note.ids, one=True):
                self._forget(note)
        self.notes_checked = time.monotonic()

    def _pending(self, ids: Sequence[str], *, one: bool = False) -> set[str]:
        """The entries of `ids` in the group's pending list, whoever holds them (`one`: the
        first page that holds one)."""
        wanted, out = set(ids), set()
        start, end = min(ids, key=_order), max(ids, key=_order)
        while True:
            found = self.client.xpending_range(self.stream, self.group, start, end, PENDING_PAGE)
            out |= {_text(p["message_id"]) for p in found} & wanted
            if (one and out) or len(found) < PENDING_PAGE:
                return out
            start = _after(_text(found[-1]["message_id"]))

    def _claim(self, ids: Sequence[str]) -> list[Entry]:
        """The entries of `ids` still pending in other hands, claimed (one acknowledged, or
        deleted, is not)."""
        if not ids:
            return []
        return _entries(self.client.xclaim(self.stream, self.group, self.consumer, 0, ids))

    def _take_again(self) -> int:
        """Own pending entries, then others' idle ones: recorded in their noted batches."""
        # own pending entries (a restart under the same name): at most a batch or two
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: "0"})
        # by id: with min_idle_ms 0, XAUTOCLAIM hands back the consumer's own entries too
        taken = {i: (i, f) for i, f in (_entries(reply[0][1]) if reply else [])}
        cursor = "0-0"
        while True:  # entries idle past min_idle_ms in other consumers' hands
            reply = self.client.xautoclaim(
                self.stream, self.group, self.consumer, self.min_idle_ms, cursor, count=1000
            )
            cursor = _text(reply[0])
            for i, f in _entries(reply[1]):
                taken.setdefault(i, (i, f))
            if cursor == "0-0":
                break
        self._settle(taken.values())
        self.progress.retried += len(taken)
        checked = self.notes_checked
        if checked is None or time.monotonic() - checked >= DONE_NOTES_EVERY_S:
            self._forget_done_notes()
        return len(taken)

    def run(self, *, stop: Callable[[Progress], bool] | None = None) -> Progress:
        """Consume until `stop(progress)` is true (checked after every read), or forever."""
        self._take_again()
        last_claim = time.monotonic()
        wait_ms = read_wait_ms(self.block_ms, _socket_timeout(self.client))
        while stop is None or not stop(self.progress):
            reply = self.client.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self.batch,
                block=wait_ms,
            )
            entries = _entries(reply[0][1]) if reply else []
            self._settle(entries, new=True)
            if time.monotonic() - last_claim > self.min_idle_ms / 1000:
                self._take_again()
                last_claim = time.monotonic()
            if not entries and stop is not None and stop(self.progress):
                break
        return self.progress
