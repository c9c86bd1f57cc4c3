"""Actor-set expressions and their compilation into per-shard programs for sets.lua (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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

    def bitmap_operands(self) -> list[int]:
        """The operands (their numbers) the code may read as bitmaps: BITOP's sources, those of
        `or`, `and`, `xor`, `andcount` and `diff`. Of one held as a Redis set, sets.lua builds a
        bitmap (`keys.set_bitmap`; `keep` builds its own in a register)."""
        found: dict[int, None] = {}
        code, i = self.code, 0
        while i < len(code):
            op = code[i]
            if op in ("or", "and", "xor", "andcount"):  # op d m s1..sm
                m = int(code[i + 2])
                sources, i = code[i + 3 : i + 3 + m], i + 3 + m
            elif op == "diff":  # diff d a b
                sources, i = code[i + 2 : i + 4], i + 4
            elif op == "keep":  # keep s d (a Redis set is built in register d)
                sources, i = [], i + 3
            elif op == "count":  # count s
                sources, i = [], i + 2
            elif op == "bit":  # bit s off
                sources, i = [], i + 3
            else:
                raise ValueError(f"sets.lua has no op {op!r}")
            found.update(dict.fromkeys(int(s) for s in sources if int(s) > 0))
        return list(found)

    def retag(self, tag: str, other: str) -> Program:
        """The same program for another shard: its operand keys under hash tag `other`."""
        size = len(tag)
        operands = []
        for key in self.operands:
            if not key.startswith(tag):
                raise ValueError(f"operand {key!r} is not under hash tag {tag!r}")
            operands.append(other + key[size:])
        return Program(operands, self.registers, self.code, self.answers)


Segment = tuple[str, str] | None
Ref = int  # a set of a program: operand i > 0, register -r
EVERYONE = ("", "", None)  # the operand of a shard's all-actors set (`not` takes it away)


@dataclass
class SetProgram:
    """The one compiler of actor-set questions into sets.lua programs, the same for every id
    shard: operand sets (an event's actors in one bucket, maybe a segment's), registers, and
    the script's code as it stands (a set named by a `Ref`); `for_shard` makes it a `Program`.

    Queries add expression trees (`count`, `contains`, `store` of an `Expr`: every node its
    own register, written once, a node met twice computed once); analyses write registers by
    hand (`leaf`, `op`, `diff`, `count` of a ref, `and_count`) to reuse a set in many cells.
    """

    sets: list[tuple[str, str, Segment]] = field(default_factory=list)
    registers: int = 0
    code: list[str | int] = field(default_factory=list)
    answers: int = 0
    _operands: dict[tuple[str, str, Segment], Ref] = field(default_factory=dict)
    _unions: dict[tuple[str, tuple[str, ...], Segment], Ref] = field(default_factory=dict)
    _done: dict[Expr, Ref] = field(default_factory=dict)

    def register(self) -> Ref:
        self.registers += 1
        return -self.registers

    def operand(self, item: tuple[str, str, Segment]) -> Ref:
        ref = self._operands.get(item)
        if ref is None:
            self.sets.append(item)
            ref = self._operands[item] = len(self.sets)
        return ref

    def leaf(self, event: str, labels: Sequence[str], segment: Segment = None) -> Ref:
        """The actors of `event` in the buckets `labels`: an operand, or a register made once."""
        if len(labels) == 1:
            return self.operand((event, labels[0], segment))
        whole = (event, tuple(labels), segment)
        if whole not in self._unions:
            found = [self.operand((event, label, segment)) for label in labels]
            reg = self._unions[whole] = self.register()
            self.op("or", reg, found)
        return self._unions[whole]

    def op(self, name: str, dest: Ref, sources: Sequence[Ref]) -> None:
        """dest := OR / AND / XOR of sources (dest may be one of them)."""
        self.code += [name, dest, len(sources), *sources]

    def diff(self, dest: Ref, a: Ref, b: Ref) -> None:
        """dest := a - b (dest must differ from a)."""
        assert dest != a
        self.code += ["diff", dest, a, b]

    def emit(self, expr: Expr) -> Ref:
        """The set of an expression tree, compiled once."""
        ref = self._done.get(expr)
        if ref is None:
            ref = self._done[expr] = self._compile(expr)
        return ref

    def _compile(self, expr: Expr) -> Ref:
        if isinstance(expr, Leaf):
            return self.leaf(expr.event, expr.labels, expr.segment)
        args = [self.emit(arg) for arg in expr.args]
        dest = self.register()
        if expr.op == "not":
            self.diff(dest, self.operand(EVERYONE), args[0])
        elif expr.op == "diff":
            self.diff(dest, args[0], args[1])
        else:
            self.op(expr.op, dest, args)
        return dest

    def count(self, item: Ref | Expr) -> None:
        """Answer the size of a set (a ref, or an expression compiled here)."""
        self.code += ["count", item if isinstance(item, int) else self.emit(item)]
        self.answers += 1

    def and_count(self, scratch: Ref, sources: Sequence[Ref]) -> None:
        """Count the intersection of sources (through register `scratch` if the script must)."""
        self.code += ["andcount", scratch, len(sources), *sources]
        self.answers += 1

    def contains(self, expr: Expr, bit: int) -> None:
        """Answer whether the set holds the actor at offset `bit` of the shard."""
        self.code += ["bit", self.emit(expr), bit]
        self.answers += 1

    def store(self, expr: Expr) -> None:
        """Answer the name of a key holding the set (kept a while, for reading ids)."""
        self.code += ["keep", self.emit(expr), self.register()]
        self.answers += 1

    def for_shard(self, keys: Keys, shard: int) -> Program:
        """The program for one id shard: its operand sets as that shard's keys."""
        operands = [
            keys.all_actors(shard) if item == EVERYONE else keys.actors(shard, *item)
            for item in self.sets
        ]
        return Program(operands, self.registers, list(self.code), self.answers)


def count_union(keys_: Sequence[str]) -> Program:
    """The program counting the union of explicit keys of one slot."""
    n = len(keys_)
    if n == 1:
        return Program(list(keys_), 0, ["count", 1], 1)
    return Program(list(keys_), 1, ["or", -1, n, *range(1, n + 1), "count", -1], 1)
