"""durability="replicated" and the caller's retries through every door: `track()`'s push, a
frame sent again after a BatchError, a retry after a lost reply, a try that finds its batch in.
Found by a review of the recording path on 2026-12-06; each test failed before its fix, for
the reason its docstring gives."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

import pytest

import bitstat
import bitstat.aio
from bitstat import transport
from bitstat.transport import Script
from exactly import batches, marker_read_in_parts, model, schema
from proxy import Proxy

APPLY = Script("apply.lua").sha.encode()


def fresh() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_track_under_replicated_durability_is_not_acknowledged_without_a_replica(
    embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """durability="replicated" never reaches `track()`: its push (Transport.queue_event, a
    `Direct` step) is not followed by WAIT, so the call returns once the master alone has the
    event, which docs/guarantees.md says is then "in Redis, as durable as a batch" (a batch is
    acknowledged only once a replica has it). The embedded server has no replica: track_many
    refuses to acknowledge, track() acknowledges."""
    monkeypatch.setattr(transport, "WAIT_MS", 100)
    st = bitstat.connect(
        embedded_url, namespace=fresh(), schema=schema(), deadline=0.3, durability="replicated"
    )
    one, other = batches(1, 2, seed=5)[0]
    try:
        with pytest.raises(bitstat.BatchError):
            st.track_many([one])  # no replica confirms: not acknowledged
        with pytest.raises(bitstat.BatchError):
            st.track(other)  # (it returned, with no replica holding the event)
    finally:
        st.drop()
        st.close()


@pytest.mark.parametrize("api", ["sync", "aio"])
def test_no_replica_under_a_short_socket_timeout_is_said_to_be_no_replica(
    embedded_url: str, api: str
) -> None:
    """connect(..., durability="replicated", socket_timeout=N), DESIGN.md's own example with
    N=5: WAIT waited WAIT_MS (5 s), as long as or longer than the read timeout, so a replica
    that never confirmed ended as 'cannot reach the server: Timeout reading' (the server
    answering all along), and a replica confirming just in time raced the socket. WAIT now
    ends within the read timeout and says that no replica confirmed."""
    ns = fresh()
    one, other = batches(1, 2, seed=5)[0]

    async def failures() -> list[str]:
        options: dict[str, Any] = {"namespace": ns, "schema": schema(), "deadline": 0.3}
        if api == "sync":
            st = bitstat.connect(embedded_url, durability="replicated", socket_timeout=1, **options)
        else:
            st = await bitstat.aio.connect(
                embedded_url, durability="replicated", socket_timeout=1, **options
            )
        calls = (lambda: st.track_many([one]), lambda: st.track(other))
        errors = []
        try:
            for make in calls:
                with pytest.raises(bitstat.BatchError) as raised:
                    answer = make()
                    if inspect.isawaitable(answer):
                        await answer
                errors.append(str(raised.value))
        finally:
            for end in (st.drop, st.close):
                if inspect.isawaitable(done := end()):
                    await done
        return errors

    for error in asyncio.run(failures()):
        assert "replica(s) confirmed it within 800 ms" in error, error
        assert "cannot reach the server" not in error, error


def test_track_frame_called_again_after_a_batch_error_never_double_counts(proxy: Proxy) -> None:
    """track_frame without a batch id calls `track_columns(cols, None)` per batch of rows: each
    gets a fresh id bitstat makes and nothing is remembered in IN_DOUBT, so the caller calling
    again with the same frame after a BatchError that says the batch "may have been recorded"
    (whose message says to call again with the same events from this process) records it
    twice. track_many, in the same case, records it once (test_exactly_once.py)."""
    pd = pytest.importorskip("pandas")
    st = bitstat.connect(proxy.url(), namespace=fresh(), schema=schema(), deadline=0.3)
    want = model()
    first, second = batches(2, 40, seed=8)
    try:
        st.track_many(first)  # loads the scripts: the write below goes by SHA
        want.track_many(first)
        frame = pd.DataFrame(second)
        proxy.cut_replies(1, APPLY, then_all=True)  # the write lands, no reply comes back
        with pytest.raises(bitstat.BatchError) as raised:
            st.track_frame(frame)
        assert raised.value.may_have_landed
        want.track_many(second)  # it did land
        proxy.cut_replies(0, b"")
        st.track_frame(pd.DataFrame(second))  # the caller's retry: the same rows again
        for label in ("2026-11", "2026-11-20", "2026-11-21"):
            assert st.total("purchase", label) == want.total("purchase", label), label
    finally:
        proxy.cut_replies(0, b"")
        st.drop()
        st.close()


def test_a_replicated_retry_after_a_lost_reply_reports_what_the_batch_recorded(
    tmp_path: Any,
) -> None:
    """Under durability="replicated", `record_once` does not answer a try that finds its
    batch's marker from the marker (`... and not self.replicated`): it goes on and plans the
    batch again. A batch whose sums had to be checked (`check`) is then checked against the
    stored totals, which now hold the batch's own share, so the retry rejects events the first
    try recorded; all of them here, and the `mark(..., unless_held=True)` branch answers
    "0 recorded, every event rejected" (with no WAIT either). The "fast" retry answers from
    the marker: 1 recorded, the second rejected, as the first try decided."""
    from faultservers import Server, wait_for_link

    master = Server(tmp_path / "master", "--repl-diskless-sync-delay", "0").start()
    args = ("--replicaof", "127.0.0.1", str(master.port), "--repl-diskless-load", "disabled")
    replica = Server(tmp_path / "replica", *args).start()
    link = replica.client()
    wait_for_link(link)
    events = [
        {"event": "purchase", "user": f"u-{k}", "time": "2026-11-20T10:00:00", "amount": 6e307}
        for k in range(2)
    ]
    answers = {}
    try:
        with Proxy("127.0.0.1", master.port) as proxy:
            for mode in ("fast", "replicated"):
                st = bitstat.connect(
                    proxy.url(), namespace=fresh(), schema=schema(), durability=mode
                )
                try:
                    st.track_many(batches(1, 1, seed=1)[0])  # loads the scripts (SHA below)
                    proxy.cut_replies(1, APPLY)  # the first try lands, its reply is lost
                    result = st.track_many(events)
                    assert proxy.cut >= 1
                    proxy.cut = 0
                    answers[mode] = (result.recorded, [i for i, _ in result.rejected])
                    assert st.sums("purchase", "amount", "2026-11-20") == pytest.approx(6e307)
                finally:
                    proxy.cut_replies(0, b"")
                    st.drop()
                    st.close()
        assert answers["fast"] == (1, [1])  # the first try's decision, as its marker keeps it
        assert answers["replicated"] == answers["fast"]  # (it answered (0, [0, 1]))
    finally:
        link.close()
        replica.stop()
        master.stop()


def test_a_replicated_try_that_finds_its_batch_in_by_its_parts_says_it_may_have_landed(
    embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`record_parts` under durability="replicated": `mark_parts` finds the batch in (another
    writer of the id finished it between the try's GET and its mark) and `Transport.confirm`
    waits for a replica. confirm is not one of record.WRITES, so when no replica confirms,
    track_columns gives up with `may_have_landed=False` and a message saying "nothing of it
    was recorded", about a batch that is recorded."""
    from bitstat import record

    monkeypatch.setattr(record, "PART_MIN", 8)
    monkeypatch.setattr(transport, "WAIT_MS", 100)
    ns = fresh()
    batch = batches(1, 60, seed=33, names=("purchase", "refund", "visit"))[0]
    writer = bitstat.connect(embedded_url, namespace=ns, schema=schema())
    st = bitstat.connect(embedded_url, namespace=ns, deadline=0.3, durability="replicated")
    try:
        assert writer.track_many(batch, batch_id="b").recorded == len(batch)
        marker_read_in_parts(monkeypatch, ns, "b")
        with pytest.raises(bitstat.BatchError) as raised:
            st.track_many(batch, batch_id="b")  # in; no replica confirms it
        assert "replica" in str(raised.value)
        assert raised.value.may_have_landed  # (it said "nothing of it was recorded")
    finally:
        monkeypatch.undo()
        writer.drop()
        writer.close()
        st.close()


def test_a_push_in_doubt_and_a_batch_in_doubt_of_the_same_event_are_kept_apart() -> None:
    """`track(e)` and `track_many([e])` fingerprint the same event alike; a push's token taken
    for a batch id (or a batch id for a token) marks neither, and the batch's success forgot
    the push's doubt, so a later `track(e)` retry was a new push (found by a review)."""
    from bitstat.record import InDoubt

    doubts = InDoubt()
    event = {"event": "purchase", "user": "u-1", "time": "2026-11-20T10:00:00+00:00"}
    doubts.remember("ns", [event], "token-1", 600, "push")
    assert doubts.find("ns", [event]) is None  # (a batch)
    doubts.remember("ns", [event], "auto:1", 600)
    doubts.forget("ns", [event])
    assert doubts.find("ns", [event], "push") == "token-1"
