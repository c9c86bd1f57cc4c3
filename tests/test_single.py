"""`track()`'s one-event path (single.py) against the batch path it stands in for.

For random schemas (the oracle's: every rule family, compound properties, per-event rules,
hourly families, expiry) and random events, good and bad: `parse_one` accepts what
`parse_batch` accepts and rejects the rest with the same reason, and `plan_one` writes exactly
the groups, keys, ops and arguments `build_plan` writes for a batch of that one event. The
server-side tests (test_oracle and the rest, which record through `track()` as well) then hold
for both paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bitstat
from bitstat.errors import InvalidEvent
from bitstat.events import parse_batch, rejection
from bitstat.keys import Keys
from bitstat.plan import UNNUMBERED, build_plan, sum_bound_of
from bitstat.single import parse_one, plan_one, sum_bound_one
from test_oracle import EXAMPLES, event_names, int_ids, map_ids, schema_settings, streams

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC).timestamp()


def shape(plan: Any) -> Any:
    groups = [(g.tag, g.batch_key, g.scratch_key, g.keys, g.args, g.sums) for g in plan.groups]
    return groups, plan.recorded, plan.expired


@st.composite
def cases(draw: st.DrawFn) -> tuple[bitstat.Schema, list[Any]]:
    ids = draw(st.sampled_from(["int", "map"]))
    cfg = draw(schema_settings(ids))
    if draw(st.booleans()):  # periods kept for a while only: some buckets are past it
        period = draw(st.sampled_from(cfg["periods"]))
        cfg["expire"] = {period: draw(st.sampled_from(["1h", "2d", "30d", "400d"]))}
    names = draw(event_names())
    events = draw(streams(cfg, names, int_ids() if ids == "int" else map_ids()))
    return bitstat.Schema(**cfg), events


@settings(EXAMPLES, max_examples=150)
@given(case=cases(), data=st.data())
def test_one_event_is_planned_as_a_batch_of_it(case: Any, data: st.DataObject) -> None:
    schema, events = case
    keys = Keys("ns:one")
    memo: dict[Any, Any] = {}  # shared across the events, as a namespace shares it
    for ev in events:
        cols = parse_batch([ev], schema, NOW)
        if cols.rejected:
            with pytest.raises(InvalidEvent) as caught:
                parse_one(ev, schema, NOW)
            assert rejection(caught.value) == cols.rejected[0][1]
            continue
        one = parse_one(ev, schema, NOW)
        assert one.name == cols.names[0]
        assert one.specs == cols.specs
        if isinstance(cols.actors, np.ndarray):
            offset = int(cols.actors[0])
            assert offset == (-1 if one.actor is None else one.actor)
        else:
            assert one.actor == cols.actors[0]
            offset = -1 if one.actor is None else data.draw(int_ids().map(int), label="offset")
        value_ids: dict[int, int] = {}
        for idx, (kind, _, _) in enumerate(cols.specs):
            if kind == "unique":
                if cols.values[idx][0] is None:
                    value_ids[idx] = -1
                else:
                    value_ids[idx] = data.draw(
                        st.sampled_from([UNNUMBERED, 0, 5, 70_000]), label="value id"
                    )
        assert sum_bound_one(one) == sum_bound_of(cols)
        single = data.draw(st.booleans(), label="single server")
        batch_id = data.draw(st.sampled_from([None, "b:1"]), label="batch id")
        note = data.draw(st.sampled_from([None, '[[0, "why"]]']), label="note")
        expected = build_plan(
            cols,
            np.array([offset], dtype=np.int64),
            schema,
            keys,
            batch_id=batch_id,
            single=single,
            value_ids={idx: np.array([v], dtype=np.int64) for idx, v in value_ids.items()},
            now=NOW,
            note=note,
        )
        got = plan_one(
            one,
            offset,
            value_ids,
            schema,
            keys,
            memo,
            batch_id=batch_id,
            single=single,
            now=NOW,
            sum_bound=sum_bound_one(one),
            note=note,
        )
        assert shape(got) == shape(expected)
