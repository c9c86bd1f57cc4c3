"""The pure steps that number a batch's values and actors on the client (record.py): rows
grouped by event, the rows that hold a value, and numbers read from the cache and the server's
answer, checked against plain loops over random inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitstat import record
from bitstat.keys import member_text
from bitstat.record import looked_up, present_members, rows_by_code

texts = st.text(alphabet="ab\x00~", max_size=3)
values = st.one_of(st.none(), texts, st.tuples(texts, texts))


@given(st.lists(st.integers(0, 4), max_size=60))
def test_rows_by_code_are_each_event_s_rows_in_order(codes: list[int]) -> None:
    want: dict[int, list[int]] = {}
    for row, code in enumerate(codes):
        want.setdefault(code, []).append(row)
    got = rows_by_code(np.array(codes, dtype=np.int64))
    assert got == sorted(want.items())
    assert all(type(c) is int and all(type(r) is int for r in rows) for c, rows in got)


@given(st.lists(values, max_size=40), st.data())
def test_present_members_keep_the_rows_with_a_value_as_member_text(
    column: list[Any], data: st.DataObject
) -> None:
    rows = sorted(data.draw(st.sets(st.integers(0, max(0, len(column) - 1)))) if column else [])
    got_rows, members = present_members(rows, column)
    assert got_rows == [r for r in rows if column[r] is not None]
    assert members == [member_text(column[r]) for r in got_rows]


@pytest.mark.parametrize("limit", [1_000, 4])
def test_looked_up_reads_new_and_known_numbers_and_keeps_the_new(
    limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the cache's limit the cache is emptied to take the new numbers: the known ones are
    read before it is."""
    monkeypatch.setattr(record, "ID_CACHE_LIMIT", limit)
    cache = {"a": 0, "b": 1, "c": 2}
    new = {"d": 3, "e": 4}
    assert looked_up(cache, new, ["e", "a", "d", "a", "c"]) == [4, 0, 3, 0, 2]
    assert cache == ({"a": 0, "b": 1, "c": 2, "d": 3, "e": 4} if limit > 5 else new)
