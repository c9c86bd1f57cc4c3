"""The realistic profile's figures: what a door measured, Redis bytes per key family, and the
Markdown tables (benchmarks/realistic.py runs the doors)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import harness

# door -> what it is (the table's first column)
DOORS = {
    "track": "bitstat `st.track(e)`, one call per event",
    "track-ahead": "bitstat `st.track(e)`, `connect(track_ahead=100)`, one call per event",
    "tracker": "bitstat `st.tracker()`: `t.track(e)` per event, then `t.flush()`",
    "live": "bitstat `st.track_many`, live stream",
    "live-large": "bitstat `st.track_many`, live stream, large batches",
    "backfill": "bitstat `st.track_many`, backfill over 8 weeks",
    "backfill-large": "bitstat `st.track_many`, backfill over 8 weeks, large batches",
    "ingest": "`bitstat ingest` of a JSON-lines file (whole process)",
    "ingest-backfill": "`bitstat ingest --sort-window` of the backfill's file (whole process)",
    "http": "`POST /v1/track` of `bitstat serve`",
    "bm-one": "bitmapist `mark_event`, one call per event",
    "bm-pipeline": "bitmapist, own pipeline, live stream",
    "bm-backfill": "bitmapist, own pipeline, backfill over 8 weeks",
}

# (door, reference door, factor): the goal of issue 10 / MISSION.md, as a ratio to a door
# measured in the same run; the tracker's goal is a latency, the memory's a size
TARGETS: dict[str, tuple[str, float]] = {
    "track": ("bm-one", 2.0),
    "track-ahead": ("bm-one", 2.0),
    "live": ("bm-pipeline", 5.0),
    "live-large": ("bm-pipeline", 5.0),
    "backfill": ("bm-backfill", 2.0),
    "backfill-large": ("bm-backfill", 2.0),
    "ingest": ("live", 0.7),
    "ingest-backfill": ("bm-backfill", 2.0),
    "http": ("live", 0.5),
}
TRACKER_P99_US = 10.0
MEMORY_TARGET = 100.0  # bytes per event


# --------------------------------------------------------------------------------------------
# What a door measured


@dataclass
class Result:
    door: str
    events: int = 0  # events in the timed region
    seconds: float | None = None  # wall time of the timed region
    client_cpu: float | None = None  # seconds of CPU of the client (process or subprocess)
    server_cpu: float | None = None  # seconds of CPU of the Redis server
    latencies_ns: list[int] = field(default_factory=list)  # per call, one-per-call doors
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    text: str = ""  # instead of figures: "n/a (not built)", "error: ..."
    extra: dict[str, Any] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-min load average before and after

    @property
    def rate(self) -> float | None:
        return self.events / self.seconds if self.seconds and self.events else None

    def per_event_us(self, seconds: float | None) -> float | None:
        return seconds * 1e6 / self.events if seconds is not None and self.events else None

    def latency_us(self, q: float) -> float | None:
        if not self.latencies_ns:
            return None
        ordered = sorted(self.latencies_ns)
        if q == 0.5:
            return float(statistics.median(ordered)) / 1000
        index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return ordered[index] / 1000

    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["ok"]]

    def to_json(self) -> dict[str, Any]:
        return {
            "door": self.door,
            "what": DOORS[self.door],
            "events": self.events,
            "seconds": self.seconds,
            "events_per_s": self.rate,
            "client_cpu_us_per_event": self.per_event_us(self.client_cpu),
            "server_cpu_us_per_event": self.per_event_us(self.server_cpu),
            "latency_us": None
            if not self.latencies_ns
            else {
                "calls": len(self.latencies_ns),
                "min": min(self.latencies_ns) / 1000,
                "median": self.latency_us(0.5),
                "p90": self.latency_us(0.9),
                "p99": self.latency_us(0.99),
                "max": max(self.latencies_ns) / 1000,
            },
            "checks": self.checks,
            "notes": self.notes,
            "text": self.text,
            "extra": self.extra,
            "load_average_1min_before_after": self.load,
        }


# --------------------------------------------------------------------------------------------
# Memory per key family


FAMILY_ORDER = (
    "actor bitmaps",
    "all-actors bitmaps",
    "segment bitmaps",
    "metrics hashes",
    "counts",
    "sums by label",
    "top zsets",
    "distinct bitmaps",
    "approx HLLs",
    "value maps",
    "id map",
    "batch ids",
    "meta",
    "temp",
    "other",
)
EVENT_KINDS = {
    "m": "metrics hashes",
    "c": "counts",
    "s": "sums by label",
    "t": "top zsets",
    "u": "distinct bitmaps",
    "h": "approx HLLs",
    "v": "value maps",
    "vn": "value maps",
    "vb": "value maps",
    "tmp": "temp",
}


def classify(key: str, ns: str) -> tuple[str, str]:
    """(family, "hour" | "day+" | "") of a key of namespace `ns` (escaped), by keys.py's layout."""
    close = key.find("}")
    if not key.startswith("{") or close < 0:
        return "other", ""
    tag, rest = key[1:close], key[close + 1 :]
    if ":batch:" in rest:
        return "batch ids", ""
    if ":tmp:" in rest:
        return "temp", ""
    if tag == ns:
        return "meta", ""
    sub = tag[len(ns) + 1 :] if tag.startswith(ns + ":") else ""
    parts = rest.split(":")  # rest starts with ':', so parts[0] == ''
    if sub == "ids":
        return "id map", ""
    if sub.startswith("s") and sub[1:].isdigit():
        if rest == ":all":
            return "all-actors bitmaps", ""
        if len(parts) >= 4 and parts[1] == "a":
            grain = "hour" if "T" in parts[3] else "day+"
            return ("segment bitmaps" if len(parts) > 4 else "actor bitmaps"), grain
        return "other", ""
    if sub.startswith("e:") and len(parts) >= 2:
        family = EVENT_KINDS.get(parts[1], "other")
        if family in ("value maps", "other", "temp"):
            return family, ""
        grain = "hour" if len(parts) > 2 and "T" in parts[2] else "day+"
        return family, grain
    return "other", ""


