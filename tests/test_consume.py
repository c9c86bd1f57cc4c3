"""`bitstat consume`: a Redis Stream recorded through a consumer group, exactly once, with
consumer processes killed between recording a batch and acknowledging it.

The crash is a real process death (os._exit in the consumer's XACK, in a process of its own),
then a plain `bitstat consume` (the same name, or another consumer claiming the idle entries,
with another batch size) finishes the stream; every answer is compared with the events added.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis

import bitstat
import servers
from bitstat.streams import Progress, StreamConsumer

DAY0 = datetime(2026, 11, 2)
DAYS = 5

# a consumer that dies (os._exit) inside its XACK number `crash_at`: after recording that batch
CRASHING = """
import os, sys
from bitstat import streams
from bitstat.cli import main

crash_at = int(os.environ["CRASH_AT"])
made = streams.StreamConsumer.__init__

class Dying:
    def __init__(self, client):
        self.client, self.acks = client, 0
    def __getattr__(self, name):
        return getattr(self.client, name)
    def xack(self, *args):
        self.acks += 1
        if self.acks == crash_at:
            os._exit(9)
        return self.client.xack(*args)

def init(self, *args, **kwargs):
    made(self, *args, **kwargs)
    self.client = Dying(self.client)

streams.StreamConsumer.__init__ = init
main(sys.argv[1:])
"""


def events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    out = []
    for k in range(n):
        when = DAY0 + timedelta(days=(k * 7 + seed) % DAYS, hours=k % 24)
        out.append(
            {"event": "login", "user": (k * 13 + seed) % 97, "time": when.isoformat(), "n": k}
        )
    return out


def add(client: redis.Redis, stream: str, evs: list[dict[str, Any]]) -> None:
    pipe = client.pipeline(transaction=False)
    for i, ev in enumerate(evs):
        if i % 5 == 0:  # some entries carry the event as fields, the rest as JSON
            fields = {k: str(v) for k, v in ev.items() if k != "n"}
            pipe.xadd(stream, fields)
        else:
            pipe.xadd(stream, {"data": json.dumps(ev)})
    pipe.execute()


def check(st: bitstat.Stats, evs: list[dict[str, Any]]) -> None:
    end = (DAY0 + timedelta(days=DAYS - 1)).date().isoformat()
    assert st.total("login", DAY0.date().isoformat(), end) == len(evs)
    assert st.unique("login", DAY0.date().isoformat(), end) == len({e["user"] for e in evs})
    for label, value in st.series("login", DAY0.date().isoformat(), end, metric="total"):
        assert value == sum(1 for e in evs if e["time"].startswith(label)), label


@pytest.fixture
def setup(embedded_url: str, namespace: str) -> Iterator[tuple[bitstat.Stats, redis.Redis, str]]:
    st = bitstat.connect(embedded_url, namespace=namespace)
    client = servers.client_for(embedded_url)
    stream = f"stream-{uuid.uuid4().hex[:8]}"
    yield st, client, stream
    client.delete(stream, f"{stream}:bitstat-batches:bitstat")
    st.drop()
    st.close()
    client.close()


def run_consume(
    url: str, namespace: str, *args: str, crash_at: int | None = None
) -> subprocess.CompletedProcess[str]:
    argv = ["--url", url, "--namespace", namespace, "consume", *args]
    if crash_at is None:
        command = [sys.executable, "-m", "bitstat", *argv]
        env = dict(os.environ)
    else:
        command = [sys.executable, "-c", CRASHING, *argv]
        env = {**os.environ, "CRASH_AT": str(crash_at)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def consume(url: str, namespace: str, *args: str, crash_at: int | None = None) -> Any:
    done = run_consume(url, namespace, *args, crash_at=crash_at)
    if crash_at is not None:
        assert done.returncode == 9, done.stderr
        return None
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_stream_is_recorded_once(embedded_url: str, setup: Any) -> None:
    st, client, stream = setup
    evs = events(300)
    add(client, stream, evs)
    args = (stream, "--consumer", "w1", "--batch", "64", "--stop-when-idle", "0.3")
    said = consume(embedded_url, st.namespace, *args, "--block", "100")
    assert said["recorded"] == 300 and said["rejected"] == 0 and said["batches"] == 5
    check(st, evs)
    assert client.xpending(stream, "bitstat")["pending"] == 0
    # each batch id is remembered for the namespace's batch-id TTL (7 days, docs/streams.md):
    # a batch recorded but not acknowledged counts once if taken again within it
    markers = list(client.scan_iter(match=f"{{{st.namespace}}}:batch:stream%3A*", count=1000))
    assert len(markers) == 5
    assert all(6 * 86400 < client.ttl(m) <= 7 * 86400 for m in markers)
    # more entries later: the group goes on from where it was
    more = events(40, seed=11)
    add(client, stream, more)
    said = consume(embedded_url, st.namespace, *args, "--block", "100")
    assert said["recorded"] == 40
    check(st, evs + more)


def test_killed_between_record_and_ack_then_restarted(embedded_url: str, setup: Any) -> None:
    st, client, stream = setup
    evs = events(500)
    add(client, stream, evs)
    args = (stream, "--consumer", "w1", "--batch", "50", "--block", "100")
    consume(embedded_url, st.namespace, *args, "--stop-when-idle", "0.3", crash_at=3)
    # the third batch was recorded, not acknowledged: 150 counted, 50 still pending
    end = (DAY0 + timedelta(days=DAYS - 1)).date().isoformat()
    assert st.total("login", DAY0.date().isoformat(), end) == 150
    assert client.xpending(stream, "bitstat")["pending"] == 50
    said = consume(embedded_url, st.namespace, *args, "--stop-when-idle", "0.3")
    assert said["taken_again"] == 50
    assert said["recorded"] == 350  # the batch taken again was recorded already: it adds none
    check(st, evs)
    assert client.xpending(stream, "bitstat")["pending"] == 0
    # the notes of the batches are forgotten once acknowledged: the stream's identity is left
    assert client.hkeys(f"{stream}:bitstat-batches:bitstat") == [b"identity"]


def test_another_consumer_claims_with_another_batch_size(embedded_url: str, setup: Any) -> None:
    st, client, stream = setup
    evs = events(400)
    add(client, stream, evs)
    first = (stream, "--consumer", "a", "--batch", "60", "--block", "100")
    consume(embedded_url, st.namespace, *first, "--stop-when-idle", "0.3", crash_at=2)
    again = (stream, "--consumer", "b", "--batch", "7", "--block", "100", "--min-idle", "0")
    said = consume(embedded_url, st.namespace, *again, "--stop-when-idle", "0.3")
    assert said["taken_again"] == 60
    check(st, evs)
    assert client.xpending(stream, "bitstat")["pending"] == 0


def test_sigkill_at_random_moments(embedded_url: str, setup: Any) -> None:
    st, client, stream = setup
    evs = events(3000, seed=5)
    add(client, stream, evs)
    argv = ["--url", embedded_url, "--namespace", st.namespace, "consume", stream]
    argv += ["--consumer", "w1", "--batch", "20", "--block", "100", "--stop-when-idle", "0.5"]
    for delay in (0.9, 1.1, 1.3):
        proc = subprocess.Popen([sys.executable, "-m", "bitstat", *argv], stdout=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    said = consume(embedded_url, st.namespace, *argv[5:])
    assert said["rejected"] == 0
    check(st, evs)
    assert client.xpending(stream, "bitstat")["pending"] == 0


def test_a_bad_entry_is_rejected_and_acknowledged(embedded_url: str, setup: Any) -> None:
    st, client, stream = setup
    client.xadd(stream, {"data": "{not json"})
    client.xadd(stream, {"data": json.dumps({"event": "login", "time": "2026-11-02"})})
    add(client, stream, events(3))
    args = (stream, "--consumer", "w1", "--block", "100", "--stop-when-idle", "0.3")
    said = consume(embedded_url, st.namespace, *args)
    assert said["recorded"] == 3 and said["rejected"] == 2
    assert client.xpending(stream, "bitstat")["pending"] == 0


class Died(BaseException):
    """A consumer's process dying in the middle of a call (no error bitstat handles)."""


