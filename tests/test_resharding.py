"""A cluster resharded under a namespace's feet, on clusters of 3 masters started here: the slots
that hold the namespace's keys (its tags `{ns}`, `{ns:s0}`, `{ns:e:purchase}`, `{ns:ids}`) move
while batches are written, with and without batch ids, and while every answer is read. A call
that meets a slot on the move is redirected (MOVED, ASK) or refused until the move ends
(TRYAGAIN: a script's keys are half on each node); nothing is lost or counted twice, and every
answer equals the reference model's."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import bitstat
import bitstat.aio
from bitstat import embedded
from bitstat.keys import Keys
from exactly import LABELS, batches, model, same_answers, schema
from model import Model
from servers import SLOTS, Cluster

pytestmark = pytest.mark.slow
# how long the reshard under load runs: BITSTAT_SOAK_SECONDS=60 for the full soak
SECONDS = float(os.environ.get("BITSTAT_SOAK_SECONDS", "8"))


def tags(ns: str) -> list[str]:
    keys = Keys(ns)
    return [keys.meta_tag, keys.shard_tag(0), keys.event_tag("purchase"), keys.ids_tag]


def text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


class Nodes:
    """The test's hands on a cluster's nodes: who owns a slot, and a slot moved step by step
    as `valkey-cli --cluster reshard` moves it (IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.clients = [cluster.node(i) for i in range(cluster.masters)]
        self.ids = [text(c.execute_command("CLUSTER MYID")) for c in self.clients]

    def owner(self, slot: int) -> int:
        for first, last, (_, port, *_), *_ in self.clients[0].execute_command("CLUSTER SLOTS"):
            if first <= slot <= last:
                return self.cluster.ports.index(port)
        raise AssertionError(f"slot {slot} is not served")

    def keys(self, node: int, slot: int) -> list[bytes]:
        found: list[bytes] = self.clients[node].execute_command(
            "CLUSTER GETKEYSINSLOT", slot, 100_000
        )
        return found

    def begin(self, slot: int, source: int, target: int, share: float) -> None:
        """Open the move of `slot` and migrate `share` of its keys."""
        self.clients[target].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", self.ids[source])
        self.clients[source].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", self.ids[target])
        keys = self.keys(source, slot)
        self.migrate(source, target, keys[: int(len(keys) * share)])

    def finish(self, slot: int, source: int, target: int) -> None:
        """Migrate the rest of the slot's keys and give the slot to `target`, everywhere."""
        self.migrate(source, target, self.keys(source, slot))
        for node in [
            target,
            source,
            *(n for n in range(len(self.ids)) if n not in (source, target)),
        ]:
            self.clients[node].execute_command("CLUSTER SETSLOT", slot, "NODE", self.ids[target])

    def migrate(self, source: int, target: int, keys: list[bytes]) -> None:
        port = self.cluster.ports[target]
        for at in range(0, len(keys), 10):  # 10 a call, as valkey-cli's --cluster-pipeline
            part = keys[at : at + 10]
            self.clients[source].execute_command(
                "MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *part
            )

    def close(self) -> None:
        for c in self.clients:
            c.close()


def namespace_layout(ns: str) -> tuple[list[list[tuple[int, int]]], list[int]]:
    """(slot ranges per node, the namespace's slots): node 1 serves the namespace's slots, node
    0 every other, node 2 none (a master just added, as clients know no slot of)."""
    slots = sorted({redis.crc.key_slot(t.encode()) for t in tags(ns)})
    rest: list[tuple[int, int]] = []
    first = 0
    for s in [*slots, SLOTS]:
        if first <= s - 1:
            rest.append((first, s - 1))
        first = s + 1
    return [rest, [(s, s) for s in slots], []], slots


@pytest.fixture
def laid_out(tmp_path: Path) -> Iterator[tuple[Cluster, Nodes, str, list[int]]]:
    """(cluster, its nodes, namespace, the namespace's slots), laid out as namespace_layout."""
    yield from cluster_laid_out(tmp_path)


def cluster_laid_out(tmp_path: Path) -> Iterator[tuple[Cluster, Nodes, str, list[int]]]:
    """The `laid_out` fixture's cluster, for other modules' fixtures."""
    ns = f"t-{uuid.uuid4().hex[:8]}"
    layout, slots = namespace_layout(ns)
    cluster = Cluster(tmp_path / "cluster", slots=layout)
    cluster.start()
    nodes = Nodes(cluster)
    for node in nodes.clients:  # a master that gives its last slot away stays a master
        node.config_set("cluster-allow-replica-migration", "no")
    yield cluster, nodes, ns, slots
    nodes.close()
    cluster.stop()


def renamed(batch: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """The batch by other users (new ids: the id map is written too)."""
    return [{**e, "user": f"{e['user']}-{suffix}"} for e in batch]


def async_answers(url: str, ns: str, want: Model) -> None:
    """The main answers through bitstat.aio, each equal to the model's."""

    async def ask() -> None:
        st = await bitstat.aio.connect(url, namespace=ns, deadline=30)
        try:
            for label in LABELS:
                assert await st.total("purchase", label) == want.total("purchase", label)
                assert await st.unique("purchase", label) == want.unique("purchase", label)
                got = await st.counts("purchase", "country", label)
                assert got == want.counts("purchase", "country", label)
        finally:
            await st.close()

    asyncio.run(ask())


def async_write(url: str, ns: str, batch: list[dict[str, Any]]) -> int:
    async def write() -> int:
        st = await bitstat.aio.connect(url, namespace=ns, deadline=30)
        try:
            return (await st.track_many(batch)).recorded
        finally:
            await st.close()

    return asyncio.run(write())


def test_slots_moved_step_by_step_under_writes_and_reads(
    laid_out: tuple[Cluster, Nodes, str, list[int]],
) -> None:
    """Each slot of the namespace is moved twice (the first time to a master that had no slot),
    stopped half way for a moment (half its keys on each node): once while every answer is
    read, sync and asyncio, once while batches are written by a caller with batch ids, one
    without and an asyncio one."""
    cluster, nodes, ns, slots = laid_out
    url = cluster.url
    with_ids = bitstat.connect(url, namespace=ns, schema=schema(), deadline=30)
    without = bitstat.connect(url, namespace=ns, deadline=30)
    want = model()
    for n, batch in enumerate(batches(3, 300, seed=1)):
        with_ids.track_many(batch, batch_id=f"setup-{n}")
        want.track_many(batch)
    try:
        for n, slot in enumerate(slots):
            for phase in ("reads", "writes"):
                source = nodes.owner(slot)
                target = (source + 1) % cluster.masters
                nodes.begin(slot, source, target, share=0.5)
                assert nodes.keys(source, slot) and nodes.keys(target, slot), "not half way"
                # the move ends a moment later, while the calls below wait on it (reads: longer
                # than redis-py's own tries of a call refused with TRYAGAIN, 16 in ~0.4 s)
                pause = 0.8 if phase == "reads" else 0.3
                ender = threading.Timer(pause, nodes.finish, (slot, source, target))
                ender.start()
                if phase == "reads":
                    async_answers(url, ns, want)
                    same_answers(without, want)
                else:
                    first, second, third = (
                        renamed(b, f"{n}") for b in batches(3, 200, seed=10 + n)
                    )
                    assert with_ids.track_many(first, batch_id=f"b-{n}").recorded == 200
                    want.track_many(first)
                    assert without.track_many(second).recorded == 200
                    want.track_many(second)
                    assert async_write(url, ns, third) == 200
                    want.track_many(third)
                ender.join()
                assert nodes.owner(slot) == target and not nodes.keys(source, slot)
                same_answers(with_ids, want)
    finally:
        with_ids.close()
        without.close()


def reshard(cluster: Cluster, source: str, target: str, count: int) -> None:
    """`valkey-cli --cluster reshard`: `count` slots from node `source` to node `target`."""
    cli = Path(embedded.find_server_binary()).with_name("valkey-cli")
    # fmt: off
    done = subprocess.run(
        [str(cli), "--cluster", "reshard", f"127.0.0.1:{cluster.ports[0]}",
         "--cluster-from", source, "--cluster-to", target, "--cluster-slots", str(count),
         "--cluster-yes"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    # fmt: on
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Moving slot" in done.stdout, done.stdout[-3000:]


def settled(nodes: Nodes, slots: list[int], owner: int, timeout: float = 30.0) -> None:
    """Until every node says `owner` serves `slots` (valkey-cli checks agreement first)."""
    deadline = time.monotonic() + timeout
    port = nodes.cluster.ports[owner]
    while True:
        views = [
            {
                s
                for first, last, (_, p, *_), *_ in c.execute_command("CLUSTER SLOTS")
                if p == port
                for s in range(first, last + 1)
            }
            for c in nodes.clients
        ]
        if all(set(slots) <= v for v in views):
            return
        assert time.monotonic() < deadline, f"slots {slots} not on node {owner} everywhere"
        time.sleep(0.05)


def test_valkey_cli_reshard_under_load(laid_out: tuple[Cluster, Nodes, str, list[int]]) -> None:
    """`valkey-cli --cluster reshard` moves the namespace's slots from node to node, again and
    again, while two callers (one with batch ids, one without) write batches at once and every
    answer is read between their rounds: each answer exact."""
    cluster, nodes, ns, slots = laid_out
    callers = [bitstat.connect(cluster.url, namespace=ns, schema=schema()) for _ in range(3)]
    with_ids, without, reader = callers
    want = model()
    stop = threading.Event()
    moves: list[int] = []
    failures: list[BaseException] = []

    def resharder() -> None:
        try:
            here, there = 1, 2
            while not stop.is_set():
                reshard(cluster, nodes.ids[here], nodes.ids[there], len(slots))
                settled(nodes, slots, there)
                moves.append(there)
                here, there = there, here
        except BaseException as exc:
            failures.append(exc)

    def write(st: bitstat.Stats, batch: list[dict[str, Any]], batch_id: str | None) -> None:
        try:
            assert st.track_many(batch, batch_id=batch_id).recorded == len(batch)
        except BaseException as exc:
            failures.append(exc)

    mover = threading.Thread(target=resharder)
    rounds = 0
    try:
        with_ids.track_many(batches(1, 300, seed=2)[0], batch_id="setup")
        want.track_many(batches(1, 300, seed=2)[0])
        mover.start()
        end = time.monotonic() + SECONDS
        while (time.monotonic() < end or len(moves) < 2) and not failures:
            first, second = (renamed(b, f"r{rounds}") for b in batches(2, 150, seed=100 + rounds))
            writers = [
                threading.Thread(target=write, args=(with_ids, first, f"b-{rounds}")),
                threading.Thread(target=write, args=(without, second, None)),
            ]
            for w in writers:
                w.start()
            for w in writers:
                w.join()
            assert not failures, failures
            want.track_many(first)
            want.track_many(second)
            same_answers(reader, want)
            rounds += 1
    finally:
        stop.set()
        if mover.is_alive():
            mover.join()
        for st in callers:
            st.close()
    assert not failures, failures
    assert len(moves) >= 2 and rounds >= 2, (moves, rounds)
