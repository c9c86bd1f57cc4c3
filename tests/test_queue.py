"""`track()` queues its event in Redis and applies the queue in batches (queued.py): every
answer equals the reference model's on every backend, a read sees every event tracked before
it (by the same Stats at once, by another within `flush_interval`), a bad event is refused at
once with nothing queued, and a flush that dies half way is finished once by the next."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

import bitstat
import bitstat.aio
import servers
from bitstat import queued
from bitstat.transport import Transport
from exactly import batches, model, same_answers, schema


def mixed_times(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The events with their times in every form track() takes: naive ISO text, text with an
    offset, aware and naive datetimes, epoch seconds (int and float), and none (now)."""
    rng = random.Random(seed)
    out = []
    for e in events:
        e = dict(e)
        wall = datetime.fromisoformat(e["time"])  # naive, in Europe/Amsterdam (UTC+1 in Nov)
        utc = (wall - timedelta(hours=1)).replace(tzinfo=UTC)
        form = rng.randrange(6)
        if form == 1:
            e["time"] = utc.isoformat(timespec="milliseconds")
        elif form == 2:
            e["time"] = utc
        elif form == 3:
            e["time"] = wall
        elif form == 4:
            e["time"] = int(utc.timestamp())
        elif form == 5:
            e["time"] = utc.timestamp() + 0.25
        out.append(e)
    return out


def died(*args: Any, **kwargs: Any) -> Any:
    raise KeyboardInterrupt("the process died")  # not an error bitstat handles


@pytest.mark.parametrize("flush_at", [1, 7, 500])
def test_tracked_events_give_the_models_answers(
    server_url: str, namespace: str, flush_at: int
) -> None:
    events = mixed_times(batches(1, 300, seed=flush_at)[0], seed=flush_at)
    want = model()
    with bitstat.connect(server_url, namespace=namespace, schema=schema(), flush_at=flush_at) as st:
        for n, e in enumerate(events):
            st.track(e)
            want.track(e)
            if n in (0, 150):  # a read sees every event tracked before it
                assert st.total("purchase", "2026") == n + 1
        same_answers(st, want)
        assert st.flush() == 0  # nothing left


def test_events_without_a_time_get_the_time_of_the_call(embedded_url: str, namespace: str) -> None:
    with bitstat.connect(embedded_url, namespace=namespace, schema=schema()) as st:
        st.track({"event": "visit", "user": "u-1"})
        today = datetime.now(UTC).date()
        days = {today - timedelta(days=1), today, today + timedelta(days=1)}
        assert sum(st.total("visit", d.isoformat()) for d in days) == 1


def test_another_process_sees_the_events_within_flush_interval(
    server_url: str, namespace: str
) -> None:
    writer = bitstat.connect(
        server_url, namespace=namespace, schema=schema(), flush_at=1000, flush_interval=0.3
    )
    reader = bitstat.connect(server_url, namespace=namespace, flush_interval=0.3)
    try:
        first, second = batches(2, 5, seed=5)
        for e in first:
            writer.track(e)
        assert reader.total("purchase", "2026") == 5  # its first read applies the queue
        for e in second:
            writer.track(e)
        time.sleep(0.35)
        assert reader.total("purchase", "2026") == 10
    finally:
        writer.drop()
        writer.close()
        reader.close()


def test_an_event_waiting_past_flush_interval_is_applied_by_the_next_track(
    server_url: str, namespace: str, redis_client: Any
) -> None:
    with bitstat.connect(
        server_url, namespace=namespace, schema=schema(), flush_at=1000, flush_interval=0.2
    ) as st:
        first, second = batches(1, 2, seed=9)[0]
        st.track(first)
        assert redis_client.llen(st._ns.keys.queue) == 1
        time.sleep(0.25)
        st.track(second)  # the oldest waited 0.25 s: both are applied by this call
        assert not redis_client.exists(st._ns.keys.queue)
        assert st.total("purchase", "2026") == 2


