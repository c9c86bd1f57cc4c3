"""Shared machinery of the benchmark: the server, key clean-up, timing, figures, machine facts."""

from __future__ import annotations

import gc
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIMES = "\u00d7"  # the multiplication sign of ratios

# --------------------------------------------------------------------------------------------
# Figures: what a scenario measured, and how a table row compares the two libraries.


@dataclass
class Cell:
    """One measured figure (or a reason why there is none)."""

    value: float | None
    unit: str  # "events/s", "ms", "bytes", "B/id"
    label: str = ""  # which variant, e.g. "mark_event default"
    runs: list[float] = field(default_factory=list)  # every repetition, same unit as value
    note: str = ""  # how it was measured (sample size, extrapolation...)
    text: str = ""  # shown instead of a number when value is None ("—", "error: ...")
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "unit": self.unit}
        for name in ("label", "note", "text"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.runs:
            out["runs"] = self.runs
        if self.extra:
            out["extra"] = self.extra
        return out


def absent(text: str, unit: str = "") -> Cell:
    return Cell(None, unit, text=text)


@dataclass(frozen=True)
class Target:
    op: str  # ">=" or "<="
    value: float
    unit: str

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.value if self.op == ">=" else value <= self.value

    def text(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {fmt(self.value, self.unit)}"


@dataclass
class Row:
    """One line of the table: bitstat against bitmapist (zero, one or several variants)."""

    scenario: str  # "1a", "2b", ...
    title: str
    bitstat: Cell
    bitmapist: list[Cell]
    target: Target | None = None
    higher_is_better: bool = True
    info: bool = False  # context figure (no target, not a headline)

    def ratios(self) -> list[float | None]:
        out: list[float | None] = []
        mine = self.bitstat.value
        for other in self.bitmapist:
            if mine is None or other.value is None or mine <= 0 or other.value <= 0:
                out.append(None)
            elif self.higher_is_better:
                out.append(mine / other.value)
            else:
                out.append(other.value / mine)
        return out

    def met(self) -> bool | None:
        return self.target.met(self.bitstat.value) if self.target else None

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "bitstat": self.bitstat.to_json(),
            "bitmapist": [c.to_json() for c in self.bitmapist],
            "target": None
            if self.target is None
            else {"op": self.target.op, "value": self.target.value, "unit": self.target.unit},
            "target_met": self.met(),
            "ratios_bitstat_vs_bitmapist": self.ratios(),
            "higher_is_better": self.higher_is_better,
        }


def fmt(value: float | None, unit: str) -> str:
    """A figure as people read it: 1,234,567 events/s, 1.23 ms, 131.1 KB, 55.2 B/id."""
    if value is None:
        return "—"
    if unit == "events/s":
        return f"{value:,.0f} ev/s"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit == "bytes":
        for size, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    if unit == "B/id":
        return f"{value:.1f} B/id"
    if unit == "s":
        return f"{value:.1f} s"
    return f"{value:,.6g} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{TIMES}{ratio:,.0f}" if ratio >= 10 else f"{TIMES}{ratio:.1f}"


# --------------------------------------------------------------------------------------------
# Timing


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


# The server of the running `with Server(...)` block: timings wait for its background work.
_active: list[Server] = []


def settle() -> None:
    """Before a clock starts: wait until the server has no AOF rewrite or RDB save running.
    Either forks a child that competes for this machine's 2 cores and its memory bandwidth;
    a latency taken meanwhile measures the fork, not the query."""
    for server in _active:
        server.settle()


@contextmanager
def quiet_heap() -> Iterator[None]:
    """A timed region whose collector leaves the run's own objects alone: garbage collected,
    then everything alive frozen (`gc.freeze`) until the region ends. The run holds its
    generated events (400,000 dicts and more), which a library's process would not: each full
    collection a library's garbage sets off would walk them all, and a library would be timed
    on how much garbage it makes against the harness's heap (docs/performance.md: with them
    walked, bitmapist's pipeline recorded 12-22% fewer events a second)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of `fn` takes (`quiet_heap`: runs start alike)."""
    settle()
    with quiet_heap():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def latencies_ms(fn: Callable[[], Any], runs: int, warmup: int = 2) -> list[float]:
    """`runs` timings of `fn` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    settle()
    out = []
    with quiet_heap():
        for _ in range(runs):
            start = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - start) / 1e6)
    return out


# --------------------------------------------------------------------------------------------
# The server


class Server:
    """A private embedded server for the run (default), or a given single Redis/Valkey URL."""

    def __init__(self, url: str | None) -> None:
        self.given_url = url
        self.url = url or ""
        self.private = url is None
        self.data_dir: str | None = None
        self.client: redis.Redis | None = None

    def __enter__(self) -> Server:
        if self.private:
            from bitstat import embedded

            self.data_dir = tempfile.mkdtemp(prefix="bitstat-bench-")
            self.url = embedded.ensure_server(self.data_dir)
        elif urlsplit(self.url).scheme not in ("redis", "rediss", "unix"):
            raise SystemExit(
                f"--url must name one Redis/Valkey server (redis://, rediss://, unix://),"
                f" got {self.url!r}: bitmapist cannot use a Cluster, and both libraries must"
                " run on the same server"
            )
        self.client = redis.Redis.from_url(self.url)
        self.client.ping()
        self.waited = 0.0  # seconds spent waiting for background rewrites (see settle)
        self.waits = 0
        _active.append(self)
        return self

    def settle(self, timeout: float = 300.0) -> None:
        """Wait (at most `timeout` s) until no AOF rewrite or RDB save is running or due."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            info = self.redis.info("persistence")
            busy = ("aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress")
            if not any(int(info.get(flag, 0)) for flag in busy):
                break
            time.sleep(0.05)
        waited = time.monotonic() - began
        if waited > 0.01:
            self.waited += waited
            self.waits += 1

    def __exit__(self, *exc: object) -> None:
        if self in _active:
            _active.remove(self)
        if self.client is not None:
            self.client.close()
        if self.private and self.data_dir is not None:
            from bitstat import embedded

            try:
                embedded.stop(self.data_dir)
            finally:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def redis(self) -> redis.Redis:
        assert self.client is not None
        return self.client

    def bitmapist_kwargs(self) -> tuple[str, int, dict[str, Any]]:
        """(host, port, extra redis.StrictRedis arguments) for `bitmapist.setup_redis`.

        bitmapist builds `redis.StrictRedis(host=host, port=port, **kw)`, so a unix socket is
        reached by passing `unix_socket_path` through `kw` (redis-py then ignores host/port).
        """
        parts = urlsplit(self.url)
        kw: dict[str, Any] = {}
        if parts.username:
            kw["username"] = unquote(parts.username)
        if parts.password:
            kw["password"] = unquote(parts.password)
        if parts.scheme == "unix":
            kw["unix_socket_path"] = unquote(parts.path)
            db = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("db")
            if db:
                kw["db"] = int(db)
            return "localhost", 6379, kw
        if parts.scheme == "rediss":
            kw["ssl"] = True
        path = parts.path.strip("/")
        if path.isdigit():
            kw["db"] = int(path)
        return parts.hostname or "127.0.0.1", parts.port or 6379, kw

    # clean-up
    def delete_matching(self, *patterns: str) -> int:
        """UNLINK every key matching the SCAN patterns; returns how many were removed."""
        removed = 0
        for pattern in patterns:
            chunk: list[bytes] = []
            for key in self.redis.scan_iter(match=pattern, count=5000):
                chunk.append(key)
                if len(chunk) >= 1000:
                    removed += int(self.redis.unlink(*chunk))
                    chunk = []
            if chunk:
                removed += int(self.redis.unlink(*chunk))
        return removed

    def keys_matching(self, pattern: str) -> list[bytes]:
        return list(self.redis.scan_iter(match=pattern, count=5000))

    def memory_usage(self, keys: Iterable[bytes | str]) -> int:
        """Sum of exact `MEMORY USAGE key SAMPLES 0` over `keys`, pipelined."""
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for key in keys:
            pipe.memory_usage(key, samples=0)
            n += 1
        return sum(int(v or 0) for v in pipe.execute()) if n else 0


def glob_escape(text: str) -> str:
    """Escape SCAN glob characters so a prefix matches only itself."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def namespace_patterns(namespace: str) -> tuple[str, str]:
    """SCAN patterns of every key of a bitstat namespace: `{ns}...` and `{ns:...}...`."""
    from bitstat.keys import escape

    ns = glob_escape(escape(namespace))
    return "{" + ns + "}*", "{" + ns + ":*"


def token() -> str:
    return secrets.token_hex(4)


# --------------------------------------------------------------------------------------------
# Machine facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine_info(server: Server) -> dict[str, Any]:
    import bitstat

    info = server.redis.info("server")
    try:
        config = server.redis.config_get("append*")
    except redis.RedisError:
        config = {}
    dirty = _git("status", "--porcelain", "--", "src")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "load_average_at_start": _load_average(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _mem_total(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "server": {
            "name": "valkey" if "valkey_version" in info else "redis",
            "version": info.get("valkey_version") or info.get("redis_version"),
            "private_embedded": server.private,
            "url_scheme": urlsplit(server.url).scheme,
            "appendonly": config.get("appendonly"),
            "appendfsync": config.get("appendfsync"),
        },
        "bitstat": {
            "version": bitstat.__version__,
            "git_commit": _git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes_in_src": bool(dirty),
        },
        "bitmapist": _version("bitmapist"),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "numpy": _version("numpy"),
    }
