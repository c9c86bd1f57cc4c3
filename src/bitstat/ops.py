"""What every operation of a namespace does, written once for the sync and the async API.

Each operation is a generator: it checks its arguments, builds plans with the pure modules,
and `yield`s a `Call` (a Store method and its arguments) whenever it needs the server; the
value sent back is that call's result. `Stats` answers the calls with the blocking `Store`,
`AsyncStats` with the asyncio one, so no logic exists twice.
"""

from __future__ import annotations

import difflib
import logging
import math
import secrets
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np

from . import periods
from .calls import Call, Emit, Links, Op
from .errors import InvalidEvent, QueryError, SchemaError, ServerError, UnknownEvent, blaming
from .events import canonical_id, int_actor, number_text, original_id, unicode_problem
from .integers import whole
from .keys import (
    REVERSE_BUCKET_BITS,
    SHARD_BITS,
    Keys,
    bucket_label,
    encode_value,
    escape,
    is_temp,
    member_value,
    metric_count_field,
    metric_sum_field,
)
from .periods import expire_at
from .query import Expr, Leaf, Program, SetProgram, count_union
from .queued import Queueing
from .record import DEFAULT_BATCH_TTL, UNREAD
from .schema import (
    RULE_KINDS,
    ExpireChange,
    PeriodAdded,
    Schema,
    Stored,
    compound,
    duration_text,
    expire_lengthened,
    kept_for,
    normalise,
    read_stored,
    stored_text,
)
from .sums import Target
from .tables import Counts, Series, Sum, Sums, Top
from .transport import Transport, call

log = logging.getLogger("bitstat")
CHUNK_BYTES = 64 * 1024  # ids() reads a result bitmap in pieces of this size
EXPIRE_BATCH = 1000  # keys given their expiry per pipeline by configure()
# a periods_added entry "distinct:<event>:<prop>": configure() switched that property between
# `unique` and `approx` while the namespace held data on those days
DISTINCT_SWITCHED = "distinct:"
FAMILY_TEXT = {
    "count": "counts",
    "sum": "sums",
    "top": "top values",
    "unique": "distinct values",
    "approx": "estimated distinct values",
    "segment": "segments",
}


class DistinctSwitched(QueryError):
    """distinct() over days a property was switched between `unique` and `approx` on."""


def switch_name(event: str, prop: str) -> str:
    """A switch's entry among the stored schema's `periods_added` (escaped: `:` is the
    separator)."""
    return f"{DISTINCT_SWITCHED}{escape(event)}:{escape(prop)}"


def check_name(event: Any) -> None:
    if not isinstance(event, str) or not event:
        raise QueryError(f"event name must be non-empty text, got {event!r}", param="event")
    if problem := unicode_problem(event):
        raise QueryError(f"event name {problem}", param="event")


def check_namespace(namespace: Any) -> None:
    if not isinstance(namespace, str) or not namespace:
        raise SchemaError(f"namespace must be non-empty text, got {namespace!r}")


# the servers (by run id) a warning about their memory policy was logged for, in this process
EVICTION_WARNED: set[str] = set()


def eviction_warning(nodes: Iterable[tuple[str, str, int]]) -> str | None:
    """What to tell the user of the masters (run id, maxmemory-policy, maxmemory) that may
    delete bitstat's keys once full: any policy but noeviction, with a memory limit set."""
    evicting = sorted({policy for _, policy, limit in nodes if limit and policy != "noeviction"})
    if not evicting:
        return None
    return (
        f"the server's maxmemory-policy is {' and '.join(evicting)}: once it reaches maxmemory"
        " it deletes keys, and answers drawn from deleted bitmaps, counters or id maps are"
        " silently low (an evicted batch marker lets a retried batch count twice). Set"
        " maxmemory-policy to noeviction: a full server then refuses batches whole"
        " (docs/cluster.md, 'Server settings that matter')"
    )


