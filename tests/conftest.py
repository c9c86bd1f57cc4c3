"""Fixtures that run every test on real servers: embedded Valkey, a 3-master cluster, system Redis.

``server_url`` is parametrised over the backends, so a test that takes it runs once per backend;
``namespace`` keeps tests apart on a shared server, so nothing is ever flushed.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import servers
from browser import browser, page, page_errors  # noqa: F401 (fixtures of the dashboard tests)
from faultservers import Server
from proxy import Proxy

# The longest tests run first: collected last (by file name), the soak's minute and the scale
# benchmark's clusters ran alone at the end of `pytest -n 2` while the other worker had finished
LONGEST_FIRST = ("test_web_soak.py", "test_bench_scale.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)  # (stable: the rest keep
    # their order)


def pytest_xdist_auto_num_workers() -> int:
    """`-n auto`: half again as many workers as cores. A third of the suite's time waits on
    servers (a cluster forming, a restart, a soak's clients), which another worker then fills:
    on 2 cores 3 workers took 346 s where 2 took 396 s, and 4 took 367 s."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) * 3 // 2)


def pytest_configure() -> None:
    # SIGTERM ends a run as Ctrl-C does, so the fixtures' teardowns stop the servers they
    # started (by default the process died where it stood, and its test clusters ran on)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionfinish() -> None:
    servers.stop_spares()  # the cluster nodes started ahead for a next cluster


@pytest.fixture(scope="session")
def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the embedded server of this session (or xdist worker), in a temp data dir."""
    server = servers.EmbeddedServer(tmp_path_factory.mktemp("embedded"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Cluster]:
    """A 3-master cluster of this session (or xdist worker), formed and agreeing on its slots."""
    started = servers.Cluster(Path(tmp_path_factory.mktemp("cluster")))
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def cluster_url(cluster: servers.Cluster) -> str:
    """``redis+cluster://127.0.0.1:PORT`` of the session cluster."""
    return cluster.url


@pytest.fixture(scope="session")
def system_url() -> str:
    """``$BITSTAT_TEST_REDIS_URL``: a shared Redis that may hold foreign keys."""
    url = servers.system_url()
    if url is None:
        pytest.skip(f"{servers.SYSTEM_URL_ENV} is not set")
    return url


@pytest.fixture(
    params=[
        "embedded",
        "cluster",
        pytest.param(
            "system",
            marks=pytest.mark.skipif(
                not os.environ.get(servers.SYSTEM_URL_ENV),
                reason=f"{servers.SYSTEM_URL_ENV} is not set",
            ),
        ),
    ]
)
def server_url(request: pytest.FixtureRequest) -> str:
    """The URL of each backend in turn: ``embedded``, ``cluster``, ``system``."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace no other test uses, so tests never need to flush a database. On the system
    Redis (a shared server, maybe the user's own) its keys are deleted after the test, whatever
    the test left; the private servers go with the session."""
    ns = f"t-{uuid.uuid4().hex[:8]}"
    yield ns
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("server_url") == "system":
        servers.drop_namespace(request.getfixturevalue("system_url"), ns)


@pytest.fixture
def redis_client(server_url: str) -> Iterator[servers.Client]:
    """A raw redis-py client (``RedisCluster`` for the cluster) to peek at keys."""
    client = servers.client_for(server_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of the module's own, for tests that make faults in front of it."""
    started = Server(Path(tmp_path_factory.mktemp("faults"))).start()
    yield started
    started.stop()


@pytest.fixture
def proxy(fault_server: Server) -> Iterator[Proxy]:
    """A loopback proxy in front of `fault_server` that cuts replies on demand (proxy.py)."""
    with Proxy("127.0.0.1", fault_server.port) as p:
        yield p
