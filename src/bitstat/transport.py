"""Every request bitstat makes of the server, written once: `Transport`'s methods are generators
of steps, run by the blocking `store.Store` and by asyncio's `aio.AsyncStore` alike.

A step is a function of the redis-py client (its result, or an awaitable of it on asyncio: both
clients have the same methods), a script to run by SHA (loaded again where the server has
forgotten it), a call on the master of a key, a pause, or a SCAN; `Doing` says what the steps
after it are for, so a failure names it. No I/O here: the stores run the steps, and turn a
failure into bitstat's errors (`store.wrapped_errors`) once, for every request.
"""

from __future__ import annotations

import builtins
import hashlib
import random
import re
import secrets
import time
from collections.abc import Callable, Generator, Sequence
from functools import cache
from importlib import resources
from operator import methodcaller
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

from .calls import Call, Y
from .errors import BitstatError, ServerError
from .keys import VALUE_BUCKETS, register, set_bitmap, tag_of, value_bucket_of
from .query import SCRATCH_TTL_MS, Program
from .sums import Target
from .writes import Group

T = TypeVar("T")
P = ParamSpec("P")


def load_script(name: str) -> str:
    """scripts/`name`, its includes expanded (`with_includes`)."""
    return with_includes(resources.files("bitstat").joinpath("scripts", name).read_text("utf-8"))


def with_includes(source: str) -> str:
    """Lua `source` with each line `-- include: NAME.lua` replaced by scripts/NAME.lua: a
    function scripts share (Lua in Redis has no modules)."""
    return _INCLUDE.sub(lambda line: load_script(line[1]), source)


_INCLUDE = re.compile(r"^-- include: (\w+\.lua)$", re.MULTILINE)


class Script:
    """A Lua script of scripts/, run by SHA."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = load_script(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


@cache
def lua_script(name: str) -> Script:
    """A script of scripts/ by name, read once per process."""
    return Script(name)


# the steps of a request
Step = Callable[[Any], Any]  # a function of the client


def read_slot_map(client: Any) -> Any:
    """A cluster client's slot map read again (an awaitable of it on asyncio)."""
    return client.nodes_manager.initialize()


class Pipe(NamedTuple):
    """Commands queued by `fill` on a pipeline and sent at once: their replies, in order (a
    failed one raises). `on`: a key whose master the pipeline goes to (WAIT counts the
    replicas of its own connection); None: the store's client."""

    fill: Callable[[Any], None]
    on: str | None = None


class ScriptMissing(Exception):
    """The server has no script of that SHA (restarted, or SCRIPT FLUSH): load it, again."""


class Moved(Exception):
    """A `Pipe` on a key's master refused with MOVED (nothing of it ran): the key's slot moved
    to another master since the client read the slot map. Read it again, send again."""


class Pause(NamedTuple):
    seconds: float


class Scan(NamedTuple):
    """The keys matching a glob pattern (SCAN, on every node of a cluster)."""

    pattern: str


class Doing(NamedTuple):
    """What the steps after it do, as a failure of theirs is reported ("reading sums")."""

    what: str


class Sent(NamedTuple):
    """Commands written to the server now, on a connection of their own: the step's reply is a
    ticket for `Received`, and the caller works on while the server answers (on a cluster the
    commands run at once and the ticket holds their replies)."""

    commands: list[tuple[Any, ...]]


class Direct(NamedTuple):
    """One command, on a connection the store keeps for such calls out of its pool (whose
    checks cost five system calls a command): for `track()`, a round trip a call. A cluster's,
    and the asyncio store's, go by their client."""

    command: tuple[Any, ...]


class Ahead(NamedTuple):
    """One command written on the store's connection for such commands, its reply left there
    for `AheadReplies` (a cluster's runs now and keeps its reply): `track()` with
    `track_ahead`, which returns before the server answers."""

    command: tuple[Any, ...]


class AheadReplies(NamedTuple):
    """The replies of the `Ahead` commands not read yet, in order, an error reply in its place
    as a `ServerError` (a script the server lacks: `ScriptMissing`); None for one lost with a
    connection that failed (the command may have run)."""


class Received(NamedTuple):
    """The replies of a `Sent` step's commands, in order; a script the server lacks is a
    `ScriptMissing` in its place (any other error reply raises)."""

    ticket: Any


Request = Generator[
    Step | Pipe | Pause | Scan | Doing | Sent | Received | Direct | Ahead | AheadReplies, Any, T
]


def call(
    method: Callable[Concatenate[Transport, P], Request[Any]], *args: P.args, **kwargs: P.kwargs
) -> Call:
    """The call of a `Transport` method, its arguments checked against the method's by the type
    checker: `yield call(Transport.get, key)`."""
    return Call(method, args, kwargs)


MAP_TRIES = 8  # calls of ids.lua on a cluster before other writers' offsets are an error
WAIT_MS = 5000  # how long a replica has to confirm a batch (WAIT) before the try fails
WAIT_SHARE = 0.8  # of the client's read timeout, at most: WAIT's reply comes before it ends


