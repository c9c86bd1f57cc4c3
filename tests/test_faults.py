"""Faults survived with nothing lost and nothing counted twice, on real servers started here:
a server SIGKILLed mid-ingest (AOF, appendfsync always), a half-open connection, a server out of
memory (noeviction), a replica gone under durability="replicated", and a cluster master
SIGKILLed mid-ingest (3 masters + 3 replicas). Callers send no batch ids: bitstat's own do the
work. Every answer is compared with the reference model."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

import bitstat
from exactly import batches, marker_read_in_parts, model, same_answers, schema
from faultservers import ReplicatedCluster, Server, wait_for_link
from proxy import Proxy
from servers import namespace_placed

pytestmark = pytest.mark.slow


def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_a_server_sigkilled_mid_ingest_loses_and_doubles_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "always").start()
    st = bitstat.connect(server.url, namespace=namespace(), schema=schema(), deadline=60)
    want = model()
    rng = random.Random(13)
    kills = 3
    done = threading.Event()

    def killer() -> None:
        try:
            for _ in range(kills):
                time.sleep(rng.uniform(0.2, 0.8))
                server.kill()
                time.sleep(rng.uniform(0.05, 0.5))
                server.start()
        finally:
            done.set()

    thread = threading.Thread(target=killer)
    try:
        thread.start()
        n = 0
        while not done.is_set() or n < 5:
            batch = batches(1, 400, seed=n)[0]
            assert st.track_many(batch).recorded == len(batch)  # acknowledged: in the AOF
            want.track_many(batch)
            n += 1
        thread.join()
        assert n > kills
        same_answers(st, want)
    finally:
        st.close()
        server.stop()


def test_a_half_open_connection_ends_in_a_clear_error_and_a_retry_is_exact(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path / "half").start()
    with Proxy("127.0.0.1", server.port) as proxy:
        st = bitstat.connect(
            proxy.url(), namespace=namespace(), schema=schema(), socket_timeout=0.5, deadline=1.5
        )
        want = model()
        first, second = batches(2, 300, seed=21)
        try:
            st.track_many(first)
            want.track_many(first)
            proxy.freeze()  # the peer vanished without a FIN: nothing moves, nothing closes
            with pytest.raises(bitstat.BatchError) as raised:
                st.track_many(second)
            assert raised.value.attempts >= 2 and "Timeout" in str(raised.value)
            proxy.thaw()  # (the frozen request may reach the server now: it lands once)
            st.track_many(second)  # the caller's naive retry
            want.track_many(second)
            same_answers(st, want)
        finally:
            proxy.thaw()
            st.close()
    server.stop()


def test_out_of_memory_refuses_a_batch_whole_and_the_retry_lands_once(tmp_path: Path) -> None:
    server = Server(tmp_path / "oom", "--maxmemory-policy", "noeviction").start()
    admin = server.client()
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", used + 1_500_000)
    st = bitstat.connect(server.url, namespace=namespace(), schema=schema())
    want = model()
    try:
        refused = None
        for n in range(200):
            batch = batches(1, 300, seed=1000 + n)[0]
            for e in batch:  # new users and values each batch: memory grows
                e["user"] += f"-{n}"
                e["ip"] += f".{n}"
            try:
                st.track_many(batch)
            except bitstat.BatchError as exc:
                refused = (exc, batch)
                break
            want.track_many(batch)
        assert refused is not None, "the server never ran out of memory"
        error, batch = refused
        assert "out of memory" in str(error) and error.attempts == 1  # not something a retry mends
        assert not error.may_have_landed and "nothing of it was recorded" in str(error)
        same_answers(st, want)  # nothing of the refused batch, everything of the others
        admin.config_set("maxmemory", 0)
        st.track_many(batch)
        want.track_many(batch)
        same_answers(st, want)
    finally:
        admin.close()
        st.close()
        server.stop()


def test_replicated_durability_waits_for_a_replica(tmp_path: Path) -> None:
    master = Server(tmp_path / "master", "--repl-diskless-sync-delay", "0").start()
    args = ("--replicaof", "127.0.0.1", str(master.port), "--repl-diskless-load", "disabled")
    replica = Server(tmp_path / "replica", *args).start()
    link = replica.client()
    wait_for_link(link)
    url = master.url + "?durability=replicated"
    st = bitstat.connect(url, namespace=namespace(), schema=schema(), deadline=1)
    want = model()
    first, second = batches(2, 200, seed=31)
    try:
        st.track_many(first)
        want.track_many(first)
        replica.kill()
        with pytest.raises(bitstat.BatchError) as raised:
            st.track_many(second)  # the master has it; no replica confirms it
        assert raised.value.may_have_landed and "replica" in str(raised.value)
        replica.start()
        wait_for_link(link)
        st.track_many(second)  # confirmed now, recorded once
        want.track_many(second)
        same_answers(st, want)
        with bitstat.connect(replica.url, namespace=st.namespace) as on_replica:
            same_answers(on_replica, want)  # what was acknowledged is on the replica
    finally:
        link.close()
        st.close()
        replica.stop()
        master.stop()


def test_replicated_durability_waits_for_a_replica_for_a_batch_large_enough_for_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that would go in parts on a single server goes whole when replicated (each of
    its writes confirmed), so no part is acknowledged before a replica has it."""
    from bitstat import record

    monkeypatch.setattr(record, "PART_MIN", 8)
    master = Server(tmp_path / "master", "--repl-diskless-sync-delay", "0").start()
    args = ("--replicaof", "127.0.0.1", str(master.port), "--repl-diskless-load", "disabled")
    replica = Server(tmp_path / "replica", *args).start()
    link = replica.client()
    wait_for_link(link)
    names = ("purchase", "refund", "visit")
    first, second = batches(2, 300, seed=35, names=names)
    st = bitstat.connect(
        master.url, namespace=namespace(), schema=schema(), deadline=1, durability="replicated"
    )
    want = model()
    try:
        assert st.track_many(first).recorded == len(first)
        want.track_many(first)
        replica.kill()
        with pytest.raises(bitstat.BatchError) as raised:
            st.track_many(second, batch_id="second")
        assert raised.value.may_have_landed and "replica" in str(raised.value)
        replica.start()
        wait_for_link(link)
        st.track_many(second, batch_id="second")
        want.track_many(second)
        admin = master.client()
        assert not admin.keys("*:part:*")  # (never in parts)
        admin.close()
        with bitstat.connect(replica.url, namespace=st.namespace) as on_replica:
            for name in names:
                same_answers(on_replica, want, event=name)
    finally:
        link.close()
        st.close()
        replica.stop()
        master.stop()


