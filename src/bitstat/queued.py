"""`track()`: one event queued in Redis in one round trip, applied later in batches.

Applying one event alone writes ~45 keys for it (every period of its actor set, segments,
counters): ~1.3M server instructions, where a batch spends ~30k an event. So `track()` checks
the event (a bad one is refused at once, as before), then pushes it, with the fields its rules
read, onto a list in the namespace's meta slot (scripts/queue.lua). Once `flush_at` events
wait, or the oldest this Stats queued has waited `flush_interval` seconds, the call that sees
it applies the whole queue (any process's) as one batch. Every read of the same Stats applies
what waits first, so its answers include every event tracked before; another process's reads
see them within `flush_interval` seconds (its first read, then one a `flush_interval`,
applies the queue).

Exactly once, whatever fails:
- a push carries a token, which names the window of time (`PUSH_WINDOW` seconds) it was made
  in; the server keeps the tokens of a window in one set until every push of them has come
  (each push keeps the set at least until its token's `horizon` and a margin), so a push
  tried again after a lost reply (by bitstat, or by the caller calling again with the same
  event within the time its error gives) is queued once. Every push looks, a first one too:
  held in the network, it may reach the server after its retry. A token past its horizon is
  never pushed again: the error says its event may have been queued, and sending it again
  may count it twice;
- a flush moves the events to a claim and applies them under the claim's id as batch id; the
  script call that writes the batch forgets the claim, and writes only while the claim is held
  (`Recording.guarded_claim`), so no claim outlives its batch (on a cluster, the groups in other
  slots are written first, after a look). A claim not forgotten within its lease (its process
  died first) is taken over by the next flush anywhere and applied under the same id; a flush
  that stalled past its lease then writes nothing.

With `track_ahead` (connect's), a push is written without waiting for its reply (`Ahead`):
the replies are read every `track_ahead` pushes and before a flush or read; a push they show
was not queued is pushed again, waiting, under its token. The batch of a flush made by
`track()` is sent without waiting too, its script forgetting the claim as it writes the batch;
the next flush reads its answers (`Claimed`) and records it again under the claim's id if it
did not all go in. A flush that fails after taking its claim keeps it the same way: the next
flush or read of the same Stats records it first, so none answers without its events.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import secrets
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

import numpy as np

from . import jsontext, timetext
from .calls import FORKS, Call, Op
from .errors import BatchError, BitstatError, ConnectionError, ServerError
from .events import Columns, parse_batch
from .integers import whole
from .record import (
    AUTO_IDS,
    IN_DOUBT,
    Applying,
    LeaseOver,
    Recording,
    TrackResult,
)
from .schema import Schema
from .single import Single, sum_bound_one
from .transport import FIRST_BACKOFF, Transport, backed_off, call

FLUSH_AT = 500  # events queued by track() applied together (connect's flush_at)
# with track_ahead: a batch's fixed costs (its keys, the claim's, ids' and values' round trips)
# spread over more events, 15-20% more events/s than 500 (docs/performance.md)
FLUSH_AT_AHEAD = 2000
FLUSH_INTERVAL = 1.0  # seconds an event waits at most before a track() or read applies it
PUSH_WINDOW = 60  # seconds a pushed token is remembered at least (at most twice this)
CLAIM_MOST = 10_000  # events a claim takes: a long queue is applied in batches of this many
CLAIMS_A_FLUSH = 64  # claims one flush applies at most (then the next flush goes on)
CLAIMS_LOOK = 0.05  # seconds between looks at the claims other flushes hold (`claims_applied`)
# a value below this never carries a total within sums.LIMIT (1e308) past it (half the spacing
# of doubles there is ~1e292): an event of such values is never refused and may wait
SAFE_SUM = 1e291
LEASE_MARGIN = 30.0  # seconds past the retry deadline before another flush takes a claim over
# on a cluster a claim's groups in other slots than its own are written until its lease ends
# (at most `auto_ttl` after it is claimed) less this (milliseconds), or a quarter of that if
# less: the clocks of the servers (the claim's node's and the others') may differ by that much
FENCE_MARGIN_MS = 15_000
log = logging.getLogger("bitstat")
T = TypeVar("T")
Y = TypeVar("Y")
_NAIVE_EPOCH = datetime(1970, 1, 1)


class Tokens:
    """Tokens of queued events: the window of time it was made in (`token_window`), a random
    prefix per process (a forked child draws its own) and a serial, short because the server
    keeps each for a few minutes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_hex(5)
        self.serial = 0

    def next(self, window: int) -> str:
        self.serial += 1  # (threads: the GIL makes this read-and-add one step for ints)
        return f"{window:x}.{self.prefix}{self.serial:x}"


