"""The pure steps that number a batch's values and actors on the client (record.py): rows
grouped by event, the rows that hold a value, and numbers read from the cache and the server's
answer, checked against plain loops over random inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitstat import record, transport
from bitstat.keys import Keys, member_text, value_bucket_of
from bitstat.record import looked_up, present_members, rows_by_code
from bitstat.transport import values_call, values_pieces

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
    """At the cache's limit a new cache takes the new numbers, and the one looked at is left
    as it was (another thread may still read it)."""
    monkeypatch.setattr(record, "ID_CACHE_LIMIT", limit)
    cache = {"a": 0, "b": 1, "c": 2}
    new = {"d": 3, "e": 4}
    numbers, kept = looked_up(cache, new, ["e", "a", "d", "a", "c"])
    assert numbers == [4, 0, 3, 0, 2]
    if limit > 5:
        assert kept is cache and cache == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}
    else:
        assert kept == new and kept is not new and cache == {"a": 0, "b": 1, "c": 2}


def test_a_batch_between_its_look_at_the_id_cache_and_its_reading_of_it_reads_what_it_saw(
    embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads of one Stats (a tracker's senders): one looks at the id cache, sends its new
    ids to be numbered and, while it waits, the other passes the cache's limit. The first then
    reads the ids it found in the cache (they were emptied in place before: KeyError)."""
    import uuid

    import bitstat

    monkeypatch.setattr(record, "ID_CACHE_LIMIT", 10)
    st = bitstat.connect(
        embedded_url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=bitstat.Schema(ids="map")
    )
    t = "2026-11-03T10:00:00+00:00"
    try:
        st.track_many([{"event": "e", "user": f"u{i}", "time": t} for i in range(5)])
        ns = st._ns
        first = ns.offsets(["u1", "u2", "new"])
        asked = next(first)  # u1 and u2 known here; "new" is sent to be numbered
        assert asked.args[-1] == ["new"]
        st.track_many([{"event": "e", "user": f"v{i}", "time": t} for i in range(12)])
        with pytest.raises(StopIteration) as done:
            first.send([99])  # the server's answer for "new"
        known = st.track_many([{"event": "e", "user": u, "time": t} for u in ("u1", "u2")])
        assert known.recorded == 2
        assert list(done.value.value) == [1, 2, 99]
    finally:
        st.drop()
        st.close()


def test_a_cluster_s_values_call_names_each_bucket_once() -> None:
    """On a cluster values.lua is told the buckets it writes (one not declared may be on another
    node while the slot moves); a single server's call names only the counter, the old hash and
    the layout mark."""
    k = Keys("ns")
    values = [f"v{i}" for i in range(3000)]  # (more than the 2,048 buckets: some shared)
    names = (k.value_next("e", "ip"), k.value_ids("e", "ip"), k.value_layout("e", "ip"))
    single_keys, single_args = values_call(*names, k.value_buckets("e", "ip"), values)
    keys, args = values_call(*names, k.value_buckets("e", "ip"), values, cluster=True)
    assert single_keys == keys[:3] == list(names) and args == single_args
    buckets = dict.fromkeys(value_bucket_of(v) for v in values)
    # and the bucket 2,048 further on of each, that namespaces with 4,096 buckets used
    prefix = k.value_buckets("e", "ip")
    assert keys[3:] == [f"{prefix}{b + up}" for b in buckets for up in (0, 2048)]


@pytest.mark.parametrize("cluster", [False, True])
def test_a_large_values_call_cut_in_pieces_is_each_piece_s_own_call(
    cluster: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """values_pieces cuts a call of many values into calls of NUMBERED_AT_ONCE values each (the
    last one shorter), each as values_call would make it for its values alone."""
    monkeypatch.setattr(transport, "NUMBERED_AT_ONCE", 700)
    k = Keys("ns")
    values = [f"v{i}" for i in range(2000)]
    names = (k.value_next("e", "ip"), k.value_ids("e", "ip"), k.value_layout("e", "ip"))
    prefix = k.value_buckets("e", "ip")
    pieces = values_pieces(values_call(*names, prefix, values, cluster=cluster), cluster)
    cuts = (0, 700, 1400)
    want = [values_call(*names, prefix, values[i : i + 700], cluster=cluster) for i in cuts]
    assert pieces == want