def test_replicated_durability_waits_for_a_replica_for_a_batch_found_in_by_its_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replicated try that finds its batch in parts, and then in whole (another writer of
    the id finished it meanwhile), answers once a replica has it, as a write would."""
    from bitstat import record
    from bitstat.keys import Keys

    monkeypatch.setattr(record, "PART_MIN", 8)
    master = Server(tmp_path / "master", "--repl-diskless-sync-delay", "0").start()
    args = ("--replicaof", "127.0.0.1", str(master.port), "--repl-diskless-load", "disabled")
    replica = Server(tmp_path / "replica", *args).start()
    link = replica.client()
    wait_for_link(link)
    ns = namespace()
    batch = batches(1, 300, seed=33, names=("purchase", "refund", "visit"))[0]
    writer = bitstat.connect(master.url, namespace=ns, schema=schema())
    st = bitstat.connect(master.url + "?durability=replicated", namespace=ns, deadline=1)
    keys = Keys(ns)
    marker = keys.batch(keys.meta_tag, "b")

    try:
        assert writer.track_many(batch, batch_id="b").recorded == len(batch)
        admin = master.client()
        assert admin.get(marker) == b"1" and admin.keys("*:part:*")  # in, in parts
        admin.close()
        replica.kill()
        marker_read_in_parts(monkeypatch, ns, "b")
        with pytest.raises(bitstat.BatchError) as raised:
            st.track_many(batch, batch_id="b")  # no replica to confirm what the master has
        assert "replica" in str(raised.value)
        replica.start()
        wait_for_link(link)
        assert st.track_many(batch, batch_id="b").recorded == 0  # confirmed, counted once
        want = model()
        want.track_many(batch)
        with bitstat.connect(replica.url, namespace=ns) as on_replica:
            for name in ("purchase", "refund", "visit"):
                same_answers(on_replica, want, event=name)
    finally:
        link.close()
        writer.close()
        st.close()
        replica.stop()
        master.stop()


def restart_after_failover(cluster: ReplicatedCluster, timeout: float = 60.0) -> None:
    """Start node 0 (a killed master) again once its replica reports itself master."""
    replica = cluster.nodes[cluster.masters].client()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if replica.info("replication")["role"] == "master":
                    break
            time.sleep(0.1)
    finally:
        replica.close()
        cluster.nodes[0].start()


def test_a_cluster_master_sigkilled_mid_ingest_fails_over_and_loses_nothing(
    tmp_path: Path,
) -> None:
    cluster = ReplicatedCluster(tmp_path / "cluster").start()
    # the actor sets on the master killed below (a random namespace may have no key there)
    ns = namespace_placed(cluster.masters, lambda meta, shard: shard == 0)
    # replicated: a batch is acknowledged once its shards' replicas have it, so the failover
    # that follows the kill loses none of what was acknowledged
    st = bitstat.connect(cluster.url(1), namespace=ns, schema=schema(), durability="replicated")
    want = model()
    try:
        n = 0
        killed_at = None
        while killed_at is None or n < killed_at + 8:
            if n == 4:
                cluster.nodes[0].kill()
                killed_at = n
                # its replica takes over; the dead master, restarted once it has (a fixed
                # delay raced a slow failover on a loaded machine), comes back as the new
                # master's replica (until then, that shard has none to confirm a batch)
                back = threading.Thread(target=restart_after_failover, args=(cluster,))
                back.start()
            batch = batches(1, 400, seed=500 + n)[0]
            assert st.track_many(batch).recorded == len(batch)
            want.track_many(batch)
            n += 1
        back.join()
        promoted = cluster.nodes[cluster.masters].client()
        assert promoted.info("replication")["role"] == "master"  # it did fail over
        promoted.close()
        same_answers(st, want)
    finally:
        st.close()
        cluster.stop()