def test_a_bad_event_is_refused_at_once_and_nothing_is_queued(
    server_url: str, namespace: str, redis_client: Any
) -> None:
    with bitstat.connect(server_url, namespace=namespace, schema=schema()) as st:
        with pytest.raises(bitstat.InvalidEvent, match="amount") as raised:
            st.track({"event": "purchase", "user": "u-1", "amount": "lots"})
        assert raised.value.field == "amount"
        with pytest.raises(bitstat.InvalidEvent, match="user"):
            st.track({"event": "purchase"})
        assert not redis_client.exists(st._ns.keys.queue)
        assert st.events() == []


def test_flush_at_1_applies_each_event_alone_at_once(
    server_url: str, namespace: str, redis_client: Any
) -> None:
    with bitstat.connect(server_url, namespace=namespace, schema=schema(), flush_at=1) as st:
        st.track(batches(1, 1)[0][0])
        assert not redis_client.exists(st._ns.keys.queue)
        assert redis_client.exists(st._ns.keys.events)  # written by the call itself


def test_a_claim_left_by_a_flush_that_died_is_applied_once_by_the_next(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush dies after writing its batch and before forgetting the claim (the claim went
    with the batch), and another before writing anything: a later flush (another process's)
    takes the second claim over, and every event counts once."""
    monkeypatch.setattr(queued, "LEASE_MARGIN", 0.0)
    events = batches(1, 90, seed=13)[0]
    want = model()
    options = {"namespace": namespace, "schema": schema(), "flush_at": 1000, "deadline": 0.2}
    with bitstat.connect(server_url, **options) as dying:
        release = Transport.release_claim
        apply = Transport.apply
        for part, broken in ((events[:40], "release_claim"), (events[40:70], "apply")):
            for e in part:
                dying.track(e)
                want.track(e)
            monkeypatch.setattr(Transport, broken, died)
            with pytest.raises(KeyboardInterrupt):
                dying.flush()
            monkeypatch.setattr(Transport, "release_claim", release)
            monkeypatch.setattr(Transport, "apply", apply)
    # (the interrupted Stats would record the claim it kept itself: the process died instead)
    with bitstat.connect(server_url, **options) as st:
        for e in events[70:]:
            st.track(e)
            want.track(e)
        time.sleep(0.25)  # both leases (the deadline, 0.2 s) are over
        assert st.flush() == 20 + 30  # the queue and the claim taken over
        same_answers(st, want)
        assert st.flush() == 0


def test_a_flush_that_fails_in_track_leaves_the_events_queued(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    events = batches(1, 6, seed=17)[0]
    with bitstat.connect(
        embedded_url, namespace=namespace, schema=schema(), flush_at=3, deadline=0.2
    ) as st:

        def refused(*args: Any, **kwargs: Any) -> Any:
            error = bitstat.ServerError("OOM command not allowed")
            error.transient = False
            raise error
            yield  # (a request)

        monkeypatch.setattr(Transport, "claim_queued", refused)
        for e in events[:3]:
            st.track(e)  # the third call's flush fails: logged, and the call succeeds
        assert "applying the events track() queued failed" in caplog.text
        monkeypatch.undo()
        for e in events[3:]:
            st.track(e)
        assert st.total("purchase", "2026") == 6


def test_the_asyncio_api_queues_and_reads_its_own_events(server_url: str, namespace: str) -> None:
    events = mixed_times(batches(1, 120, seed=21)[0], seed=21)
    want = model()
    for e in events:
        want.track(e)

    async def record_and_read() -> int:
        opened = bitstat.aio.connect(server_url, namespace=namespace, schema=schema(), flush_at=50)
        async with await opened as st:
            for e in events:
                await st.track(e)
            return int(await st.total("purchase", "2026"))

    assert asyncio.run(record_and_read()) == len(events)
    with bitstat.connect(server_url, namespace=namespace) as st:
        same_answers(st, want)


def test_queued_records_keep_only_what_the_rules_read() -> None:
    from bitstat.single import parse_one

    one = parse_one(
        {
            "event": "purchase",
            "user": 7,
            "time": "2026-11-20T10:00:00",
            "country": "NL",
            "amount": 2.5,
            "ignored": "x" * 100,
        },
        schema(),
    )
    record = queued.queued_record(one, schema())
    assert record == {
        "event": "purchase",
        "user": "7",
        "time": "2026-11-20T10:00:00",
        "country": "NL",
        "amount": 2.5,
    }
    line = queued.queued_line("tok1", record)
    assert queued.records_of(line) == [record]
    big = {**record, "amount": 2**70}  # past 64 bits: read back exactly
    assert queued.records_of(queued.queued_line("tok2", big) + b"\n" + line) == [big, record]


def test_numpy_values_are_queued_as_the_python_values_they_hold() -> None:
    """A DataFrame's row gives numpy's scalars; JSON writes Python's (a plain value, a str
    subclass included, is queued as it is)."""
    from bitstat.single import parse_one

    class Text(str):
        pass

    given = {"event": "purchase", "user": np.int64(7), "time": "2026-11-20T10:00:00"}
    given |= {"country": np.str_("NL"), "amount": np.float64(2.5), "item": Text("pen")}
    record = queued.queued_record(parse_one(given, schema()), schema())
    assert [type(record[k]) for k in ("country", "amount")] == [str, float]
    assert record["country"] == "NL" and record["amount"] == 2.5
    assert type(record["item"]) is Text


@pytest.mark.parametrize(
    ("given", "queued_as"),
    [
        ("2026-11-20T10:00:00.250+01:00", "2026-11-20T10:00:00.250+01:00"),  # as given
        ("2026-11-20 10:00:00Z", "2026-11-20 10:00:00Z"),
        ("2026-11-20T10", "2026-11-20T10:00:00"),  # a label: its start, as wall-clock text
        ("2026-11-20", "2026-11-20T00:00:00"),
        (" 2026-11-20T10:00:00 ", "2026-11-20T10:00:00"),
        ("2026-11-20T10:00:00.1234567", "2026-11-20T10:00:00"),
        ("2026-11-20T10:00:00+0100", "2026-11-20T10:00:00"),
    ],
)
def test_a_text_time_is_queued_as_given_only_in_a_form_the_batch_reads_in_columns(
    given: str, queued_as: str
) -> None:
    """Any other form would send a whole claim's batch event by event (5-10x slower)."""
    from bitstat.single import parse_one

    one = parse_one({"event": "purchase", "user": 7, "time": given}, schema())
    assert queued.queued_record(one, schema())["time"] == queued_as


@pytest.mark.parametrize("ahead", [0, 5])
def test_values_json_libraries_differ_on_are_queued_exactly(
    embedded_url: str, namespace: str, ahead: int
) -> None:
    """Property values that a fast JSON library would change (integers past 64 bits read as
    floats, 2.0 written as 2) or refuse (a str subclass) count as in a batch that never went
    through the queue. (NaN and Infinity are refused: test_api.py.)"""

    class Text(str):
        pass

    odd = [2.0, -0.0, 1e300, 2**70, -(2**64) - 1, Text("NL"), "a:null", "é\u2028"]
    events = [
        {**e, "country": odd[i % len(odd)], "item": 2**65 + i % 3}
        for i, e in enumerate(batches(1, 40, seed=3)[0])
    ]
    want = model()
    want.track_many(events)
    with bitstat.connect(
        embedded_url, namespace=namespace, schema=schema(), flush_at=16, track_ahead=ahead
    ) as st:
        for e in events:
            st.track(e)
        same_answers(st, want)


@pytest.mark.parametrize(
    ("flush_at", "interval", "message"),
    [(0, 1.0, "flush_at"), (True, 1.0, "flush_at"), (10, -1, "flush_interval")],
)
def test_bad_queue_options_are_refused(
    embedded_url: str, namespace: str, flush_at: Any, interval: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        bitstat.connect(
            embedded_url, namespace=namespace, flush_at=flush_at, flush_interval=interval
        )


def test_a_push_whose_connection_the_server_closed_is_sent_again(
    embedded_url: str, namespace: str
) -> None:
    """track()'s connection is kept out of the pool: closed by the server between two calls,
    the next push fails on it, goes again on a new one, and lands once."""
    import redis

    events = batches(1, 3, seed=23)[0]
    with bitstat.connect(embedded_url, namespace=namespace, schema=schema()) as st:
        st.track(events[0])
        admin = redis.Redis.from_url(embedded_url)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        st.track(events[1])
        st.track(events[2])
        assert st.total("purchase", "2026") == 3
        admin.close()


def test_a_forked_child_tracks_on_connections_of_its_own(embedded_url: str, namespace: str) -> None:
    import multiprocessing

    events = batches(1, 3, seed=29)[0]
    with bitstat.connect(embedded_url, namespace=namespace, schema=schema()) as st:
        st.track(events[0])  # the parent's connection, kept
        child = multiprocessing.get_context("fork").Process(target=st.track, args=(events[1],))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        st.track(events[2])  # on the parent's connection: no reply of the child's read here
        assert st.total("purchase", "2026") == 3


def batch_markers(client: Any, st: bitstat.Stats) -> list[bytes]:
    """The namespace's batch markers, in every slot."""
    return [
        key
        for pattern in st._ns.keys.patterns
        for key in client.scan_iter(match=pattern, count=1000)
        if b":batch:" in key
    ]


def expire_batch_markers(client: Any, st: bitstat.Stats) -> None:
    """What 10 minutes do to the markers of the batches bitstat named itself (`auto_ttl`)."""
    for key in batch_markers(client, st):
        client.delete(key)


def test_a_claim_goes_with_its_batch_so_nothing_waits_on_its_markers(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    """A flush dies after writing its batch and before forgetting the claim, and no flush comes
    until the batch's markers have expired: the claim went with the batch (the same script
    call), so no later flush applies it again."""
    monkeypatch.setattr(queued, "LEASE_MARGIN", 0.0)
    events = batches(1, 40, seed=29)[0]
    want = model()
    with bitstat.connect(
        server_url, namespace=namespace, schema=schema(), flush_at=1000, deadline=0.2
    ) as st:
        for e in events:
            st.track(e)
            want.track(e)
        release = Transport.release_claim
        monkeypatch.setattr(Transport, "release_claim", died)
        with pytest.raises(KeyboardInterrupt):
            st.flush()
        monkeypatch.setattr(Transport, "release_claim", release)
        expire_batch_markers(redis_client, st)
        time.sleep(0.25)  # the lease (the deadline, 0.2 s) is over
        assert st.flush() == 0
        same_answers(st, want)


def test_a_flush_stalled_past_its_lease_never_applies_its_claim_again(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    """A flush stalls between taking its claim and writing it; another takes the claim over
    past the lease and applies it; the markers expire; then the first goes on: it writes
    nothing (its claim is gone)."""
    monkeypatch.setattr(queued, "LEASE_MARGIN", 0.0)
    events = batches(1, 40, seed=31)[0]
    want = model()
    options: dict[str, Any] = {"schema": schema(), "flush_at": 1000, "deadline": 0.2}
    with (
        bitstat.connect(server_url, namespace=namespace, **options) as slow,
        bitstat.connect(server_url, namespace=namespace, **options) as other,
    ):
        for e in events:
            slow.track(e)
            want.track(e)
        read = queued.records_of

        def stalled(events: bytes) -> list[dict[str, Any]]:
            monkeypatch.setattr(queued, "records_of", read)
            time.sleep(0.25)  # past the lease
            assert other.flush() == 40  # the claim taken over and applied
            expire_batch_markers(redis_client, slow)
            return read(events)

        monkeypatch.setattr(queued, "records_of", stalled)
        slow.flush()
        same_answers(slow, want)


def ten_minutes_pass(client: Any, st: bitstat.Stats) -> None:
    """What 10 minutes do to batch markers: those kept `auto_ttl` (10 minutes) are gone, those
    kept longer are not."""
    for key in batch_markers(client, st):
        if 0 <= client.ttl(key) <= 600:
            client.delete(key)


def test_a_cluster_flush_dying_before_its_namespace_group_is_finished_once_however_late(
    cluster_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster a claim's batch is written a slot at a time, the namespace's group (which
    forgets the claim) last. A flush dies just before that group, and no flush comes for 10
    minutes: the groups written keep their markers that long, so the flush that takes the
    claim over writes only what is missing."""
    monkeypatch.setattr(queued, "LEASE_MARGIN", 0.0)
    events = batches(1, 60, seed=37)[0]
    want = model()
    client = servers.client_for(cluster_url)
    options: dict[str, Any] = {"schema": schema(), "flush_at": 1000, "deadline": 0.2}
    try:
        with bitstat.connect(cluster_url, namespace=namespace, **options) as st:
            for e in events:
                st.track(e)
                want.track(e)
            meta_marker = st._ns.keys.batch(st._ns.keys.meta_tag, "")
            script = Transport.script

            def dying(self: Transport, s: Any, keys: Any, args: Any) -> Any:
                if s is self.apply_script and keys[0].startswith(meta_marker):
                    died()
                return (yield from script(self, s, keys, args))

            monkeypatch.setattr(Transport, "script", dying)
            with pytest.raises(KeyboardInterrupt):
                st.flush()
            monkeypatch.setattr(Transport, "script", script)
            ten_minutes_pass(client, st)
            time.sleep(0.25)  # the lease (the deadline, 0.2 s) is over
            assert st.flush() == len(events)  # the claim taken over
            same_answers(st, want)
            markers = batch_markers(client, st)
            assert markers and all(0 < client.ttl(k) <= 600 for k in markers)  # shortened
    finally:
        client.close()


@pytest.mark.parametrize("deadlines", [(0.2, 0.2), (4.0, 0.2)], ids=["same", "longer"])
def test_a_cluster_flush_stalled_after_its_look_at_the_claim_writes_nothing(
    cluster_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    deadlines: tuple[float, float],
) -> None:
    """A flush looks at its claim (held), then stalls past its lease before writing the groups
    in other slots; another takes the claim over and applies it; 10 minutes pass; then the
    first goes on: the server's clock says its lease is over, and it writes nothing.

    longer: processes of one namespace may have different deadlines, and a claim is taken over
    once the lease of the taker's deadline is over. The stalled flush has a long one; the
    taker's markers are kept `auto_ttl` (10 minutes; 1 s here) once the batch is in, and
    expire; the first goes on within its own lease but past `auto_ttl` after its claim."""
    slow_deadline, other_deadline = deadlines
    longer = slow_deadline > other_deadline
    monkeypatch.setattr(queued, "LEASE_MARGIN", 0.0)
    if longer:
        monkeypatch.setattr(bitstat.record, "AUTO_BATCH_TTL", 1)
    events = batches(1, 60, seed=43 if longer else 41)[0]
    want = model()
    client = servers.client_for(cluster_url)
    options: dict[str, Any] = {"schema": schema(), "flush_at": 1000}
    try:
        with (
            bitstat.connect(
                cluster_url, namespace=namespace, deadline=slow_deadline, **options
            ) as slow,
            bitstat.connect(
                cluster_url, namespace=namespace, deadline=other_deadline, **options
            ) as other,
        ):
            for e in events:
                slow.track(e)
                want.track(e)
            apply = Transport.apply

            def stalled(self: Transport, *args: Any, **kwargs: Any) -> Any:
                monkeypatch.setattr(Transport, "apply", apply)
                time.sleep(0.25)  # past the (short) lease
                assert other.flush() == len(events)  # the claim taken over and applied
                if longer:
                    time.sleep(1.1)  # its markers' 1 s
                ten_minutes_pass(client, slow)
                return (yield from apply(self, *args, **kwargs))

            monkeypatch.setattr(Transport, "apply", stalled)
            with pytest.raises(bitstat.BitstatError, match="lease of the queue claim"):
                slow.flush()  # (a read raises so too: it could not be exact)
            same_answers(slow, want)
    finally:
        client.close()


def test_a_cluster_claim_whose_last_reply_was_lost_keeps_its_markers_10_minutes(
    cluster_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's groups in other slots keep their markers long until the batch is in; when
    the reply of the namespace's group, which completed it, is lost, the flush's next try finds
    the batch in and shortens them (they stayed for `batch_ttl`, 7 days)."""
    events = batches(1, 60, seed=43)[0]
    want = model()
    client = servers.client_for(cluster_url)
    options: dict[str, Any] = {"schema": schema(), "flush_at": 1000, "deadline": 5}
    try:
        with bitstat.connect(cluster_url, namespace=namespace, **options) as st:
            for e in events:
                st.track(e)
                want.track(e)
            meta_marker = st._ns.keys.batch(st._ns.keys.meta_tag, "")
            script = Transport.script
            lost = []

            def reply_lost(self: Transport, s: Any, keys: Any, args: Any) -> Any:
                answer = yield from script(self, s, keys, args)
                if s is self.apply_script and keys[0].startswith(meta_marker) and not lost:
                    lost.append(keys[0])
                    raise bitstat.ConnectionError("the connection was reset (a test)")
                return answer

            monkeypatch.setattr(Transport, "script", reply_lost)
            assert st.flush() == len(events)  # (its next try finds the batch in)
            assert lost
            same_answers(st, want)
            markers = batch_markers(client, st)
            assert len(markers) > 1 and all(0 < client.ttl(k) <= 600 for k in markers)
    finally:
        client.close()


def test_a_claim_asked_again_after_another_took_it_over_takes_no_new_events_under_its_id(
    server_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush's claim reply is lost; a process of a shorter deadline (so a shorter lease) takes
    the claim over once its own lease is over and records it; then the first flush asks its
    claim again, within its own lease. The claim was gone, so it made a new one, of the events
    queued since, under the id of the recorded batch: they were taken for it, never recorded."""
    monkeypatch.setattr(queued, "LEASE_MARGIN", 0.0)
    events = batches(1, 30, seed=84)[0]
    want = model()
    options: dict[str, Any] = {"schema": schema(), "flush_at": 1000, "flush_interval": 100}
    with (
        bitstat.connect(server_url, namespace=namespace, deadline=5.0, **options) as st,
        bitstat.connect(server_url, namespace=namespace, deadline=0.2, **options) as other,
    ):
        for e in events[:20]:
            st.track(e)
            want.track(e)
        flush_reply_lost(st)
        time.sleep(0.25)  # the lease of the other's deadline (0.2 s) is over, not st's
        assert other.flush() == 20  # taken over
        for e in events[20:]:
            st.track(e)
            want.track(e)
        assert st.flush() == 10  # the events queued since, under a claim of their own
        same_answers(st, want)


def flush_reply_lost(st: bitstat.Stats) -> None:
    """A flush of `st` whose claim is made and its reply lost (the flush fails)."""
    claim = Transport.claim_queued

    def reply_lost(self: Transport, *args: Any) -> Any:
        yield from claim(self, *args)  # (the claim is made)
        lost = bitstat.ConnectionError("the reply was lost")
        lost.transient = False
        raise lost

    with pytest.MonkeyPatch.context() as patch, pytest.raises(bitstat.ConnectionError):
        patch.setattr(Transport, "claim_queued", reply_lost)
        st.flush()
