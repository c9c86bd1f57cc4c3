"""Actor-set expressions and their compilation into per-shard programs for sets.lua (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .keys import Keys

# scratch results live this long at most: a crashed client leaves nothing behind for good
SCRATCH_TTL_MS = 30_000


@dataclass(frozen=True)
class Leaf:
    """Actors who did `event` in any of the buckets `labels` (with segment `prop=value`)."""

    event: str
    labels: tuple[str, ...]
    segment: tuple[str, str] | None = None  # (normalised property, escaped value)


@dataclass(frozen=True)
class Op:
    """`or`, `and`, `xor` over any number of sets; `diff` (a - b); `not` (complement of one)."""

    op: str
    args: tuple[Expr, ...]


Expr = Leaf | Op


def union(items: Sequence[Expr]) -> Expr:
    return items[0] if len(items) == 1 else Op("or", tuple(items))


def combine(op: str, a: Expr, b: Expr) -> Expr:
    """a OP b, flattening runs of the same associative op (so BITOP gets many sources at once)."""
    if op in ("or", "and", "xor"):
        parts: list[Expr] = []
        for side in (a, b):
            parts += side.args if isinstance(side, Op) and side.op == op else (side,)
        return Op(op, tuple(parts))
    return Op(op, (a, b))


@dataclass
class Program:
    """One sets.lua program for one id shard: its operand keys (all in the shard's slot), how
    many registers (scratch keys) it needs, its code, and how many answers it gives. A set is
    named by a number: i > 0 is operand i, -r is register r."""

    operands: list[str]
    registers: int
    code: list[str | int]
    answers: int

    def retag(self, tag: str, other: str) -> Program:
        """The same program for another shard: its operand keys under hash tag `other`."""
        size = len(tag)
        operands = []
        for key in self.operands:
            if not key.startswith(tag):
                raise ValueError(f"operand {key!r} is not under hash tag {tag!r}")
            operands.append(other + key[size:])
        return Program(operands, self.registers, self.code, self.answers)


class Compiler:
    """Compiles expressions for one shard into a sets.lua program; answers accumulate in order.

    Every node gets its own register, written once, and a node met twice is computed once.
    """

    def __init__(self, keys: Keys, shard: int) -> None:
        self.keys = keys
        self.shard = shard
        self.operands: list[str] = []
        self.index: dict[str, int] = {}
        self.code: list[str | int] = []
        self.registers = 0
        self.answers = 0
        self.done: dict[Expr, int] = {}

    def _operand(self, key: str) -> int:
        idx = self.index.get(key)
        if idx is None:
            self.operands.append(key)
            idx = self.index[key] = len(self.operands)
        return idx

    def _register(self) -> int:
        self.registers += 1
        return -self.registers

    def _emit(self, expr: Expr) -> int:
        ref = self.done.get(expr)
        if ref is None:
            ref = self.done[expr] = self._compile(expr)
        return ref

    def _compile(self, expr: Expr) -> int:
        if isinstance(expr, Leaf):
            found = [
                self._operand(self.keys.actors(self.shard, expr.event, label, expr.segment))
                for label in expr.labels
            ]
            if len(found) == 1:
                return found[0]
            dest = self._register()
            self.code += ["or", dest, len(found), *found]
            return dest
        args = [self._emit(arg) for arg in expr.args]
        dest = self._register()
        if expr.op == "not":
            self.code += ["diff", dest, self._operand(self.keys.all_actors(self.shard)), args[0]]
        elif expr.op == "diff":
            self.code += ["diff", dest, args[0], args[1]]
        else:
            self.code += [expr.op, dest, len(args), *args]
        return dest

    def count(self, expr: Expr) -> None:
        self.code += ["count", self._emit(expr)]
        self.answers += 1

    def contains(self, expr: Expr, bit: int) -> None:
        self.code += ["bit", self._emit(expr), bit]
        self.answers += 1

    def store(self, expr: Expr) -> None:
        self.code += ["keep", self._emit(expr)]
        self.answers += 1

    def program(self) -> Program:
        return Program(list(self.operands), self.registers, list(self.code), self.answers)


def count_union(keys_: Sequence[str]) -> Program:
    """The program counting the union of explicit keys of one slot."""
    n = len(keys_)
    if n == 1:
        return Program(list(keys_), 0, ["count", 1], 1)
    return Program(list(keys_), 1, ["or", -1, n, *range(1, n + 1), "count", -1], 1)
