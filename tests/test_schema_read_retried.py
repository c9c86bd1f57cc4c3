"""A write re-reads the stored schema every few seconds (`record.SCHEMA_TTL`). A failure that
may pass at that read (the server restarting, a reset) is tried again, like the batch's own
writes, for up to the deadline: it used to fail the call at once with a plain ConnectionError
(not a BatchError), whatever the deadline."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

import bitstat
from bitstat import record
from bitstat.transport import Transport
from exactly import batches, model, same_answers, schema


def test_a_schema_read_that_fails_for_a_moment_is_tried_again_within_the_deadline(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = batches(3, 20, seed=31)
    want = model()
    st = bitstat.connect(embedded_url, namespace=namespace, schema=schema(), deadline=5)
    st.track_many(events[0])
    want.track_many(events[0])
    real_get = Transport.get_many  # (the schema is read with the namespace's tokens)
    failures = [2]

    def flaky(self: Transport, keys: list[str]) -> Generator[Any, Any, Any]:
        if keys[0].endswith(":schema") and failures[0]:
            failures[0] -= 1
            raise bitstat.ConnectionError(f"reading {keys[0]}: cannot reach the server")
        return (yield from real_get(self, keys))

    monkeypatch.setattr(Transport, "get_many", flaky)
    monkeypatch.setattr(record, "SCHEMA_TTL", 0.0)  # (every write reads it)
    assert st.track_many(events[1]).recorded == len(events[1])
    want.track_many(events[1])
    assert failures == [0]
    failures[0] = 1
    with pytest.raises(bitstat.ConnectionError):  # deadline=0: one try, as for the batch
        st.track_many(events[2], deadline=0)
    monkeypatch.undo()
    st.track_many(events[2])
    want.track_many(events[2])
    same_answers(st, want)
    st.close()
