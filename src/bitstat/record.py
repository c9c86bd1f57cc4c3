"""Recording, written once for the sync and the async API: check a batch, number its ids, plan
its writes and apply them all or nothing, rejecting alone the events whose sums would overflow.

A mixin of `ops.Namespace`, whose state (schema, key names, id caches) it uses.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np

from . import sums
from .calls import Call, Links, MadeAgain, Op
from .errors import (
    BatchError,
    BitstatError,
    ConnectionError,
    InvalidEvent,
    Reason,
    ServerError,
)
from .events import Columns, parse_batch, rejection
from .keys import REVERSE_BUCKET_BITS, Keys, member_text
from .plan import UNNUMBERED, Planning, finished, planning, started, sum_bound_of
from .schema import ExpireChange, PeriodAdded, Schema, read_stored
from .single import Single, parse_one, plan_one, sum_bound_one
from .transport import (
    FIRST_BACKOFF,
    Transport,
    apply_call,
    backed_off,
    call,
    ids_pieces,
    values_call,
)
from .writes import Group, WritePlan

DEFAULT_BATCH_TTL = 7 * 86400  # how long a batch id is remembered: retries come sooner
# how long an id bitstat made is remembered: its own retries, then the caller's call again after
# a BatchError, come sooner; a marker a call costs ~100 bytes for this long (1,000 calls/s: 60 MB)
AUTO_BATCH_TTL = 600
DEFAULT_DEADLINE = 60.0  # seconds a batch is tried again on failures that may pass
# the calls that write a batch (or, `confirm`, wait for a replica of one found in)
WRITES = (Transport.apply, Transport.mark, Transport.send_apply, Transport.confirm)
IN_DOUBT_LIMIT = 1024  # failed batches remembered by content, the oldest forgotten first
ID_CACHE_LIMIT = 2_000_000
SCHEMA_TTL = 5.0  # seconds a client trusts the schema it holds (another may configure it)
UNREAD = object()  # a namespace token (Recording.namespace_made, .identity_epoch) not read yet
SUM_REFUSED = -1  # apply.lua's answer when a sum would overflow: nothing of the group written
LEASE_OVER = -2  # its answer when a queue claim's lease is over (T op): nothing written
SUM_RETRIES = 3
SMALL_BATCH = 64  # up to this many events, values new to this client are numbered by the write
# From this many events, a single server gets a batch of 2 to PARTS event names in parts, one
# name each, each planned while the server writes the one before (`Recording.record_parts`)
PART_MIN = 4096
PARTS = 8
# A name's part larger than 2/PIECES of its batch, over PIECE_WEEKS weeks or more (a backfill's
# spread), is cut by weeks into pieces of about 1/PIECES (PIECE_MIN events or more): Redis
# starts on the batch sooner, and the last write waited for is smaller (a backfill by 5,000
# over 8 weeks: +9.7% events a second, Redis +6% instructions an event: each piece writes its
# name's month and year keys again). Not a live batch's (one week, or two: cut there, a live
# stream by 50,000 lost 2%)
PIECES = 10
PIECE_MIN = 400
PIECE_WEEKS = 3
# A batch marker's value while its batch is written in parts: a write of the whole batch then
# answers it and writes nothing, and a try of the batch goes on in parts
IN_PARTS = b"P"
LATE_PARTS = 60  # seconds a parts mark outlives a try's deadline (a part written late)
log = logging.getLogger("bitstat")


class LeaseOver(BitstatError):
    """A queue claim's lease ended while its batch was written (the flush stalled): this
    flush writes no more of it; the flush that takes the claim over writes the rest."""


@dataclass
class Applying:
    """A batch's writes sent, their answers read later (`Transport.apply_sent`)."""

    ticket: Any
    calls: list[tuple[list[str], list[Any]]]


@dataclass
class TrackResult:
    """What `track_many` did: how many events were recorded, which were rejected and why, and
    per period how many recorded events fell in buckets already past that period's retention
    (`Schema.expire`), so that period keeps nothing of them. `recorded` counts what this call
    wrote (its retries included): events of a batch id found in, written by another call (an
    earlier one, or a concurrent sender of the same id), are that call's to report."""

    recorded: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    expired: dict[str, int] = field(default_factory=dict)


