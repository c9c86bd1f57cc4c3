"""Actor-set expressions and their compilation into per-shard programs for evaluate.lua (pure)."""

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
    """One evaluate.lua program for one shard: its operand keys, how many scratch keys it needs,
    its postfix code and how many answers it gives."""

    operands: list[str]
    code: list[str | int]
    scratch: int
    answers: int

    def retag(self, tag: str, other: str) -> Program:
        """The same program for another shard: its operand keys under hash tag `other`."""
        size = len(tag)
        operands = []
        for key in self.operands:
            if not key.startswith(tag):
                raise ValueError(f"operand {key!r} is not under hash tag {tag!r}")
            operands.append(other + key[size:])
        return Program(operands, self.code, self.scratch, self.answers)


class Compiler:
    """Compiles expressions for one shard into a postfix program; answers accumulate in order."""

    def __init__(self, keys: Keys, shard: int) -> None:
        self.keys = keys
        self.shard = shard
        self.operands: list[str] = []
        self.index: dict[str, int] = {}
        self.code: list[str | int] = []
        self.scratch = 0
        self.answers = 0

    def _operand(self, key: str) -> int:
        idx = self.index.get(key)
        if idx is None:
            self.operands.append(key)
            idx = self.index[key] = len(self.operands)
        return idx

    def _emit(self, expr: Expr) -> None:
        if isinstance(expr, Leaf):
            found = [
                self._operand(self.keys.actors(self.shard, expr.event, label, expr.segment))
                for label in expr.labels
            ]
            if len(found) == 1:
                self.code += ["k", found[0]]
            else:
                self.code += ["u", len(found), *found]
                self.scratch += 1
            return
        for arg in expr.args:
            self._emit(arg)
        if expr.op == "not":
            self.code += ["not", self._operand(self.keys.all_actors(self.shard))]
            self.scratch += 2
        elif expr.op == "diff":
            self.code += ["diff"]
            self.scratch += 2
        else:
            self.code += [expr.op, len(expr.args)]
            self.scratch += 1

    def count(self, expr: Expr) -> None:
        self._emit(expr)
        self.code.append("=")
        self.answers += 1

    def contains(self, expr: Expr, bit: int) -> None:
        self._emit(expr)
        self.code += ["?", bit]
        self.answers += 1

    def store(self, expr: Expr) -> None:
        self._emit(expr)
        self.code.append(">")
        self.answers += 1

    def program(self) -> Program:
        return Program(list(self.operands), list(self.code), self.scratch, self.answers)


def count_union(keys_: Sequence[str]) -> Program:
    """The program counting the union of explicit keys of one slot."""
    n = len(keys_)
    code: list[str | int] = ["k", 1] if n == 1 else ["u", n, *range(1, n + 1)]
    return Program(list(keys_), [*code, "="], 0 if n == 1 else 1, 1)
