"""Faults met by the flush of track()'s queue that a write or a read makes first, on a real
server out of memory (maxmemory, noeviction): the error says it is the queue's, never hands the
caller the queue's batch id for its own events, and nothing is lost or counted twice once the
server takes writes again. Every answer is compared with the reference model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import bitstat
from exactly import batches, model, same_answers, schema
from faultservers import Server


@pytest.fixture
def full(tmp_path: Path) -> Iterator[tuple[Server, redis.Redis]]:
    server = Server(tmp_path / "oom", "--maxmemory-policy", "noeviction").start()
    admin = server.client()
    yield server, admin
    admin.close()
    server.stop()


def test_a_write_whose_flush_of_the_queue_fails_names_the_queue_and_loses_nothing(
    full: tuple[Server, redis.Redis],
) -> None:
    server, admin = full
    st = bitstat.connect(server.url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=schema())
    want = model()
    queued, mine = batches(2, 30, seed=61)
    try:
        for e in queued:
            st.track(e)  # (below flush_at: they wait in the queue)
            want.track(e)
        admin.config_set("maxmemory", 1)  # full: every write refused
        with pytest.raises((bitstat.ConnectionError, bitstat.ServerError)) as raised:
            st.track_many(mine)
        error = raised.value
        # what a caller does, as the docs and the errors say: after a BatchError, send the
        # events again under its batch id (recorded once); after another error, send them again
        again = error.batch_id if isinstance(error, bitstat.BatchError) else None
        text = str(error)
        # the batch that failed is the queue's: the caller's was not sent, and is not named by
        # the queue's id (its events sent under that id would be taken for the queue's)
        assert "out of memory" in text and "queued by track()" in text
        assert "nothing of this call's own was sent" in text
        assert not isinstance(error, bitstat.BatchError) and "batch_id=" not in text
        with pytest.raises(bitstat.BatchError) as flushing:
            st.flush()
        assert "queued by track()" in str(flushing.value)
        assert "send the same events again" not in str(flushing.value)
        admin.config_set("maxmemory", 0)
        assert st.track_many(mine, batch_id=again).recorded == len(mine)
        want.track_many(mine)
        same_answers(st, want)
    finally:
        admin.config_set("maxmemory", 0)
        st.drop()
        st.close()


def test_a_tracker_of_a_process_whose_sigterm_exits_sends_its_queue(
    embedded_url: str, namespace: str
) -> None:
    """docs/library.md: SIGTERM ends Python without its exit hooks; a process that makes it an
    exit, as the docs show, sends what its tracker holds."""
    events = batches(1, 300, seed=63)[0]
    child = textwrap.dedent(
        f"""
        import signal, sys, time
        import bitstat
        from exactly import batches, schema
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        st = bitstat.connect({embedded_url!r}, namespace={namespace!r}, schema=schema())
        t = st.tracker(batch_size=100_000, interval=3600)
        for e in batches(1, 300, seed=63)[0]:
            t.track(e)
        print("queued", flush=True)
        time.sleep(120)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    with subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None and process.stdout.readline() == "queued\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    want = model()
    want.track_many(events)
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        same_answers(st, want)


@pytest.mark.parametrize("workers", [1, 2])
def test_bitstat_ingest_refused_by_the_server_says_to_run_it_again_and_that_records_once(
    full: tuple[Server, redis.Redis], tmp_path: Path, workers: int
) -> None:
    """The CLI's user is told what the CLI can do (run the command again), not the library's
    batch id to send events under; the run again records every line once."""
    server, admin = full
    events = [e for batch in batches(4, 200, seed=65) for e in batch]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    st = bitstat.connect(server.url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=schema())
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITSTAT_")}
    command = [sys.executable, "-m", "bitstat", "--url", server.url, "--namespace", st.namespace]
    command += ["ingest", str(path), "--batch-size", "200", "--no-progress", "-f", "json"]
    command += ["--workers", str(workers)]
    try:
        admin.config_set("maxmemory", 1)  # full: every write refused
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "out of memory" in done.stderr
        assert "run the same command again" in done.stderr, done.stderr
        admin.config_set("maxmemory", 0)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["recorded"] == len(events)
        want = model()
        want.track_many(events)
        same_answers(st, want)
    finally:
        admin.config_set("maxmemory", 0)
        st.drop()
        st.close()
