"""Servers the fault tests kill: one valkey-server on a TCP port (restarted on the same port and
data dir), a replica of it, and a cluster of masters with a replica each."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from bitstat import embedded
from servers import _answers

PORT_LOCKS = Path(tempfile.gettempdir()) / "bitstat-test-ports"
_held: dict[int, int] = {}  # port -> the fd of its lock file, open while this process lives


def restartable_port() -> int:
    """A loopback port for a server a test kills and starts again on the same port.

    Below the kernel's ephemeral range, so while the server is down no other socket is handed
    the port (another test's `_free_port`, or the client reconnecting, which would connect to
    itself and read its own requests as answers); held by a lock file for the life of this
    process, so no other test process (an xdist worker) takes it either."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    first = max(1024, low - 12_000)
    PORT_LOCKS.mkdir(exist_ok=True)
    for _ in range(1_000):
        port = random.randrange(first, low)
        if port in _held:
            continue
        fd = os.open(PORT_LOCKS / str(port), os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # something else of this machine listens there
                os.close(fd)
                continue
        _held[port] = fd
        return port
    raise RuntimeError(f"no free port in {first}..{low - 1} for a restartable server")


class Server:
    """A valkey-server on loopback, in `root`, started with `args` (e.g. AOF settings)."""

    def __init__(self, root: Path, *args: str, port: int | None = None) -> None:
        self.root = root
        self.args = list(args)
        self.port = port or restartable_port()
        self.binary = embedded.find_server_binary()
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> Server:
        # fmt: off
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.root), "--logfile", str(self.root / "server.log"),
             "--save", "", *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # fmt: on
        if not _answers(self.process, self.port, timeout):
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"server on {self.port} did not start:\n{log}")
        client = self.client()
        try:  # the server answering is the one just started, not another on its port
            answering = client.info("server")["process_id"]
        finally:
            client.close()
        if answering != self.process.pid:
            raise RuntimeError(f"port {self.port}: process {answering} answers, not ours")
        self.wait_loaded(timeout)
        return self

    def wait_loaded(self, timeout: float = 30.0) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    if client.info("persistence").get("loading") == 0:
                        return
                except redis.BusyLoadingError:
                    pass
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write of anything."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)


def wait_for_link(replica: redis.Redis, timeout: float = 60.0) -> None:
    """Until the replica's link to its master is up (a full sync done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = replica.info("replication")
        if info.get("role") == "slave" and info.get("master_link_status") == "up":
            return
        time.sleep(0.05)
    raise RuntimeError(f"replica link not up within {timeout} s: {replica.info('replication')}")


class ReplicatedCluster:
    """A cluster of `masters` masters with one replica each, on loopback, failing over fast
    (cluster-node-timeout 1 s); started formed, every replica's link up."""

    def __init__(self, root: Path, masters: int = 3) -> None:
        self.masters = masters
        self.nodes = [
            Server(
                root / f"node{i}",
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", "1000", "--cluster-port", str(restartable_port())),
                *("--appendonly", "no", "--repl-diskless-sync-delay", "0"),
            )
            for i in range(2 * masters)
        ]

    def url(self, node: int = 0) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[node].port}"

    def start(self, timeout: float = 60.0) -> ReplicatedCluster:
        for node in self.nodes:
            node.start()
        clients = [n.client() for n in self.nodes]
        try:
            ids = [c.execute_command("CLUSTER MYID") for c in clients]
            ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
            bounds = [16384 * i // self.masters for i in range(self.masters + 1)]
            for i in range(self.masters):
                clients[i].execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
                clients[i].execute_command("CLUSTER ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
            for node in self.nodes[1:]:
                bus = int(clients[0].config_get("cluster-port")["cluster-port"])
                node_client = node.client()
                node_client.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port, bus)
                node_client.close()
            deadline = time.monotonic() + timeout
            while any(
                int(c.execute_command("CLUSTER INFO")["cluster_known_nodes"]) < len(self.nodes)
                for c in clients
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("cluster nodes did not meet")
                time.sleep(0.05)
            for i in range(self.masters):
                replica = clients[self.masters + i]
                while True:  # the replica must know its master as one first
                    try:
                        replica.execute_command("CLUSTER REPLICATE", ids[i])
                        break
                    except redis.ResponseError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
            for replica in clients[self.masters :]:
                wait_for_link(replica, timeout)
            while any(c.execute_command("CLUSTER INFO")["cluster_state"] != "ok" for c in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError("cluster not ok")
                time.sleep(0.05)
        finally:
            for c in clients:
                c.close()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
