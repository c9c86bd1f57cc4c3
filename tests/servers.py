"""Real servers for the test session: the embedded server, a 3-master cluster, the system Redis.

Each pytest (or xdist worker) process starts its own servers in its own temp dir and stops them
at the end; nothing here flushes a database, so tests isolate themselves by namespace.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redis.cluster
import redis.crc

import bitstat
from bitstat import embedded
from bitstat.keys import Keys

SYSTEM_URL_ENV = "BITSTAT_TEST_REDIS_URL"
CLUSTER_SCHEME = "redis+cluster://"
SLOTS = 16384

Client = redis.Redis | redis.cluster.RedisCluster


def client_for(url: str) -> Client:
    """A redis-py client for any backend URL, including bitstat's ``redis+cluster://``."""
    if url.startswith(CLUSTER_SCHEME):
        return redis.cluster.RedisCluster.from_url("redis://" + url[len(CLUSTER_SCHEME) :])
    return redis.Redis.from_url(url)


def system_url() -> str | None:
    """The system Redis named by ``$BITSTAT_TEST_REDIS_URL``, checked to answer; or None."""
    url = os.environ.get(SYSTEM_URL_ENV)
    if not url:
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"{SYSTEM_URL_ENV}={url} does not answer PING") from exc
    finally:
        client.close()
    return url


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether `condition` holds within `timeout` seconds (what another connection sent
    before it may still be on the server's way)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def drop_namespace(url: str, namespace: str) -> None:
    """Delete every key of `namespace` on the server at `url` (found by SCAN, as bitstat does)."""
    with bitstat.connect(url, namespace=namespace) as st:
        st.drop()


class EmbeddedServer:
    """The server of ``bitstat.embedded`` in a private data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url: str | None = None

    def start(self) -> str:
        self.url = embedded.ensure_server(self.data_dir)
        return self.url

    def stop(self) -> None:
        embedded.stop(self.data_dir)


class Cluster:
    """A Redis Cluster of ``masters`` nodes on loopback, no replicas: slots split evenly, or
    ``slots[i]`` the (first, last) ranges of master i (none: a master that joined empty)."""

    def __init__(
        self,
        root: Path,
        masters: int = 3,
        binary: str | None = None,
        slots: list[list[tuple[int, int]]] | None = None,
    ) -> None:
        self.root = root
        self.masters = masters
        self.binary = binary or embedded.find_server_binary()
        bounds = [SLOTS * i // masters for i in range(masters + 1)]
        self.slots = slots or [[(bounds[i], bounds[i + 1] - 1)] for i in range(masters)]
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._nodes: list[_Node] = []

    @property
    def url(self) -> str:
        return f"{CLUSTER_SCHEME}127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 30.0) -> str:
        try:
            for index in range(self.masters):
                self._start_node(index, timeout)
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        _start_spares(self.binary, self.masters)  # for the next cluster, while this one works
        return self.url

    def stop(self) -> None:
        stop_all(self._processes)
        for node in self._nodes:
            node.remove_dir()
        self._nodes.clear()

    def node(self, index: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.ports[index], socket_timeout=5)

    def _start_node(self, index: int, timeout: float, attempts: int = 3) -> None:
        spare = _take_spare(self.binary, timeout)
        if spare is not None:
            self._adopt(spare)
            return
        node_dir = self.root / f"node{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            node = _Node.start(self.binary, NODE_TIMEOUT_MS, node_dir)
            if _answers(node.process, node.port, timeout):
                self._adopt(node)
                return
            node.stop()
        log = node_dir / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"cluster node {index} did not start:\n{tail}")

    def _adopt(self, node: _Node) -> None:
        self.ports.append(node.port)
        self._processes.append(node.process)
        self._nodes.append(node)

    def _form(self, timeout: float) -> None:
        nodes = [self.node(i) for i in range(self.masters)]
        for i, node in enumerate(nodes):
            node.execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
            if self.slots[i]:
                ranges = [bound for pair in self.slots[i] for bound in pair]
                node.execute_command("CLUSTER ADDSLOTSRANGE", *ranges)
        buses = [int(node.config_get("cluster-port")["cluster-port"]) for node in nodes]
        for i, node in enumerate(nodes):  # a full mesh of MEETs saves rounds of gossip
            for port, bus in list(zip(self.ports, buses, strict=True))[i + 1 :]:
                node.execute_command("CLUSTER MEET", "127.0.0.1", port, bus)
        deadline = time.monotonic() + timeout
        try:
            while not self._agreed(nodes):
                if time.monotonic() > deadline:
                    views = "\n".join(str(n.execute_command("CLUSTER NODES")) for n in nodes)
                    raise RuntimeError(f"cluster did not converge within {timeout}s:\n{views}")
                time.sleep(0.02)
            for node in nodes:  # spares formed it with a short timeout (see _spares)
                node.config_set("cluster-node-timeout", NODE_TIMEOUT_MS)
        finally:
            for node in nodes:
                node.close()

    def _agreed(self, nodes: list[redis.Redis]) -> bool:
        views = set()
        for node in nodes:
            info = node.execute_command("CLUSTER INFO")
            if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != self.masters:
                return False
            views.add(_slot_map(node.execute_command("CLUSTER NODES")))
        return len(views) == 1 and frozenset() not in views


def master_of(slot: int, masters: int) -> int:
    """The master that serves `slot` when `masters` masters split the slots evenly, as the test
    clusters do (master i: slots SLOTS * i // masters and up)."""
    return max(i for i in range(masters) if SLOTS * i // masters <= slot)


def namespace_placed(masters: int, wanted: Callable[[int, int], bool]) -> str:
    """A fresh namespace whose masters of its meta tag and of its first shard's tag (where its
    actor sets live) satisfy `wanted(meta, shard)`: a random namespace may sit anywhere, and a
    test of a cluster wants its keys where the test acts."""
    while True:
        ns = f"t-{uuid.uuid4().hex[:8]}"
        keys = Keys(ns)
        meta, shard = (
            master_of(redis.crc.key_slot(tag.encode()), masters)
            for tag in (keys.meta_tag, keys.shard_tag(0))
        )
        if wanted(meta, shard):
            return ns


def _slot_map(cluster_nodes: dict[str, dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """``address -> slots`` of the masters in one node's CLUSTER NODES, empty if any is unwell."""
    view = set()
    for address, node in cluster_nodes.items():
        if set(node["flags"].split(",")) & {"fail", "fail?", "handshake", "noaddr"}:
            return frozenset()
        if not node["connected"]:
            return frozenset()
        view.add((address, repr(sorted(node["slots"]))))
    return frozenset(view)


NODE_TIMEOUT_MS = 5000


# A server this process starts gets SIGKILL when the process dies, however it dies (a worker
# SIGKILLed, say: no teardown runs), where setpriv is there (Linux's util-linux). The signal
# goes when the starting *thread* ends: nodes are started from the main thread.
DIE_WITH_US = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


class _Node:
    """A cluster-enabled server process, not in a cluster yet."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, dir: Path, spare: bool):
        self.process, self.port, self.dir, self.spare = process, port, dir, spare

    @classmethod
    def start(cls, binary: str, timeout_ms: int, node_dir: Path | None = None) -> _Node:
        spare = node_dir is None
        node_dir = Path(tempfile.mkdtemp(prefix="bitstat-node-")) if node_dir is None else node_dir
        port, bus_port = _free_port(), _free_port()
        # fmt: off
        process = subprocess.Popen(
            [*DIE_WITH_US, binary,
             "--port", str(port), "--cluster-port", str(bus_port),
             "--bind", "127.0.0.1", "--protected-mode", "yes",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(timeout_ms),
             "--dir", str(node_dir), "--logfile", str(node_dir / "server.log"),
             "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # fmt: on
        return cls(process, port, node_dir, spare)

    def stop(self) -> None:
        stop_all([self.process])
        self.remove_dir()

    def remove_dir(self) -> None:
        if self.spare:  # (a cluster's own node dirs stay in its root, for a failed test's logs)
            shutil.rmtree(self.dir, ignore_errors=True)


# A new cluster node stays "fail" for its first 2 s (Valkey's CLUSTER_WRITABLE_DELAY): a cluster
# of nodes just started waits 2 s however fast it forms. Once a process has formed a cluster,
# nodes for the next start ahead and wait those seconds out while tests run. A master that spent
# them without slots counts itself in a minority, and waits its node timeout (at least 0.5 s)
# before "ok": spares start with that least timeout, set to the usual once formed.
SPARE_TIMEOUT_MS = 500
_spares: dict[str, list[_Node]] = {}


def _take_spare(binary: str, timeout: float) -> _Node | None:
    spares = _spares.get(binary, [])
    while spares:
        node = spares.pop(0)
        if _answers(node.process, node.port, timeout):
            return node
        node.stop()
    return None


def _start_spares(binary: str, wanted: int) -> None:
    spares = _spares.setdefault(binary, [])
    while len(spares) < wanted:
        spares.append(_Node.start(binary, SPARE_TIMEOUT_MS))


@atexit.register
def stop_spares() -> None:
    """Stop the nodes started ahead (at exit, and at the end of a pytest session)."""
    for spares in _spares.values():
        while spares:
            spares.pop().stop()


def _answers(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                time.sleep(0.02)
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate server processes, kill those still running after 10 s, and forget them."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    processes.clear()
