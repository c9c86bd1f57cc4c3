"""Bit operations for the bitmapist drop-in: expression trees run on the server in one call.

bitmapist runs BITOP in every constructor and keeps the result keys forever. Here an operation
is a node of a tree: one Lua call computes the nodes not computed yet (under bitmapist's key
names, so code that reads `redis_key` keeps working), gives each computed key a TTL, and
answers. Operations are computed when built, as in bitmapist, unless built inside `deferred()`;
one built on a caller's pipeline is queued there as one command (`queue`), run by its execute().
Objects naming the same key share one `State`, which reproduces bitmapist's observable
behaviour: a computed result is reused (a snapshot) until a new operation with the same key is
built, and one deleted through any object reads as empty.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import weakref
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis.exceptions as rex

from bitstat.transport import with_includes

from ._redis import direct_client, server_id

TTL_SECONDS = 3600
"""Lifetime of a computed result key; each use renews it, and an expired one is recomputed."""

ITER_CHUNK_BYTES = 1 << 18
"""Bytes read per GETRANGE when iterating ids (2,097,152 ids), instead of one GET of the key."""

SCRATCH_PREFIX = "trackist_bitop_tmp_"

PENDING, READY, DELETED = "pending", "ready", "deleted"

LUA = with_includes("""
-- bitmapist drop-in: BITOP trees under bitmapist's key names, answered in the same call.
-- KEYS       every key the program names (operands, results, scratch keys)
-- ARGV[1]    TTL in milliseconds of every key computed here
-- ARGV[2..]  instructions, run in order:
--   op NAME MODE d n s1..sn  KEYS[d] = BITOP NAME of KEYS[s1..sn]. MODE c: compute; r: reuse
--                            KEYS[d] if it exists (renewing its TTL), else compute; t: compute,
--                            and delete before returning (scratch). OR/XOR skip missing
--                            operands (same result, less work); none left leaves no key, as
--                            BITOP does when its result is empty. Operands are folded 16 at a
--                            time: BITOP's fast path, and the same result. No operand (n 0):
--                            BITOP's error, as bitmapist gets it.
--   count i | bit i off | len i   append BITCOUNT / GETBIT / STRLEN of KEYS[i]
--   size i                   answer STRLEN of KEYS[i] alone, as BITOP answers (a queued op)
-- Returns the appended answers in order, or the size alone.
local ttl = tonumber(ARGV[1])
local out, scratch = {}, {}
local size = nil

-- include: bitop.lua