class Namespace(Queueing):
    """The state of one open namespace (schema, key names, caches) and its operations; the
    recording ones come from `Recording`, `track()` by the queue from `Queueing`."""

    def __init__(
        self,
        namespace: str,
        schema: Schema,
        cluster: bool,
        batch_ttl: int = DEFAULT_BATCH_TTL,
        links: Links | None = None,
    ) -> None:
        self.name = namespace
        self.links = links if links is not None else Links()
        self.links_seen = self.links.made  # (the connections made so far are connect()'s)
        self.keys = Keys(namespace)
        self.schema = schema
        self.cluster = cluster
        self.batch_ttl = batch_ttl
        self.id_cache: dict[str, int] = {}
        self.shard_cache: list[int] = []
        self.value_cache: dict[tuple[str, str], dict[str, int]] = {}
        self.key_memo: dict[Any, Any] = {}  # key names of one-event plans (single.plan_one)
        self.bitmap_keys: set[str] = set()  # actor and value sets that are bitmaps
        self.known_events: set[str] = set()  # recorded names seen; events are never removed
        # bumped by forget, alias and drop: a batch that looked ids or values up before keeps
        # none of the mappings it learnt (they may name a freed or another actor's offset)
        self.identity_generation = 0
        self.expire_changes: tuple[ExpireChange, ...] = ()  # (stored with the schema)
        self.periods_added: tuple[PeriodAdded, ...] = ()  # (stored with the schema)

    # schema
    def opened(self, given: Schema | None) -> Op[Schema]:
        """What `connect()` does on the server: warn of a memory policy that evicts keys,
        `load_schema`, and note the namespace's tokens (`Recording.follow`)."""
        yield from self.warn_of_eviction()
        k = self.keys
        text, made, epoch = yield call(Transport.get_many, [k.schema, k.made, k.identity_epoch])
        # (first: a schema stored below marks the namespace made)
        self.follow(made, epoch, text is not None)
        return (yield from self.load_schema(given, text))

    def warn_of_eviction(self) -> Op[None]:
        """Log a warning, once per server and process, when a master may evict bitstat's keys
        (a managed service's default policy often does); a server that refuses INFO (an ACL)
        is not checked."""
        try:
            nodes = yield call(Transport.memory_policies)
        except ServerError as exc:
            log.debug("bitstat: the memory policy could not be read: %s", exc)
            return
        fresh = [node for node in nodes if node[0] not in EVICTION_WARNED]
        if warning := eviction_warning(fresh):
            EVICTION_WARNED.update(node[0] for node in fresh)
            log.warning("bitstat: %s", warning)

    def load_schema(self, given: Schema | None, stored_text: Any = UNREAD) -> Op[Schema]:
        """The stored schema (`stored_text`, read here when UNREAD); `given` is stored when
        there is none, and must match otherwise."""
        if stored_text is UNREAD:
            stored_text = yield call(Transport.get, self.keys.schema)
        self.schema_read = time.monotonic()
        if stored_text is None:
            # stored unless another client stored one meanwhile, then checked against that one
            # (two clients connecting at once with different schemas both passed, one of them
            # recording by a schema the namespace does not hold)
            if given is None or (yield from self.store_schema(given, unless_stored=True)):
                return self.schema
            stored_text = yield call(Transport.get, self.keys.schema)
            if stored_text is None:  # (dropped at that very moment: as found empty)
                return (yield from self.load_schema(given))
        self.schema_stored = True
        stored, self.expire_changes, self.periods_added = read_stored(stored_text)
        if given is not None and given != stored:
            raise SchemaError(
                f"namespace {self.name!r} already has a different schema;"
                " call configure() to replace it."
                f"\n  stored: {stored.to_json()}\n  given:  {given.to_json()}"
            )
        self.schema = stored
        self.key_memo.clear()  # (the key names of another schema's periods)
        return stored

    def configure(self, schema: Schema) -> Op[None]:
        yield from self.store_schema(schema)

    def store_schema(self, schema: Schema, unless_stored: bool = False) -> Op[bool]:
        """Store `schema` (with `unless_stored`, only where the namespace holds none: whether
        it was stored)."""
        if not isinstance(schema, Schema):
            raise SchemaError(f"configure() takes a bitstat.Schema, got {type(schema).__name__}")
        # the stored schema's id mode, not the one held here (another client may have stored
        # one since this one connected to an empty namespace)
        text = yield call(Transport.get, self.keys.schema)
        current, changes, added = read_stored(text) if text is not None else Stored(self.schema)
        if schema.ids != current.ids and (yield from self.events()):
            raise SchemaError(
                f"namespace {self.name!r} holds data recorded with ids={current.ids!r};"
                f" it cannot switch to ids={schema.ids!r}"
            )
        if text is not None:
            if unless_stored:
                return False
            changes += expire_lengthened(current, schema, time.time())
            new = [p for p in schema.periods if p not in current.periods]
            if "hour" in current.periods:  # a family kept per hour from now on: its own hours
                new += [
                    f"hour:{family}"
                    for family in RULE_KINDS
                    if "hour" in schema.periods_of(family)
                    and "hour" not in current.periods_of(family)
                ]
            new += yield from self.distinct_switched(current, schema)
            days = (yield from self.data_days(schema)) if new else None
            if days is not None:
                added += tuple((period, *days) for period in new)
        if unless_stored:
            if not (yield call(Transport.set_absent, self.keys.schema, stored_text(schema))):
                return False
        else:
            yield call(Transport.set, self.keys.schema, stored_text(schema, changes, added))
        if text is None:
            yield from self.made_anew()
        else:
            yield from self.expire_written(current, schema, changes)
        self.schema, self.expire_changes, self.periods_added = schema, changes, added
        self.schema_read, self.schema_stored = time.monotonic(), True
        self.key_memo.clear()  # (the key names of another schema's periods)
        return True

    def expire_written(
        self, old: Schema, new: Schema, changes: tuple[ExpireChange, ...]
    ) -> Op[None]:
        """Give the keys already written of each period whose expiry `new` adds or shortens
        the expiry it sets now (deleted at once when past it): they were written with none, or
        a longer one, and no question reads them past it (a SCAN of the namespace's keys)."""
        shorter = {
            p for p, ttl in new.expire.items() if old.expire.get(p) is None or ttl < old.expire[p]
        }
        if not shorter:
            return
        pairs: list[tuple[bytes, int]] = []
        for pattern in self.keys.patterns:
            for key in (yield call(Transport.scan_keys, pattern)):
                label = bucket_label(key.decode("utf-8", "surrogatepass"))
                try:
                    bucket = periods.parse_label(label) if label else None
                except QueryError:  # (a foreign key named like a bucket's)
                    continue
                if label and bucket and bucket.period in shorter:
                    ttl = kept_for(new, changes, bucket.period, label) or 0
                    pairs.append((key, expire_at(bucket.period, label, new.timezone, ttl)))
        for i in range(0, len(pairs), EXPIRE_BATCH):
            yield call(Transport.expire_keys_at, pairs[i : i + EXPIRE_BATCH])

    def distinct_switched(self, old: Schema, new: Schema) -> Op[list[str]]:
        """The distinct-value rules `new` turns from `unique` to `approx` or back, for the
        events recorded ("distinct:<event>:<prop>"): their days holding data then are kept
        in one form or the other, and no question can add the two up."""
        switched = []
        for event in (yield from self.events()):
            was, now = old.rules_for(event), new.rules_for(event)
            for prop in (*now.approx, *now.unique):
                if prop in (was.unique if prop in now.approx else was.approx):
                    switched.append(switch_name(event, prop))
        return switched

    def data_days(self, schema: Schema) -> Op[tuple[int, int] | None]:
        """The first and last day (numbers since 1970-01-01) the namespace holds data on, the
        last one at least today in `schema`'s time zone (a client still on the schema before
        a change records today's events by it for a few seconds); None with no data."""
        first = yield call(Transport.hvals, self.keys.span_first)
        last = yield call(Transport.hvals, self.keys.span_last)
        if not first or not last:
            return None
        today = (datetime.now(schema.tz).date() - periods.FIRST_DAY).days
        return min(map(int, first)), max(today, *map(int, last))

    def drop(self) -> Op[int]:
        # the pushes and batches sent ahead (`track_ahead`) land first: none writes after
        yield from self.sent_settled()
        deleted: int = yield call(Transport.delete_matching, self.keys.patterns)
        self.forget_caches()
        self.schema_lost = self.schema_stored  # (stored again by this client's next write)
        self.schema_stored = False
        return deleted

    def ids_of(self, offsets: np.ndarray) -> Op[list[Any]]:
        if self.schema.ids == "int":
            return offsets.tolist()  # type: ignore[no-any-return]
        k, mask = self.keys, (1 << REVERSE_BUCKET_BITS) - 1
        pairs = [(k.id_reverse(o), str(o & mask)) for o in offsets.tolist()]
        texts = yield call(Transport.hget_many, pairs)
        return [original_id(t.decode("utf-8", "surrogatepass")) for t in texts if t is not None]

    def require_events(self, names: Iterable[str], param: str = "event") -> Op[None]:
        """Every name is an event the namespace has recorded or its schema names: an unknown
        one (a typo, most likely) is an UnknownEvent naming the closest known names, where a
        known event without data in a range answers 0. Asks the server only about names not
        seen before."""
        missing = [n for n in names if n not in self.known_events and n not in self.schema.events]
        if not missing:
            return
        raw = yield call(Transport.smembers, self.keys.events)
        self.known_events = {n.decode("utf-8", "surrogatepass") for n in raw}
        known = sorted(self.known_events | set(self.schema.events))
        for name in missing:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
                raise UnknownEvent(name, close, param=param)

    def require_leaves(self, exprs: Sequence[Expr]) -> Op[None]:
        """`require_events` for the events of actor-set expressions."""
        names: dict[str, None] = {}
        todo: list[Expr] = list(exprs)
        while todo:
            e = todo.pop()
            if isinstance(e, Leaf):
                names[e.event] = None
                self.check_kept(e.labels, "segment" if e.segment else None)
            else:
                todo += e.args
        yield from self.require_events(names)

    # time ranges
    def range(self, start: Any, end: Any) -> tuple[datetime, datetime]:
        if start is None:
            raise QueryError("a start date or period label is required", param="start")
        return periods.resolve_range(start, end, self.schema.tz, self.schema.periods)

    def cover_labels(self, start: Any, end: Any, family: str | None = None) -> tuple[str, ...]:
        """Labels of the fewest kept buckets tiling the range, for unique actors and totals
        (`family` None) or for a rule family."""
        lo, hi = self.range(start, end)
        chosen = self.tiling(lo, hi, family)
        labels = periods.cover_labels(lo, hi, chosen)
        if self.buckets_may_lack():
            labels = tuple(b.label for b in self.kept_cover(lo, hi, chosen, family))
        return labels

    def buckets_may_lack(self) -> bool:
        """Whether some buckets may lack data (`gone`): their periods expire, or were added
        while the namespace held data."""
        return bool(self.schema.expire or self.expire_changes or self.periods_added)

    def kept_cover(
        self,
        lo: datetime,
        hi: datetime,
        chosen: tuple[str, ...],
        family: str | None = None,
    ) -> list[periods.Bucket]:
        """The fewest buckets of `chosen` tiling [lo, hi) with none lacking data (`gone`): a
        bucket that lacks it is read from the other periods instead (an old week from its
        days when weeks expire first; the month of a week added, from its weeks and days),
        else the QueryError saying which bucket is gone; `family`: the rule family read
        (None: actors and totals)."""
        lacking: list[str] = []  # the buckets left out, in the order met
        return self._kept_cover(lo, hi, chosen, family, time.time(), lacking)

    def _kept_cover(
        self,
        lo: datetime,
        hi: datetime,
        chosen: tuple[str, ...],
        family: str | None,
        now: float,
        lacking: list[str],
    ) -> list[periods.Bucket]:
        kept: list[periods.Bucket] = []
        for bucket in periods.cover(lo, hi, chosen):
            if not self.gone(bucket.label, now, family):
                kept.append(bucket)
                continue
            lacking.append(bucket.label)
            others = tuple(p for p in chosen if p != bucket.period)
            try:
                tiled = bool(others) and bool(periods.cover(bucket.start, bucket.end, others))
            except QueryError:
                tiled = False
            if not tiled:  # nothing else tiles it: the error of the first bucket expired
                # says why (one begun before its period was added only sent the reading finer)
                expired = (b for b in lacking if self.added_while(b, family) is None)
                self.check_kept([next(expired, bucket.label)], family)
                raise AssertionError(f"{bucket.label} is gone, yet check_kept passed it")
            kept += self._kept_cover(bucket.start, bucket.end, others, family, now, lacking)
        return kept

    def gone(self, label: str, now: float, family: str | None = None) -> bool:
        """Whether a bucket lacks data: past its period's retention (`Schema.expire`: its keys
        are gone), or begun before its period was added, or before `family` was kept per hour
        (`added_while`)."""
        period = periods.parse_label(label).period
        ttl = self.kept_for(period, label)
        if ttl is not None and expire_at(period, label, self.schema.timezone, ttl) <= now:
            return True
        return self.added_while(label, family) is not None

    def added_while(self, label: str, family: str | None = None) -> PeriodAdded | None:
        """The addition of the bucket's period (`Schema.stored_text`), or of `family` to the
        families kept per hour ("hour:<family>"), while the namespace held data on its days:
        the bucket holds only what was recorded since. None if none."""
        if not self.periods_added:
            return None
        bucket = periods.parse_label(label)
        first = (bucket.start.date() - periods.FIRST_DAY).days
        last = ((bucket.end - timedelta(microseconds=1)).date() - periods.FIRST_DAY).days
        own = f"{bucket.period}:{family}"
        for added in self.periods_added:
            if added[0] in (bucket.period, own) and added[1] <= last and first <= added[2]:
                return added
        return None

    def tiling(self, lo: datetime, hi: datetime, family: str | None) -> tuple[str, ...]:
        """The periods that tile [lo, hi) for `family`; a family kept per day (`Schema.hourly`)
        answers for whole days only, as no key of it holds an hour."""
        kept = self.schema.periods_of(family)
        if not kept:  # (a family kept per day and up, in a namespace of hours alone)
            raise QueryError(
                f"{FAMILY_TEXT[family or '']} are kept per day and up (the schema's hourly does"
                f" not name {family!r}) and this namespace records hours only, so none are"
                f" recorded: keep {family!r} per hour (Schema hourly) or add 'day' to its"
                " periods, for events recorded from then on"
            )
        if kept != self.schema.periods:
            for at, param in ((lo, "start"), (hi, "end")):
                if at.time() != datetime.min.time():
                    raise QueryError(
                        f"{FAMILY_TEXT[family or '']} are kept per day, not per hour (the"
                        f" schema's hourly does not name {family!r}), so {at:%Y-%m-%d %H:%M}"
                        f" cannot be a bound: ask for whole days (or keep {family!r} per hour:"
                        " Schema hourly, for events recorded from then on)",
                        param=param,
                    )
        return kept

    def check_kept(self, labels: Sequence[str], family: str | None = None) -> tuple[str, ...]:
        """`labels`, if none lacks data (`gone`): past its period's retention (`Schema.expire`),
        or begun before its period (or `family` per hour) was added while the namespace held
        data. A question needing such a bucket has no answer (a short one would be a lie)."""
        if self.buckets_may_lack():
            now = time.time()
            for label in labels:
                if self.gone(label, now, family):
                    period = periods.parse_label(label).period
                    added = self.added_while(label, family)
                    if added is not None:
                        first, last = (periods.FIRST_DAY + timedelta(days=d) for d in added[1:])
                        what = (
                            f"{family} was kept per hour (Schema hourly)"
                            if ":" in added[0]
                            else f"{period} was added to the schema"
                        )
                        raise QueryError(
                            f"{what} while the namespace held data from {first} to {last}, so"
                            f" {label} holds only what was recorded since; {period}s after"
                            f" {last} are whole, and a range of whole days reads the days",
                            param="start",
                        )
                    ttl = self.kept_for(period, label)
                    assert ttl is not None
                    rank = periods.PERIODS.index
                    coarser = [p for p in self.schema.periods if rank(p) > rank(period)]
                    whole = f"whole {' or '.join(p + 's' for p in coarser)}, or " if coarser else ""
                    raise QueryError(
                        f"{period} buckets are kept {duration_text(ttl)} after their {period}"
                        f" ends (Schema expire, when {label} was recorded), so {label} is gone;"
                        f" ask about {whole}{period}s within the last {duration_text(ttl)}",
                        param="start",
                    )
        return tuple(labels)

    def kept_for(self, period: str, label: str) -> int | None:
        """Seconds a bucket's keys live after it ends (None: for ever): the schema's expiry, or
        a shorter one in force when the bucket began (its keys were written with that)."""
        return kept_for(self.schema, self.expire_changes, period, label)

    def require_period(self, period: str, param: str = "period") -> None:
        if period not in self.schema.periods:
            raise QueryError(
                f"{period!r} buckets are not recorded in namespace {self.name!r}"
                f" (periods: {', '.join(self.schema.periods)})",
                param=param,
            )

    # actor sets
    def segment(self, event: str, segment: Mapping[str, Any]) -> tuple[str, str] | None:
        if not segment:
            return None
        name = normalise("~".join(segment))
        configured = self.schema.rules_for(event).segment
        if name not in configured:
            raise QueryError(
                f"no segment {name!r} is recorded for event {event!r}"
                f" (segments: {', '.join(configured) or 'none'})",
                param="segment",
            )
        values = []
        for part in compound(name):
            value = segment[part]
            if isinstance(value, np.generic):  # (numpy's scalars, as Python's)
                value = value.item()
            text = (
                value
                if isinstance(value, str)
                else number_text(value)
                if isinstance(value, (int, float))
                else None
            )
            if text is None:
                raise QueryError(
                    f"segment {part}={value!r}: the value must be text, a finite number or a"
                    " boolean (as recorded: 19.0 is '19', True is 'true')",
                    param="segment",
                )
            values.append(text)
        return name, encode_value(values[0] if len(values) == 1 else values)

    def per_shard(self, make: Callable[[int], Program]) -> Op[list[tuple[int, list[Any]]]]:
        """Run the program `make(shard)` on every id shard: (shard, answers) per shard.

        Shards differ only in their keys' hash tag, so the program is made once and retagged.
        The shard set is read in the same round trip as the programs made for the set seen
        last time; only when it has changed since are they made and run again.
        """
        shards = self.shard_cache
        while True:
            programs = []
            if shards:
                first, tag = make(shards[0]), self.keys.shard_tag(shards[0])
                programs = [first.retag(tag, self.keys.shard_tag(s)) for s in shards]
            now, answers = yield call(Transport.evaluate_checked, self.keys.shards, programs)
            if now == shards:
                return list(zip(shards, answers, strict=True))
            shards = self.shard_cache = now

    def compiled(self, add: Callable[[SetProgram], None]) -> Callable[[int], Program]:
        """A `make` for `per_shard`: the program `add` writes, for a given shard."""
        program = SetProgram()
        add(program)
        return partial(program.for_shard, self.keys)

    def totals(self, program: SetProgram) -> Op[list[int]]:
        """Run `program` on every id shard (one sets.lua call on a single server, one per shard
        on a cluster) and add up the answers."""
        if not program.answers or not program.sets:
            return [0] * program.answers
        totals = [0] * program.answers
        for _, answers in (yield from self.per_shard(partial(program.for_shard, self.keys))):
            for i, value in enumerate(answers):
                totals[i] += int(value)
        return totals

    def count_exprs(self, exprs: Sequence[Expr]) -> Op[list[int]]:
        """Sizes of many actor sets, in one server call per id shard."""
        yield from self.require_leaves(exprs)
        program = SetProgram()
        for e in exprs:
            program.count(e)
        return (yield from self.totals(program))

    def contains(self, expr: Expr, actor: object) -> Op[bool]:
        yield from self.require_leaves([expr])
        if self.schema.ids == "map":
            try:
                text = canonical_id(actor)
            except InvalidEvent:
                return False
            offset = self.id_cache.get(text)
            if offset is None:
                raw = yield call(Transport.hget, self.keys.id_forward(text), text)
                if raw is None:
                    return False
                offset = int(raw)
        else:
            try:  # the same ids track() takes: integers, and digit text such as "42"
                offset = int_actor(actor, self.schema.actor, self.schema.max_id)
            except InvalidEvent:
                return False
        program = SetProgram()
        program.contains(expr, offset & ((1 << SHARD_BITS) - 1))
        answers = yield call(
            Transport.evaluate, [program.for_shard(self.keys, offset >> SHARD_BITS)]
        )
        return bool(answers[0][0])

    def ids(self, expr: Expr) -> Generator[Call | Emit, Any, None]:
        """The actors' original ids: evaluated into keys, read whole, handed out by Emit a chunk
        at a time. Every shard's bitmap (128 KiB at most) is read before the first id is handed
        out: a scratch result lives SCRATCH_TTL_MS, and a caller slow over its ids would
        otherwise find the rest gone (GETRANGE of a missing key reads as an empty set)."""
        yield from self.require_leaves([expr])
        stored = yield from self.per_shard(self.compiled(lambda c: c.store(expr)))
        bitmaps: list[tuple[int, bytes]] = []
        for shard, answers in stored:
            key = answers[0].decode() if isinstance(answers[0], bytes) else str(answers[0])
            if key:
                bitmaps.append((shard, (yield from self.bitmap_read(key))))
            if is_temp(key):  # a scratch result (a plain bucket key is read, never deleted)
                yield call(Transport.delete, key)
        for shard, data in bitmaps:
            for start in range(0, len(data), CHUNK_BYTES):
                chunk = np.frombuffer(data[start : start + CHUNK_BYTES], dtype=np.uint8)
                offsets = np.flatnonzero(np.unpackbits(chunk)) + start * 8 + (shard << SHARD_BITS)
                if len(offsets):
                    yield Emit((yield from self.ids_of(offsets)))

    def bitmap_read(self, key: str) -> Op[bytes]:
        """The whole bitmap in `key`, read CHUNK_BYTES a call."""
        parts: list[bytes] = []
        while True:
            start = len(parts) * CHUNK_BYTES
            data = yield call(Transport.getrange, key, start, start + CHUNK_BYTES - 1)
            parts.append(data)
            if len(data) < CHUNK_BYTES:
                return b"".join(parts)

    # metrics
    def unique(self, event: str, start: Any, end: Any, segment: Mapping[str, Any]) -> Op[int]:
        check_name(event)
        yield from self.require_events([event])
        seg = self.segment(event, segment)
        leaf = Leaf(event, self.cover_labels(start, end, "segment" if seg else None), seg)
        return (yield from self.count_exprs([leaf]))[0]

    def total(self, event: str, start: Any, end: Any) -> Op[int]:
        check_name(event)
        yield from self.require_events([event])
        labels = self.cover_labels(start, end)
        sums = yield call(Transport.hsum, [self.keys.metrics(event, lb) for lb in labels], ["n"])
        return int(sums.get(b"n", 0))

    def series(
        self, event: str, start: Any, end: Any, by: str, metric: str, segment: Mapping[str, Any]
    ) -> Op[Series]:
        check_name(event)
        yield from self.require_events([event])
        self.require_period(by, "by")
        if metric not in ("unique", "total"):
            raise QueryError(f"metric must be 'unique' or 'total', got {metric!r}", param="metric")
        if metric == "total" and segment:
            raise QueryError("segments filter actors; metric='total' takes none", param="segment")
        lo, hi = self.range(start, end)
        buckets = periods.buckets_between(by, lo, hi)
        family = "segment" if metric == "unique" and segment else None
        parts = [
            self.kept_cover(lo_b, hi_b, self.tiling(lo_b, hi_b, family), family=family)
            for lo_b, hi_b in ((max(lo, b.start), min(hi, b.end)) for b in buckets)
        ]
        self.check_kept([c.label for p in parts for c in p], family)
        if metric == "unique":
            seg = self.segment(event, segment)
            exprs: list[Expr] = [Leaf(event, tuple(c.label for c in p), seg) for p in parts]
            values = yield from self.count_exprs(exprs)
        else:
            pairs = [(self.keys.metrics(event, c.label), "n") for p in parts for c in p]
            raw = iter((yield call(Transport.hget_many, pairs)))
            values = [sum(int(next(raw) or 0) for _ in p) for p in parts]
        return Series(((b.label, v) for b, v in zip(buckets, values, strict=True)), metric)

    def counts(self, event: str, prop: str, start: Any, end: Any) -> Op[Counts]:
        asked, stored = self.prop(event, prop, "count")
        yield from self.require_events([event])
        labels = self.cover_labels(start, end, "count")
        keys = [self.keys.counts(event, lb, stored) for lb in labels]
        raw = yield call(Transport.zsum, self.scratch(event), keys)
        return Counts({value_of(f, asked, stored): int(v) for f, v in raw.items()}, asked)

    def sums(self, event: str, prop: str, start: Any, end: Any, by: str | None) -> Op[Sum | Sums]:
        check_name(event)
        rules = self.schema.rules_for(event).sum
        by_stored = normalise(by) if by else None
        if not any(r.prop == prop and r.by == by_stored for r in rules):
            wanted = prop if by is None else f"{prop} by {by}"
            raise QueryError(
                f"no sum {wanted!r} is recorded for event {event!r}"
                f" (sums: {', '.join(map(str, rules)) or 'none'})",
                param="prop",
            )
        yield from self.require_events([event])
        labels = self.cover_labels(start, end, "sum")
        if by is None or by_stored is None:
            f = metric_sum_field(prop)
            raw = yield call(Transport.hsum, [self.keys.metrics(event, lb) for lb in labels], [f])
            return Sum(raw.get(f.encode(), 0.0))
        keys = [self.keys.sums_by(event, lb, prop, by_stored) for lb in labels]
        raw = yield call(Transport.zsum, self.scratch(event), keys)
        return Sums(
            {value_of(f[2:], by, by_stored): v for f, v in raw.items() if f[:2] == b"s:"}, by
        )

    def averages(self, event: str, prop: str, start: Any, end: Any) -> Op[float | None]:
        check_name(event)
        if not any(r.prop == prop and r.by is None for r in self.schema.rules_for(event).sum):
            yield from self.sums(event, prop, start, end, None)  # (its error: not recorded)
        yield from self.require_events([event])
        labels = self.cover_labels(start, end, "sum")
        fs, fk = metric_sum_field(prop), metric_count_field(prop)
        keys = [self.keys.metrics(event, lb) for lb in labels]
        raw = yield call(Transport.hsum, keys, [fs, fk])
        n = float(raw.get(fk.encode(), 0.0))
        if not n:
            return None
        total = float(raw.get(fs.encode(), 0.0))
        if math.isfinite(total):
            return total / n
        # each bucket's total is within +-1e308, their sum may not be: each divided first
        parts: list[float] = yield call(Transport.read_sums, [Target("hash", k, fs) for k in keys])
        return math.fsum(p / n for p in parts)

    def top(self, event: str, prop: str, start: Any, end: Any, limit: int) -> Op[Top]:
        most = whole(limit)
        if most is None or most < 1:
            raise QueryError(f"limit must be a positive integer, got {limit!r}", param="limit")
        asked, stored = self.prop(event, prop, "top")
        yield from self.require_events([event])
        keys = [self.keys.top(event, lb, stored) for lb in self.cover_labels(start, end, "top")]
        # ties are cut on the server in stored order; another order of parts needs them all
        raw = yield call(Transport.top, self.scratch(event), keys, most, asked != stored)
        ranked = [(value_of(m, asked, stored), int(s)) for m, s in raw]
        ranked.sort(key=lambda vc: (-vc[1], vc[0]))
        return Top(ranked[:most], asked)

    def distinct(self, event: str, prop: str, start: Any, end: Any) -> Op[int]:
        """Distinct values of a property: exact for `unique` ones (an OR of value-id bitmaps),
        estimated for `approx` ones (PFCOUNT merges the buckets' HyperLogLogs)."""
        check_name(event)
        rules = self.schema.rules_for(event)
        stored = normalise(prop)
        if stored not in rules.unique and stored not in rules.approx:
            raise QueryError(
                f"no distinct values of {prop!r} are recorded for event {event!r}"
                f" (unique: {', '.join(rules.unique) or 'none'};"
                f" approx: {', '.join(rules.approx) or 'none'})",
                param="prop",
            )
        yield from self.require_events([event])
        labels = self.cover_labels(start, end, "approx" if stored in rules.approx else "unique")
        self.check_not_switched(
            event, stored, labels, "approx" if stored in rules.approx else "unique"
        )
        if stored in rules.approx:
            hlls = [self.keys.approx(event, lb, stored) for lb in labels]
            return int((yield call(Transport.pfcount, hlls)))
        keys = [self.keys.distinct(event, lb, stored) for lb in labels]
        answers = yield call(Transport.evaluate, [count_union(keys)])
        return int(answers[0][0])

    def check_not_switched(self, event: str, prop: str, labels: Sequence[str], kind: str) -> None:
        """Refuse buckets of days that held data when `configure()` switched `prop` between
        `unique` and `approx`: those days were kept in one form, then the other."""
        name = switch_name(event, prop)
        spans = [(a, b) for n, a, b in self.periods_added if n == name]
        if not spans:
            return
        for label in labels:
            bucket = periods.parse_label(label)
            first = (bucket.start.date() - periods.FIRST_DAY).days
            last = ((bucket.end - timedelta(microseconds=1)).date() - periods.FIRST_DAY).days
            if any(a <= last and first <= b for a, b in spans):
                since, until = (
                    periods.FIRST_DAY + timedelta(days=d)
                    for d in (min(a for a, _ in spans), max(b for _, b in spans))
                )
                raise DistinctSwitched(
                    f"distinct values of {prop!r} for {event!r} are kept {kind} now, but"
                    f" configure() switched them between unique and approx while the namespace"
                    f" held data from {since} to {until}, so {label} may hold part of them in"
                    f" each form and no answer would be whole; ask about days after {until}",
                    param="start",
                )

    def query(self, event: str, start: Any, end: Any) -> Op[dict[str, Any]]:
        rules = self.schema.rules_for(event)
        out: dict[str, Any] = {
            "event": event,
            "total": (yield from self.total(event, start, end)),
            "unique": (yield from self.unique(event, start, end, {})),
        }
        if rules.count:
            out["counts"] = counts = {}
            for p in rules.count:
                counts[p] = yield from self.counts(event, p, start, end)
        if rules.sum:
            out["sums"] = sums = {}
            for r in rules.sum:
                sums[str(r)] = yield from self.sums(event, r.prop, start, end, r.by)
        if rules.top:
            out["top"] = tops = {}
            for p in rules.top:
                tops[p] = yield from self.top(event, p, start, end, 10)
        if rules.unique or rules.approx:
            distinct: dict[str, int | None] = {}
            out["distinct"] = distinct
            for p in (*rules.unique, *rules.approx):
                try:
                    distinct[p] = yield from self.distinct(event, p, start, end)
                except DistinctSwitched:  # (the other metrics still answer: distinct() says why)
                    distinct[p] = None
        return out

    def query_days(self, event: str, days: int, end: Any) -> Op[list[dict[str, Any]]]:
        n = whole(days)
        if n is None or n < 1:
            raise QueryError(f"days must be a positive integer, got {days!r}", param="days")
        tz = self.schema.tz
        if end is None:
            last = datetime.now(tz).date()
        else:
            with blaming("end"):
                last = periods.parse_time(end, tz).date()
        # checked here: past 1970 a day's query would blame a `start` the caller never gave
        most = (last - periods.FIRST_DAY).days + 1
        if n > most:
            raise QueryError(
                f"days={n:,} up to {last} reaches back before {periods.FIRST_DAY}, the first"
                f" date bitstat supports (at most {most:,} days)",
                param="days",
            )
        out = []
        for d in range(n - 1, -1, -1):
            day = last - timedelta(days=d)
            out.append({"day": day.isoformat(), **(yield from self.query(event, day, None))})
        return out

    def span(self, event: str) -> Op[tuple[date, date] | None]:
        """The first and last (local) days `event` was recorded on, None if never."""
        check_name(event)
        first = yield call(Transport.hget, self.keys.span_first, event)
        last = yield call(Transport.hget, self.keys.span_last, event)
        if first is None or last is None:
            return None
        epoch = date(1970, 1, 1)
        return epoch + timedelta(days=int(first)), epoch + timedelta(days=int(last))

    def events(self) -> Op[list[str]]:
        raw = yield call(Transport.smembers, self.keys.events)
        return sorted(n.decode("utf-8", "surrogatepass") for n in raw)

    def scratch(self, event: str) -> str:
        return self.keys.temp(self.keys.event_tag(event), secrets.token_hex(6))

    def prop(self, event: str, prop: str, kind: str) -> tuple[str, str]:
        """(the name as asked, the stored name) of a property recorded as `kind` for `event`."""
        check_name(event)
        stored = normalise(prop)
        configured = getattr(self.schema.rules_for(event), kind)
        if stored not in configured:
            raise QueryError(
                f"no {kind} of {prop!r} is recorded for event {event!r}"
                f" ({kind}: {', '.join(configured) or 'none'})",
                param="prop",
            )
        return prop, stored


def value_of(raw: bytes, asked: str, stored: str) -> Any:
    """A stored value back as text, or as a tuple in the order the caller named the parts."""
    text = raw.decode("utf-8", "surrogatepass")
    if "~" not in stored:
        return text
    parts = dict(zip(stored.split("~"), member_value(text, True), strict=True))
    return tuple(parts[p] for p in asked.split("~"))
