"""Register programs for analyses: built by hand, run by scripts/sets.lua on every id shard.

The Compiler of `query.py` turns an expression tree into a sets.lua program. An analysis needs
more control: it names intermediate sets (registers) and uses each as often as it needs, a
cohort in every cell of its row, the steps of a funnel reached so far, a running count of active
days, and asks for intersection sizes that may be found by probing a small set's members. A
RegisterProgram is written once for all shards; `registers` makes it a `query.Program` per
shard and runs them through `Namespace.per_shard` (one `evaluate_checked` call, which reads the
shard set in the same round trip), as every other actor-set question is run.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .calls import Call
from .ops import Namespace
from .query import Program

T = TypeVar("T")
Steps = Generator[Call, Any, T]  # an operation, as in ops.py
Segment = tuple[str, str] | None


@dataclass
class RegisterProgram:
    """A sets.lua program, the same for every id shard: operand sets, then instructions.

    A set is named as the script names it: operand i (1-based, `sets[i - 1]`) or register -r
    (the r-th register), so the instructions are the script's code as it stands.
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

    def for_shard(self, ns: Namespace, shard: int) -> Program:
        """The program for one id shard: its operand sets as that shard's keys."""
        keys = ns.keys
        operands = [keys.actors(shard, e, label, seg) for e, label, seg in self.sets]
        return Program(operands, self.registers, self.code, self.answers)


def registers(ns: Namespace, program: RegisterProgram) -> Steps[list[int]]:
    """Run `program` on every id shard (one sets.lua call on a single server, one per shard on a
    cluster) and add up the answers."""
    if not program.answers or not program.sets:
        return [0] * program.answers
    totals = [0] * program.answers
    for _, answers in (yield from ns.per_shard(lambda shard: program.for_shard(ns, shard))):
        for i, value in enumerate(answers):
            totals[i] += int(value)
    return totals
