"""Identity and erasure, written once for the sync and the async API: `alias` links an
anonymous id to a user id and merges what was recorded under it, `forget` erases an actor.

Both are operations (generators of `Call`s, as in ops.py) over two places: the actor sets of
the actor's id shard (every key `{N:s<k>}:a:...` and `{N:s<k>}:all`, found with SCAN, changed by
actors.lua in chunks) and, with ids="map", the id map (identity.lua, in the map's slot). Each
step is idempotent, and the id map changes last: an alias or forget cut off midway and run
again finishes the work without doing any of it twice. docs/identity.md has the semantics.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .calls import Op
from .errors import BitstatError, InvalidEvent, QueryError
from .events import canonical_id, int_actor, original_id
from .keys import REVERSE_BUCKET_BITS, SHARD_BITS, SHARD_MASK, Keys
from .schema import Schema
from .transport import Transport, call

log = logging.getLogger("bitstat")
CHUNK_KEYS = 1000  # actor-set keys per actors.lua call: a short pause of the server each
ATTEMPTS = 8  # tries of an id-map step that finds the ids changed under it (a concurrent alias)


@dataclass
class Forgotten:
    """What `forget` did. `ids`: the ids unmapped (the actor's and those aliased to it; with
    ids="int", the id itself when any set held it); `removed`: actor sets (bitmaps and sets)
    the actor was taken out of, of `scanned` looked at; `kept`: the aggregates the actor's
    events were counted into, which hold no identity and stay as they are."""

    actor: Any
    ids: list[Any] = field(default_factory=list)
    removed: int = 0
    scanned: int = 0
    kept: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.ids or self.removed)


@dataclass
class Aliased:
    """What `alias` did: `outcome` is "merged" (each id had its own actor: the anonymous one's
    sets moved to the user, `moved` of them), "linked" (the anonymous id was unknown: it now
    stands for the user), "renamed" (the user id was unknown: it now names the anonymous
    id's actor) or "same" (already one actor: nothing changed). Of calls linking the same
    ids at once, one answers "merged" (the id map's script decides which), the others
    "same"; each one's `moved` counts the sets it moved itself meanwhile, if any."""

    anon: Any
    user: Any
    outcome: str
    moved: int = 0


class IdentityError(BitstatError):
    """An alias or forget kept finding the id map changed under it (concurrent aliases)."""


def kept_aggregates(schema: Schema) -> list[str]:
    """The families of aggregated values an actor's events went into, which `forget` keeps."""
    out = ["event totals"]
    every = [schema.base_rules(), *schema.events.values()]
    for kind, text in (
        ("count", "counts per value"),
        ("sum", "sums"),
        ("top", "top values"),
        ("unique", "distinct values"),
        ("approx", "estimated distinct values"),
    ):
        if any(getattr(r, kind) for r in every):
            out.append(text)
    return out


def shard_of(offset: int) -> tuple[int, int]:
    """(id shard, offset inside the shard's keys) of a global offset."""
    return offset >> SHARD_BITS, offset & SHARD_MASK


def retag(key: str, old: str, new: str) -> str:
    """The same actor set in another shard."""
    return new + key[len(old) :]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Identity:
    """The identity operations of one namespace (an `ops.Namespace`: schema, keys, caches)."""

    def __init__(self, ns: Any) -> None:
        self.ns = ns
        self.keys: Keys = ns.keys

    # the id map
    @property
    def mapped(self) -> bool:
        return bool(self.ns.schema.ids == "map")

    def _prefixes(self) -> list[Any]:
        return [self.keys.id_reverse_prefix, self.keys.id_alias_prefix, REVERSE_BUCKET_BITS]

    def canonical(self, actor: Any, param: str) -> str:
        try:
            return canonical_id(actor)
        except InvalidEvent as exc:  # (its reason alone: the id is no event's field here)
            raise QueryError(f"{param}: {exc.reason}", param=param) from None

    def int_id(self, actor: Any, param: str) -> int:
        schema = self.ns.schema
        try:
            return int_actor(actor, schema.actor, schema.max_id)
        except InvalidEvent as exc:
            raise QueryError(f"{param}: {exc.reason}", param=param) from None

    def offset_keys(self, *offsets: int | None) -> list[str]:
        """The reverse bucket and alias set of each offset: keys identity.lua is told of (one
        it touches undeclared could be on another node of a cluster while the slot moves)."""
        k = self.keys
        return [key for o in offsets if o is not None for key in (k.id_reverse(o), k.id_aliases(o))]

    def offset(self, text: str) -> Op[int | None]:
        raw = yield call(Transport.hget, self.keys.id_forward(text), text)
        return None if raw is None else int(raw)

    def names(self, offset: int) -> Op[list[str]]:
        """Every id of an offset: the one it is named by, then its aliases."""
        mask = (1 << REVERSE_BUCKET_BITS) - 1
        name = yield call(Transport.hget, self.keys.id_reverse(offset), str(offset & mask))
        aliases = yield call(Transport.smembers, self.keys.id_aliases(offset))
        out = [] if name is None else [name.decode("utf-8", "surrogatepass")]
        out += sorted(a.decode("utf-8", "surrogatepass") for a in aliases)
        return out

    def link_keys(self, anon: str, user: str) -> Op[list[str]]:
        """The keys identity.lua's link may touch, as the id map stands now: those of the
        offsets of `anon` and `user` and of the next offset (a new user's)."""
        a = yield from self.offset(anon)
        u = yield from self.offset(user)
        following = yield call(Transport.get, self.keys.ids_next)
        return self.offset_keys(a, u, int(following or 0))

    # actor sets
    def actor_keys(self, shard: int) -> Op[list[str]]:
        """Every actor set of a shard: its all-actors key and the keys of SCAN's `:a:` pattern."""
        found = yield call(Transport.scan_keys, self.keys.actors_pattern(shard))
        names = sorted({k.decode() if isinstance(k, bytes) else str(k) for k in found})
        return [self.keys.all_actors(shard), *names]

    def remove(self, offset: int) -> Op[tuple[int, int]]:
        """Take a global offset out of every actor set: (sets that held it, sets looked at)."""
        shard, local = shard_of(offset)
        keys = yield from self.actor_keys(shard)
        removed = 0
        for part in chunks(keys, CHUNK_KEYS):
            removed += int(
                (yield call(Transport.run_lua, "actors.lua", list(part), ["remove", local]))
            )
        return removed, len(keys)

    def held(self, offset: int) -> Op[bool]:
        """Whether the shard's all-actors set holds a global offset: every batch that records
        it writes there, in the same script as its other actor sets."""
        shard, local = shard_of(offset)
        key = self.keys.all_actors(shard)
        found = yield call(Transport.run_lua, "actors.lua", [key], ["probe", local])
        return bool(found)

    def epoch_moved(self) -> Op[None]:
        """Tell other clients that ids they cached may name old offsets (an id merged into
        another actor, or forgotten): they drop their caches when they next read the schema
        (every `record.SCHEMA_TTL` seconds of writing). A link of an id not mapped before
        changes no mapping a client could hold, and moves nothing."""
        epoch = secrets.token_hex(8)
        replaced = yield call(Transport.swap, self.keys.identity_epoch, epoch)
        if replaced != self.ns.identity_epoch:  # another client's merge or forget since this
            # one last read the epoch: noting its own as read would hide that one for good
            self.ns.forget_ids()
        self.ns.identity_epoch = epoch.encode()

    def sweep_again(self, offset: int, target: int | None = None) -> Op[None]:
        """After the id map changed: remove `offset` (or move it to `target`) again while the
        all-actors set holds it. An event recorded under it meanwhile (a writer that had the
        offset before the map changed) may have landed in a set the sweep had passed; once no
        id names the offset, no later call could reach it."""
        for _ in range(ATTEMPTS):
            if not (yield from self.held(offset)):
                return
            if target is None:
                yield from self.remove(offset)
            else:
                yield from self.move(offset, target)
        if (yield from self.held(offset)):  # (said, not kept quiet: no later call reaches it)
            log.warning(
                "bitstat: events kept arriving under offset %d in namespace %r while it was"
                " %s (%d sweeps): those since the last sweep stay counted under it; stop the"
                " writers of that id, then check with ids()",
                offset,
                self.ns.name,
                "erased" if target is None else f"merged into offset {target}",
                ATTEMPTS,
            )

    def move(self, source: int, target: int) -> Op[int]:
        """Put `target` in every actor set holding `source`, and take `source` out: the sets
        that held it. Same shard (or one server): one move per chunk. Across cluster slots:
        probe the source's shard, add in the target's, then remove in the source's."""
        (s_shard, s_local), (t_shard, t_local) = shard_of(source), shard_of(target)
        s_tag, t_tag = self.keys.shard_tag(s_shard), self.keys.shard_tag(t_shard)
        keys = yield from self.actor_keys(s_shard)
        if s_shard != t_shard:
            yield call(Transport.run_lua, "actors.lua", [self.keys.shards], ["shard", t_shard])
        moved = 0
        if s_shard == t_shard or not self.ns.cluster:
            for part in chunks(keys, CHUNK_KEYS // 2):
                pairs = [k for key in part for k in (key, retag(key, s_tag, t_tag))]
                args = ["move", s_local, t_local]
                moved += int((yield call(Transport.run_lua, "actors.lua", pairs, args)))
            return moved
        for part in chunks(keys, CHUNK_KEYS):
            flat = yield call(Transport.run_lua, "actors.lua", list(part), ["probe", s_local])
            held = [part[int(flat[j]) - 1] for j in range(0, len(flat), 2)]
            ttls = [int(flat[j + 1]) for j in range(0, len(flat), 2)]
            if not held:
                continue
            targets = [retag(key, s_tag, t_tag) for key in held]
            yield call(Transport.run_lua, "actors.lua", targets, ["add", t_local, *ttls])
            yield call(Transport.run_lua, "actors.lua", held, ["remove", s_local])
            moved += len(held)
        return moved

    # the operations
    def forget(self, actor: Any) -> Op[Forgotten]:
        """Erase an actor: out of every actor set, then (ids="map") out of the id map with the
        ids aliased to it."""
        done = Forgotten(actor, kept=kept_aggregates(self.ns.schema))
        # the events track() queued (by any process) first, those other flushes have claimed
        # included: one of this actor's, applied later, would bring it back
        yield from self.ns.flush()
        yield from self.ns.claims_applied()
        if not self.mapped:
            number = self.int_id(actor, "actor")
            done.removed, done.scanned = yield from self.remove(number)
            done.ids = [number] if done.removed else []
            return done
        text = self.canonical(actor, "actor")
        offset = yield from self.offset(text)
        if offset is None:
            return done
        done.removed, done.scanned = yield from self.remove(offset)
        for _ in range(ATTEMPTS):
            names = yield from self.names(offset)
            keys = [self.keys.id_forward(n) for n in (text, *names)] + self.offset_keys(offset)
            args = ["forget", *self._prefixes(), offset, text, *names]
            reply = yield call(Transport.run_lua, "identity.lua", keys, args)
            if reply[0] in (b"forgotten", "forgotten"):
                gone = {text, *names}
                # a new dict, not one emptied in place (a batch between its look at the cache
                # and its reading reads the one it looked at), and batches in flight keep no
                # mapping they learnt before this (the generation)
                self.ns.id_cache = {k: v for k, v in self.ns.id_cache.items() if k not in gone}
                self.ns.identity_changed()
                yield from self.epoch_moved()
                yield from self.sweep_again(offset)
                done.ids = [original_id(n) for n in dict.fromkeys((*names, text))]
                return done
        raise IdentityError(f"forgetting {actor!r}: its ids kept changing; try again")

    def alias(self, anon: Any, user: Any) -> Op[Aliased]:
        """Link `anon` to `user`: one actor from now on, what `anon` did merged into `user`."""
        yield from self.ns.flush()  # (the events queued before are the ids' as they were)
        if not self.mapped:
            a, u = self.int_id(anon, "anon"), self.int_id(user, "user")
            if a == u:
                return Aliased(anon, user, "same")
            moved = yield from self.move(a, u)
            return Aliased(anon, user, "merged", moved)
        a_text, u_text = self.canonical(anon, "anon"), self.canonical(user, "user")
        if a_text == u_text:
            return Aliased(anon, user, "same")
        k = self.keys
        fa, fu = k.id_forward(a_text), k.id_forward(u_text)
        cache = self.ns.id_cache
        moved = 0
        for _ in range(ATTEMPTS):
            expected = yield from self.link_keys(a_text, u_text)
            args = ["link", *self._prefixes(), a_text, u_text]
            reply = yield call(
                Transport.run_lua, "identity.lua", [k.ids_next, fa, fu, *expected], args
            )
            outcome = text_of(reply[0])
            if outcome == "stale":  # (the offsets moved on since they were read)
                continue
            if outcome != "merge":
                offset = int(reply[1])
                cache[a_text] = cache[u_text] = offset
                self.ns.identity_changed()
                return Aliased(anon, user, outcome, 0)
            a, u = int(reply[1]), int(reply[2])
            moved += yield from self.move(a, u)
            names = yield from self.names(a)
            keys = [fa, fu, *(k.id_forward(n) for n in names), *self.offset_keys(a, u)]
            args = ["merged", *self._prefixes(), a_text, u_text, a, u, *names]
            reply = yield call(Transport.run_lua, "identity.lua", keys, args)
            outcome = text_of(reply[0])
            if outcome != "stale":
                for n in names:
                    cache[n] = u
                cache[a_text] = cache[u_text] = u
                self.ns.identity_changed()
                # also on "same": another call merged them since the link, or this call's own
                # merge step did, sent again after its reply was lost (redis-py's cluster
                # client does): the clients' cached ids must go either way
                yield from self.epoch_moved()
                yield from self.sweep_again(a, u)
                return Aliased(anon, user, outcome, moved)
        raise IdentityError(f"aliasing {anon!r} to {user!r}: the ids kept changing; try again")


def text_of(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