class AutoIds:
    """Batch ids made by bitstat: a random prefix per process (a forked child draws its own) and
    a serial, so no two calls anywhere share one."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = f"auto:{secrets.token_hex(8)}"
        self.serial = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}:{next(self.serial)}"


class InDoubt:
    """Batches sent under an id bitstat made whose call failed after some of it may have been
    written, by namespace and content, until their markers expire: the same events sent again
    (the caller's retry) go under the same id, so they are recorded once. Empty while nothing
    fails: a call then costs a dict lookup, and its events are fingerprinted only when a failed
    batch of as many events waits."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.lock = threading.Lock()
        # (namespace, door, events, fingerprint) -> (id, until); the door ("push": a track()
        # push's token, "batch": a batch id) keeps one door's id from being taken for another's
        self.ids: dict[tuple[str, str, int, bytes], tuple[str, float]] = {}

    @staticmethod
    def fingerprint(events: Sequence[Any]) -> bytes:
        return hashlib.blake2b(
            repr(events).encode("utf-8", "surrogatepass"), digest_size=16
        ).digest()

    def find(self, namespace: str, events: Sequence[Any], door: str = "batch") -> str | None:
        if not self.ids:
            return None
        with self.lock:
            now = time.monotonic()
            for key, (_, until) in list(self.ids.items()):
                if until <= now:
                    del self.ids[key]
            if not any(k[:3] == (namespace, door, len(events)) for k in self.ids):
                return None
            found = self.ids.get((namespace, door, len(events), self.fingerprint(events)))
        return None if found is None else found[0]

    def remember(
        self, namespace: str, events: Sequence[Any], batch_id: str, ttl: int, door: str = "batch"
    ) -> None:
        key = (namespace, door, len(events), self.fingerprint(events))
        with self.lock:
            self.ids.pop(key, None)
            self.ids[key] = (batch_id, time.monotonic() + ttl)
            while len(self.ids) > IN_DOUBT_LIMIT:
                del self.ids[next(iter(self.ids))]

    def forget(self, namespace: str, events: Sequence[Any], door: str = "batch") -> None:
        with self.lock:
            self.ids.pop((namespace, door, len(events), self.fingerprint(events)), None)


# per process: a caller may open a new Stats after an error, and its retry is still recognised
AUTO_IDS = AutoIds()
IN_DOUBT = InDoubt()
os.register_at_fork(after_in_child=AUTO_IDS.reset)
# (a lock another thread held at the fork would stay held in the child: its first call hangs)
os.register_at_fork(after_in_child=lambda: setattr(IN_DOUBT, "lock", threading.Lock()))


# pure work of the caller's to do while the server writes the last parts of a batch in parts
# (`bitstat ingest` reads its next batch): the client waited for them idle. Called once or
# more (a retried batch): it must not do twice what it did once.
MEANWHILE: ContextVar[Callable[[], None] | None] = ContextVar("bitstat_meanwhile", default=None)


def gave_up(
    size: int, batch_id: str, auto: bool, attempts: int, landed: bool, cause: Exception, ttl: int
) -> str:
    """The message of a BatchError: what failed, whether the batch may be in, how to resend."""
    tries = "1 try" if attempts == 1 else f"{attempts} tries"
    head = (
        f"recording a batch of {size} event(s) under batch id {batch_id!r}: gave up after {tries}"
    )
    state = (
        "some or all of it may have been recorded"
        if landed
        else "nothing of it was recorded (the server refused it, or it was never sent)"
    )
    again = f"send the same events again with batch_id={batch_id!r}"
    if auto:
        again += (
            f" (or call track_many again with the same events from this process within"
            f" {ttl} s, which sends them under that id)"
        )
    return f"{head}: {cause}\n{state}; {again}: the batch is recorded once."


def claim_gave_up(
    size: int, batch_id: str, auto: bool, attempts: int, landed: bool, cause: Exception, ttl: int
) -> str:
    """The message of a BatchError of a queue claim's batch: its events are track()'s, held in
    the claim, not a caller's to send again (under its id they would be taken for the claim's)."""
    tries = "1 try" if attempts == 1 else f"{attempts} tries"
    state = "some of them may have been recorded" if landed else "none of them was recorded"
    return (
        f"applying {size} event(s) queued by track() (queue claim {batch_id!r}): gave up after"
        f" {tries}: {cause}\n{state}; they stay claimed, and the next flush(), read or write of"
        " this Stats applies them first (another client's flush, once the claim's lease is"
        " over): each is recorded once"
    )


N = TypeVar("N", bound="Recording")


def retrying(ns: N, store: Any, deadline: float) -> N:
    """`ns` with the store's durability and a batch's retry deadline (`connect()`'s)."""
    if deadline <= 0:
        raise ValueError(f"deadline must be > 0 seconds, got {deadline!r}")
    ns.deadline = deadline
    ns.replicated = bool(store.io.replicas)
    ns.auto_ttl = min(ns.batch_ttl, AUTO_BATCH_TTL)
    return ns


def note(rejected: list[tuple[int, str]]) -> str:
    """Events rejected for their sums, as a batch's marker keeps them: index, reason, field."""
    return json.dumps([(i, why, getattr(why, "field", None)) for i, why in rejected])


def looked_up(
    cache: dict[str, int], new: dict[str, int], texts: Sequence[str]
) -> tuple[list[int], dict[str, int]]:
    """The numbers of `texts` (each in `new` or the cache), and the cache to keep from now on:
    this one with `new` added, or, past its limit, a new one of `new` alone. A cache is never
    emptied in place: another thread may be between its look at the cache and its reading of
    the numbers (a tracker's two senders), and reads the one it looked at."""
    if len(cache) + len(new) > ID_CACHE_LIMIT:
        return [new[t] if t in new else cache[t] for t in texts], dict(new)
    cache.update(new)
    return list(map(cache.__getitem__, texts)), cache  # (in C: a batch's every value)


def rows_by_code(codes: np.ndarray) -> list[tuple[int, list[int]]]:
    """(event code, its rows in order) per event of a batch."""
    if not len(codes) or codes.min() == codes.max():
        return [(int(codes[0]), list(range(len(codes))))] if len(codes) else []
    order = np.argsort(codes, kind="stable")
    cuts = np.flatnonzero(np.diff(codes[order])) + 1
    return [(int(codes[part[0]]), part.tolist()) for part in np.split(order, cuts)]


class Part(NamedTuple):
    """Events of one name of a batch written in parts, its rows in batch order: those of some
    of its weeks (`week_numbers`), each week's marker set as they go in; `whole`: every week
    the name has in the batch, so the name's own marker is set too."""

    name: str
    weeks: tuple[int, ...]
    rows: np.ndarray
    whole: bool


def week_numbers(wall: np.ndarray) -> np.ndarray:
    """The week (Monday to Sunday) of each wall-clock time, counted from 1969-12-29."""
    return (wall // 86400 + 3) // 7


def parts_of(cols: Columns, forced: bool = False) -> list[Part] | None:
    """A batch's parts on a single server, the largest first: an event name each, a large one
    cut into pieces of consecutive weeks (PIECES). Each week of a name has its marker, so a
    retry whose events or pieces fall otherwise still finds what is in (and the name's marker,
    when a part holds the whole name, as before weeks: a name a part of an earlier version
    wrote). None for a batch too small, of one name or of more than PARTS names (one call a
    name would cost more than it saves), unless `forced`: an earlier try of the batch went in
    parts, so this one must (`IN_PARTS`)."""
    by_name = rows_by_code(cols.codes)
    if not forced and not (len(cols) >= PART_MIN and 2 <= len(by_name) <= PARTS):
        return None
    weeks = week_numbers(cols.wall)
    target = max(PIECE_MIN, -(-len(cols) // PIECES))
    parts: list[Part] = []
    for code, listed in by_name:
        name, rows = cols.names[code], np.array(listed, dtype=np.int64)
        of_row = weeks[rows]
        present, counts = np.unique(of_row, return_counts=True)
        if len(rows) < 2 * target or len(present) < PIECE_WEEKS:
            parts.append(Part(name, tuple(present.tolist()), rows, True))
            continue
        first, held = 0, 0
        for w, n in enumerate(counts.tolist()):
            held += n
            if held >= target or w == len(counts) - 1:
                piece = present[first : w + 1]
                keep = (of_row >= piece[0]) & (of_row <= piece[-1])
                parts.append(Part(name, tuple(piece.tolist()), rows[keep], False))
                first, held = w + 1, 0
    return sorted(parts, key=lambda p: -len(p.rows))


def by_week(part: Part, wall: np.ndarray) -> list[Part]:
    """A part of several weeks as a part a week."""
    of_row = week_numbers(wall[part.rows])
    return [Part(part.name, (w,), part.rows[of_row == w], False) for w in part.weeks]


def ids_of_rows(value_ids: dict[int, np.ndarray], rows: np.ndarray) -> dict[int, np.ndarray]:
    """The value ids of some rows of a batch, per `unique` rule."""
    return {idx: ids[rows] for idx, ids in value_ids.items()}


def present_members(rows: list[int], values: list[Any]) -> tuple[list[int], list[str]]:
    """The rows that hold a value, and their values as member texts."""
    members = list(map(values.__getitem__, rows))
    if None in members:
        kept = [(r, m) for r, m in zip(rows, members, strict=True) if m is not None]
        rows, members = [r for r, _ in kept], [m for _, m in kept]
    if set(map(type, members)) - {str}:
        members = [m if type(m) is str else member_text(m) for m in members]
    return rows, members


def noted(marker: bytes) -> list[tuple[int, str]]:
    """The events a batch had rejected for their sums, as its marker keeps them ("1": none)."""
    if marker == b"1" or marker == IN_PARTS:
        return []
    return [(int(i), Reason(str(why), *field)) for i, why, *field in json.loads(marker)]


@dataclass
class Numbering:
    """A batch's values of `unique` rules on their way to ids: the ids per rule (known ones
    filled in), and the values.lua calls sent for the others, with where their ids go."""

    ids: dict[int, np.ndarray] = field(default_factory=dict)
    calls: list[tuple[list[str], list[Any]]] = field(default_factory=list)
    asked: list[tuple[int, list[int], list[str], tuple[str, str], dict[str, int], list[str]]] = (
        field(default_factory=list)
    )  # (rule, rows, their values, (event, property), its cache, the values sent), a call each
    ticket: Any = None  # of the calls sent, until their ids are read
    generation: int = 0  # the namespace's identity generation when the values were looked up


@dataclass
class IdMapping:
    """A batch's actor ids on their way to bit offsets (`Recording.send_offsets`): the rows
    with an actor, their ids, and those new to this client sent to be mapped."""

    rows: list[int]
    ids: list[str]
    cache: dict[str, int]  # the one the ids were looked up in
    generation: int  # the namespace's identity generation then
    missing: list[str] = field(default_factory=list)  # the ids new to this client
    calls: list[tuple[list[str], list[Any]]] = field(default_factory=list)  # sent for them
    ticket: Any = None  # of those, until their offsets are read


class Recording:
    """The recording operations of a namespace."""

    keys: Keys
    schema: Schema
    cluster: bool
    batch_ttl: int
    id_cache: dict[str, int]
    value_cache: dict[tuple[str, str], dict[str, int]]
    key_memo: dict[Any, Any]
    bitmap_keys: set[str]
    name: str
    identity_generation: int  # bumped by forget, alias and drop (ops.Namespace)
    shard_cache: list[int]
    known_events: set[str]
    expire_changes: tuple[ExpireChange, ...]  # the stored schema's (schema.stored_text)
    periods_added: tuple[PeriodAdded, ...]  # the stored schema's (schema.stored_text)
    schema_read: float = float("-inf")  # when the stored schema was last read (monotonic)
    links: Links  # the connections the store made (ops.Namespace), and how many at the last
    links_seen: int  # look (check_links)
    # the namespace's tokens (Keys.made, Keys.identity_epoch) as last read with the schema;
    # UNREAD before the first read
    namespace_made: Any = UNREAD
    identity_epoch: Any = UNREAD
    schema_stored: bool = False  # whether the namespace holds a schema, as last read
    schema_lost: bool = False  # dropped since: the next write stores this client's again
    # set by Stats from connect()'s arguments
    deadline: float = DEFAULT_DEADLINE
    auto_ttl: int = AUTO_BATCH_TTL
    replicated: bool = False  # batches are acknowledged once a replica has them

    @staticmethod
    def one_record(event: str | Mapping[str, Any], props: Mapping[str, Any]) -> Mapping[str, Any]:
        """The event of `track(event, **props)`: the mapping given, or the name and props."""
        if type(event) is dict or isinstance(event, Mapping):  # (an ABC's check costs)
            if props:
                raise InvalidEvent("pass either a mapping or keyword properties, not both")
            return event
        if "event" in props:
            raise InvalidEvent("the event name is given twice", field="event")
        return {"event": event, **props}

    def checked_one(self, event: str | Mapping[str, Any], props: Mapping[str, Any]) -> Single:
        """The event of `track(event, **props)` checked; InvalidEvent says what is wrong."""
        try:
            return parse_one(self.one_record(event, props), self.schema)
        except InvalidEvent as exc:
            # worded as track_many reports a rejection
            raise InvalidEvent.of(rejection(exc)) from None

    def track_now(self, one: Single) -> Op[None]:
        """Record one checked event alone, now: planned without the batch machinery."""
        result = yield from self.track_checked([one.record], one, None, None)
        if result.rejected:  # its sum would carry a total past the limit
            raise InvalidEvent.of(result.rejected[0][1])

    def schema_fresh(self, writing: bool = True, deadline: float | None = None) -> Op[None]:
        """The stored schema, read again once `SCHEMA_TTL` seconds have passed: a running
        client follows a `configure()` (`bitstat schema set`) made by another. After a drop,
        the next write stores this client's schema again (readers elsewhere find it). For a
        write, a failure that may pass is tried again for up to `deadline` seconds (None: the
        namespace's), as the batch's own calls are; a read fails at once."""
        self.check_links()
        lost = self.schema_lost and writing
        now = time.monotonic()
        if not lost and now - self.schema_read < SCHEMA_TTL:
            return
        end = now + (self.deadline if deadline is None else deadline)
        delay = FIRST_BACKOFF
        k = self.keys
        while True:
            try:
                text, made, epoch = yield call(
                    Transport.get_many, [k.schema, k.made, k.identity_epoch]
                )
                break
            except (ConnectionError, ServerError) as exc:
                left = end - time.monotonic()
                if not writing or not exc.transient or left <= 0:
                    raise
                delay = yield from backed_off(delay, left)
        self.schema_read = now
        self.follow(made, epoch, text is not None)
        if text is None:
            if self.schema_stored and not self.schema_lost:  # dropped by another client
                self.forget_caches()
                self.schema_lost = True
            if self.schema_lost and writing:  # (the data is gone: and the expiry changes it
                # went through)
                yield call(Transport.set, k.schema, self.schema.to_json())
                yield from self.made_anew()
                self.schema_lost, self.schema_stored = False, True
                self.expire_changes, self.periods_added = (), ()
            return
        self.schema_lost, self.schema_stored = False, True
        stored, self.expire_changes, self.periods_added = read_stored(text)
        if stored != self.schema:
            self.schema = stored
            self.key_memo.clear()  # (the key names of another schema's periods)

    def follow(self, made: bytes | None, epoch: bytes | None, schema_held: bool) -> None:
        """Forget what this client learnt of the namespace when another client dropped it and
        it was made again since the last look (`made` changed: actor and value numbers started
        over), or the actor ids alone when an alias or forget changed the id map (`epoch`
        changed: an id cached before may name its old offset, where the events recorded from
        then on must not go). No `made` and no schema (`schema_held`) is a namespace dropped
        that may have been dropped again since: what was learnt is forgotten at each look
        until a write stores the schema and the token (an alias numbers ids in a dropped
        namespace without either, and a drop after it changed no token). A schema without
        `made` is a namespace written before the token: no drop. The first look only notes
        them."""
        if self.namespace_made is not UNREAD:
            if made != self.namespace_made or (made is None and not schema_held):
                self.forget_caches()
            elif epoch != self.identity_epoch:
                self.forget_ids()
        self.namespace_made, self.identity_epoch = made, epoch

    def forget_ids(self) -> None:
        """Forget the actor ids this client mapped (another client's alias or forget changed
        the id map: a cached id may name its old offset)."""
        # (a new dict, not one emptied: a batch in flight reads the one it looked at, and
        # keeps none of the mappings it learnt: the generation)
        self.id_cache = {}
        self.identity_changed()

    def identity_changed(self) -> None:
        """Batches in flight keep none of the ids or values they mapped before now (they may
        name a freed offset, or another actor's)."""
        self.identity_generation += 1

    def made_anew(self) -> Op[None]:
        """Mark the namespace made now (its schema just stored where none was): other clients
        that learnt numbers of the namespace before a drop forget them (`follow`), and so does
        this one (a `configure()` may be the first to find another client's drop)."""
        self.forget_caches()
        token = secrets.token_hex(8)
        yield call(Transport.set, self.keys.made, token)
        self.namespace_made = token.encode()

    def check_links(self) -> bool:
        """Forget what this client learnt (as `forget_caches`) when one of its connections was
        made since the last look, and read the namespace's tokens and schema again at the next
        call; whether it was. The server there may have restarted with less than it had (no
        persistence, an older snapshot, an asynchronous failover): its counters of actor
        offsets and value ids went back, and a number remembered would be another actor's.
        (A connection made for the first time costs the same: one lookup of ids again.)"""
        made = self.links.made
        if made == self.links_seen:
            return False
        self.links_seen = made
        self.forget_caches()
        self.schema_read = float("-inf")
        return True

    def sealed(self, write: Call) -> Call:
        """`write`, of the actor offsets and value ids known at the last look (`check_links`),
        to go on no connection made since (`Links.check`)."""
        return write._replace(seal=self.links_seen)

    def forget_caches(self) -> None:
        """Forget what this client learnt of the namespace's keys (after a drop, ids and values
        are numbered anew: a mapping remembered from before would name another's offset)."""
        # (new dicts, not emptied ones: a batch in flight reads the one it looked at)
        self.id_cache, self.value_cache, self.shard_cache = {}, {}, []
        self.identity_changed()
        self.bitmap_keys.clear()
        self.key_memo.clear()
        self.known_events.clear()

    def track_many(
        self,
        events: Iterable[Mapping[str, Any]],
        batch_id: str | None,
        now: float | None,
        deadline: float | None = None,
    ) -> Op[TrackResult]:
        if batch_id is not None and (not isinstance(batch_id, str) or not batch_id):
            raise InvalidEvent(f"batch_id must be non-empty text, got {batch_id!r}")
        if not isinstance(events, list | tuple):
            events = list(events)
        yield from self.schema_fresh(deadline=deadline)
        cols = parse_batch(events, self.schema, now)
        return (yield from self.track_checked(events, cols, batch_id, deadline))

    def track_checked(
        self,
        events: Sequence[Any],
        cols: Columns | Single,
        batch_id: str | None,
        deadline: float | None,
    ) -> Op[TrackResult]:
        """Record checked `events` under `batch_id`, or without one under an id made here."""
        if batch_id is not None:
            return (yield from self.track_columns(cols, batch_id, deadline=deadline))
        # no id given: the same events sent again after a BatchError get the id they failed
        # under (IN_DOUBT), any others a new one
        found = IN_DOUBT.find(self.name, events)
        auto = found or AUTO_IDS.next()
        try:
            result = yield from self.track_columns(
                cols, auto, auto=True, fresh=found is None, deadline=deadline
            )
        except BatchError as exc:
            if exc.may_have_landed:
                IN_DOUBT.remember(self.name, events, auto, self.auto_ttl)
            raise
        except GeneratorExit:  # cut short (a task cancelled, a call interrupted), maybe after
            # its write: the same batch sent again is its retry. (Not one `track()`: an
            # identical event sent again after a cancelled call may be a new one.)
            if not isinstance(cols, Single):
                IN_DOUBT.remember(self.name, events, auto, self.auto_ttl)
            raise
        if found is not None:
            IN_DOUBT.forget(self.name, events)
        return result

    def track_columns(
        self,
        cols: Columns | Single,
        batch_id: str | None,
        *,
        auto: bool = False,
        fresh: bool = False,
        deadline: float | None = None,
        claim: bool = False,
        write_until: int | None = None,
        later: list[Applying] | None = None,
    ) -> Op[TrackResult]:
        """Record a checked batch, given as columns (`track_many` parses dicts into them; a
        data frame is turned into them directly), under `batch_id` (None: an id made here), and
        try it again with that id while the failure may pass, for up to `deadline` seconds
        (None: the namespace's; 0: one try).
        `auto`: the id was made by bitstat (kept `auto_ttl` seconds, not `batch_ttl`); `fresh`:
        never sent before, so no marker of it can exist yet (it is not asked for). `claim`:
        a queue claim's batch, `batch_id` the claim's: written only while the claim is held,
        the claim forgotten by the same script call; `write_until`: the time its lease ends,
        less a margin, in milliseconds since the epoch (LeaseOver: it came while the batch was
        written, which is left to the flush that takes the claim over). `later` (such a
        batch): the writes may be sent without waiting for their answers: then an `Applying`
        is added to it, and the result is the batch's once its answers say all went in (else
        it is to be recorded again, under the same id)."""
        if batch_id is None:
            batch_id, auto, fresh = AUTO_IDS.next(), True, True
        ttl = self.auto_ttl if auto else self.batch_ttl
        end = time.monotonic() + (self.deadline if deadline is None else deadline)
        delay = FIRST_BACKOFF
        landed = False  # whether any try may have written some of the batch
        # a claim's markers a try made long (`guarded_claim`): shortened by the try that finds
        # the batch in, if the one that completed it lost its reply
        long_markers: list[str] = []
        attempt = 0
        made_again = False  # whether the last try was refused a connection made again
        while True:
            attempt += 1
            # a marker found was set by an earlier try of this call that may have written, or
            # by the failed call this one repeats (an id bitstat made, taken up again): its
            # events count as sent. After tries that wrote nothing it is another sender's (a
            # retry storm of the id), which reports them
            again = (attempt > 1 and landed) or (auto and not fresh)
            ask = not fresh or attempt > 1
            once = self.record_once(
                cols,
                batch_id,
                ttl,
                ask=ask,
                again=again,
                claim=claim,
                write_until=write_until,
                later=later,
                long_markers=long_markers,
            )
            last: Call | None = None  # the last call sent
            try:
                reply: Any = None
                while True:
                    try:
                        last = once.send(reply)
                    except StopIteration as stop:
                        return stop.value  # type: ignore[no-any-return]
                    reply = yield last
                    if last.method in WRITES:
                        landed = True
            except (ConnectionError, ServerError) as exc:
                once.close()
                if last is not None and last.method in WRITES:
                    # a call refused by the server wrote nothing; a lost reply, or a refusal
                    # after other groups of the batch, may have
                    alone = last.method is Transport.mark or len(last.args[0]) == 1
                    landed = landed or not (exc.refused and alone)
                left = end - time.monotonic()
                # (a connection made again refused by this try: the next looks the ids up
                # again at once; a second such refusal in a row waits as any failure does)
                at_once = isinstance(exc, MadeAgain) and not made_again
                made_again = isinstance(exc, MadeAgain)
                if not exc.transient or isinstance(exc, BatchError) or left <= 0:
                    text = (claim_gave_up if claim else gave_up)(
                        len(cols), batch_id, auto, attempt, landed, exc, ttl
                    )
                    raise BatchError(
                        text,
                        batch_id=batch_id,
                        may_have_landed=landed,
                        attempts=attempt,
                    ) from exc
                if not at_once:
                    delay = yield from backed_off(delay, left)

    def record_once(
        self,
        cols: Columns | Single,
        batch_id: str,
        ttl: int,
        *,
        ask: bool,
        again: bool,
        claim: bool = False,
        write_until: int | None = None,
        later: list[Applying] | None = None,
        long_markers: list[str] | None = None,
    ) -> Op[TrackResult]:
        """One try at recording a batch. `ask`: whether its marker may exist (first asked for);
        `again`: an earlier try of this same call may have recorded it, so a marker found
        answers with the count of the events it recorded (a batch id sent again by the caller
        answers 0: nothing recorded by this call)."""
        in_parts = False  # an earlier try went in parts: this one goes on so
        if ask:
            # a batch seen before answers as it did then, not by the totals of today; the
            # namespace's marker is written last, so it says the whole batch is in (a batch
            # cut short on a cluster has it not, and its missing groups are written now)
            marker = self.keys.batch(self.keys.meta_tag, batch_id)
            seen = yield call(Transport.get, marker)
            in_parts = seen == IN_PARTS and not self.cluster
            if seen is not None and not in_parts:
                if self.replicated:  # (the try that wrote it may have failed before its WAIT)
                    yield call(Transport.confirm, marker, ttl)
                if long_markers:  # (an earlier try of this call completed it, reply lost)
                    yield from self.forget_markers(long_markers, ttl)
                refused = noted(seen)
                recorded = len(cols) - len(refused) if again else 0
                return TrackResult(recorded, sorted(cols.rejected + refused))
        if not len(cols):
            return TrackResult(0, cols.rejected)
        parts: list[Part] | None = None
        if not isinstance(cols, Single):
            # the batch's values, in any order, move no total further than this
            bound = sum_bound_of(cols)
            check = not bound <= sums.LIMIT  # the batch alone could pass the limit
            # (a claim's batch goes whole: its claim is forgotten by the call that writes it)
            chosen = not check and not claim and not self.cluster and not self.replicated
            parts = parts_of(cols, forced=in_parts) if in_parts or chosen else None
        if parts is not None:
            # its ids, values and parts wait at once, each on a connection: those made before
            # the look below, as a connection made after it for the first time (the pool
            # growing) is refused to no write, and may reach a server restarted meanwhile
            yield call(Transport.fill_pool, len(parts) + 2)
        self.check_links()  # (after this try's first call: a connection it made again counts)
        links_seen = self.links_seen
        if isinstance(cols, Single):
            return (yield from self.record_single(cols, batch_id, ttl, again=again))
        rejected = list(cols.rejected)
        overflow: list[tuple[int, str]] = []
        clock = time.time()
        if parts is not None:
            # marked first, answered at once; then the actor ids new to this client go to be
            # mapped, the values are made ready and sent to be numbered meanwhile, and the
            # first part is planned while the server numbers them. (A batch the mark finds in
            # answers at once: ids or values sent then would go unread, their connections
            # closed, and the client forget what it learnt.)
            held = yield from self.marked_in_parts(batch_id, ttl)
            offsets = np.full(len(cols), -1, dtype=np.int64)
            numbering = Numbering()
            if held is None or held == IN_PARTS:
                mapping = yield from self.send_offsets(cols)
                numbering = yield from self.send_numbering(cols)
                offsets = yield from self.offsets_sent(cols, mapping)
            return (
                yield from self.record_parts(
                    cols,
                    offsets,
                    numbering,
                    parts,
                    batch_id,
                    ttl,
                    clock,
                    bound,
                    again,
                    held=held,
                    links_seen=links_seen,
                )
            )
        if isinstance(cols.actors, np.ndarray):
            offsets = cols.actors
        else:
            offsets = np.full(len(cols), -1, dtype=np.int64)
            present = [i for i, a in enumerate(cols.actors) if a is not None]
            if present:
                offsets[present] = yield from self.offsets([cols.actors[i] for i in present])
        numbering = yield from self.send_numbering(cols)
        applied_tags: set[str] = set()
        # whether this call wrote the namespace's group, last, whose marker says the batch is
        # in: that call reports the batch (another sender of the same id, concurrent on a
        # cluster, may have written some of the other groups: it reports nothing)
        completed = False

        def stages(
            cols: Columns, offsets: np.ndarray, value_ids: dict[int, np.ndarray] | None
        ) -> Planning | WritePlan:
            return started(
                planning(
                    cols,
                    offsets,
                    self.schema,
                    self.keys,
                    batch_id=batch_id,
                    single=not self.cluster,
                    value_ids=value_ids,
                    now=clock,
                    sum_bound=0.0 if check else bound,  # once checked in order: final totals
                    # the marker keeps the events rejected for their sums: a retry of the batch
                    # reports them, though the totals it would be checked against have moved on
                    note=note(overflow) if overflow else None,
                    bitmaps=self.bitmap_keys,
                    expire_changes=self.expire_changes,
                )
            )

        # while the server numbers the batch's new values, the rest of it is planned (when no
        # sum needs checking first, which could drop events from it)
        early = stages(cols, offsets, None) if numbering.ticket is not None and not check else None
        value_ids = yield from self.numbered(numbering)
        if self.check_links() or self.links_seen != links_seen:
            # a connection made while the batch was numbered (a new one: no error said so)
            # may have reached a restarted server: numbers from before and after may mix
            return (yield from self.record_once(cols, batch_id, ttl, ask=ask, again=again))
        for _ in range(SUM_RETRIES):
            if check:  # some total could overflow: find the events that would carry it there
                bad = yield from self.overflowing(cols, applied_tags, clock)
                if bad:
                    overflow += [(cols.index[r], why) for r, why in bad]
                    keep = np.setdiff1d(np.arange(len(cols)), [r for r, _ in bad])
                    cols, offsets = cols.take(keep), offsets[keep]
                    value_ids = {k: v[keep] for k, v in value_ids.items()}
                    if not len(cols):  # nothing left to write: the id still answers so
                        # (unless a concurrent writer of the id marked it since: its mark,
                        # "in parts" say, stands, and so what it writes is counted)
                        marker = self.keys.batch(self.keys.meta_tag, batch_id)
                        yield call(Transport.mark, marker, note(overflow), ttl, unless_held=True)
                        return TrackResult(0, sorted(rejected + overflow))
            plan = finished(
                early if early is not None else stages(cols, offsets, value_ids), value_ids
            )
            early = None
            # on a cluster, groups applied by an earlier try are not sent again (events
            # rejected since belong to the group that refused, so those groups are unchanged)
            groups = [g for g in plan.groups if g.tag not in applied_tags]
            if claim and not (
                yield from self.guarded_claim(groups, batch_id, write_until, long_markers)
            ):
                return TrackResult(len(cols) if again else 0, sorted(rejected + overflow))
            # (one group: a cluster's, sent at once, could write the batch's marker, which
            # says all of it is in, before another failed; and its client sends them in turn)
            if later is not None and not check and not self.replicated and not self.cluster:
                calls = [apply_call(g, ttl) for g in groups]
                later.append(
                    Applying((yield self.sealed(call(Transport.send_apply, calls))), calls)
                )
                results: list[int | bytes] = [1] * len(groups)  # (if the answers say so)
            else:
                results = yield self.sealed(call(Transport.apply, groups, ttl, self.bitmap_keys))
            if LEASE_OVER in results:
                raise LeaseOver(
                    f"the lease of the queue claim {batch_id!r} ended while its batch was"
                    " written: the flush that takes it over writes the rest"
                )
            if IN_PARTS in results and not self.cluster:  # an earlier try is going in parts
                numbering = Numbering(ids=value_ids)
                parts = parts_of(cols, forced=True)
                assert parts is not None
                went = yield from self.record_parts(
                    cols, offsets, numbering, parts, batch_id, ttl, clock, bound, again
                )
                return TrackResult(
                    went.recorded, sorted(set(went.rejected + overflow)), went.expired
                )
            for g, result in zip(groups, results, strict=False):
                if isinstance(result, bytes):  # this batch id was applied before
                    applied_tags.add(g.tag)
                    overflow = noted(result)
                elif result == 1:
                    applied_tags.add(g.tag)
                    completed = completed or g.tag == self.keys.meta_tag
            if SUM_REFUSED not in results:
                break
            check = True
        else:
            raise ServerError(
                f"recording a batch: sums kept overflowing after {SUM_RETRIES} tries"
                " (other writers adding to the same totals?); the groups applied so far are"
                " kept, send the batch again with the same batch_id"
            )
        recorded = plan.recorded if completed or again else 0
        if claim and self.cluster and completed:
            meta = self.keys.meta_tag
            yield from self.forget_markers([g.batch_key for g in plan.groups if g.tag != meta], ttl)
        # a batch recorded before (its id seen) reports nothing of what it held, unless by an
        # earlier try of this call
        return TrackResult(
            recorded, sorted(rejected + overflow), dict(plan.expired) if recorded else {}
        )

    def guarded_claim(
        self,
        groups: list[Group],
        batch_id: str,
        write_until: int | None,
        long_markers: list[str] | None = None,
    ) -> Op[bool]:
        """The groups of the queue claim `batch_id`'s batch made to forget the claim, and to be
        written only while it is held: its namespace group (written last) does both in its
        script call (apply.lua's D op). No claim may outlive its batch: taken over once its
        markers expired, or by a flush that stalled past its lease, it would be counted twice.

        On a cluster the other groups are in other slots than the claim's: whether the claim
        is held is looked up before they are written; each is written only before its lease
        ends (`write_until`, by the server's clock: apply.lua's T op), so a flush stalled past
        it writes nothing (the flush that took the claim over has written the batch, or will);
        and each keeps its marker `batch_ttl`, not 10 minutes, so that a flush that died before
        the namespace's group leaves markers the takeover still finds however late it comes
        (`forget_markers` shortens them once the batch is in; `long_markers` gets their names,
        for a later try of the call to shorten should the reply of the one that completed the
        batch be lost)."""
        meta = groups[-1] if groups and groups[-1].tag == self.keys.meta_tag else None
        if meta is not None:
            meta.args += ["D", meta.key(self.keys.queue_claims), batch_id]
        if not self.cluster:
            return True
        if (yield call(Transport.hget, self.keys.queue_claims, batch_id)) is None:
            return False
        for g in groups:
            if g is not meta:
                g.ttl = self.batch_ttl
                if write_until is not None:
                    g.args += ["T", write_until]
                if long_markers is not None and g.batch_key not in long_markers:
                    long_markers.append(g.batch_key)
        return True

    def forget_markers(self, keys: list[str], ttl: int) -> Op[None]:
        """A claim's batch is in on a cluster (its namespace group written): the markers of its
        other groups, `keys`, kept long by `guarded_claim`, are kept `ttl` from now, as any
        batch's. A failure here costs only memory until they expire: logged, not raised."""
        if not keys:
            return
        try:
            yield call(Transport.expire_all, keys, ttl)
        except (ConnectionError, ServerError) as exc:
            log.info("bitstat: a queue claim's batch markers keep their long expiry: %s", exc)

    def marked_in_parts(self, batch_id: str, ttl: int) -> Op[bytes | None]:
        """Mark the batch as going in parts: None, or what its marker held (`IN_PARTS`: an
        earlier try goes in parts; else the batch went in meanwhile)."""
        marker = self.keys.batch(self.keys.meta_tag, batch_id)
        # (kept past the deadline of this try: the parts' markers are set until then)
        held: bytes | None = yield call(
            Transport.mark_parts, marker, ttl + int(self.deadline) + LATE_PARTS
        )
        return held

    def record_parts(
        self,
        cols: Columns,
        offsets: np.ndarray,
        numbering: Numbering,
        parts: list[Part],
        batch_id: str,
        ttl: int,
        clock: float,
        bound: float,
        again: bool,
        held: bytes | Literal[False] | None = False,
        links_seen: int | None = None,
    ) -> Op[TrackResult]:
        """`record_once` of a batch in parts (`parts_of`), on a single server.

        The batch's marker first says the batch goes in parts (`IN_PARTS`, unless it holds
        the batch already: then that answers), so no write of the whole batch lands from then
        on (its script finds the marker), and every later try goes on in parts. Each part (an
        event name, or some weeks of one) is sent as soon as it is planned, under its weeks'
        markers, and the next one planned while the server writes it; a part is all or
        nothing, and a part one of whose weeks is marked writes nothing: its weeks are then
        sent one by one (those marked answer without writing). Once every part is in, the
        batch's marker says so. `held`: what `marked_in_parts` found, when the caller marked
        the batch (before it sent the values to number, whose answer the mark then waits
        not for). `links_seen`: the connections made when the caller looked last
        (`check_links`), before it sent the batch's ids and values to be numbered."""
        marker = self.keys.batch(self.keys.meta_tag, batch_id)
        if held is False:
            held = yield from self.marked_in_parts(batch_id, ttl)
        if held is not None and held != IN_PARTS:  # the batch went in meanwhile
            if self.replicated:  # (acknowledged once a replica has it, as a whole write is)
                yield call(Transport.confirm, marker, ttl)
            kept = noted(held)
            return TrackResult(len(cols) - len(kept) if again else 0, sorted(cols.rejected + kept))
        overflow: list[tuple[int, str]] = []  # rejected for their sums: (index, reason)
        checked = False  # whether the sums were checked in order against the stored totals
        done: dict[int, int] = {}  # events recorded (now or before) of each part that is in
        written: set[int] = set()  # the parts this call wrote (the others: before, or by
        # another sender of the same batch id meanwhile, which reports them)
        expired: dict[str, int] = {}  # of the parts written now

        # the batch indexes of each part's events, those rejected later included
        owned = [{cols.index[r] for r in part.rows.tolist()} for part in parts]
        split: list[int] = []  # parts of single weeks, cut from a part a marker answered

        def plan(k: int, value_ids: dict[int, np.ndarray] | None) -> Planning | WritePlan:
            part = parts[k]
            rows = part.rows
            return started(
                planning(
                    cols.take(rows),
                    offsets[rows],
                    self.schema,
                    self.keys,
                    batch_id=batch_id,
                    single=True,
                    value_ids=None if value_ids is None else ids_of_rows(value_ids, rows),
                    now=clock,
                    sum_bound=0.0 if checked else bound,
                    # this part's events rejected so far: a retry finding it in reports them
                    note=note([r for r in overflow if r[0] in owned[k]]) if overflow else None,
                    bitmaps=self.bitmap_keys,
                    marker=self.keys.batch_piece(batch_id, part.name, part.weeks[0]),
                    expire_changes=self.expire_changes,
                )
            )

        def marked(k: int, p: WritePlan) -> WritePlan:
            """Part k's plan, told its other markers (apply.lua's M and Q ops)."""
            part, g = parts[k], p.groups[0]  # (a single server's plan: one group)
            name = self.keys.batch_part(batch_id, part.name)
            more = [self.keys.batch_piece(batch_id, part.name, w) for w in part.weeks[1:]]
            if part.whole:
                more.append(name)
            else:
                g.args += ["Q", g.key(name)]
            if more:
                g.args += ["M", len(more), *map(g.key, more)]
            return p

        def settle(k: int, p: WritePlan, answer: int | bytes | None) -> bool:
            """Whether part k is in: written now, or before (its marker's note answers), or
            to be sent again a week at a time (`split`: a marker of one of its weeks, or of
            its name, answered)."""
            if isinstance(answer, bytes) and len(parts[k].weeks) > 1:
                # each week owns its events of part k, those rejected so far included (gone
                # from its rows): its marker's note must name them
                week_of = dict(zip(cols.index, week_numbers(cols.wall).tolist(), strict=True))
                for week in by_week(parts[k], cols.wall):
                    split.append(len(parts))
                    parts.append(week)
                    owned.append({i for i in owned[k] if week_of[i] == week.weeks[0]})
                return True
            if isinstance(answer, bytes):
                refused = [r for r in noted(answer) if r[0] in owned[k]]
                overflow.extend(r for r in refused if r not in overflow)
                done[k] = len(owned[k]) - len(refused)
            elif answer == 1:
                written.add(k)
                done[k] = p.recorded
                for period, n in p.expired.items():
                    expired[period] = expired.get(period, 0) + n
            else:
                return False
            return True

        # the first part planned while the server numbers the batch's new values
        early = plan(0, None) if numbering.ticket is not None else None
        value_ids = yield from self.numbered(numbering)
        if links_seen is not None and (self.check_links() or self.links_seen != links_seen):
            # a connection made while the batch was numbered (the ids' and the values' wait
            # at once: one made for the first time, which no write refuses) may have reached a
            # restarted server: numbers from before and after may mix (the batch is marked)
            return (yield from self.record_once(cols, batch_id, ttl, ask=True, again=again))
        sent: list[tuple[int, WritePlan, Any, Any]] = []
        waiting: list[int] = []  # parts to write one by one: a sum refused, a script missing
        for k in range(len(parts)):
            if k == 0 and early is not None:
                p = marked(0, finished(early, ids_of_rows(value_ids, parts[0].rows)))
            else:
                p = marked(k, finished(plan(k, value_ids), {}))
            if self.replicated:  # (each part confirmed by a replica before the next)
                results = yield self.sealed(call(Transport.apply, p.groups, ttl, self.bitmap_keys))
                if not settle(k, p, results[0]):
                    waiting.append(k)
                continue
            calls = [apply_call(g, ttl) for g in p.groups]
            sent.append((k, p, calls, (yield self.sealed(call(Transport.send_apply, calls)))))
        if sent and (meanwhile := MEANWHILE.get()) is not None:
            meanwhile()  # (the client waited idle while the server wrote its last parts)
        for k, p, calls, ticket in sent:
            answers = yield call(Transport.apply_answers, ticket, calls, self.bitmap_keys)
            if not settle(k, p, answers[0]):
                waiting.append(k)
        tries = 0  # rounds in which a part was refused for its sums
        while (waiting or split) and tries < SUM_RETRIES:
            # a part cut into weeks here (`split`) has its weeks sent in the same round, before
            # any check: unchecked, they go under the batch's bound, and a week refused is
            # checked with the others (its name's totals are theirs too)
            queue, refused = waiting + split, []
            split.clear()
            while queue:
                k = queue.pop(0)
                if len(parts[k].rows) == 0:  # each of its events rejected for its sums
                    done[k] = 0
                    continue
                p = marked(k, finished(plan(k, value_ids), {}))
                results = yield self.sealed(call(Transport.apply, p.groups, ttl, self.bitmap_keys))
                if not settle(k, p, results[0]):
                    refused.append(k)  # SUM_REFUSED: nothing of this part written
                queue += split
                split.clear()
            waiting = refused
            if not refused:
                break
            tries += 1
            # a total could pass the limit: reject the events that would carry one there, in
            # order and against the stored totals (which hold every other part of the batch by
            # now: a piece shares its name's month and year totals with the other pieces)
            checked = True
            rows = np.sort(np.concatenate([parts[k].rows for k in refused]))
            found = yield from self.overflowing(cols.take(rows), set(), clock)
            bad = np.array(sorted(int(rows[r]) for r, _ in found), dtype=np.int64)
            overflow.extend((cols.index[int(rows[r])], why) for r, why in found)
            parts = [part._replace(rows=part.rows[~np.isin(part.rows, bad)]) for part in parts]
        if waiting:
            raise ServerError(
                f"recording a batch: sums kept overflowing after {SUM_RETRIES} tries"
                " (other writers adding to the same totals?); the parts applied so far are"
                " kept, send the batch again with the same batch_id"
            )
        yield call(Transport.mark, marker, note(overflow) if overflow else "1", ttl)
        recorded = sum(n for k, n in done.items() if again or k in written)
        return TrackResult(recorded, sorted(cols.rejected + overflow), expired if recorded else {})

    def record_single(
        self, one: Single, batch_id: str, ttl: int, *, again: bool
    ) -> Op[TrackResult]:
        """`record_once` of one event: planned by `plan_one`, in one round trip when its actor
        is known here. An event whose sum could reach the limit goes the batch way, which
        checks it against the stored totals."""
        bound = sum_bound_one(one)
        if bound > sums.LIMIT:
            return (
                yield from self.record_once(
                    self.as_columns(one), batch_id, ttl, ask=False, again=again
                )
            )
        offset = -1
        if one.actor is not None:
            if isinstance(one.actor, int):
                offset = one.actor
            else:
                found = self.id_cache.get(one.actor)
                offset = (
                    found if found is not None else int((yield from self.offsets([one.actor]))[0])
                )
        value_ids: dict[int, int] = {}
        for idx, spec in enumerate(one.specs):
            value = one.row.get(spec)
            if spec[0] == "unique" and value is not None:
                cache = self.value_cache.setdefault((one.name, spec[1]), {})
                value_ids[idx] = cache.get(
                    value if type(value) is str else member_text(value), UNNUMBERED
                )
        plan = plan_one(
            one,
            offset,
            value_ids,
            self.schema,
            self.keys,
            self.key_memo,
            batch_id=batch_id,
            single=not self.cluster,
            now=time.time(),
            sum_bound=bound,
            bitmaps=self.bitmap_keys,
            changes=self.expire_changes,
        )
        results = yield self.sealed(call(Transport.apply, plan.groups, ttl, self.bitmap_keys))
        if SUM_REFUSED in results:  # nothing written (the group with sums goes first)
            return (
                yield from self.record_once(
                    self.as_columns(one), batch_id, ttl, ask=False, again=again
                )
            )
        if IN_PARTS in results:  # (its id was another batch's, going in parts: that way)
            return (
                yield from self.record_once(
                    self.as_columns(one), batch_id, ttl, ask=True, again=again
                )
            )
        seen = [r for r in results if isinstance(r, bytes)]
        # (written by this call when its namespace group, last, was: as record_once says)
        meta = self.keys.meta_tag
        completed = any(
            r == 1 and g.tag == meta for g, r in zip(plan.groups, results, strict=False)
        )
        recorded = 1 if completed or again else 0
        rejected = noted(seen[0]) if seen else []
        return TrackResult(recorded, rejected, dict(plan.expired) if recorded else {})

    def as_columns(self, one: Single) -> Columns:
        cols = parse_batch([one.record], self.schema)
        if cols.rejected or not len(cols):  # checked a moment ago: only the clock moved
            raise InvalidEvent.of(cols.rejected[0][1] if cols.rejected else "event not accepted")
        return cols

    def overflowing(
        self, cols: Columns, applied_tags: set[str], clock: float
    ) -> Op[list[tuple[int, str]]]:
        """(row, reason) of the events that would carry a total past the limit, in order and
        against the stored totals; totals under tags this batch has written already are left
        out (their stored value holds the batch's share)."""
        rows = sums.without_tags(
            sums.row_targets(cols, self.schema, self.keys, clock, self.expire_changes),
            applied_tags,
        )
        targets = list(dict.fromkeys(t for _, items in rows for t, *_ in items))
        stored = yield call(Transport.read_sums, targets)
        return sums.overflowing(rows, dict(zip(targets, stored, strict=True)))

    def offsets(self, canonical: Sequence[str]) -> Op[np.ndarray]:
        """Bit offsets of mapped ids (ids="map"), created on the server where new."""
        cache, generation = self.id_cache, self.identity_generation
        missing = [c for c in dict.fromkeys(canonical) if c not in cache]
        if not missing:  # (looked up in C: a live batch knows nearly all its actors)
            return np.fromiter(map(cache.__getitem__, canonical), np.int64, len(canonical))
        found = yield call(Transport.map_ids, *self.map_ids_args(missing))
        return self.mapped(IdMapping([], list(canonical), cache, generation), missing, found)

    def map_ids_args(self, missing: list[str]) -> tuple[Any, ...]:
        k = self.keys
        forward = [k.id_forward(c) for c in missing]
        return (k.ids_next, k.id_reverse_prefix, REVERSE_BUCKET_BITS, forward, missing)

    def mapped(self, mapping: IdMapping, missing: list[str], found: list[int]) -> np.ndarray:
        """The offsets of `mapping`'s ids, `missing` ones `found` on the server, which the
        cache keeps unless the ids changed meanwhile."""
        new = dict(zip(missing, found, strict=True))
        cache, ids = mapping.cache, mapping.ids
        if self.identity_generation != mapping.generation:  # forgotten, aliased or dropped
            # meanwhile: the numbers serve this batch (the server gave them), the mappings are
            # not kept
            return np.array([new[t] if t in new else cache[t] for t in ids], np.int64)
        numbers, kept = looked_up(cache, new, ids)
        if self.id_cache is cache:  # (not replaced meanwhile)
            self.id_cache = kept
        return np.array(numbers, dtype=np.int64)

    def send_offsets(self, cols: Columns) -> Op[IdMapping | np.ndarray]:
        """The bit offset of each row's actor (-1: none); or, where some ids are new to this
        client (ids="map"), them sent to be mapped, not waited for (a single server's:
        `offsets_sent` reads them)."""
        if isinstance(cols.actors, np.ndarray):
            return cols.actors
        rows = [i for i, a in enumerate(cols.actors) if a is not None]
        ids = [cols.actors[i] for i in rows]
        mapping = IdMapping(rows, ids, self.id_cache, self.identity_generation)
        mapping.missing = [c for c in dict.fromkeys(ids) if c not in mapping.cache]
        if mapping.missing:
            mapping.calls = ids_pieces(*self.map_ids_args(mapping.missing))
            mapping.ticket = yield call(Transport.send_ids, mapping.calls)
        return mapping

    def offsets_sent(self, cols: Columns, mapping: IdMapping | np.ndarray) -> Op[np.ndarray]:
        """The offsets of `send_offsets`."""
        if isinstance(mapping, np.ndarray):
            return mapping
        offsets = np.full(len(cols), -1, dtype=np.int64)
        if not mapping.rows:
            return offsets
        if mapping.ticket is None:
            offsets[mapping.rows] = np.fromiter(
                map(mapping.cache.__getitem__, mapping.ids), np.int64, len(mapping.ids)
            )
            return offsets
        found = yield call(Transport.ids_sent, mapping.ticket, mapping.calls)
        mapping.ticket = None
        offsets[mapping.rows] = self.mapped(mapping, mapping.missing, found)
        return offsets

    def send_numbering(self, cols: Columns) -> Op[Numbering]:
        """Per `unique` rule, the id of each row's value (-1: none), numbered per event and
        property on the server (get or create), remembered here: the ids known here filled in,
        the values new to this client sent to be numbered, not waited for (`numbered` reads
        them). In a small batch, a value not numbered yet is UNNUMBERED: the write itself
        numbers it (one round trip, not two)."""
        numbering = Numbering(generation=self.identity_generation)
        uniques = [idx for idx, (kind, _, _) in enumerate(cols.specs) if kind == "unique"]
        groups = rows_by_code(cols.codes) if uniques else []
        for idx in uniques:
            prop = cols.specs[idx][1]
            values = cols.values[idx]
            ids = numbering.ids[idx] = np.full(len(cols), -1, dtype=np.int64)
            for code, rows in groups:
                rows, members = present_members(rows, values)
                if not rows:
                    continue
                event = cols.names[code]
                cache = self.value_cache.setdefault((event, prop), {})
                missing = [m for m in dict.fromkeys(members) if m not in cache]
                if not missing:
                    ids[rows] = list(map(cache.__getitem__, members))
                elif len(cols) <= SMALL_BATCH:
                    ids[rows] = [cache.get(m, UNNUMBERED) for m in members]
                else:
                    k = self.keys
                    numbering.calls.append(
                        values_call(
                            k.value_next(event, prop),
                            k.value_ids(event, prop),
                            k.value_layout(event, prop),
                            k.value_buckets(event, prop),
                            missing,
                            self.cluster,
                        )
                    )
                    numbering.asked.append((idx, rows, members, (event, prop), cache, missing))
        if numbering.calls:
            numbering.ticket = yield call(Transport.send_values, numbering.calls)
        return numbering

    def numbered(self, numbering: Numbering) -> Op[dict[int, np.ndarray]]:
        """The ids of `send_numbering`, those of the values it sent read and kept."""
        if numbering.ticket is not None:
            found = yield call(Transport.values_sent, numbering.ticket, numbering.calls)
            numbering.ticket = None
            keep = numbering.generation == self.identity_generation  # (else dropped since)
            for (idx, rows, members, named, cache, missing), got in zip(
                numbering.asked, found, strict=True
            ):
                new = dict(zip(missing, got, strict=True))
                if not keep:
                    numbering.ids[idx][rows] = [new[m] if m in new else cache[m] for m in members]
                    continue
                numbering.ids[idx][rows], kept = looked_up(cache, new, members)
                if self.value_cache.get(named) is cache:  # (not replaced meanwhile)
                    self.value_cache[named] = kept
        return numbering.ids
