"""Register programs for scripts/registers.lua: building them, and running them per id shard.

An expression of `query.py` is a tree, so evaluate.lua computes a set once per use. A register
program names its intermediate sets (registers) and uses each as often as it needs: a cohort in
every cell of its row, the steps of a funnel reached so far, a running count of active days.
Like a Program of query.py it is the same for every id shard; `registers` compiles it per shard
and asks for it as `Call("registers", (calls,))`, which the Store (blocking or asyncio) answers
with one registers.lua call per shard.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .ops import Call, Namespace
from .query import SCRATCH_TTL_MS

T = TypeVar("T")
Steps = Generator[Call, Any, T]  # an operation, as in ops.py
Segment = tuple[str, str] | None


@dataclass
class RegisterProgram:
    """A registers.lua program, the same for every id shard: operand sets, then instructions.

    A set is named as the script names it: operand i (1-based, `sets[i - 1]`) or register -r
    (the r-th register), so the instructions are the script's ARGV as they stand.
    """

    sets: list[tuple[str, str, Segment]] = field(default_factory=list)
    registers: int = 0
    code: list[str | int] = field(default_factory=list)
    answers: int = 0
    _operands: dict[tuple[str, str, Segment], int] = field(default_factory=dict)
    _unions: dict[tuple[str, tuple[str, ...], Segment], int] = field(default_factory=dict)

    def register(self) -> int:
        self.registers += 1
        return -self.registers

    def leaf(self, event: str, labels: Sequence[str], segment: Segment = None) -> int:
        """The actors of `event` in the buckets `labels`: an operand, or a register made once."""
        if len(labels) == 1:
            item = (event, labels[0], segment)
            ref = self._operands.get(item)
            if ref is None:
                self.sets.append(item)
                ref = self._operands[item] = len(self.sets)
            return ref
        whole = (event, tuple(labels), segment)
        if whole not in self._unions:
            reg = self.register()
            self.op("or", reg, [self.leaf(event, (lb,), segment) for lb in labels])
            self._unions[whole] = reg
        return self._unions[whole]

    def op(self, name: str, dest: int, sources: Sequence[int]) -> None:
        """dest := OR / AND / XOR of sources (dest may be one of them)."""
        self.code += [name, dest, len(sources), *sources]

    def diff(self, dest: int, a: int, b: int) -> None:
        """dest := a - b (dest must differ from a)."""
        assert dest != a
        self.code += ["diff", dest, a, b]

    def count(self, ref: int) -> None:
        self.code += ["count", ref]
        self.answers += 1

    def and_count(self, scratch: int, sources: Sequence[int]) -> None:
        """Count the intersection of sources (through register `scratch` if the script must)."""
        self.code += ["andcount", scratch, len(sources), *sources]
        self.answers += 1

    def argv(self, ttl_ms: int) -> list[str | int]:
        return [len(self.sets), ttl_ms, *self.code]


def registers(ns: Namespace, program: RegisterProgram) -> Steps[list[int]]:
    """Run `program` on every id shard (one registers.lua call each) and add up the answers."""
    keys = ns.keys
    shards = sorted(int(s) for s in (yield Call("smembers", (keys.shards,))))
    if not shards or not program.answers:
        return [0] * program.answers
    argv = program.argv(SCRATCH_TTL_MS)
    calls = []
    for shard in shards:
        scratch = keys.temp(keys.shard_tag(shard), secrets.token_hex(6))
        operands = [keys.actors(shard, e, label, seg) for e, label, seg in program.sets]
        calls.append(([*operands, *(f"{scratch}:{i}" for i in range(program.registers))], argv))
    totals = [0] * program.answers
    for answers in (yield Call("registers", (calls,))):
        for i, value in enumerate(answers):
            totals[i] += int(value)
    return totals