def token_window(token: str) -> int:
    """The window of time a token was made in: its set of seen tokens is that window's."""
    return int(token[: token.index(".")], 16)


SEEN_MARGIN = 65  # seconds a set of seen tokens outlives its tokens' horizons (a push held in
# the network arrives late; queue.lua refreshes a TTL only when 5 s short)


TOKENS = Tokens()
os.register_at_fork(after_in_child=TOKENS.reset)


class PushedAhead(NamedTuple):
    """An event `track()` pushed without waiting for the reply (`track_ahead`)."""

    record: Mapping[str, Any]  # as given: if it fails, the caller's track() again finds it
    token: str
    line: dict[str, Any]  # what is queued (queued_record)


def checked_ahead(track_ahead: int) -> int:
    """connect()'s track_ahead, checked."""
    ahead = whole(track_ahead)
    if ahead is None or ahead < 0:
        raise ValueError(
            f"track_ahead must be an integer >= 0 (0: each track() waits for its reply),"
            f" got {track_ahead!r}"
        )
    return ahead


def queueing(
    flush_at: int | None, flush_interval: float, track_ahead: int = 0
) -> tuple[int, float]:
    """connect()'s flush_at (None: its default, which track_ahead raises) and flush_interval,
    checked."""
    if flush_at is None:
        flush_at = FLUSH_AT_AHEAD if track_ahead else FLUSH_AT
    events = whole(flush_at)
    if events is None or events < 1:
        raise ValueError(
            f"flush_at must be an integer >= 1 (1: track() alone, at once), got {flush_at!r}"
        )
    # (any real number, numpy's too; True is no number of seconds)
    if (
        isinstance(flush_interval, bool)
        or not isinstance(flush_interval, numbers.Real)
        or not 0 <= flush_interval < float("inf")
    ):
        raise ValueError(f"flush_interval must be seconds >= 0, got {flush_interval!r}")
    return events, float(flush_interval)


_JSON_PLAIN = frozenset({str, int, float, bool})  # values JSON writes as they are


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def queued_record(one: Single, schema: Schema) -> dict[str, Any]:
    """What is queued of a checked event: its name, actor, time (a text as given, else UTC
    epoch seconds, or the local wall-clock time as naive ISO text when it was given without a
    zone) and the fields
    its rules read, as given (text and numbers, checked: JSON keeps them exactly)."""
    record: dict[str, Any] = {"event": one.name}
    if one.actor is not None:
        record[schema.actor] = one.actor
    given_time = one.record.get("time")
    if type(given_time) is str and timetext.STRICT_FORM.fullmatch(given_time):
        # read again as the batch reads it (the same wall time), by its columnar reader; any
        # other form (a label, a date, spaces) would send the whole batch event by event
        record["time"] = given_time
    elif one.utc is not None:
        record["time"] = one.utc
    else:
        record["time"] = (_NAIVE_EPOCH + timedelta(seconds=one.wall)).isoformat()
    fields = schema.derived.get("queued_fields")
    if fields is None:
        fields = schema.derived["queued_fields"] = {}
    names = fields.get(one.name)
    if names is None:  # the properties its rules read, each once (a compound's parts too)
        read = [n for _, p, by in one.specs for n in p.split("~") + (by.split("~") if by else [])]
        names = fields[one.name] = tuple(dict.fromkeys(read))
    given = one.record
    for name in names:
        value = given.get(name)
        if value is not None:
            # (numpy's scalars as the Python values they hold, which JSON writes: checked)
            record[name] = value if type(value) in _JSON_PLAIN else _plain(value)
    return record