class Hooked:
    """`target`, whose method `name` runs `hook` at its call number `at`: before the call, or
    after it (`after`), before its answer is handed back."""

    def __init__(
        self, target: Any, name: str, hook: Callable[[], None], at: int = 1, after: bool = False
    ) -> None:
        self.target, self.name, self.hook, self.at, self.after = target, name, hook, at, after
        self.calls = 0

    def __getattr__(self, attr: str) -> Any:
        found = getattr(self.target, attr)
        if attr != self.name:
            return found

        def hooked(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.at and not self.after:
                self.hook()
            answer = found(*args, **kwargs)
            if self.calls == self.at and self.after:
                self.hook()
            return answer

        return hooked


class Dies(Hooked):
    """`target`, whose method `name` dies at its call number `at` (`after`: once it ran)."""

    def __init__(self, target: Any, name: str, at: int = 1, after: bool = False) -> None:
        def die() -> None:
            raise Died(name)

        super().__init__(target, name, die, at, after)


def drained(worker: StreamConsumer) -> Progress:
    """Run `worker` until a read finds nothing new."""
    seen = [-1]

    def stop(progress: Progress) -> bool:
        done = progress.batches
        idle, seen[0] = done == seen[0], done
        return idle

    return worker.run(stop=stop)


def pending_ids(client: redis.Redis, stream: str, consumer: str) -> list[str]:
    found = client.xpending_range(stream, "bitstat", "-", "+", 1000, consumername=consumer)
    return [p["message_id"].decode() for p in found]


def test_a_batch_whose_first_entry_was_trimmed_keeps_its_batch_id(
    embedded_url: str, setup: Any
) -> None:
    st, client, stream = setup
    evs = events(200)
    add(client, stream, evs)
    first = (stream, "--consumer", "a", "--batch", "50", "--block", "100")
    consume(embedded_url, st.namespace, *first, "--stop-when-idle", "0.3", crash_at=3)
    # the third batch is recorded, not acknowledged; its first entry (and all before) trimmed
    pending = pending_ids(client, stream, "a")
    assert len(pending) == 50
    client.xtrim(stream, minid=pending[1], approximate=False)
    again = (stream, "--consumer", "b", "--batch", "50", "--block", "100", "--min-idle", "0")
    said = consume(embedded_url, st.namespace, *again, "--stop-when-idle", "0.3")
    assert said["taken_again"] == 49
    check(st, evs)  # the trimmed entry was recorded with its batch, which counts once
    assert client.xpending(stream, "bitstat")["pending"] == 0


def test_a_batch_taken_again_never_takes_in_another_consumers_batch(
    embedded_url: str, setup: Any
) -> None:
    st, client, stream = setup
    evs = events(15)
    add(client, stream, evs)
    client.xgroup_create(stream, "bitstat", id="0")
    client.xreadgroup("bitstat", "x", {stream: ">"}, count=5)  # x dies before noting them
    # z notes the next five and dies before recording them
    z = StreamConsumer(Dies(st, "track_many"), stream, consumer="z", batch=5, client=client)
    with pytest.raises(Died):
        z.run()
    client.xreadgroup("bitstat", "y", {stream: ">"}, count=5)  # y dies before noting them
    # x's and y's entries idle long since, z's not: c takes those two runs as one batch (around
    # z's), records it and dies before its XACK
    for name in ("x", "y"):
        client.xclaim(stream, "bitstat", name, 0, pending_ids(client, stream, name), idle=10**5)
    c = StreamConsumer(
        st, stream, consumer="c", batch=10, min_idle_ms=50_000, client=Dies(client, "xack")
    )
    with pytest.raises(Died):
        c.run(stop=lambda progress: True)
    assert len(pending_ids(client, stream, "z")) == 5
    # d takes every entry: c's batch again (recorded: it adds none) and z's (never recorded)
    d = StreamConsumer(st, stream, consumer="d", batch=10, min_idle_ms=0, client=client)
    assert d.run(stop=lambda progress: True).recorded == 5
    check(st, evs)
    assert client.xpending(stream, "bitstat")["pending"] == 0


def test_own_entries_are_taken_again_once_with_min_idle_0(embedded_url: str, setup: Any) -> None:
    st, client, stream = setup
    evs = events(100)
    add(client, stream, evs)
    # w1 takes a batch and dies before noting it
    w1 = StreamConsumer(st, stream, consumer="w1", batch=40, client=Dies(client, "evalsha"))
    with pytest.raises(Died):
        w1.run()
    # started again, its entries are its own pending ones and (min idle 0) idle ones too
    again = StreamConsumer(
        st, stream, consumer="w1", batch=40, block_ms=100, min_idle_ms=0, client=client
    )
    progress = drained(again)
    assert progress.retried == 40 and progress.recorded == 100
    check(st, evs)
    assert client.xpending(stream, "bitstat")["pending"] == 0


def test_json_python_cannot_read_is_a_bad_entry(embedded_url: str, setup: Any) -> None:
    st, client, stream = setup
    deep = client.xadd(stream, {"data": "[" * 100_000}).decode()
    long = client.xadd(stream, {"data": "1" * 5000}).decode()  # past the int digit limit
    nested = {
        "event": "login",
        "user": 1,
        "time": "2026-11-02",
        "p": json.loads("[" * 900 + "]" * 900),
    }
    client.xadd(stream, {"data": json.dumps(nested)})
    add(client, stream, events(3))
    args = (stream, "--consumer", "w1", "--block", "100", "--stop-when-idle", "0.3")
    done = run_consume(embedded_url, st.namespace, *args)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["recorded"] == 4 and said["rejected"] == 2  # a deep property is no matter
    assert f"stream entry {deep} rejected: field 'data': not JSON: nested too deeply" in done.stderr
    assert f"stream entry {long} rejected: field 'data': not JSON: Exceeds the limit" in done.stderr
    assert client.xpending(stream, "bitstat")["pending"] == 0


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def test_a_read_may_block_longer_than_the_socket_timeout(embedded_url: str, setup: Any) -> None:
    st, client, stream = setup
    evs = events(30)
    add(client, stream, evs)
    args = (stream, "--consumer", "w1", "--block", "1000", "--stop-when-idle", "0.3")
    # the data's client waits 0.5 s for an answer; so does the stream's
    url = with_query(embedded_url, "socket_timeout=0.5")
    assert consume(url, st.namespace, *args)["recorded"] == 30
    more = events(20, seed=7)
    add(client, stream, more)
    said = consume(embedded_url, st.namespace, *args, "--stream-url", url)
    assert said["recorded"] == 20
    check(st, evs + more)


def test_block_0_with_stop_when_idle_is_refused(embedded_url: str, setup: Any) -> None:
    st, _, stream = setup
    args = (stream, "--block", "0", "--stop-when-idle", "0.3")
    done = run_consume(embedded_url, st.namespace, *args)
    assert done.returncode == 2 and "--block 0" in done.stderr


def test_the_stream_client_has_timeouts(embedded_url: str) -> None:
    from bitstat.cli.consume import stream_client

    client = stream_client(embedded_url)
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] and options["socket_connect_timeout"]
    client.close()


