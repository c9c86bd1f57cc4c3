"""sets.lua programs: compiling expressions (pure), packing many into one call, and running them."""

from __future__ import annotations

import pytest

import bitstat
from bitstat.keys import Keys, set_bitmap
from bitstat.query import Leaf, Op, Program, SetProgram, count_union
from bitstat.store import Store
from bitstat.transport import Transport, evaluate_call, evaluate_calls

KEYS = Keys("ns")
A = Leaf("a", ("2026-11-01", "2026-11-02"))
B = Leaf("b", ("2026-11",))


def compiled(*exprs: Op | Leaf, shard: int = 0) -> Program:
    c = SetProgram()
    for e in exprs:
        c.count(e)
    return c.for_shard(KEYS, shard)


def test_every_node_gets_a_register_and_a_repeated_node_is_computed_once() -> None:
    c = compiled(Op("and", (A, Op("not", (B,)))), A)
    a1, a2 = (KEYS.actors(0, "a", label) for label in A.labels)
    assert c.operands == [a1, a2, KEYS.actors(0, "b", "2026-11"), KEYS.all_actors(0)]
    assert c.code == [
        "or", -1, 2, 1, 2,  # A
        "diff", -2, 4, 3,  # not B: everyone minus B
        "and", -3, 2, -1, -2,
        "count", -3,
        "count", -1,  # A again: its register, not a second union
    ]  # fmt: skip
    assert (c.registers, c.answers) == (3, 2)


def test_a_single_bucket_is_its_operand() -> None:
    c = compiled(B)
    assert (c.code, c.registers) == (["count", 1], 0)
    assert count_union(["{ns:e:x}:u:2026:p"]).code == ["count", 1]


def test_retag_moves_every_operand_to_another_shard_and_keeps_the_code() -> None:
    p = compiled(Op("or", (A, B)))
    q = p.retag(KEYS.shard_tag(0), KEYS.shard_tag(7))
    assert q.operands == compiled(Op("or", (A, B)), shard=7).operands
    assert q.code is p.code
    with pytest.raises(ValueError, match="hash tag"):
        p.retag(KEYS.shard_tag(3), KEYS.shard_tag(7))


def test_one_call_sends_repeated_code_once_and_scratch_names_never_meet() -> None:
    p = compiled(Op("or", (A, B)))
    programs = [p.retag(KEYS.shard_tag(0), KEYS.shard_tag(s)) for s in (0, 1, 2)]
    programs.append(p)  # shard 0 again: its registers need other names
    keys, args = evaluate_call(programs)
    n = len(p.operands)
    assert args[:4] == [30_000, n, p.registers, len(p.code)]
    assert args.count(-1) >= 3  # the three programs after the first repeat its code
    scratch = [k for k in keys if ":tmp:" in k]
    assert len(scratch) == len(set(scratch)) == 4 * p.registers
    assert len(evaluate_calls(programs, cluster=True)) == 4
    assert len(evaluate_calls(programs, cluster=False)) == 1


def test_a_cluster_call_names_the_bitmaps_the_script_may_build() -> None:
    """On a cluster sets.lua is told, after the program's keys, the bitmaps it may build of
    operands held as Redis sets: BITOP's sources, not sets only counted, tested or kept (a
    kept set is built in the program's own register; one not declared may be on another node
    while the slot moves)."""
    operands = [KEYS.actors(0, "a", f"2026-11-0{d}") for d in range(1, 7)]
    code: list[str | int] = ["count", 1, "bit", 2, 7, "or", -1, 2, 3, 4, "diff", -2, 5, -1]
    p = Program(operands, 3, [*code, "andcount", -1, 2, -2, 3, "keep", 6, -3], 4)
    assert p.bitmap_operands() == [3, 4, 5]
    single, _ = evaluate_call([p])
    keys, _ = evaluate_call([p], cluster=True)
    assert len(single) == 6 + 3 and keys[:6] == single[:6] == operands  # (then 3 registers)
    assert keys[9:] == [set_bitmap(operands[i - 1]) for i in (3, 4, 5)]


def test_programs_of_one_call_answer_as_if_run_alone(embedded_url: str, namespace: str) -> None:
    st = bitstat.connect(embedded_url, namespace=namespace)
    try:
        far = 3 << 20  # shard 3
        st.track_many(
            [{"event": "a", "user": u, "time": "2026-11-01T10:00"} for u in (1, 2, far)]
            + [{"event": "a", "user": u, "time": "2026-11-02T10:00"} for u in (2, 5)]
            + [{"event": "b", "user": u, "time": "2026-11-03T10:00"} for u in (2, far, far + 1)]
        )
        keys = Keys(namespace)
        c = SetProgram()
        c.count(Op("and", (A, B)))
        c.count(Op("diff", (A, B)))
        make = [c.for_shard(keys, s) for s in (0, 3, 0)]
        store = Store.from_url(embedded_url)
        together = store.call(Transport.evaluate, make)
        alone = [store.call(Transport.evaluate, [p])[0] for p in make]
        assert together == alone == [[1, 2], [1, 0], [1, 2]]
        store.close()
    finally:
        st.drop()
        st.close()
