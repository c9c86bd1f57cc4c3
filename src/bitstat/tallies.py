"""How many rows of each group hold each value of a column, and the same summed over sets of
groups (a week's days, a month's), in numpy: a large batch's `count` and `top` rules read each
row once, where counting the rows of each set again read a backfill's rows four times.

Pure: no I/O. plan.py names the keys and writes the ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .keys import member_text

Items = list[tuple[str, float]]  # (member text, how many rows: an int), a member once


class Tally:
    """The (group, value) pairs of a column's rows and how many rows hold each; `groups[i]` is
    row i's group (an int), `values[i]` its value (None: none)."""

    def __init__(self, groups: Sequence[int], values: Sequence[Any]) -> None:
        n = len(values)
        first: dict[Any, int] = {}  # a value's code: the first row holding it
        codes = np.fromiter(map(first.setdefault, values, range(n)), dtype=np.int64, count=n)
        present = np.ones(n, dtype=bool) if None not in first else codes != first.pop(None)
        self.members = {code: member_text(v) for v, code in first.items()}
        group_ids, ranks = np.unique(np.asarray(groups, dtype=np.int64), return_inverse=True)
        self.n = width = max(n, 1)  # a pair (group, value) is rank * width + code
        pairs, counts = np.unique(ranks[present] * width + codes[present], return_counts=True)
        self.pair_code, self.pair_count = pairs % width, counts
        # each group's pairs are one run of the sorted pairs: [start, end) by rank
        ranked = np.searchsorted(pairs // width, np.arange(len(group_ids) + 1))
        self.starts, self.ends = ranked[:-1], ranked[1:]
        held = self.ends > self.starts
        self.rank_of = {g: r for r, g in enumerate(group_ids.tolist())}
        self.groups: list[int] = group_ids[held].tolist()  # the groups with a value, ascending

    def summed(self, sets: Sequence[Sequence[int]]) -> list[Items]:
        """The items of each set of groups (their rows' values counted together), in the order
        the values first appear in the batch: all sets at once, a fixed number of numpy steps
        whatever their number."""
        if not sets:
            return []
        which = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
        ranks = np.array([self.rank_of[g] for s in sets for g in s], dtype=np.int64)
        starts, sizes = self.starts[ranks], self.ends[ranks] - self.starts[ranks]
        total = int(sizes.sum())
        # every pair of every group of every set: its run's start plus its place in the run
        run_first = np.cumsum(sizes) - sizes
        picked = np.repeat(starts - run_first, sizes) + np.arange(total)
        keys = np.repeat(which, sizes) * self.n + self.pair_code[picked]
        found, inverse = np.unique(keys, return_inverse=True)
        sums = np.bincount(inverse, weights=self.pair_count[picked]).astype(np.int64).tolist()
        of_set, code = (found // self.n).tolist(), (found % self.n).tolist()
        out: list[Items] = [[] for _ in sets]
        members = self.members
        for s, c, k in zip(of_set, code, sums, strict=True):
            out[s].append((members[c], k))
        return out