def add_with_ids(client: redis.Redis, stream: str, evs: list[dict[str, Any]]) -> None:
    """The events as entries 1-1, 1-2, ...: every such stream holds the same ids."""
    for n, ev in enumerate(evs, 1):
        client.xadd(stream, {"data": json.dumps(ev)}, id=f"1-{n}")


def test_streams_elsewhere_or_of_other_names_never_share_batch_ids(
    embedded_url: str, setup: Any
) -> None:
    st, _, stream = setup
    evs = events(120)
    # the same stream name on two databases, and names that differ only by where a ':' is
    places = [(1, stream, "g"), (2, stream, "g"), (1, f"{stream}:x", "y"), (3, stream, "x:y")]
    clients = {db: servers.client_for(with_query(embedded_url, f"db={db}")) for db in (1, 2, 3)}
    try:
        for k, (db, name, group) in enumerate(places):
            add_with_ids(clients[db], name, evs[k * 30 : (k + 1) * 30])
            url = with_query(embedded_url, f"db={db}")
            args = (name, "--group", group, "--stream-url", url, "--block", "100")
            said = consume(embedded_url, st.namespace, *args, "--stop-when-idle", "0.3")
            assert said["recorded"] == 30
        check(st, evs)
        # started again, a group goes on under the ids it had: nothing counts twice
        client_1 = clients[1]
        client_1.xgroup_setid(stream, "g", "0")
        url = with_query(embedded_url, "db=1")
        args = (stream, "--group", "g", "--stream-url", url, "--block", "100")
        said = consume(embedded_url, st.namespace, *args, "--stop-when-idle", "0.3")
        assert said["recorded"] == 0 and said["batches"] == 1
        check(st, evs)
    finally:
        for db, name, group in places:
            clients[db].delete(name, f"{name}:bitstat-batches:{group}")
        for c in clients.values():
            c.close()