def scan_memory(server: harness.Server, patterns: tuple[str, ...]) -> list[tuple[str, int]]:
    keys = [k for p in patterns for k in server.keys_matching(p)]
    pipe = server.redis.pipeline(transaction=False)
    for k in keys:
        pipe.memory_usage(k, samples=0)
    sizes = pipe.execute() if keys else []
    return [
        (k.decode("utf-8", "surrogateescape"), int(v or 0))
        for k, v in zip(keys, sizes, strict=True)
    ]


def tally(rows: list[tuple[str, str, int]], events: int) -> dict[str, Any]:
    families: dict[str, dict[str, float]] = {}
    for family, grain, size in rows:
        f = families.setdefault(
            family, {"keys": 0, "bytes": 0, "hour_bytes": 0, "dayplus_bytes": 0}
        )
        f["keys"] += 1
        f["bytes"] += size
        if grain == "hour":
            f["hour_bytes"] += size
        elif grain == "day+":
            f["dayplus_bytes"] += size
    for f in families.values():
        f["bytes_per_event"] = f["bytes"] / events
    total = sum(f["bytes"] for f in families.values())
    return {
        "events": events,
        "keys": len(rows),
        "bytes": total,
        "bytes_per_event": total / events,
        "families": families,
    }


def bitstat_memory(server: harness.Server, namespace: str, events: int) -> dict[str, Any]:
    from bitstat.keys import escape

    ns = escape(namespace)
    found = scan_memory(server, harness.namespace_patterns(namespace))
    rows = [(*classify(key, ns), size) for key, size in found]
    out = tally(rows, events)
    out["used_memory_note"] = "MEMORY USAGE key SAMPLES 0, summed per family"
    return out


