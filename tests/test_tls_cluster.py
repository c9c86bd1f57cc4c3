"""A cluster reached only over TLS (`rediss+cluster://`), as managed services require: three
TLS-only masters (client port and cluster bus) with a CA of the test's own, made by openssl.
Every answer is compared with the reference model; a URL that does not trust the CA, or that
speaks plain TCP to a TLS port, fails with a ConnectionError."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import bitstat
import bitstat.aio
from bitstat.store import cluster_address
from exactly import batches, model, same_answers, schema
from servers import DIE_WITH_US, SLOTS, _free_port, namespace_placed, stop_all

pytestmark = pytest.mark.slow


def test_a_tls_cluster_url_gives_the_cluster_client_its_tls_options() -> None:
    url = "rediss+cluster://ada:pw@node.example:7000?ssl_ca_certs=/ca.pem&ssl_check_hostname=no"
    assert cluster_address(url) == {
        "host": "node.example",
        "port": 7000,
        "username": "ada",
        "password": "pw",
        "ssl": True,
        "ssl_ca_certs": "/ca.pem",
        "ssl_check_hostname": False,
    }
    assert "ssl" not in (cluster_address("redis+cluster://node.example:7000") or {})


def tls_binary(root: Path) -> str:
    """A redis-server or valkey-server on the PATH built with TLS (the embedded one is not)."""
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path is None:
            continue
        # asked for a TLS port with no certificate, a server built without TLS says so
        probe = subprocess.run(
            [path, "--port", "0", "--tls-port", str(_free_port()), "--dir", str(root),
             "--tls-cert-file", "/nonexistent", "--tls-key-file", "/nonexistent"],
            capture_output=True, timeout=30,
        )  # fmt: skip
        if b"TLS support" not in probe.stdout + probe.stderr:
            return path
    pytest.skip("no redis-server or valkey-server with TLS on the PATH")


def make_certificates(root: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on the PATH")
    root.mkdir(parents=True, exist_ok=True)
    ca, ca_key = root / "ca.crt", root / "ca.key"
    crt, key, csr = root / "server.crt", root / "server.key", root / "server.csr"
    ext = root / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=bitstat test CA", "-keyout", ca_key, "-out", ca)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", key, "-out", csr)  # fmt: skip
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", crt)  # fmt: skip
    return {"ca": ca, "crt": crt, "key": key}


class TLSCluster:
    """`masters` nodes on loopback that accept TLS alone, on the client port and the bus."""

    def __init__(self, root: Path, masters: int = 3) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.masters = masters
        self.binary = tls_binary(root)
        self.certs = make_certificates(root / "certs")
        self.ports: list[int] = []
        self.buses: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def url(self, scheme: str = "rediss+cluster", query: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.ports[0]}{query}"

    @property
    def trusted(self) -> str:
        return f"?ssl_ca_certs={self.certs['ca']}"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(self.certs["ca"]),
            socket_timeout=5,
        )  # fmt: skip

    def start(self, timeout: float = 30.0) -> TLSCluster:
        try:
            for i in range(self.masters):
                self._start_node(i, timeout)
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_all(self.processes)

    def _start_node(self, index: int, timeout: float) -> None:
        node_dir = self.root / f"node{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        port, bus = _free_port(), _free_port()
        c = self.certs
        # fmt: off
        process = subprocess.Popen(
            [*DIE_WITH_US, self.binary,
             "--port", "0", "--tls-port", str(port), "--cluster-port", str(bus),
             "--tls-cluster", "yes", "--tls-replication", "yes", "--tls-auth-clients", "no",
             "--tls-cert-file", str(c["crt"]), "--tls-key-file", str(c["key"]),
             "--tls-ca-cert-file", str(c["ca"]),
             "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
             "--dir", str(node_dir), "--logfile", str(node_dir / "server.log"),
             "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # fmt: on
        self.processes.append(process)
        client = self.client(port)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log = (node_dir / "server.log").read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"TLS node {index} did not start:\n{log}") from None
                    time.sleep(0.05)
        finally:
            client.close()
        self.ports.append(port)
        self.buses.append(bus)

    def _form(self, timeout: float) -> None:
        nodes = [self.client(port) for port in self.ports]
        try:
            for i, node in enumerate(nodes):
                node.execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
                first, last = SLOTS * i // self.masters, SLOTS * (i + 1) // self.masters - 1
                node.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
            for port, bus in zip(self.ports[1:], self.buses[1:], strict=True):
                nodes[0].execute_command("CLUSTER MEET", "127.0.0.1", port, bus)
            deadline = time.monotonic() + timeout
            while not all(self._ok(node) for node in nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the TLS cluster did not converge")
                time.sleep(0.05)
        finally:
            for node in nodes:
                node.close()

    def _ok(self, node: redis.Redis) -> bool:
        info = node.execute_command("CLUSTER INFO")
        return bool(
            info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == self.masters
        )


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSCluster]:
    cluster = TLSCluster(tmp_path_factory.mktemp("tls-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_tls_cluster_records_and_answers_exactly(tls_cluster: TLSCluster) -> None:
    url = tls_cluster.url(query=tls_cluster.trusted + "&socket_timeout=10")
    want = model()
    # its meta and actor sets on two masters: the test really crosses nodes
    namespace = namespace_placed(tls_cluster.masters, lambda meta, shard: meta != shard)
    with bitstat.connect(url, namespace=namespace, schema=schema()) as st:
        for batch in batches(3, 400, seed=41):
            st.track_many(batch)
            want.track_many(batch)
        same_answers(st, want)
        keys = [tls_cluster.client(port) for port in tls_cluster.ports]
        try:  # the namespace's keys are on more than one master
            assert sum(1 for node in keys if node.dbsize()) >= 2
        finally:
            for node in keys:
                node.close()


def test_the_asyncio_api_reaches_a_tls_cluster_too(tls_cluster: TLSCluster) -> None:
    url = tls_cluster.url(query=tls_cluster.trusted)
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    (batch,) = batches(1, 300, seed=43)

    async def record() -> None:
        async with await bitstat.aio.connect(url, namespace=namespace, schema=schema()) as st:
            await st.track_many(batch)

    asyncio.run(record())
    want = model()
    want.track_many(batch)
    with bitstat.connect(url, namespace=namespace) as st:
        same_answers(st, want)


@pytest.mark.parametrize(
    ("scheme", "trusted"),
    [("rediss+cluster", False), ("redis+cluster", True)],
    ids=["ca-not-trusted", "plain-tcp-to-a-tls-port"],
)
def test_a_cluster_url_that_cannot_speak_to_it_is_a_connection_error(
    tls_cluster: TLSCluster, scheme: str, trusted: bool
) -> None:
    query = (tls_cluster.trusted + "&" if trusted else "?") + "socket_timeout=3"
    with pytest.raises(bitstat.ConnectionError):
        bitstat.connect(tls_cluster.url(scheme, query), namespace="t-never")


def test_server_info_adds_up_the_masters_memory(tls_cluster: TLSCluster) -> None:
    with bitstat.connect(tls_cluster.url(query=tls_cluster.trusted), namespace="t-info") as st:
        info = st.server_info()
    nodes = [tls_cluster.client(port) for port in tls_cluster.ports]
    try:
        each = [int(node.info("memory")["used_memory"]) for node in nodes]
    finally:
        for node in nodes:
            node.close()
    assert info["cluster"] and info["version"]
    assert sum(each) * 0.9 < info["used_memory"] < sum(each) * 1.1  # (memory moves a little)
