"""Sums that must stay finite: which events of a batch would carry a total past the limit.

Redis keeps a sum as a long double and a score as a double, and answers inf (or refuses the
increment) once a total leaves the double range. bitstat keeps every total within +-LIMIT: an
event whose value would carry a total of its bucket past it is rejected alone, with the reason,
and the rest of its batch is recorded. Pure: the stored totals are read by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

from .errors import Reason
from .events import Columns
from .keys import Keys, member_text, metric_sum_field, tag_of
from .plan import bucket_base, live_labels
from .schema import ExpireChange, Schema

LIMIT = 1e308  # below DBL_MAX (1.797e308), so adding in any order never reaches inf


class Target(NamedTuple):
    """One total a value is added to: a hash field (`kind` "hash") or a sorted-set member."""

    kind: str
    key: str
    field: str


def row_targets(
    cols: Columns,
    schema: Schema,
    keys: Keys,
    now: float,
    changes: tuple[ExpireChange, ...] = (),
) -> list[tuple[int, list[tuple[Target, float, str, str]]]]:
    """Per row with a summed value: (row, [(target, value, property, bucket label)]), the same
    totals the write plan adds to."""
    base = bucket_base(cols.wall, schema).tolist()
    codes = cols.codes.tolist()
    kept = schema.periods_of("sum")

    def labels(bb: int) -> list[str]:
        return [lb for p, lb in live_labels(bb, schema, now, changes).items() if p in kept]

    out: list[tuple[int, list[tuple[Target, float, str, str]]]] = []
    for row in range(len(cols)):
        items: list[tuple[Target, float, str, str]] = []
        event = cols.names[codes[row]]
        for idx, (kind, prop, by) in enumerate(cols.specs):
            if kind != "sum":
                continue
            value = float(cols.amounts[idx][row])
            if math.isnan(value):
                continue
            if by is None:
                for label in labels(base[row]):
                    target = Target("hash", keys.metrics(event, label), metric_sum_field(prop))
                    items.append((target, value, prop, label))
                continue
            label_value = cols.values[idx][row]
            if label_value is None:
                continue
            member = "s:" + member_text(label_value)
            what = f"{prop} by {by} ({member[2:]!r})"
            for label in labels(base[row]):
                target = Target("zset", keys.sums_by(event, label, prop, by), member)
                items.append((target, value, what, label))
        if items:
            out.append((row, items))
    return out


def without_tags(
    rows: list[tuple[int, list[tuple[Target, float, str, str]]]], tags: set[str]
) -> list[tuple[int, list[tuple[Target, float, str, str]]]]:
    """`rows` without the totals under hash tags already written by this batch (a cluster
    applies a batch one tag at a time): their share of the batch is in the stored value."""
    if not tags:
        return rows
    out = []
    for row, items in rows:
        kept = [it for it in items if tag_of(it[0].key) not in tags]
        if kept:
            out.append((row, kept))
    return out


def overflowing(
    rows: list[tuple[int, list[tuple[Target, float, str, str]]]],
    stored: Mapping[Target, float],
) -> list[tuple[int, str]]:
    """(row, reason) of each event that would carry a total past the limit, taken in order:
    the totals start from `stored` and grow by each event kept."""
    running = dict(stored)
    bad: list[tuple[int, str]] = []
    for row, items in rows:
        over = next((it for it in items if not abs(running.get(it[0], 0.0) + it[1]) <= LIMIT), None)
        if over is not None:
            _, value, what, label = over
            prop = what.split(" by ")[0]
            if abs(value) > LIMIT:
                why = f"{value!r} is beyond +-{LIMIT:g}, the largest sum bitstat keeps"
            else:
                why = (
                    f"adding {value!r} would carry the sum of {what} in {label} beyond"
                    f" +-{LIMIT:g}, the largest sum bitstat keeps"
                )
            bad.append((row, Reason(f"{prop}: {why}", prop)))
            continue
        for target, value, _, _ in items:
            running[target] = running.get(target, 0.0) + value
    return bad