def test_a_batch_left_pending_by_an_older_bitstat_counts_once(
    embedded_url: str, setup: Any
) -> None:
    """A consumer of a bitstat before 2026-12-06 (its notes first id -> last id, batch ids of
    the names and the bounds) recorded a batch and stopped before its XACK: started again
    after the upgrade, a consumer takes the batch again under the id it had."""
    st, client, stream = setup
    evs = events(120)
    add(client, stream, evs)
    client.xgroup_create(stream, "bitstat", id="0")
    for at in (0, 50):  # two batches recorded as it did, the second not acknowledged
        taken = client.xreadgroup("bitstat", "w1", {stream: ">"}, count=50)[0][1]
        ids = [i.decode() for i, _ in taken]
        client.hset(f"{stream}:bitstat-batches:bitstat", ids[0], ids[-1])
        st.track_many(evs[at : at + 50], batch_id=f"stream:{stream}:bitstat:{ids[0]}:{ids[-1]}")
        if at == 0:
            client.xack(stream, "bitstat", *ids)
            client.hdel(f"{stream}:bitstat-batches:bitstat", ids[0])
    args = (stream, "--consumer", "w1", "--batch", "30", "--block", "100")
    said = consume(embedded_url, st.namespace, *args, "--stop-when-idle", "0.3")
    assert said["taken_again"] == 50 and said["recorded"] == 20
    check(st, evs)
    assert client.xpending(stream, "bitstat")["pending"] == 0


