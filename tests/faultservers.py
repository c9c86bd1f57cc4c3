"""Servers the fault tests kill: one valkey-server on a TCP port (restarted on the same port and
data dir), a replica of it, and a cluster of masters with a replica each."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from bitstat import embedded
from servers import _answers, _free_port


class Server:
    """A valkey-server on loopback, in `root`, started with `args` (e.g. AOF settings)."""

    def __init__(self, root: Path, *args: str, port: int | None = None) -> None:
        self.root = root
        self.args = list(args)
        self.port = port or _free_port()
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
