"""A flush of track()'s queue that fails after taking its claim (the server gone between the
claim and the batch's write, for longer than the deadline) leaves the claim in Redis. The Stats
that failed keeps it: its next flush or read records the claim first, under the claim's id,
so a read never answers without events this Stats tracked before it (it raises while the
server is away), and nothing waits for the claim's lease (deadline + 30 s)."""

from __future__ import annotations

from typing import Any

import pytest

import bitstat
from bitstat.transport import Transport
from exactly import batches, model, same_answers, schema


def gone(*args: Any, **kwargs: Any) -> Any:
    raise bitstat.ConnectionError("the server is gone")  # transient: retried until the deadline
    yield  # (a request)


@pytest.mark.parametrize("track_ahead", [0, 10])
def test_a_claim_whose_flush_failed_is_recorded_by_the_next_read_of_the_same_stats(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch, track_ahead: int
) -> None:
    if track_ahead and "cluster" in server_url:
        pytest.skip("track_ahead sends batches ahead on a single server only")
    events = batches(1, 60, seed=29)[0]
    want = model()
    with bitstat.connect(
        server_url,
        namespace=namespace,
        schema=schema(),
        flush_at=1000,
        deadline=0.2,
        track_ahead=track_ahead,
    ) as st:
        st.track_many(events[:1])
        want.track_many(events[:1])
        for e in events[1:41]:
            st.track(e)
            want.track(e)
        monkeypatch.setattr(Transport, "apply", gone)
        monkeypatch.setattr(Transport, "send_apply", gone)
        with pytest.raises(bitstat.BatchError):
            st.flush()  # claimed, then the batch could not be written
        with pytest.raises(bitstat.ConnectionError):
            st.total("purchase", "2026")  # still away: the read cannot be exact, it says so
        monkeypatch.undo()
        for e in events[41:]:
            st.track(e)
            want.track(e)
        # the server is back, well within the claim's lease: the answers hold every event
        same_answers(st, want)
        assert st.flush() == 0
        same_answers(st, want)