def notes_of(client: redis.Redis, stream: str) -> list[str]:
    """The fields of the stream's notes hash: its identity and the batches noted (not the
    fields of each noted entry)."""
    fields = client.hkeys(f"{stream}:bitstat-batches:bitstat")
    return sorted(f.decode() for f in fields if not f.startswith(b"@"))


def finished(st: bitstat.Stats, client: redis.Redis, stream: str, evs: list[Any]) -> None:
    """Every answer exact, no entry pending, no note left (nor an entry's)."""
    check(st, evs)
    assert client.xpending(stream, "bitstat")["pending"] == 0
    assert client.hkeys(f"{stream}:bitstat-batches:bitstat") == [b"identity"]


def test_a_note_left_by_a_crash_after_its_ack_is_forgotten(embedded_url: str, setup: Any) -> None:
    st, client, stream = setup
    evs = events(90)
    add(client, stream, evs)
    # w1 records and acknowledges its second batch, and dies before it forgets the note
    w1 = StreamConsumer(
        st, stream, consumer="w1", batch=30, client=Dies(client, "xack", at=2, after=True)
    )
    with pytest.raises(Died):
        w1.run()
    assert client.xpending(stream, "bitstat")["pending"] == 0
    assert len(notes_of(client, stream)) == 2  # the identity and the note left
    # started again (another name: nothing of its own pending), it forgets the note, and goes on
    w2 = StreamConsumer(st, stream, consumer="w2", batch=30, block_ms=100, client=client)
    assert drained(w2).recorded == 30
    finished(st, client, stream, evs)