local i = 2
while i <= #ARGV do
  local ins = ARGV[i]
  if ins == 'op' then
    local name, mode = ARGV[i + 1], ARGV[i + 2]
    local dest = KEYS[tonumber(ARGV[i + 3])]
    local n = tonumber(ARGV[i + 4])
    local srcs = {}
    for j = 1, n do
      srcs[j] = KEYS[tonumber(ARGV[i + 4 + j])]
    end
    i = i + 5 + n
    if n == 0 then
      -- bitmapist's BITOP of no source key, refused by Redis in these words
      return redis.error_reply("ERR wrong number of arguments for 'bitop' command")
    end
    if mode == 'r' and redis.call('EXISTS', dest) == 1 then
      redis.call('PEXPIRE', dest, ttl)
    else
      if name == 'OR' or name == 'XOR' then
        local present = {}
        for _, key in ipairs(srcs) do
          if redis.call('EXISTS', key) == 1 then
            present[#present + 1] = key
          end
        end
        srcs = present
      end
      if #srcs == 0 then
        redis.call('DEL', dest)
      else
        bitop_folded(name, dest, srcs)
        redis.call('PEXPIRE', dest, ttl)
      end
      if mode == 't' then
        scratch[#scratch + 1] = dest
      end
    end
  elseif ins == 'count' then
    out[#out + 1] = redis.call('BITCOUNT', KEYS[tonumber(ARGV[i + 1])])
    i = i + 2
  elseif ins == 'bit' then
    out[#out + 1] = redis.call('GETBIT', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2])
    i = i + 3
  elseif ins == 'len' then
    out[#out + 1] = redis.call('STRLEN', KEYS[tonumber(ARGV[i + 1])])
    i = i + 2
  elseif ins == 'size' then
    size = redis.call('STRLEN', KEYS[tonumber(ARGV[i + 1])])
    i = i + 2
  else
    return redis.error_reply('bitmapist drop-in: unknown instruction ' .. tostring(ins))
  end
end
for _, key in ipairs(scratch) do
  redis.call('DEL', key)
end
if size then
  return size
end
return out
""")
LUA_SHA = hashlib.sha1(LUA.encode()).hexdigest()


class State:
    """Whether the result key of an operation is still to compute, computed, or deleted."""

    __slots__ = ("__weakref__", "status")

    def __init__(self) -> None:
        self.status = PENDING


@dataclass(frozen=True, eq=False)
class Leaf:
    """A key read as it is: an event bitmap, or a result that was deleted."""

    key: str


@dataclass(frozen=True, eq=False)
class Op:
    """BITOP `name` of `children` into `key`; `state` None marks a scratch result."""

    name: str
    key: str
    children: tuple[Node, ...]
    state: State | None


Node = Leaf | Op
Read = tuple[str, Node] | tuple[str, Node, int]

_states: weakref.WeakValueDictionary[tuple[Hashable, str], State] = weakref.WeakValueDictionary()
_states_lock = threading.Lock()
_local = threading.local()


def fresh_state(system: Any, key: str) -> State:
    """The state shared by every live operation on `key`, reset to pending.

    A new operation in bitmapist recomputes its key at once, refreshing what older objects
    with the same key read; resetting the shared state (then computing it) has that effect.
    """
    sid = server_id(system)
    with _states_lock:
        state = _states.get((sid, key))
        if state is None:
            state = _states[(sid, key)] = State()
        state.status = PENDING
    _runtime().states.add(state)
    return state


class _Runtime:
    """This thread's operations (for `delete_runtime_bitop_keys`) and the keys it computed."""

    def __init__(self) -> None:
        self.states: weakref.WeakSet[State] = weakref.WeakSet()
        self.computed: dict[Hashable, tuple[Any, set[str]]] = {}


@contextmanager
def deferred() -> Iterator[None]:
    """Operations built inside are computed when first read, not when built: for a caller that
    builds and reads them within one call (a cohort table), where no caller can tell when."""
    _local.deferring = deferring() + 1
    try:
        yield
    finally:
        _local.deferring -= 1


def deferring() -> int:
    """How many `deferred()` blocks this thread is in."""
    depth: int = getattr(_local, "deferring", 0)
    return depth


def _runtime() -> _Runtime:
    runtime: _Runtime | None = getattr(_local, "runtime", None)
    if runtime is None:
        runtime = _local.runtime = _Runtime()
    return runtime


def mark_deleted(system: Any) -> None:
    """Record that every result key of the database of `system` was deleted."""
    sid = server_id(system)
    with _states_lock:
        for (owner, _), state in list(_states.items()):
            if owner == sid:
                state.status = DELETED


def delete_runtime_keys() -> None:
    """Delete the results of every operation built in this thread so far.

    Operations never computed (built in `deferred()`, not read) have no key to delete; like
    computed ones, they read as empty from now on.
    """
    runtime = _runtime()
    for client, keys in runtime.computed.values():
        if keys:
            client.delete(*keys)
    for state in list(runtime.states):
        state.status = DELETED
    runtime.states.clear()
    runtime.computed.clear()


class _Program:
    """KEYS and ARGV of one call of the script, with the states it will settle."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.args: list[str | int] = [TTL_SECONDS * 1000]
        self.settles: list[tuple[State, str]] = []

    def key(self, key: str) -> int:
        idx = self.index.get(key)
        if idx is None:
            self.keys.append(key)
            idx = self.index[key] = len(self.keys)
        return idx

    def node(self, node: Node) -> int:
        if isinstance(node, Leaf) or node.key in self.index:
            return self.key(node.key)
        children = [self.node(child) for child in node.children]
        if node.state is None:
            mode = "t"
        else:
            mode = "r" if node.state.status == READY else "c"
            self.settles.append((node.state, node.key))
        dest = self.key(node.key)
        self.args += ["op", node.name, mode, dest, len(children), *children]
        return dest

    def read(self, read: Read) -> None:
        target = self.node(read[1])
        self.args += [read[0], target, *read[2:]]


def _call(client: Any, program: _Program) -> list[int]:
    keys, args = program.keys, program.args
    try:
        answer = client.evalsha(LUA_SHA, len(keys), *keys, *args)
    except rex.NoScriptError:
        answer = client.eval(LUA, len(keys), *keys, *args)
    return [int(x) for x in answer]


def _settle(client: Any, program: _Program) -> None:
    computed = _runtime().computed.setdefault(server_id(client), (client, set()))[1]
    for state, key in program.settles:
        if state.status != DELETED:
            state.status = READY
            computed.add(key)


def evaluate(system: Any, reads: Sequence[Read]) -> list[int]:
    """Answer `reads` (count / bit / len of nodes) of `system` in one server call."""
    program = _Program()
    for read in reads:
        program.read(read)
    client = direct_client(system)
    answer = _call(client, program)
    _settle(client, program)
    return answer


def queue(pipeline: Any, node: Op) -> None:
    """Queue the computation of `node` on a caller's pipeline, as one command that its
    execute() runs in order with the others and that answers as BITOP does (the result's size).

    Its states count as computed from now on: a read before the execute finds no result key and
    computes it at once, one after reuses what the execute stored.
    """
    program = _Program()
    program.args += ["size", program.node(node)]
    # redis-py's Script makes the execute() load the script first if the server lacks it
    script = pipeline.register_script(LUA)
    script(keys=program.keys, args=program.args, client=pipeline)
    _settle(direct_client(pipeline), program)


def evaluate_batches(system: Any, batches: Sequence[Sequence[Read]]) -> list[list[int]]:
    """Answer several independent batches of reads, one script call each, in one pipeline.

    Separate calls keep each Lua run short, so other clients are served in between.
    """
    if not batches:
        return []
    programs = []
    for reads in batches:
        program = _Program()
        for read in reads:
            program.read(read)
        programs.append(program)
    client = direct_client(system)
    pipe = client.pipeline(transaction=False)
    for p in programs:
        pipe.evalsha(LUA_SHA, len(p.keys), *p.keys, *p.args)
    try:
        answers = pipe.execute()
    except rex.NoScriptError:
        client.script_load(LUA)
        for p in programs:
            pipe.evalsha(LUA_SHA, len(p.keys), *p.keys, *p.args)
        answers = pipe.execute()
    for p in programs:
        _settle(client, p)
    return [[int(x) for x in a] for a in answers]


def scratch_key(tag: str) -> str:
    """A fresh name for a scratch result; the script deletes it, and its TTL covers a crash."""
    return f"{SCRATCH_PREFIX}{tag}_{secrets.token_hex(8)}"


def iter_ids(client: Any, key: str) -> Iterator[int]:
    """The offsets of the set bits of `key`, ascending, read by chunks rather than one GET."""
    start = 0
    while True:
        data = bytes(client.getrange(key, start, start + ITER_CHUNK_BYTES - 1))
        if data:
            bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
            base = start * 8
            for offset in np.flatnonzero(bits).tolist():
                yield base + offset
        if len(data) < ITER_CHUNK_BYTES:
            return
        start += ITER_CHUNK_BYTES