def queued_line(token: str, record: Mapping[str, Any]) -> bytes:
    """`TOKEN JSON`: one queued event."""
    return token.encode() + b" " + jsontext.dumps(record)


def records_of(events: bytes) -> list[dict[str, Any]]:
    """The records of a claim's events (`queued_line`s joined by newlines)."""
    # (one JSON array read at once: a third of the time of a json.loads a line)
    lines = events.split(b"\n")
    array = b"[" + b",".join(line.partition(b" ")[2] for line in lines) + b"]"
    records: list[dict[str, Any]] = jsontext.loads(array)
    return records


@dataclass
class Claimed:
    """A claim whose batch `flush(later=True)` sent, its answers not read yet; or one whose
    flush failed after taking it (`applying` None), to be recorded by the next flush."""

    claim_id: str
    cols: Columns
    records: list[dict[str, Any]]
    applying: Applying | None  # None once its answers were read (or lost)
    result: TrackResult  # the batch's, if the answers say it all went in
    write_until: int | None = None  # the claim's lease less a margin (a cluster's writes)


class Queueing(Recording):
    """`track()` by the queue, its flushes, and reads that flush first."""

    flush_at: int = FLUSH_AT
    flush_interval: float = FLUSH_INTERVAL
    queue_since: float | None = None  # monotonic time of the oldest event queued here unflushed
    queue_looked = float("-inf")  # of this namespace's last flush
    track_ahead = 0  # track() calls that may return before the reply of their push is read
    unconfirmed: list[PushedAhead] | tuple[()] = ()  # pushed ahead, replies not read yet
    push_again: list[PushedAhead] | tuple[()] = ()  # their replies read: not queued (yet)
    queue_size = 0  # events waiting, as the last reply read said (track_ahead)
    applying: tuple[Claimed, ...] = ()  # batches flush(later=True) sent, answers unread
    ahead_ready = False  # a push waited for its reply (the script is loaded)

    def pushing_ahead(self, track_ahead: int) -> None:
        """Set `track_ahead` (0: off)."""
        self.track_ahead = checked_ahead(track_ahead)
        if self.track_ahead and self.replicated:
            raise ValueError(
                "track_ahead returns before the push's reply, so it cannot wait for a replica:"
                ' use durability="fast" with it, or track_ahead=0'
            )
        self.unconfirmed, self.push_again = [], []
        self.ahead_forks, self.ahead_ready = FORKS[0], False
        self.ahead_keys: tuple[int, tuple[str, str]] = (-1, ("", ""))  # a window's (queue, seen)
        # (a Stats may be shared by threads; a lock held across a yield would block asyncio's
        # loop, and AsyncStats refuses track_ahead)
        self.ahead_lock = threading.RLock()
        # claims asked whose reply never came (the call cut short, or failed): the next flush
        # asks again, taking up the claim it made (id -> the forks of the process then, and
        # the time, in ms of time.monotonic(), until which no other flush can have taken it
        # over: elapsed time, which a wall clock set back meanwhile would stretch)
        self.claims_asked: dict[str, tuple[int, int]] = {}

    def forked_check(self) -> None:
        """In a forked child: the pushes and batches sent ahead were its parent's, and so is
        the lock."""
        if self.ahead_forks != FORKS[0]:
            self.pushing_ahead(self.track_ahead)
            self.applying = ()

    @property
    def pending_ahead(self) -> bool:
        """Pushes sent ahead whose replies are unread, or that are to be pushed again."""
        return bool(self.unconfirmed or self.push_again)

    def track(self, event: str | Mapping[str, Any], props: Mapping[str, Any]) -> Op[None]:
        yield from self.schema_fresh()
        one = self.checked_one(event, props)
        if self.flush_at <= 1:  # applied at once, alone
            return (yield from self.track_now(one))
        if sum_bound_one(one) >= SAFE_SUM:
            # a sum that could carry a total past the limit is refused by the write (sums.py),
            # which depends on what was written before: recorded now, after what waits here
            if self.queue_since is not None:
                yield from self.flush()
            return (yield from self.track_now(one))
        record = one.record
        line = queued_record(one, self.schema)
        found = IN_DOUBT.find(self.name, [record], "push")  # (a call again after a BatchError)
        if self.track_ahead and found is None and self.ahead_ready:
            size = yield from self.pushed_ahead(record, line)
        else:  # (with track_ahead, the first push waits: it loads the script)
            token = found or TOKENS.next(self.window_now())
            size = yield from self.pushed(record, token, line, found is not None)
            self.ahead_ready = True
        yield from self.queued_one(size)

    def queued_one(self, size: int) -> Op[None]:
        """After a push: the queue applied when `size` events wait or the oldest is due."""
        now = time.monotonic()
        if self.queue_since is None:
            self.queue_since = now
        if size >= self.flush_at or now - self.queue_since >= self.flush_interval:
            if self.pending_ahead:  # (outside the try: a push that failed raises)
                yield from self.confirmed()
            try:
                yield from self.flush(later=bool(self.track_ahead))
            except BitstatError as exc:  # the event is queued: the next flush applies it
                log.warning("bitstat: applying the events track() queued failed: %s", exc)

    def pushed_ahead(self, record: Mapping[str, Any], line: dict[str, Any]) -> Op[int]:
        """`track()` with `track_ahead`: the push written, its reply read with the next ones
        (once `track_ahead` wait, and before a flush; a push they show was not queued, by an
        error or a reply lost with its connection, is pushed again under its token). How many
        events wait, as far as known."""
        self.forked_check()
        with self.ahead_lock:
            now = int(time.time())
            window = now // PUSH_WINDOW
            if window != self.ahead_keys[0]:
                self.ahead_keys = (window, (self.keys.queue, self.seen_set(window)))
            token = TOKENS.next(window)
            unconfirmed = self.unconfirmed
            assert isinstance(unconfirmed, list)
            unconfirmed.append(PushedAhead(record, token, line))
            text = queued_line(token, line)
            keep = self.seen_ttl_at(window, now)
            sent = yield call(Transport.queue_ahead, self.ahead_keys[1], token, text, keep)
            if not sent or len(unconfirmed) >= self.track_ahead:
                return (yield from self.confirmed())
            return self.queue_size + len(unconfirmed)

    def confirmed(self) -> Op[int]:
        """Read the replies of the pushes sent ahead; one not queued is pushed again under its
        token, waiting for its reply. How many events wait. BatchError: some could not be
        queued within the deadline (its `events` are those to track() again)."""
        self.forked_check()
        with self.ahead_lock:
            if not self.pending_ahead:
                return self.queue_size
            size = 0
            if self.unconfirmed:
                # (interrupted, this read leaves the pushes here and the store the replies)
                replies = yield call(Transport.queued_ahead)
                sent, self.unconfirmed = self.unconfirmed, []
                # (a push interrupted before it was written has no reply: in doubt, as lost)
                replies = [*replies, *[None] * (len(sent) - len(replies))]
                again = self.push_again
                assert isinstance(again, list)
                for pushed, reply in zip(sent, replies, strict=False):
                    if isinstance(reply, int):
                        size = max(size, reply)
                    else:  # an error (nothing ran) or a reply lost (it may have)
                        again.append(pushed)
            stale: list[PushedAhead] = []
            while self.push_again:  # (each let go once queued: an interrupt leaves the rest)
                pushed = self.push_again[0]
                if time.time() >= self.horizon(pushed.token):
                    stale.append(pushed)  # (its set may be gone: not pushed again)
                else:
                    try:
                        size = max(size, (yield from self.pushed(*pushed[:3], True)))
                    except BatchError as exc:
                        left, self.push_again = self.push_again, []
                        raise self.not_queued(list(left), exc, stale) from exc
                del self.push_again[0]
            self.queue_size = size
            if stale:
                raise self.ahead_error([], stale, None)
            return size

    def not_queued(
        self, left: list[PushedAhead], cause: BatchError, stale: list[PushedAhead]
    ) -> BatchError:
        """The error of pushes sent ahead that could not be queued: the first's `cause` (it
        remembered the first, unless too late); the others are remembered as it is (the
        caller's track() again of each is queued once) unless too late, as the `stale` are."""
        again = [] if cause.stale_events else [left[0].record]
        late = [*stale, *(left[:1] if cause.stale_events else [])]
        for pushed in left[1:]:
            given = self.given_seconds(pushed.token)
            if given > 0:
                IN_DOUBT.remember(self.name, [pushed.record], pushed.token, given, "push")
                again.append(pushed.record)
            else:
                late.append(pushed)
        return self.ahead_error(again, late, cause)

    def ahead_error(
        self, again: list[Mapping[str, Any]], late: list[PushedAhead], cause: BatchError | None
    ) -> BatchError:
        """The error of pushes sent ahead whose replies were lost: `again` may be tracked again
        (once each), `late` are too old for that (their events may have been queued)."""
        parts = []
        if again:
            assert cause is not None
            parts.append(
                f"queueing {len(again)} events track() sent ahead of their replies: gave up after"
                f" {cause.attempts} tries: {cause.__cause__ or cause}\nthey may have been"
                f" queued: call track() again with each of this error's `events`, from this"
                f" process within {self.retry_seconds()} s, and each is recorded once"
            )
        if late:
            parts.append(too_late_text(len(late), self.token_life()))
        return BatchError(
            "\n".join(parts),
            batch_id=cause.batch_id if cause else late[0].token,
            may_have_landed=True,
            attempts=cause.attempts if cause else 1,
            events=again,
            stale_events=[pushed.record for pushed in late],
        )

    @staticmethod
    def window_now() -> int:
        """The window of time new tokens are made in."""
        return int(time.time()) // PUSH_WINDOW

    def retry_seconds(self) -> int:
        """The seconds a caller has to track() again an event whose push failed, from the
        error (its token is remembered in the process as long)."""
        return max(PUSH_WINDOW, math.ceil(self.deadline))

    def token_life(self) -> int:
        """Seconds from the start of a token's window during which it may be pushed again:
        its window, bitstat's retries (`deadline`), the caller's time to track() again
        (`retry_seconds`) and that call's retries."""
        return PUSH_WINDOW + 2 * math.ceil(self.deadline) + self.retry_seconds()

    def horizon(self, token: str) -> int:
        """The time (Unix seconds) after which a push of `token` is never made again."""
        return token_window(token) * PUSH_WINDOW + self.token_life()

    def seen_ttl(self, token: str) -> int:
        """The seconds the set of `token`'s window must be kept from now (queue.lua keeps
        the longest any push asks: Stats of other deadlines share it)."""
        return self.seen_ttl_at(token_window(token), time.time())

    def seen_ttl_at(self, window: int, now: float) -> int:
        """`seen_ttl` of a token of `window`, at `now` (Unix seconds)."""
        horizon = window * PUSH_WINDOW + self.token_life()  # (`horizon`'s)
        return max(SEEN_MARGIN, horizon + SEEN_MARGIN - math.floor(now))

    def given_seconds(self, token: str) -> int:
        """The seconds a caller may take to track() again the event of `token` whose push
        failed (the call's own retries ending before the token's horizon): 0 if too late."""
        left = self.horizon(token) - time.time() - math.ceil(self.deadline)
        return max(0, math.floor(min(self.retry_seconds(), left)))

    def seen_set(self, window: int) -> str:
        """The set of the tokens made in `window`."""
        return self.keys.queue_seen(PUSH_WINDOW, window)

    def pushed(
        self, record: Mapping[str, Any], token: str, line: dict[str, Any], again: bool
    ) -> Generator[Call, Any, int]:
        """Push one queued event, tried again under its token while the failure may pass;
        `again`: the token may have been pushed. How many events wait."""
        text = queued_line(token, line)
        keys = (self.keys.queue, self.seen_set(token_window(token)))
        horizon = self.horizon(token)
        end = time.monotonic() + self.deadline
        delay, attempt, doubt = FIRST_BACKOFF, 0, again  # doubt: a push of it may be in
        while True:
            if doubt and time.time() >= horizon:  # (the set may be gone: it would count twice)
                IN_DOUBT.forget(self.name, [record], "push")
                raise BatchError(
                    f"queueing an event: {too_late_text(1, self.token_life())}",
                    batch_id=token,
                    may_have_landed=True,
                    attempts=max(attempt, 1),
                    stale_events=[record],
                )
            attempt += 1
            try:
                size = yield call(Transport.queue_event, keys, token, text, self.seen_ttl(token))
            except (ConnectionError, ServerError) as exc:
                doubt = doubt or not exc.refused
                left = min(end - time.monotonic(), horizon - time.time())
                if exc.transient and left > 0 and not isinstance(exc, BatchError):
                    delay = yield from backed_off(delay, left)
                    continue
                given = self.given_seconds(token) if doubt else 0
                if given > 0:
                    IN_DOUBT.remember(self.name, [record], token, given, "push")
                else:
                    IN_DOUBT.forget(self.name, [record], "push")
                raise BatchError(
                    _gave_up(attempt, doubt, exc, given, self.token_life()),
                    batch_id=token,
                    may_have_landed=doubt,
                    attempts=attempt,
                    stale_events=[record] if doubt and not given else (),
                ) from exc
            if again or attempt > 1:
                IN_DOUBT.forget(self.name, [record], "push")
            return int(size)

    def flush(self, later: bool = False) -> Op[int]:
        """Apply the events queued by `track()` (this process's and any other's), and any claim
        a flush that died left; returns how many events were recorded. The replies of pushes
        sent ahead are read first (`track_ahead`), and so are the answers of the batches a
        flush of track()'s sent; `later`: this one's are read later too (the flush of track()
        with `track_ahead`: the server applies the batch while the caller goes on)."""
        if not self.track_ahead:
            return (yield from self.flushed(later))
        self.forked_check()
        with self.ahead_lock:  # (threads sharing the Stats: one flush at a time)
            return (yield from self.flushed(later))

    def flushed(self, later: bool) -> Op[int]:
        if self.pending_ahead:
            yield from self.confirmed()
        recorded = (yield from self.applied_later()) if self.applying else 0
        keys = self.keys
        claims = (keys.queue, keys.queue_claims)
        lease_ms = int((self.deadline + LEASE_MARGIN) * 1000)
        # a cluster's writes of a claim end before its lease does, and before `auto_ttl` after
        # it: a process of a shorter deadline may take the claim over sooner than this one's
        # lease says, apply it and keep its markers `auto_ttl` from then (forget_markers)
        fence_ms = min(lease_ms, self.auto_ttl * 1000)
        self.queue_since, self.queue_looked, self.queue_size = None, time.monotonic(), 0
        fenced_ms = fence_ms - min(FENCE_MARGIN_MS, fence_ms // 4)
        for _ in range(CLAIMS_A_FLUSH):
            asked = self.claims_to_ask()
            # (the claim's lease starts when a try of the call below reaches the server: no
            # sooner than now; this process asks it again only until then, by the time elapsed)
            asked_until = int(time.monotonic() * 1000) + fenced_ms

            def asking(asked: list[str] = asked) -> Call:
                # (a lost reply: the claim is taken up by the next try.) Each try names a new
                # id for a claim made anew: one asked before and not found was never made, or
                # was taken over and recorded, and a claim of other events under it would be
                # taken for that batch, never recorded
                new = "q" + AUTO_IDS.next()
                ids = tuple(asked)
                asked.append(new)
                return call(Transport.claim_queued, claims, lease_ms, new, CLAIM_MOST, ids)

            try:
                claim = yield from self.again_for_now(asking)
            except (ConnectionError, ServerError, GeneratorExit):
                # a claim may be made: this Stats' next flush or read asks for it again
                for claim_id in asked:
                    self.claims_asked[claim_id] = (FORKS[0], asked_until)
                raise
            if claim is None:
                break
            claim_id, events, taken_over, leased_ms = claim
            # (by the server's clock, as the lease: T ops compare it with the servers' TIME)
            write_until = leased_ms + fenced_ms
            records = records_of(events)
            sent: list[Applying] | None = [] if later else None
            cols: Columns | None = None
            # (LeaseOver: the claim is another flush's now, not released here; track() logs
            # it, a read or flush() raises it, as it could not be exact)
            try:
                yield from self.schema_fresh()
                cols = parse_batch(records, self.schema, None)
                result = yield from self.track_columns(
                    cols,
                    claim_id,
                    auto=True,
                    fresh=not taken_over,
                    claim=True,
                    write_until=write_until,
                    later=sent,
                )
            except (ConnectionError, ServerError, GeneratorExit):
                # (GeneratorExit: the call was cut short, a task cancelled.) The claim stays in
                # Redis, and with this Stats: its next flush or read records it first (under
                # the claim's id), not leaving it to a takeover after the lease while its reads
                # answer without these events
                if cols is None:
                    self.claims_asked[claim_id] = (FORKS[0], asked_until)
                else:
                    kept = Claimed(claim_id, cols, records, None, TrackResult(0), write_until)
                    self.applying = (*self.applying, kept)
                raise
            if sent:  # (its script forgot the claim; the next flush or read reads the answers)
                self.applying = (*self.applying, Claimed(claim_id, cols, records, sent[0], result))
                # one batch a flush of track(): claiming the next would wait for this one's
                # writes (the server runs them first), the very wait sending it ahead saves;
                # what is left is queued for the next flush
                break
            recorded += yield from self.released(claim_id, records, result)
        return recorded

    def claims_applied(self) -> Op[None]:
        """After a flush: the claims other flushes held then are applied too, by them, or past
        their leases taken over by this Stats' flushes (`forget`: an event of the actor applied
        after it answered would bring the actor back)."""
        held = set((yield call(Transport.claims_held, self.keys.queue_claims)))
        while held:
            yield call(Transport.sleep, CLAIMS_LOOK)
            yield from self.flush()
            held &= set((yield call(Transport.claims_held, self.keys.queue_claims)))

    def claims_to_ask(self) -> list[str]:
        """The ids of the claims asked whose replies never came, for a flush to take up. One
        asked is taken by one flush alone (threads may share the Stats), and only while its
        lease holds: once over, another flush may be applying it. A forked child takes none
        of its parent's."""
        asked = []
        while self.claims_asked:
            try:
                claim_id, (forks, until) = self.claims_asked.popitem()
            except KeyError:  # (another thread took the last)
                break
            if forks == FORKS[0] and time.monotonic() * 1000 < until:
                asked.append(claim_id)
        return asked

    def sent_settled(self) -> Op[int]:
        """The replies of the pushes, and the answers of the batches, sent ahead read (at
        close, or exit): none is left to wait for a lease. How many events the batches held."""
        self.forked_check()
        with self.ahead_lock:
            if self.pending_ahead:
                yield from self.confirmed()
            return (yield from self.applied_later())

    def applied_later(self) -> Op[int]:
        """The answers of the batches sent by `flush(later=True)` read; a batch whose answers
        say it did not all go in (or were lost) is recorded the whole way under the same id
        (the groups that did count once) and its claim released. How many events."""
        recorded = 0
        while self.applying:
            claimed, *rest = self.applying
            sent, claimed.applying = claimed.applying, None  # (answers are read once)
            whole = False
            if sent is not None:
                try:
                    whole = yield call(
                        Transport.apply_sent, sent.ticket, sent.calls, self.bitmap_keys
                    )
                except (ConnectionError, ServerError) as exc:  # recorded again, below
                    log.info("bitstat: a batch sent ahead: its answers were lost (%s)", exc)
            result = claimed.result
            if not whole:  # (a failure here leaves the claim for the next flush to record)
                cols, claim_id = claimed.cols, claimed.claim_id
                try:
                    result = yield from self.track_columns(
                        cols,
                        claim_id,
                        auto=True,
                        fresh=False,
                        claim=True,
                        write_until=claimed.write_until,
                    )
                except LeaseOver:  # (a cluster's: the claim is for its takeover to record)
                    self.applying = tuple(rest)
                    raise
            self.applying = tuple(rest)
            # (a batch that went in whole forgot its claim itself: apply.lua's D op)
            recorded += yield from self.released(
                claimed.claim_id, claimed.records, result, forget=not whole
            )
        return recorded

    def released(
        self,
        claim_id: str,
        records: list[dict[str, Any]],
        result: TrackResult,
        forget: bool = True,
    ) -> Op[int]:
        """A claim's batch recorded: the claim forgotten (unless done), its rejected events
        logged; how many events it recorded."""
        if forget:
            yield from self.again_for_now(
                lambda: call(Transport.release_claim, self.keys.queue_claims, claim_id)
            )
        for index, why in result.rejected:
            log.warning(
                "bitstat: an event track() queued was rejected when applied: %s (%s)",
                why,
                json.dumps(records[index], ensure_ascii=False)[:300],
            )
        return result.recorded

    def again_for_now(self, asking: Callable[[], Call]) -> Generator[Call, Any, Any]:
        """The reply to `asking()` (a call safe to make twice), asked again while its failure
        may pass, with backoff, for up to the deadline."""
        end = time.monotonic() + self.deadline
        delay = FIRST_BACKOFF
        while True:
            try:
                return (yield asking())
            except (ConnectionError, ServerError) as exc:
                left = end - time.monotonic()
                if not exc.transient or isinstance(exc, BatchError) or left <= 0:
                    raise
                delay = yield from backed_off(delay, left)

    def settled(
        self, op: Generator[Y, Any, T], *, others: bool = True
    ) -> Generator[Y | Call, Any, T]:
        """`op` after the queued events are applied: at once when this namespace queued some
        since its last flush, and else, with `others`, once a `flush_interval` (for other
        processes'). Writes go after this namespace's own (a sum's refusal depends on order)."""
        due = others and time.monotonic() - self.queue_looked >= self.flush_interval
        if (
            self.queue_since is not None
            or due
            or self.pending_ahead
            or self.applying
            or self.claims_asked
        ):
            try:
                yield from self.flush()
            except (ConnectionError, ServerError) as exc:
                if others:  # (a read: its question was not asked, nothing to send again)
                    raise
                raise not_sent(exc) from exc
        if others:  # (a write reads it itself, trying again for up to its deadline)
            yield from self.schema_fresh(writing=False)
        return (yield from op)


def not_sent(exc: ConnectionError | ServerError) -> ConnectionError | ServerError:
    """The error of a write whose flush of the queue failed first: not the flush's BatchError,
    whose batch id is the queue claim's (the write's events sent under it would be taken for the
    claim's, and never recorded): the write sent nothing, and is simply made again."""
    cause = exc.__cause__ if isinstance(exc, BatchError) else exc
    if not isinstance(cause, ConnectionError | ServerError):
        cause = exc
    kind = ConnectionError if isinstance(cause, ConnectionError) else ServerError
    error = kind(
        "applying the events queued by track() first failed, so nothing of this call's own was"
        f" sent (make the call again: the queue is applied first, once): {exc}"
    )
    error.transient, error.refused = cause.transient, True
    return error


def _gave_up(attempts: int, landed: bool, cause: Exception, seconds: int, life: int) -> str:
    tries = "1 try" if attempts == 1 else f"{attempts} tries"
    if not landed:
        state = "it was not queued (the server refused it)"
    elif seconds:
        state = (
            "it may have been queued; call track() again with the same event from this process"
            f" within {seconds} s and it is recorded once"
        )
    else:
        state = too_late_text(1, life)
    return f"queueing an event: gave up after {tries}: {cause}\n{state}"


def too_late_text(n: int, life: int) -> str:
    """What an error says of `n` events whose pushes may have been queued but are too old to be
    checked again (their tokens may be forgotten: sending them again may count them twice)."""
    which = "its push" if n == 1 else f"the pushes of {n} events"
    return (
        f"{which} may have been queued and cannot be checked any more (made over {life} s ago,"
        " the server may have forgotten its token): not sent again; sending the event again"
        " (this error's `stale_events`) may count it twice"
    )