def test_a_note_of_entries_trimmed_while_pending_is_forgotten(
    embedded_url: str, setup: Any
) -> None:
    st, client, stream = setup
    evs = events(90)
    add(client, stream, evs)
    # w1 records its second batch and dies before its XACK; the batch is trimmed from the stream
    w1 = StreamConsumer(st, stream, consumer="w1", batch=30, client=Dies(client, "xack", at=2))
    with pytest.raises(Died):
        w1.run()
    pending = pending_ids(client, stream, "w1")
    assert len(pending) == 30 and len(notes_of(client, stream)) == 2
    ms, seq = pending[-1].split("-")
    client.xtrim(stream, minid=f"{ms}-{int(seq) + 1}", approximate=False)  # up to its last
    assert client.xlen(stream) == 30
    # w2 claims the trimmed entries (they leave the group's pending list: nothing to take again)
    # and forgets their note; a note of entries still pending stays until they are acknowledged
    w2 = StreamConsumer(
        st, stream, consumer="w2", batch=30, block_ms=100, min_idle_ms=0, client=client
    )
    assert drained(w2).recorded == 30
    finished(st, client, stream, evs)


class Pause:
    """A hook that stops its thread until `go` is set, saying so by `reached`."""

    def __init__(self) -> None:
        self.reached, self.go = threading.Event(), threading.Event()

    def __call__(self) -> None:
        self.reached.set()
        assert self.go.wait(60), "never resumed"


