"""The leases of track()'s queue claims are of the server's clock, not the clients': a client
whose clock is minutes behind (a host without NTP) still applies its queue, on a cluster too,
and one whose clock is minutes ahead takes no other client's live claim over. Every answer is
compared with the reference model."""

from __future__ import annotations

import time
from typing import Any

import pytest

import bitstat
from bitstat import queued
from exactly import batches, model, same_answers, schema
from test_queue import flush_reply_lost

SKEW = 300.0  # seconds: five minutes, past any lease (the deadline and LEASE_MARGIN)


def skewed(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This process's wall clock `seconds` off (monotonic time is not)."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def test_a_client_whose_clock_is_behind_applies_its_queue(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = batches(1, 60, seed=81)[0]
    want = model()
    skewed(monkeypatch, -SKEW)
    options: dict[str, Any] = {"schema": schema(), "flush_at": 1000, "flush_interval": 100}
    with bitstat.connect(server_url, namespace=namespace, **options) as st:
        for e in events:
            st.track(e)
            want.track(e)
        # (a cluster's groups outside the claim's slot were fenced by the client's clock:
        # every flush ended in LeaseOver, and the events waited for ever)
        assert st.flush() == len(events)
        same_answers(st, want)


def test_a_client_whose_clock_is_ahead_takes_no_live_claim_over(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = batches(1, 40, seed=82)[0]
    want = model()
    options: dict[str, Any] = {"schema": schema(), "flush_at": 1000, "flush_interval": 100}
    with (
        bitstat.connect(server_url, namespace=namespace, **options) as slow,
        bitstat.connect(server_url, namespace=namespace, **options) as ahead,
    ):
        for e in events:
            slow.track(e)
            want.track(e)
        read = queued.records_of

        def claimed(events: bytes) -> list[dict[str, Any]]:
            monkeypatch.setattr(queued, "records_of", read)
            with monkeypatch.context() as clock:
                skewed(clock, SKEW)
                assert ahead.flush() == 0  # the claim is slow's, its lease running
            return read(events)

        monkeypatch.setattr(queued, "records_of", claimed)
        assert slow.flush() == len(events)
        same_answers(slow, want)


def test_a_claim_asked_again_is_judged_by_time_elapsed_not_the_wall_clock(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim whose reply was lost is asked again only within its lease. Judged by the wall
    clock, a clock set back meanwhile (NTP stepping a clock that was ahead) asked it again
    after another flush had taken it over and recorded it: a new claim under that recorded
    batch id, whose events were never recorded."""
    monkeypatch.setattr(queued, "LEASE_MARGIN", 0.0)
    events = batches(1, 30, seed=83)[0]
    want = model()
    options: dict[str, Any] = {
        "schema": schema(),
        "flush_at": 1000,
        "flush_interval": 100,
        "deadline": 0.2,
    }
    with (
        bitstat.connect(server_url, namespace=namespace, **options) as st,
        bitstat.connect(server_url, namespace=namespace, **options) as other,
    ):
        for e in events[:20]:
            st.track(e)
            want.track(e)
        flush_reply_lost(st)
        time.sleep(0.25)  # the lease (the deadline, 0.2 s) is over
        assert other.flush() == 20  # taken over
        skewed(monkeypatch, -SKEW)
        for e in events[20:]:
            st.track(e)
            want.track(e)
        st.flush()
        same_answers(st, want)
