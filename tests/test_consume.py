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
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis

import bitstat
import servers

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


def consume(url: str, namespace: str, *args: str, crash_at: int | None = None) -> Any:
    argv = ["--url", url, "--namespace", namespace, "consume", *args]
    if crash_at is None:
        command = [sys.executable, "-m", "bitstat", *argv]
        env = dict(os.environ)
    else:
        command = [sys.executable, "-c", CRASHING, *argv]
        env = {**os.environ, "CRASH_AT": str(crash_at)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
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
    assert not client.exists(f"{stream}:bitstat-batches:bitstat")


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