def paused(worker: StreamConsumer, pause: Pause) -> tuple[threading.Thread, list[Any]]:
    """`worker` drained in a thread of its own, once it stopped at `pause` (or finished)."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(drained(worker))
        except BaseException as exc:  # the test's thread raises it
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while not pause.reached.wait(0.02) and thread.is_alive():
        pass
    return thread, out


def resumed(thread: threading.Thread, out: list[Any], pause: Pause) -> Progress:
    pause.go.set()
    thread.join(60)
    assert not thread.is_alive() and len(out) == 1
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


# where a consumer stops mid-batch: (the object, its method, call number, after the call)
A_STOPS = [
    ("client", "xreadgroup", 2, True),  # a batch read (the first read is of its own pending)
    ("client", "xclaim", 1, False),  # noted, not yet claimed back
    ("client", "xclaim", 1, True),
    ("stats", "track_many", 1, True),  # recorded, not acknowledged
    ("client", "xack", 1, True),  # acknowledged, the note not forgotten
]
B_STOPS = [("client", "xautoclaim", 1, True), *A_STOPS[1:]]


@pytest.mark.parametrize("first_on", ["a", "b"])
@pytest.mark.parametrize("b_stop", B_STOPS, ids=lambda s: f"b-{s[1]}{s[2]}{'+' * s[3]}")
@pytest.mark.parametrize("a_stop", A_STOPS, ids=lambda s: f"a-{s[1]}{s[2]}{'+' * s[3]}")
def test_min_idle_0_beside_a_live_consumer_counts_once(
    embedded_url: str, setup: Any, a_stop: Any, b_stop: Any, first_on: str
) -> None:
    """a stops in the middle of a batch; b, claiming with --min-idle 0, takes a's entries and
    stops in the middle of its own; then one goes on to the end, then the other, then a third
    consumer: every event counted once."""
    st, client, stream = setup
    evs = events(30)
    add(client, stream, evs)
    workers, pauses, threads, opened = {}, {}, {}, []
    for name, (on, method, at, after), size in (("a", a_stop, 10), ("b", b_stop, 4)):
        pauses[name] = Pause()
        stats = bitstat.connect(embedded_url, namespace=st.namespace)
        own = servers.client_for(embedded_url)
        opened += [stats, own]
        hooked = Hooked(stats if on == "stats" else own, method, pauses[name], at, after)
        workers[name] = StreamConsumer(
            hooked if on == "stats" else stats,
            stream,
            consumer=name,
            batch=size,
            block_ms=50,
            min_idle_ms=0,
            client=hooked if on == "client" else own,
        )
        threads[name] = paused(workers[name], pauses[name])
    try:
        then = "b" if first_on == "a" else "a"
        resumed(*threads[first_on], pauses[first_on])
        resumed(*threads[then], pauses[then])
        last = StreamConsumer(st, stream, consumer="c", block_ms=50, min_idle_ms=0, client=client)
        drained(last)
        finished(st, client, stream, evs)
    finally:
        for name in workers:
            pauses[name].go.set()
        for each in opened:
            each.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_consumers_claiming_from_each_other_at_once_count_once(
    embedded_url: str, setup: Any, seed: int
) -> None:
    """Three consumers at once, each claiming the others' entries as soon as taken (--min-idle
    0), batches of three sizes: every event counted once."""
    st, client, stream = setup
    evs = events(1500, seed=seed)
    add(client, stream, evs)
    opened: list[Any] = []
    failed: list[BaseException] = []

    def run(worker: StreamConsumer) -> None:
        try:
            drained(worker)
        except BaseException as exc:  # the test's thread raises it
            failed.append(exc)

    threads = []
    for name, size in (("a", 7), ("b", 13), ("c", 50)):
        stats = bitstat.connect(embedded_url, namespace=st.namespace)
        own = servers.client_for(embedded_url)
        opened += [stats, own]
        worker = StreamConsumer(
            stats, stream, consumer=name, batch=size, block_ms=20, min_idle_ms=0, client=own
        )
        threads.append(threading.Thread(target=run, args=(worker,), daemon=True))
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failed and not any(t.is_alive() for t in threads)
        last = StreamConsumer(st, stream, consumer="z", block_ms=20, min_idle_ms=0, client=client)
        drained(last)
        finished(st, client, stream, evs)
    finally:
        for each in opened:
            each.close()


def test_consumers_started_at_once_on_a_new_group_count_once(embedded_url: str, setup: Any) -> None:
    """x finds no identity yet (no consumer of this bitstat has run: it would take up the notes
    of an older bitstat); before it looks at the notes, y starts, makes the identity, notes a
    batch and stops before recording it. x takes the notes as they are (the identity and y's
    note are no older bitstat's), goes on with y's batch under its batch id, and the rest."""
    st, client, stream = setup
    evs = events(40)
    add(client, stream, evs)

    def other_starts() -> None:
        y = StreamConsumer(st, stream, consumer="y", batch=10, client=Dies(client, "xclaim"))
        with pytest.raises(Died):
            y.run()

    seen = Hooked(client, "hexists", other_starts, after=True)
    x = StreamConsumer(st, stream, consumer="x", batch=7, block_ms=50, min_idle_ms=0, client=seen)
    assert len(notes_of(client, stream)) == 2  # the identity and y's note
    drained(x)
    finished(st, client, stream, evs)


def test_noting_a_batch_costs_the_same_however_many_notes_are_in_flight(
    embedded_url: str, setup: Any
) -> None:
    """A batch is noted (notes.lua) with work of its own entries, not of every note in flight:
    a group of many consumers, each with a batch noted, would have every noting block the
    server for the whole group's entries (300 notes of 200: ~30 ms a batch when it read them
    all with HGETALL). Counted by the server's command statistics, which include the commands
    a script runs: a noting among 300 notes reads the hash as a noting alone does."""
    st, client, stream = setup
    worker = StreamConsumer(st, stream, client=client)

    def ids(n: int) -> list[str]:
        return [f"9-{n * 200 + k}" for k in range(200)]

    def calls() -> dict[str, int]:
        stats = client.info("commandstats")
        return {name: int(v["calls"]) for name, v in stats.items()}

    def reads_of_one_noting() -> dict[str, int]:
        """The hash commands one noting of a new batch runs (forgotten after)."""
        before = calls()
        note = worker._note(ids(10**6))
        after = calls()
        assert note is not None
        worker._forget(note)
        return {
            name[len("cmdstat_") :]: after[name] - before.get(name, 0)
            for name in after
            if name.startswith("cmdstat_h") and after[name] != before.get(name, 0)
        }

    alone = reads_of_one_noting()
    for n in range(300):
        assert worker._note(ids(n)) is not None
    assert worker._note([*ids(0)[5:], "9-999999999"]) is None  # an entry in a note already
    among = reads_of_one_noting()
    assert among == alone
    assert not {"hgetall", "hkeys", "hvals", "hscan"} & set(among)  # never the whole hash


def test_entries_read_then_trimmed_before_their_claim_are_recorded(
    embedded_url: str, setup: Any
) -> None:
    """w1 reads a batch and notes it; the stream is trimmed past the batch's first entries (a
    MAXLEN, an XDEL) before w1 claims the batch back (XCLAIM drops an entry deleted from the
    stream from the group's pending list, and answers nothing of it): the entries w1 read are
    recorded all the same, once."""
    st, client, stream = setup
    evs = events(30)
    add(client, stream, evs)
    ids = [i.decode() for i, _ in client.xrange(stream)]

    def trim() -> None:  # after the note of the first batch (entries 0-9), before its claim
        client.xtrim(stream, minid=ids[4], approximate=False)

    hooked = Hooked(client, "xclaim", trim)
    w1 = StreamConsumer(st, stream, consumer="w1", batch=10, block_ms=50, client=hooked)
    assert drained(w1).recorded == 30
    finished(st, client, stream, evs)


class Counted:
    """`target`, counting the calls of each of its methods."""

    def __init__(self, target: Any) -> None:
        self.target, self.calls = target, dict[str, int]()

    def __getattr__(self, attr: str) -> Any:
        found = getattr(self.target, attr)
        if not callable(found):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[attr] = self.calls.get(attr, 0) + 1
            return found(*args, **kwargs)

        return counted


def test_entries_taken_again_are_regrouped_by_their_own_notes(
    embedded_url: str, setup: Any
) -> None:
    """A consumer taking entries again (at every read with --min-idle 0) reads the notes of
    those entries, not every note of the group: the whole hash is read only to look for notes
    left behind, at start and at most once a minute."""
    st, client, stream = setup
    evs = events(60)
    add(client, stream, evs)
    for name in ("x", "y"):  # each notes a batch and dies before claiming it back
        dying = StreamConsumer(st, stream, consumer=name, batch=10, client=Dies(client, "xclaim"))
        with pytest.raises(Died):
            dying.run()
    counted = Counted(client)
    w = StreamConsumer(
        st, stream, consumer="w", batch=7, block_ms=50, min_idle_ms=0, client=counted
    )
    assert drained(w).recorded == 60
    finished(st, client, stream, evs)
    assert counted.calls.get("hgetall", 0) == 1  # the look for notes left behind
