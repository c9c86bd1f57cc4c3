"""Counting a large batch's values per group and per set of groups in numpy (tallies.py), against
plain counting of the same rows; and the counts a large batch stores, against the row-by-row
planning of the same batch."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bitstat
import servers
from bitstat import plan
from bitstat.keys import member_text
from bitstat.tallies import Tally

texts = st.text(alphabet="ab\x00~", max_size=3)
group_numbers = st.integers(0, 6).map(lambda g: g * 1_000_003)
sets_of_groups = st.lists(
    st.lists(st.integers(0, 6), min_size=1, max_size=4, unique=True), max_size=6
)


@given(st.data(), st.booleans(), sets_of_groups)
def test_each_set_of_groups_counts_its_rows_values(
    data: st.DataObject, compound: bool, picks: list[list[int]]
) -> None:
    """A column holds texts, or tuples of texts (a compound property), or nothing in a row."""
    value = st.none() | (st.tuples(texts, texts) if compound else texts)
    rows = data.draw(st.lists(st.tuples(group_numbers, value), max_size=80))
    tally = Tally([g for g, _ in rows], [v for _, v in rows])
    holding = sorted({g for g, v in rows if v is not None})
    assert tally.groups == holding
    # sets of the groups holding a value, as planning asks (a week's days, a month's)
    sets = [list(dict.fromkeys(holding[i % len(holding)] for i in p)) for p in picks if holding]
    first = {}  # a member's first row in the batch
    for i, (_, v) in enumerate(rows):
        if v is not None:
            first.setdefault(member_text(v), i)
    for s, got in zip(sets, tally.summed(sets), strict=True):
        want = Counter(member_text(v) for g, v in rows if g in s and v is not None)
        assert dict(got) == want and len(got) == len(want)  # each member once
        assert all(type(n) is int for _, n in got)
        assert [m for m, _ in got] == sorted(want, key=first.__getitem__)  # in batch order


def stored_counts(client: servers.Client, namespace: str) -> dict[str, dict[bytes, float]]:
    """Every sorted set of counts (`count`, `top`) of a namespace, by key name less the
    namespace."""
    out = {}
    for key in client.scan_iter(match="{" + namespace + ":e:*", count=1000):
        name = key.decode()
        if ":c:" in name or ":t:" in name:
            short = name.replace(namespace, "NS", 1)
            out[short] = dict(client.zrange(key, 0, -1, withscores=True))
    return out


@pytest.mark.parametrize("days", [1, 40])
def test_a_large_batch_stores_the_counts_row_by_row_planning_stores(
    server_url: str,
    namespace: str,
    redis_client: servers.Client,
    monkeypatch: pytest.MonkeyPatch,
    days: int,
) -> None:
    """A batch of LARGE_BATCH rows or more over several days counts its values with a Tally;
    the same batch planned row by row (LARGE_BATCH out of reach) stores the same counts."""
    schema = bitstat.Schema(
        periods=("hour", "day", "week", "month", "year"),
        count=["country", "country~plan"],
        top=["item"],
    )
    events = [
        {
            "event": ("view", "buy")[i % 2],
            "user": i % 97,
            "time": f"2026-{10 + (i % days) // 31:02d}-{1 + (i % days) % 31:02d}T{i % 24:02d}:05",
            **({"country": ["NL", "DE", "US"][i % 3]} if i % 5 else {}),
            **({"plan": ("free", "pro")[i % 7 == 0]} if i % 4 else {}),
            "item": f"sku-{(i * 7) % 31}",
        }
        for i in range(900)
    ]
    stored = []
    for large in (True, False):
        if not large:
            monkeypatch.setattr(plan, "LARGE_BATCH", 10**9)
        ns = f"{namespace}-{large}"
        with bitstat.connect(server_url, namespace=ns, schema=schema) as st:
            assert st.track_many(events).recorded == len(events)
        stored.append(stored_counts(redis_client, ns))
        for key in list(redis_client.scan_iter(match="{" + ns + "*", count=1000)):
            redis_client.delete(key)
    assert stored[0] == stored[1] and len(stored[0]) > 8