def bitmapist_memory(server: harness.Server, prefix: str, events: int) -> dict[str, Any]:
    found = scan_memory(server, (f"trackist_{harness.glob_escape(prefix)}*",))
    rows = []
    for key, size in found:
        stamp = key.rsplit("_", 1)[-1]  # 2026-11-3-14 (hour), 2026-11-3, W2026-45, 2026-11
        grain = "hour" if stamp.count("-") == 3 else "day+"
        rows.append(("bitmaps (hour, day, week, month)", grain, size))
    return tally(rows, events)


# --------------------------------------------------------------------------------------------
# Output


def fmt_num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_us(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def target_of(door: str, results: dict[str, Result]) -> tuple[str, str]:
    """(ratio text, target text with ✓/✗) for a door, against the door its goal names."""
    r = results[door]
    if door == "tracker":
        p99 = r.latency_us(0.99)
        if p99 is None:
            return "—", f"p99 ≤ {TRACKER_P99_US:g} µs a call"
        mark = "✓" if p99 <= TRACKER_P99_US else "✗"
        return "—", f"p99 ≤ {TRACKER_P99_US:g} µs a call {mark}"
    if door in ("tracker",) or door not in TARGETS:
        return "—", "—"
    ref, factor = TARGETS[door]
    ref_result = results.get(ref)
    text = f"≥ {factor:g}{harness.TIMES} {ref}"
    mine = r.rate
    theirs = ref_result.rate if ref_result else None
    if mine is None or theirs is None:
        return "—", text
    ratio = mine / theirs
    return f"{harness.TIMES}{ratio:.2f} {ref}", f"{text} {'✓' if ratio >= factor else '✗'}"


def markdown_table(results: dict[str, Result]) -> str:
    lines = [
        "| door | events | ev/s | per call median / p99 µs | client CPU µs/ev"
        " | server CPU µs/ev | ratio | goal | checks |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for door, r in results.items():
        name = f"**{door}**: {DOORS[door]}"
        if r.text:
            lines.append(f"| {name} | — | {r.text} | — | — | — | — | — | — |")
            continue
        lat = "—"
        if r.latencies_ns:
            lat = f"{fmt_us(r.latency_us(0.5))} / {fmt_us(r.latency_us(0.99))}"
        ratio, goal = target_of(door, results)
        failed = r.failed()
        checks = f"{len(r.checks) - len(failed)}/{len(r.checks)}" + (" ✗" if failed else " ✓")
        cells = [
            name,
            fmt_num(r.events),
            fmt_num(r.rate),
            lat,
            fmt_us(r.per_event_us(r.client_cpu)),
            fmt_us(r.per_event_us(r.server_cpu)),
            ratio,
            goal,
            checks,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def memory_table(memory: dict[str, Any]) -> str:
    if not memory:
        return ""
    lines = [
        "| who: key family | keys | bytes | B/event | of which hour keys | day+ keys |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for who in ("bitstat", "bitmapist"):
        m = memory.get(who)
        if not m:
            continue
        fams = m["families"]
        order = [f for f in FAMILY_ORDER if f in fams] + [f for f in fams if f not in FAMILY_ORDER]
        for fam in order:
            f = fams[fam]
            n = m["events"]
            lines.append(
                f"| {who}: {fam} | {f['keys']:,} | {f['bytes']:,} | {f['bytes'] / n:.1f}"
                f" | {f['hour_bytes'] / n:.1f} | {f['dayplus_bytes'] / n:.1f} |"
            )
        mark = ""
        if who == "bitstat":
            mark = " ✓" if m["bytes_per_event"] <= MEMORY_TARGET else " ✗"
            mark += f" (goal ≤ {MEMORY_TARGET:g})"
        lines.append(
            f"| **{who}: total** | {m['keys']:,} | {m['bytes']:,}"
            f" | **{m['bytes_per_event']:.1f}**{mark} | | |"
        )
    return "\n".join(lines) + "\n"


def notes_text(results: dict[str, Result]) -> str:
    out = []
    for door, r in results.items():
        for note in r.notes:
            out.append(f"- {door}: {note}")
        for c in r.failed():
            out.append(
                f"- {door}: CHECK FAILED {c['what']}: expected {c['expected']!r}, got {c['got']!r}"
            )
    return "\n".join(out) + ("\n" if out else "")