def not_replicated(acked: int, wanted: int, waited_ms: int) -> ServerError:
    """The error of a batch the master took and no replica confirmed in time: tried again (the
    batch id makes it land once), the write is waited for anew."""
    error = ServerError(
        f"recording a batch: {acked} of {wanted} replica(s) confirmed it within {waited_ms} ms"
        " (durability='replicated'); the master has it"
    )
    error.transient, error.refused = True, False
    return error


# offsets other writers may take between a cluster's call of ids.lua and the next (its reverse
# buckets named for them too: otherwise that call is made again)
OFFSETS_SPARE = 1024


def ids_call(
    next_key: str,
    reverse_prefix: str,
    reverse_bits: int,
    forward: Sequence[str],
    ids: Sequence[str],
    first: int | None = None,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ids.lua; on a cluster (`first`: the next offset, as far as the caller
    knows) the reverse buckets the new offsets may fall in are named among the KEYS: those of
    offsets `first` and up, one for each id and some to spare (other writers take offsets too)."""
    if first is None:
        declared: list[str] = []
        low = 0
    else:
        low, high = first >> reverse_bits, (first + len(ids) + OFFSETS_SPARE) >> reverse_bits
        declared = [f"{reverse_prefix}{b}" for b in range(low, high + 1)]
    return [next_key, *forward, *declared], [reverse_bits, reverse_prefix, low, len(declared), *ids]


def values_call(
    next_key: str,
    old_key: str,
    layout_key: str,
    buckets: str,
    values: Sequence[str],
    cluster: bool = False,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of values.lua; on a cluster the values' buckets are named among the KEYS
    too, and those 2,048 further on that it may read (the script names them itself on a
    single server)."""
    numbers = list(map(value_bucket_of, values))
    return _numbering(next_key, old_key, layout_key, buckets, values, numbers, cluster)


def _numbering(
    next_key: str,
    old_key: str,
    layout_key: str,
    buckets: str,
    values: Sequence[str],
    numbers: Sequence[int | str],
    cluster: bool,
) -> tuple[list[str], list[Any]]:
    """`values_call` of values whose bucket numbers are known."""
    keys = [next_key, old_key, layout_key]
    if cluster:
        keys += [
            f"{buckets}{int(b) + up}" for b in dict.fromkeys(numbers) for up in (0, VALUE_BUCKETS)
        ]
    return keys, [buckets, " ".join(map(str, numbers)), *values]


# ids or values one call of ids.lua or values.lua numbers (~0.2 s of the server's): the server
# runs nothing else meanwhile, and a million new values in one call held it 10 s, past
# busy-reply-threshold (5 s): other clients, and the batch's own next call, were answered BUSY
NUMBERED_AT_ONCE = 20_000


def _fills(client: Any) -> bool:
    """Whether `client`'s pool is bitstat's (a store without connection counting has redis-py's
    own, which has nothing to fill for)."""
    return hasattr(client.connection_pool, "fill")


def ids_pieces(
    next_key: str,
    reverse_prefix: str,
    reverse_bits: int,
    forward: Sequence[str],
    ids: Sequence[str],
) -> list[tuple[list[str], list[Any]]]:
    """ids.lua's calls on a single server, NUMBERED_AT_ONCE ids each."""
    return [
        ids_call(
            next_key,
            reverse_prefix,
            reverse_bits,
            forward[i : i + NUMBERED_AT_ONCE],
            ids[i : i + NUMBERED_AT_ONCE],
        )
        for i in range(0, len(ids), NUMBERED_AT_ONCE)
    ]


def values_pieces(
    call: tuple[list[str], list[Any]], cluster: bool
) -> list[tuple[list[str], list[Any]]]:
    """A `values_call`'s (KEYS, ARGV) as calls of at most NUMBERED_AT_ONCE values each (a
    value's id does not depend on the call that numbers it)."""
    keys, args = call
    values = args[2:]
    if len(values) <= NUMBERED_AT_ONCE:
        return [call]
    numbers = args[1].split(" ")  # (each value's bucket, not worked out again)
    step = NUMBERED_AT_ONCE
    return [
        _numbering(
            keys[0], keys[1], keys[2], args[0], values[i : i + step], numbers[i : i + step], cluster
        )
        for i in range(0, len(values), step)
    ]


UNLINK_BATCH = 500  # keys found by SCAN deleted per UNLINK


def unlinks(keys: list[bytes], cluster: bool) -> list[list[bytes]]:
    """The UNLINK calls that delete `keys`: UNLINK_BATCH at once on one server, one key per
    call on a cluster (the keys of a batch may live in different slots)."""
    if cluster:
        return [[k] for k in keys]
    return [keys[i : i + UNLINK_BATCH] for i in range(0, len(keys), UNLINK_BATCH)]


def apply_call(g: Group, batch_ttl: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the apply.lua call of one group of a write plan (its marker kept
    `batch_ttl` seconds, unless the group says otherwise)."""
    ttl = batch_ttl if g.ttl is None else g.ttl
    return [g.batch_key, g.scratch_key, *g.keys], [ttl, *g.args]


def applied(keys: Sequence[str], reply: Any, bitmaps: builtins.set[str] | None) -> Any:
    """apply.lua's answer: 1 for {1, k...} too, whose keys (indexes in KEYS) join `bitmaps`."""
    if not isinstance(reply, list):
        return reply
    if bitmaps is not None:
        if len(bitmaps) > BITMAPS_KEPT:
            bitmaps.clear()
        bitmaps.update(keys[int(k) - 1] for k in reply[1:])
    return int(reply[0])


# apply.lua's answers that write nothing and stop the groups after them: -1, a sum would
# overflow; -2, a queue claim's lease is over (record.py)
STOPPED = (-1, -2)
BITMAPS_KEPT = 200_000  # bitmap key names a client remembers (~10 MB), then starts again


def evaluate_call(
    programs: Sequence[Program], cluster: bool = False
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one sets.lua call running `programs` in order, each with fresh register
    key names in its own slot; on a cluster the bitmaps the script may build of Redis sets are
    named too, after the programs' keys (the script names them itself on a single server)."""
    keys: list[str] = []
    built: list[str] = []
    args: list[Any] = [SCRATCH_TTL_MS]
    token = secrets.token_hex(6)  # programs of different tags (shards) can share one
    tags: set[str] = set()
    previous: list[str | int] | None = None
    for p in programs:
        tag = tag_of(p.operands[0])
        if tag in tags:
            token = secrets.token_hex(6)
            tags.clear()
        tags.add(tag)
        keys += p.operands
        keys += [register(tag, token, i) for i in range(p.registers)]
        if cluster:
            built += [set_bitmap(p.operands[i - 1]) for i in p.bitmap_operands()]
        if p.code is previous:  # a retagged program: its code is sent once
            args += [len(p.operands), p.registers, -1]
        else:
            args += [len(p.operands), p.registers, len(p.code), *p.code]
            previous = p.code
    return keys + built, args


def evaluate_calls(programs: Sequence[Program], cluster: bool) -> list[tuple[list[str], list[Any]]]:
    """sets.lua calls for `programs`: one call on a single server (its per-call cost is paid
    once, not once per shard), one per program (per slot) on a cluster."""
    if not programs:
        return []
    if cluster:
        return [evaluate_call([p], cluster) for p in programs]
    return [evaluate_call(programs)]


def evaluate_answers(replies: Sequence[Any]) -> list[list[Any]]:
    """Answers per program from the replies of `evaluate_calls`."""
    return [list(answers) for reply in replies for answers in reply]


def scores(flat: Sequence[Any]) -> dict[bytes, float]:
    """A flat [member, score, ...] reply as a dict."""
    return {flat[i]: float(flat[i + 1]) for i in range(0, len(flat), 2)}


# `Transport.mark_parts`: SET NX, else the value held, a parts mark's expiry renewed
MARK_PARTS = """
local held = redis.call('GET', KEYS[1])
if not held then
  redis.call('SET', KEYS[1], 'P', 'EX', ARGV[1])
  return false
end
if held == 'P' then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return held
"""


class Transport:
    """The requests of one store (a single server or a cluster): what bitstat asks, step by
    step, with no I/O of its own."""

    def __init__(self, cluster: bool, replicas: int = 0, read_timeout: float | None = None) -> None:
        self.cluster = cluster
        self.replicas = replicas  # replicas that must confirm a batch (durability="replicated")
        self.read_timeout = read_timeout  # the client's socket timeout (s), which WAIT ends within
        self.stale = False  # the cluster's slot map must be read again (a replicated write failed)
        self.next_offsets: dict[str, int] = {}  # per id map: its next offset, as last seen
        self.apply_script = Script("apply.lua")
        self.ids_script = Script("ids.lua")
        self.evaluate_script = Script("sets.lua")
        self.counters_script = Script("counters.lua")
        self.values_script = Script("values.lua")
        self.queue_script = Script("queue.lua")

    def wait_ms(self) -> int:
        """How long WAIT waits for replicas: WAIT_MS, or less under a shorter read timeout
        (connect(socket_timeout=5)), else the socket gave up first: no replica confirming read
        as 'cannot reach the server', and a replica confirming just in time raced the socket."""
        if self.read_timeout is None:
            return WAIT_MS
        return max(1, min(WAIT_MS, int(self.read_timeout * 1000 * WAIT_SHARE)))  # (0: forever)

    # the steps that run scripts: loaded again where the server has forgotten them
    def script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Request[Any]:
        """Run a script by SHA (its source, if the server has forgotten it)."""
        try:
            return (yield lambda c: c.evalsha(script.sha, len(keys), *keys, *args))
        except ScriptMissing:
            return (yield lambda c: c.eval(script.source, len(keys), *keys, *args))

    def pipelined(self, pipe: Pipe, scripts: Sequence[Script] = ()) -> Request[list[Any]]:
        """A pipeline's replies; sent again once `scripts` are loaded if one was missing, and
        once the slot map is read again if its key's slot moved (the new master may lack the
        scripts too)."""
        loaded = refreshed = False
        while True:
            try:
                return list((yield pipe))
            except ScriptMissing:
                if loaded:
                    raise
                loaded = True
                for s in scripts:
                    yield methodcaller("script_load", s.source)
            except Moved:
                if refreshed:
                    raise
                refreshed = True
                yield read_slot_map

    def sleep(self, seconds: float) -> Request[None]:
        """Wait before a batch is tried again."""
        yield Pause(seconds)

    # writes
    def apply(
        self, groups: Sequence[Group], batch_ttl: int, bitmaps: builtins.set[str] | None = None
    ) -> Request[list[int | bytes]]:
        """Apply groups in order, each with apply.lua; its answer per group sent (1, the note of
        a batch seen before, -1: a sum would overflow, -2: a claim's lease is over), stopping
        after the first -1 or -2. The actor and value sets found to be bitmaps are added to
        `bitmaps`."""
        if self.replicas:
            return (yield from self.apply_replicated(groups, batch_ttl, bitmaps))
        results: list[int | bytes] = []
        yield Doing("recording a batch")
        for g in groups:
            keys, args = apply_call(g, batch_ttl)
            results.append(
                applied(keys, (yield from self.script(self.apply_script, keys, args)), bitmaps)
            )
            if results[-1] in STOPPED:
                break
        return results

    def send_apply(self, calls: Sequence[tuple[list[str], list[Any]]]) -> Request[Any]:
        """apply.lua for each (KEYS, ARGV) of `calls` (`apply_call`'s), written now: the ticket
        of `apply_sent`, which reads the answers later (the caller works on meanwhile)."""
        yield Doing("recording a batch")
        sha = self.apply_script.sha
        return (yield Sent([("EVALSHA", sha, len(k), *k, *a) for k, a in calls]))

    def apply_sent(
        self,
        ticket: Any,
        calls: Sequence[tuple[list[str], list[Any]]],
        bitmaps: builtins.set[str] | None = None,
    ) -> Request[bool]:
        """Whether every group of `send_apply` was applied (1); False for any other answer (a
        batch seen before, a sum refused, a script the server lacked): the batch is to be
        recorded the whole way. The sets found to be bitmaps are added to `bitmaps`."""
        answers = yield from self.apply_answers(ticket, calls, bitmaps)
        return all(a == 1 for a in answers)

    def apply_answers(
        self,
        ticket: Any,
        calls: Sequence[tuple[list[str], list[Any]]],
        bitmaps: builtins.set[str] | None = None,
    ) -> Request[list[int | bytes | None]]:
        """`apply`'s answer per call of `send_apply` (None: the server lacked the script, so
        that call wrote nothing). The sets found to be bitmaps are added to `bitmaps`."""
        yield Doing("recording a batch")
        replies = yield Received(ticket)
        return [
            None if isinstance(reply, ScriptMissing) else applied(keys, reply, bitmaps)
            for (keys, _), reply in zip(calls, replies, strict=True)
        ]

    def apply_replicated(
        self, groups: Sequence[Group], batch_ttl: int, bitmaps: builtins.set[str] | None = None
    ) -> Request[list[int | bytes]]:
        """`apply`, each group acknowledged once `replicas` replicas of its master have it:
        apply.lua, a write after it (its marker's expiry set again: something to wait for even
        when the batch was in before) and WAIT on one pipeline (WAIT waits for the writes of
        its own connection)."""
        sha = self.apply_script.sha
        wait_ms = self.wait_ms()
        results: list[int | bytes] = []
        yield Doing("recording a batch")
        try:
            if self.stale:
                yield read_slot_map
                self.stale = False
            for g in groups:
                keys, args = apply_call(g, batch_ttl)

                def fill(pipe: Any, g: Group = g, keys: Any = keys, args: Any = args) -> None:
                    pipe.evalsha(sha, len(keys), *keys, *args)
                    pipe.expire(g.batch_key, args[0])
                    pipe.wait(self.replicas, wait_ms)

                pipe = Pipe(fill, on=g.batch_key)
                result, _, acked = yield from self.pipelined(pipe, [self.apply_script])
                result = applied(keys, result, bitmaps)
                results.append(result)
                if result in STOPPED:
                    break
                if acked < self.replicas:
                    raise not_replicated(acked, self.replicas, wait_ms)
        except Exception as exc:
            if not isinstance(exc, ServerError):  # (a failure of the server's, not ours)
                self.stale = self.cluster
            raise
        return results

    def confirm(self, key: str, ttl: int) -> Request[None]:
        """Return once `replicas` replicas have what the master held of a batch found in (a
        try that did not write it: the one that did may have failed before its WAIT): its
        marker's expiry set again, a write of this connection to WAIT for."""
        yield Doing(f"waiting for replicas of {key}")
        wait_ms = self.wait_ms()

        def fill(pipe: Any) -> None:
            pipe.expire(key, ttl)
            pipe.wait(self.replicas, wait_ms)

        _, acked = yield from self.pipelined(Pipe(fill, on=key))
        if acked < self.replicas:
            raise not_replicated(acked, self.replicas, wait_ms)

    def mark(self, key: str, note: str, ttl: int, *, unless_held: bool = False) -> Request[None]:
        """Mark a batch id for `ttl` seconds, with what its marker keeps: a batch that wrote
        nothing (all its events rejected), or whose parts are all in. `unless_held`: only if
        no marker is there (a concurrent writer of the same batch may be going in parts)."""
        yield Doing(f"writing {key}")
        yield lambda c: c.set(key, note, ex=ttl, nx=unless_held)

    def expire_all(self, keys: Sequence[str], ttl: int) -> Request[None]:
        """Keep `keys`, in any slots, `ttl` seconds from now (one pipeline)."""
        yield Doing(f"setting the expiry of {len(keys)} batch markers")

        def fill(pipe: Any) -> None:
            for key in keys:
                pipe.expire(key, ttl)

        yield Pipe(fill)

    def expire_keys_at(self, pairs: Sequence[tuple[bytes, int]]) -> Request[None]:
        """EXPIREAT of keys, in any slots, each at its own Unix time (one pipeline)."""
        yield Doing(f"setting the expiry of {len(pairs)} keys")

        def fill(pipe: Any) -> None:
            for key, at in pairs:
                pipe.expireat(key, at)

        yield Pipe(fill)

    def mark_parts(self, key: str, ttl: int) -> Request[bytes | None]:
        """Mark a batch id as going in parts (`record.IN_PARTS`) for `ttl` seconds unless its
        marker is there: then what it holds (the same mark, its time renewed: it must outlive
        the markers of the parts written from now on; or the batch already in). One atomic
        step: no marker can expire between the look and the mark."""
        yield Doing(f"writing {key}")
        held: bytes | None = yield lambda c: c.eval(MARK_PARTS, 1, key, ttl)
        return held

    def map_ids(
        self,
        next_key: str,
        reverse_prefix: str,
        reverse_bits: int,
        forward: Sequence[str],
        ids: Sequence[str],
    ) -> Request[list[int]]:
        """The offsets of `ids` (canonical), made where new (ids.lua). On a cluster the script
        is told the reverse buckets it may write, from the next offset as this client last saw
        it; one it was not told of (other writers took offsets meanwhile) has it say the next
        offset and write nothing, and it is called again. NUMBERED_AT_ONCE ids a call."""
        yield Doing("mapping actor ids")
        offsets: list[int] = []
        for i in range(0, len(ids), NUMBERED_AT_ONCE):
            part = slice(i, i + NUMBERED_AT_ONCE)
            first = self.next_offsets.get(next_key, 0) if self.cluster else None
            for _ in range(MAP_TRIES):
                keys, args = ids_call(
                    next_key, reverse_prefix, reverse_bits, forward[part], ids[part], first
                )
                got = [int(x) for x in (yield from self.script(self.ids_script, keys, args))]
                if got[:1] != [-1]:
                    if self.cluster and got:
                        self.next_offsets[next_key] = max(max(got) + 1, first or 0)
                    offsets += got
                    break
                first = got[1]
            else:
                error = ServerError(
                    f"mapping actor ids: other writers took {MAP_TRIES} turns first"
                )
                error.transient = True  # (refused: nothing written, a batch tries again)
                raise error
        return offsets

    def fill_pool(self, count: int) -> Request[None]:
        """Have `count` connections of a single server's pool made and idle (`pools.CheckedPool
        .fill`): a batch in parts waits on its ids, values and parts at once."""
        if not self.cluster:
            yield Doing("connecting")
            yield lambda c: c.connection_pool.fill(count) if _fills(c) else None

    def send_ids(self, calls: Sequence[tuple[list[str], list[Any]]]) -> Request[Any]:
        """ids.lua for each (KEYS, ARGV) of `calls` (`ids_pieces`'s: a single server's; a
        cluster's may be refused, `map_ids`), written now: the ticket of `ids_sent`, which reads
        the offsets while the caller has worked on meanwhile."""
        yield Doing("mapping actor ids")
        sha = self.ids_script.sha
        return (yield Sent([("EVALSHA", sha, len(k), *k, *a) for k, a in calls]))

    def ids_sent(
        self, ticket: Any, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> Request[list[int]]:
        """The offsets of `send_ids`, in order."""
        yield Doing("mapping actor ids")
        replies = yield from self.numbers_sent(ticket, self.ids_script, calls)
        return [x for reply in replies for x in reply]

    def numbers_sent(
        self, ticket: Any, script: Script, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> Request[list[list[int]]]:
        """The numbers each of `calls`, sent as a `Sent` step of `script`, answered; a call the
        server answered without its script (restarted or flushed meanwhile) run again."""
        replies = yield Received(ticket)
        out: list[list[int]] = []
        for (keys, args), reply in zip(calls, replies, strict=True):
            if isinstance(reply, ScriptMissing):
                reply = yield from self.script(script, keys, args)
            out.append([int(x) for x in reply])
        return out

    def send_values(self, calls: Sequence[tuple[list[str], list[Any]]]) -> Request[Any]:
        """values.lua for each (KEYS, ARGV) of `calls` (`values_call`'s), written now: the ticket
        of `values_sent`, which reads the ids while the caller has planned meanwhile."""
        yield Doing("numbering distinct values")
        sha = self.values_script.sha
        pieces = [p for c in calls for p in values_pieces(c, self.cluster)]
        return (yield Sent([("EVALSHA", sha, len(k), *k, *a) for k, a in pieces]))

    def values_sent(
        self, ticket: Any, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> Request[list[list[int]]]:
        """The ids of each call of `send_values`, in order."""
        yield Doing("numbering distinct values")
        owned = [(n, p) for n, c in enumerate(calls) for p in values_pieces(c, self.cluster)]
        pieces = [p for _, p in owned]
        replies = yield from self.numbers_sent(ticket, self.values_script, pieces)
        out: list[list[int]] = [[] for _ in calls]
        for (n, _), reply in zip(owned, replies, strict=True):
            out[n] += reply
        return out

    # the events track() queued (queued.py)
    def queue_event(self, keys: Sequence[str], token: str, event: bytes, ttl: int) -> Request[int]:
        """Queue one event unless its token is seen; how many wait (0: it was seen). `ttl`:
        the seen set's, if it has none."""
        yield Doing("queueing an event")
        script, args = self.queue_script, (len(keys), *keys, "push", token, event, ttl)
        if self.replicas:  # acknowledged once a replica has it, as a batch is
            return (yield from self.queue_replicated(keys[0], args))
        try:
            size = yield Direct(("EVALSHA", script.sha, *args))
        except ScriptMissing:
            size = yield Direct(("EVAL", script.source, *args))
        return int(size)

    def queue_replicated(self, key: str, args: Sequence[Any]) -> Request[int]:
        """`queue_event`'s script and a WAIT on one pipeline (on the queue's master)."""
        wait_ms = self.wait_ms()

        def fill(pipe: Any) -> None:
            pipe.evalsha(self.queue_script.sha, *args)
            pipe.wait(self.replicas, wait_ms)

        size, acked = yield from self.pipelined(Pipe(fill, on=key), [self.queue_script])
        if acked < self.replicas:
            raise not_replicated(acked, self.replicas, wait_ms)
        return int(size)

    def queue_ahead(self, keys: Sequence[str], token: str, event: bytes, ttl: int) -> Request[bool]:
        """`queue_event` written now, its reply read later by `queued_ahead`. False: the
        connection failed (this push, and those whose replies were unread, may have run). (No
        `Doing`: the store reports a failure by the answer.)"""
        args = (len(keys), *keys, "push", token, event, ttl)
        return bool((yield Ahead(("EVALSHA", self.queue_script.sha, *args))))

    def queued_ahead(self) -> Request[list[Any]]:
        """The replies of the `queue_ahead` pushes not read yet, in order: how many events
        waited (0: the token was seen), the error of a push not run, or None (lost)."""
        yield Doing("reading the replies of queued events")
        return list((yield AheadReplies()))

    def claim_queued(
        self,
        keys: Sequence[str],
        lease_ms: int,
        claim_id: str,
        most: int,
        asked: Sequence[str] = (),
    ) -> Request[tuple[str, bytes, bool, int] | None]:
        """A claim of queued events: (its id, the events, whether it was taken over, the time
        its lease started by the server's clock, in ms since the epoch), or None. `asked`: the
        ids of claims asked before whose replies were lost (one found is this claim); a new
        claim is `claim_id`, an id never asked before."""
        yield Doing("claiming queued events")
        args = ("claim", lease_ms, claim_id, most, *asked)
        reply = yield from self.script(self.queue_script, keys, args)
        if not reply:
            return None
        claim, events, taken, now_ms = reply
        return claim.decode(), events, bool(taken), int(now_ms)

    def claims_held(self, claims: str) -> Request[list[bytes]]:
        """The ids of the claims of queued events held, not their events (queue.lua)."""
        yield Doing("reading the claims of queued events")
        return list((yield from self.script(self.queue_script, (claims,), ("held",))))

    def release_claim(self, claims: str, claim_id: str) -> Request[None]:
        """Forget a claim whose events are applied."""
        yield Doing("releasing a claim of queued events")
        yield from self.script(self.queue_script, (claims,), ("done", claim_id))

    def set(self, key: str, value: str) -> Request[None]:
        yield Doing(f"writing {key}")
        yield lambda c: c.set(key, value)

    def swap(self, key: str, value: str) -> Request[bytes | None]:
        """SET with GET: store `value`, answering the value it replaced (None: none)."""
        yield Doing(f"writing {key}")
        return (yield lambda c: c.set(key, value, get=True))  # type: ignore[no-any-return]

    def set_absent(self, key: str, value: str) -> Request[bool]:
        """SET NX: whether `value` was stored (False: the key holds one already)."""
        yield Doing(f"writing {key}")
        return bool((yield lambda c: c.set(key, value, nx=True)))

    def delete(self, *keys: str) -> Request[None]:
        yield Doing("deleting keys")
        for key in keys:
            yield methodcaller("delete", key)

    def delete_matching(self, patterns: Sequence[str]) -> Request[int]:
        """Delete the keys matching glob patterns, found with SCAN (on every node of a cluster)."""
        deleted = 0
        yield Doing("deleting keys")
        for pattern in patterns:
            found = yield Scan(pattern)
            for keys in unlinks(found, self.cluster):
                deleted += int((yield methodcaller("unlink", *keys)))
        return deleted

    def run_lua(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Request[Any]:
        """Run the script `name` of scripts/ (keys of one slot on a cluster)."""
        yield Doing(f"running {name}")
        return (yield from self.script(lua_script(name), keys, args))

    # reads
    def read_sums(self, targets: Sequence[Target]) -> Request[list[float]]:
        """The stored value of each total (0 where there is none), in one round trip."""
        if not targets:
            return []

        def fill(pipe: Any) -> None:
            for t in targets:
                if t.kind == "hash":
                    pipe.hget(t.key, t.field)
                else:
                    pipe.zscore(t.key, t.field)

        yield Doing("reading sums")
        return [float(v or 0) for v in (yield Pipe(fill))]

    def evaluate(self, programs: Sequence[Program]) -> Request[list[list[Any]]]:
        """Answers of sets.lua programs (one per shard): one call on a single server."""
        replies = []
        yield Doing("evaluating actor sets")
        for k, a in evaluate_calls(programs, self.cluster):
            replies.append((yield from self.script(self.evaluate_script, k, a)))
        return evaluate_answers(replies)

    def evaluate_checked(
        self, shards_key: str, programs: Sequence[Program]
    ) -> Request[tuple[list[int], list[list[Any]]]]:
        """The shard set and the answers of programs compiled for the shards believed current,
        in one round trip on a single server; the caller compiles again if the set moved."""
        if self.cluster:
            shards = sorted(int(x) for x in (yield from self.smembers(shards_key)))
            return shards, (yield from self.evaluate(programs))
        calls = evaluate_calls(programs, cluster=False)
        sha = self.evaluate_script.sha

        def fill(pipe: Any) -> None:
            pipe.smembers(shards_key)
            for k, a in calls:
                pipe.evalsha(sha, len(k), *k, *a)

        yield Doing("evaluating actor sets")
        raw, *replies = yield from self.pipelined(Pipe(fill), [self.evaluate_script])
        return sorted(int(x) for x in raw), evaluate_answers(replies)

    def pfcount(self, keys: Sequence[str]) -> Request[int]:
        """The estimated size of the union of HyperLogLogs of one slot."""
        yield Doing("estimating distinct values")
        return int((yield lambda c: c.pfcount(*keys)))

    def hsum(self, keys: Sequence[str], fields: Sequence[str] = ()) -> Request[dict[bytes, float]]:
        if not keys:
            return {}
        yield Doing("reading counters")
        return scores((yield from self.script(self.counters_script, keys, ["hsum", *fields])))

    def zsum(self, scratch: str, keys: Sequence[str]) -> Request[dict[bytes, float]]:
        """Scores of the union of sorted sets (one slot), added up per member."""
        if not keys:
            return {}
        yield Doing("reading counters")
        return scores((yield from self.script(self.counters_script, [scratch, *keys], ["zsum"])))

    def top(
        self, scratch: str, keys: Sequence[str], limit: int, all_ties: bool = False
    ) -> Request[list[tuple[bytes, float]]]:
        if not keys:
            return []
        args = ["top", limit, SCRATCH_TTL_MS, "all-ties" if all_ties else "cut"]
        yield Doing("ranking top values")
        flat = yield from self.script(self.counters_script, [scratch, *keys], args)
        return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]

    def hget_many(self, pairs: Sequence[tuple[str, str]]) -> Request[list[bytes | None]]:
        """HGET of many (key, field) pairs in one round trip (per node on a cluster)."""
        if not pairs:
            return []

        def fill(pipe: Any) -> None:
            for key, f in pairs:
                pipe.hget(key, f)

        yield Doing("reading counters")
        return list((yield Pipe(fill)))

    def getrange(self, key: str, start: int, end: int) -> Request[bytes]:
        yield Doing("reading actor ids")
        return bytes((yield lambda c: c.getrange(key, start, end)))

    def get(self, key: str) -> Request[bytes | None]:
        yield Doing(f"reading {key}")
        return (yield lambda c: c.get(key))  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> Request[list[bytes | None]]:
        """Several strings of one slot at once (MGET)."""
        yield Doing(f"reading {', '.join(keys)}")
        return list((yield lambda c: c.mget(keys)))

    def hget(self, key: str, field: str) -> Request[bytes | None]:
        yield Doing(f"reading {key}")
        return (yield lambda c: c.hget(key, field))  # type: ignore[no-any-return]

    def hvals(self, key: str) -> Request[list[bytes]]:
        yield Doing(f"reading {key}")
        return list((yield lambda c: c.hvals(key)))

    def smembers(self, key: str) -> Request[builtins.set[bytes]]:
        yield Doing(f"reading {key}")
        return set((yield lambda c: c.smembers(key)))

    def scan_keys(self, pattern: str) -> Request[list[bytes]]:
        """The keys matching a glob pattern, found with SCAN (on every node of a cluster)."""
        yield Doing("listing keys")
        return list((yield Scan(pattern)))

    def info(self) -> Request[dict[str, Any]]:
        """Version, memory use and mode of the server (memory added up over a cluster)."""
        yield Doing("reading server info")
        if self.cluster:  # every master's answer (by node name; one master's alone): add up
            info = yield lambda c: c.info(target_nodes="primaries")
            nodes = list(info.values()) if "used_memory" not in info else [info]
            total = sum(int(n.get("used_memory", 0)) for n in nodes)
            info = dict(nodes[0]) | {
                "used_memory": total,
                "used_memory_human": f"{total / 2**20:.2f}M",
            }
        else:
            info = yield lambda c: c.info()
        return {
            "version": info.get("valkey_version") or info.get("redis_version"),
            "used_memory": int(info.get("used_memory", 0)),
            "used_memory_human": info.get("used_memory_human"),
            "cluster": self.cluster,
        }

    def memory_policies(self) -> Request[list[tuple[str, str, int]]]:
        """Each master's run id, `maxmemory-policy` and `maxmemory` (bytes, 0: no limit)."""
        yield Doing("reading the servers' memory policy")
        if self.cluster:
            info = yield lambda c: c.info("server", "memory", target_nodes="primaries")
            nodes = list(info.values()) if "run_id" not in info else [info]
        else:
            nodes = [(yield lambda c: c.info("server", "memory"))]
        return [
            (str(n.get("run_id")), str(n.get("maxmemory_policy")), int(n.get("maxmemory", 0)))
            for n in nodes
        ]


# the requests that only read (their scratch keys expire): made again when the server refused
# them for the moment; a batch's writes are tried again by record.py, under their batch id
READS = frozenset(
    {Transport.get, Transport.get_many, Transport.hget, Transport.hget_many, Transport.smembers}
    | {Transport.getrange}
    | {Transport.memory_policies}
    | {Transport.read_sums, Transport.scan_keys, Transport.evaluate, Transport.evaluate_checked}
    | {Transport.hsum, Transport.zsum, Transport.top, Transport.pfcount}
)
# and the claims of queued events: a claim refused for the moment took nothing (one whose reply
# is lost is taken over once its lease ends), and forgetting one twice is forgetting it; and
# the steps of alias and forget (identity.py), each idempotent, which a slot caught half moved
# refuses (TRYAGAIN) until the move ends
AGAIN = READS | {Transport.claim_queued, Transport.release_claim, Transport.run_lua}
FIRST_BACKOFF = 0.05  # seconds before a call is tried again, doubled each time (with jitter) ...
MAX_BACKOFF = 2.0  # ... up to this (reads and a batch's tries, record.py, alike)


def backed_off(delay: float, left: float) -> Generator[Call, Any, float]:
    """Wait before a call is tried again: `delay` seconds, less up to half (so clients that
    failed together do not come back together), at most `left`; returns the next delay."""
    yield call(Transport.sleep, min(left, delay * random.uniform(0.5, 1.0)))
    return min(delay * 2, MAX_BACKOFF)


def for_now(error: BitstatError) -> bool:
    """Whether the server refused a call for the moment: a cluster slot half moved (TRYAGAIN;
    redis-py gives up after 16 tries in well under a second, while a slot of many keys takes
    longer to move), a cluster failing over (CLUSTERDOWN), a server loading its data (LOADING).
    A connection lost or timed out is not: a read then fails at once, as it always did."""
    transient = getattr(error, "transient", False)
    return bool(transient and (getattr(error, "refused", False) or isinstance(error, ServerError)))


def patient(op: Generator[Y, Any, T], deadline: float) -> Generator[Y | Call, Any, T]:
    """`op`, each of its reads the server refuses for the moment made again after a backoff,
    for up to `deadline` seconds; any other error, or one past the deadline, is thrown into it."""
    reply: Any = None
    error: BitstatError | None = None
    while True:
        try:
            asked = op.throw(error) if error is not None else op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        end: float | None = None
        delay = FIRST_BACKOFF
        while True:
            try:
                reply, error = (yield asked), None
            except BitstatError as exc:
                reply, error = None, exc
                if isinstance(asked, Call) and asked.method in AGAIN and for_now(exc):
                    now = time.monotonic()
                    end = now + deadline if end is None else end
                    if now < end:
                        delay = yield from backed_off(delay, end - now)
                        continue
            break
