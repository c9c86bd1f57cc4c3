"""The scale benchmark's figures: memory per key family and period, the extrapolations built
from the measured coefficients, and the Markdown tables (benchmarks/scale.py measures).

Every extrapolated figure names its formula and the measured figures it multiplies; nothing
here is measured, it only reads what scale.py measured.
"""

from __future__ import annotations

from typing import Any

from realistic_report import FAMILY_ORDER

# How a family's bytes grow (see docs/sizing.md):
WIDTH = ("actor bitmaps", "segment bitmaps")  # a bitmap as wide as the actors mapped, per bucket
BOUNDED = ("metrics hashes", "counts", "sums by label", "top zsets", "approx HLLs")  # per bucket
PERIODS = ("hour", "day", "week", "month", "year")
DAY_BUCKETS = {"hour": 24, "day": 1, "week": 1, "month": 1, "year": 1}
YEAR_BUCKETS = {"hour": 8760, "day": 365, "week": 53, "month": 12, "year": 1}
# (name, Schema(expire=...) text, buckets of each period kept after a year: TTL / length + 1)
RETENTION = (
    ("no expiry", "{}", YEAR_BUCKETS),
    ("hour 14d", '{"hour": "14d"}', {**YEAR_BUCKETS, "hour": 14 * 24 + 1}),
    (
        "hour 14d, day 90d",
        '{"hour": "14d", "day": "90d"}',
        {**YEAR_BUCKETS, "hour": 14 * 24 + 1, "day": 91},
    ),
    (
        "hour 14d, day 90d, week 26w",
        '{"hour": "14d", "day": "90d", "week": "26w"}',
        {**YEAR_BUCKETS, "hour": 14 * 24 + 1, "day": 91, "week": 27},
    ),
)
# every period expires: the buckets kept stay the same year after year
STEADY = (
    "every period, any number of years",
    '{"hour": "14d", "day": "90d", "week": "26w", "month": "104w", "year": "104w"}',
    {"hour": 14 * 24 + 1, "day": 91, "week": 27, "month": 25, "year": 3},
)
SECONDS_A_DAY = 86_400


def families(rows: list[tuple[str, str, str, int]], events: int) -> dict[str, Any]:
    """Keys and bytes per family, and per family and period with the number of buckets."""
    fams: dict[str, Any] = {}
    labels: dict[tuple[str, str], set[str]] = {}
    for family, period, label, size in rows:
        f = fams.setdefault(family, {"keys": 0, "bytes": 0, "periods": {}})
        f["keys"] += 1
        f["bytes"] += size
        if period:
            p = f["periods"].setdefault(period, {"keys": 0, "bytes": 0, "buckets": 0})
            p["keys"] += 1
            p["bytes"] += size
            labels.setdefault((family, period), set()).add(label)
    for (family, period), seen in labels.items():
        fams[family]["periods"][period]["buckets"] = len(seen)
    total = sum(f["bytes"] for f in fams.values())
    return {
        "events": events,
        "keys": len(rows),
        "bytes": total,
        "bytes_per_event": total / max(1, events),
        "families": fams,
    }


def checks_text(r: dict[str, Any]) -> str:
    qs = r.get("queries", [])
    good = sum(1 for q in qs if q["ok"])
    return f"{good}/{len(qs)}" + (" ✓" if good == len(qs) else " ✗")


def summary(r: dict[str, Any]) -> str:
    cost = r.get("ingest") or r.get("ingest_of_this_span") or {}
    mem = r.get("memory", {})
    rate = cost.get("events_per_s") or 0
    return (
        f"{rate:,.0f} ev/s, client {cost.get('client_cpu_us_per_event', 0):.1f} µs/ev, server"
        f" {cost.get('server_cpu_us_per_event', 0):.1f} µs/ev, {mem.get('bytes', 0) / 1e6:,.1f} MB,"
        f" {mem.get('bytes_per_event', 0):.1f} B/event; checks {checks_text(r)}"
    )


# --------------------------------------------------------------------------------------------
# Coefficients and extrapolations


def coefficients(point: dict[str, Any]) -> dict[str, Any]:
    """Per-bucket costs of a dense stream (the rate section's last span): bitmap families per
    mapped actor and bucket, bounded families per bucket, distinct bitmaps per numbered value
    and bucket, value maps per value, the id map and the all-actors bitmap per actor."""
    fams = point["memory"]["families"]
    actors = point["actors_mapped"]
    values = point["session_values_numbered"]
    out: dict[str, Any] = {
        "from": "rate section, last span",
        "events": point["events"],
        "actors_mapped": actors,
        "session_values_numbered": values,
        "session_values_per_event": values / point["events"],
        "per_actor_per_bucket": {},
        "per_bucket": {},
        "distinct_per_value_per_bucket": {},
    }
    for fam, f in fams.items():
        for period, p in f["periods"].items():
            if fam in WIDTH:
                out["per_actor_per_bucket"].setdefault(fam, {})[period] = p["bytes"] / (
                    p["buckets"] * actors
                )
            elif fam in BOUNDED:
                out["per_bucket"].setdefault(fam, {})[period] = p["bytes"] / p["buckets"]
            elif fam == "distinct bitmaps":
                out["distinct_per_value_per_bucket"][period] = p["bytes"] / (p["buckets"] * values)
    out["value_maps_per_value"] = fams.get("value maps", {}).get("bytes", 0) / max(1, values)
    out["id_map_per_actor"] = fams.get("id map", {}).get("bytes", 0) / max(1, actors)
    out["all_actors_per_actor"] = fams.get("all-actors bitmaps", {}).get("bytes", 0) / max(
        1, actors
    )
    return out


def id_map_per_actor(data: dict[str, Any], actors: int, fallback: float) -> tuple[float, str]:
    """The id map's bytes per actor measured at the size nearest to `actors` (ids section)."""
    rows = (data.get("ids") or {}).get("rows") or []
    if not rows:
        return fallback, "rate section"
    best = min(rows, key=lambda r: abs(_log(r["actors"]) - _log(actors)))
    fam = best["memory"]["families"].get("id map", {"bytes": 0})
    return fam["bytes"] / best["actors"], f"ids section, {best['actors']:,} actors"


def _log(x: float) -> float:
    import math

    return math.log(max(1.0, x))


def memory_model(
    c: dict[str, Any],
    actors: int,
    buckets: dict[str, int],
    values: float,
    id_per_actor: float,
    approx: dict[str, float] | None,
    value_spans: dict[str, float] | None = None,
) -> dict[str, float]:
    """Bytes per part for `actors`, `buckets` kept per period and `values` session values.

    bitmaps = sum(per_actor_per_bucket[family][period] * actors * buckets[period])
    counters = sum(per_bucket[family][period] * buckets[period])
    sessions (unique) = value_maps_per_value * values
                        + sum(distinct_per_value_per_bucket[period] * values * buckets[period])
    sessions (approx) = sum(approx[period] * buckets[period])
    id map = id_per_actor * actors; all actors = all_actors_per_actor * actors
    `value_spans[period]` replaces values * buckets[period] where the kept buckets of a period
    span fewer values (numbered over time, a bucket holds those numbered by its end).
    """
    parts: dict[str, float] = {}
    for fam, per in c["per_actor_per_bucket"].items():
        parts[fam] = sum(v * actors * buckets.get(p, 0) for p, v in per.items())
    parts["counters (metrics, counts, top, sums)"] = sum(
        v * buckets.get(p, 0)
        for fam, per in c["per_bucket"].items()
        if fam != "approx HLLs"
        for p, v in per.items()
    )
    if approx is None:
        parts["session value maps"] = c["value_maps_per_value"] * values
        parts["session distinct bitmaps"] = sum(
            v * (value_spans[p] if value_spans else values * buckets.get(p, 0))
            for p, v in c["distinct_per_value_per_bucket"].items()
        )
    else:
        parts["session HLLs (approx)"] = sum(v * buckets.get(p, 0) for p, v in approx.items())
    parts["id map"] = id_per_actor * actors
    parts["all-actors bitmap"] = c["all_actors_per_actor"] * actors
    parts["total"] = sum(parts.values())
    return parts


def approx_per_bucket(data: dict[str, Any]) -> dict[str, float] | None:
    """HLL bytes per bucket: the approx rate run's, else the periods section's approx row."""
    ra = data.get("rate_approx")
    if ra and ra.get("points"):
        fams = ra["points"][-1]["memory"]["families"]
    else:
        rows = (data.get("periods") or {}).get("rows") or []
        found = [r for r in rows if r.get("approx")]
        if not found:
            return None
        fams = found[0]["memory"]["families"]
    if "approx HLLs" not in fams:
        return None
    per = fams["approx HLLs"]["periods"]
    return {p: v["bytes"] / v["buckets"] for p, v in per.items()}


def cpu(section: dict[str, Any], rate: float) -> dict[str, float]:
    """CPU per event over all spans of a rate run (weighted by events) and at `rate`."""
    spans = [p["ingest_of_this_span"] for p in section["points"]]
    events = sum(s["events"] for s in spans)
    server = sum(s["server_cpu_us_per_event"] * s["events"] for s in spans) / events
    client = sum(s["client_cpu_us_per_event"] * s["events"] for s in spans) / events
    return {
        "server_cpu_us_per_event": server,
        "client_cpu_us_per_event": client,
        "server_cores_at_rate": server * rate / 1e6,
        "client_cores_at_rate": client * rate / 1e6,
    }


def extrapolate(data: dict[str, Any]) -> dict[str, Any]:
    """A day at the rate section's rate for 1M and 10M actors, and a year for 100M actors under
    each retention setting, from the rate runs' per-bucket costs (nothing measured here)."""
    rate = data.get("rate")
    if not rate or not rate.get("points"):
        return {}
    c = coefficients(rate["points"][-1])
    ra = data.get("rate_approx")
    ca = coefficients(ra["points"][-1]) if ra and ra.get("points") else c
    approx = approx_per_bucket(data)
    r = float(rate["rate"])
    per_day = r * SECONDS_A_DAY
    out: dict[str, Any] = {
        "coefficients": c,
        "coefficients_approx": ca,
        "rate": r,
        "events_a_day": per_day,
        "ingest": {"unique": cpu(rate, r)},
        "day": [],
        "year": [],
    }
    if ra and ra.get("points"):
        out["ingest"]["approx"] = cpu(ra, r)
    schemas = [("unique", c, None)] + ([("approx", ca, approx)] if approx else [])
    values_day = c["session_values_per_event"] * per_day
    for actors in (1_000_000, 10_000_000):
        id_b, id_src = id_map_per_actor(data, actors, c["id_map_per_actor"])
        for sessions, coef, hll in schemas:
            parts = memory_model(coef, actors, DAY_BUCKETS, values_day, id_b, hll)
            out["day"].append(
                {
                    "actors": actors,
                    "sessions": sessions,
                    "id_map_from": id_src,
                    "session_values": values_day,
                    "bytes": parts,
                }
            )
    actors = 100_000_000
    id_b, id_src = id_map_per_actor(data, actors, c["id_map_per_actor"])
    values_year = c["session_values_per_event"] * per_day * 365
    for name, expire, kept in RETENTION:
        row: dict[str, Any] = {
            "retention": name,
            "expire": expire,
            "buckets": kept,
            "actors": actors,
            "id_map_from": id_src,
        }
        if approx:
            row["bytes_approx_sessions"] = memory_model(ca, actors, kept, 0, id_b, approx)
        # unique sessions: values are numbered evenly over the year and a bucket's distinct
        # bitmap is as wide as the values numbered by its end, so the last k of a period's n
        # buckets of the year span values_year * (k * (2n - k + 1)) / (2n) values in all
        spans = {
            p: values_year * (k * (2 * YEAR_BUCKETS[p] - k + 1)) / (2 * YEAR_BUCKETS[p])
            for p, k in kept.items()
        }
        row["bytes_unique_sessions"] = memory_model(c, actors, kept, values_year, id_b, None, spans)
        out["year"].append(row)
    if approx:  # unique sessions never level off: their value maps keep every value seen
        name, expire, kept = STEADY
        out["steady"] = {
            "retention": name,
            "expire": expire,
            "buckets": kept,
            "actors": actors,
            "id_map_from": id_src,
            "bytes_approx_sessions": memory_model(ca, actors, kept, 0, id_b, approx),
        }
    out["session_values_a_year"] = values_year
    return out


# --------------------------------------------------------------------------------------------
# Markdown


def _mb(x: float) -> str:
    if x >= 1e12:
        return f"{x / 1e12:,.2f} TB"
    if x >= 1e9:
        return f"{x / 1e9:,.1f} GB"
    return f"{x / 1e6:,.1f} MB"


def _n(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _fams(mem: dict[str, Any]) -> list[str]:
    fams = mem["families"]
    return [f for f in FAMILY_ORDER if f in fams] + [f for f in fams if f not in FAMILY_ORDER]


def header(data: dict[str, Any]) -> str:
    m = data["machine"]
    dirty = " (src/ had uncommitted changes)" if m["bitstat"]["uncommitted_changes_in_src"] else ""
    return (
        f"Scale — {m['date']} — commit {m['bitstat']['git_commit']}{dirty} — {m['cores']} cores"
        f" {m['cpu_model']}, {m['server']['name']} {m['server']['version']} (private, no"
        f" persistence) — load {m['load_average_at_start']} → {m.get('load_average_at_end')}"
        + (" — quick" if data["settings"]["quick"] else "")
        + "\n"
    )


def table_keys(data: dict[str, Any]) -> str:
    rows = data.get("keys")
    if not rows:
        return ""
    lines = ["| one event of | keys it creates | of which |", "|---|--:|---|"]
    for name, r in rows.items():
        parts = []
        fams = r["families"]
        for fam in [f for f in FAMILY_ORDER if f in fams] + [
            f for f in fams if f not in FAMILY_ORDER
        ]:
            per = fams[fam]
            n = sum(per.values())
            periods = ", ".join(f"{p} {per[p]}" for p in PERIODS if p in per)
            parts.append(f"{fam} {n}" + (f" ({periods})" if periods else ""))
        lines.append(f"| {name} | {r['keys']} | {'; '.join(parts)} |")
    return "Keys per event (one event alone in a fresh namespace):\n\n" + "\n".join(lines) + "\n"


def _ingest_cells(cost: dict[str, Any]) -> list[str]:
    return [
        _n(cost.get("events_per_s")),
        _n(cost.get("client_cpu_us_per_event"), 1),
        _n(cost.get("server_cpu_us_per_event"), 1),
    ]


def table_actors(data: dict[str, Any]) -> str:
    sec = data.get("actors")
    if not sec:
        return ""
    rows = sec["rows"]
    lines = [
        "| actors | events | actors seen | ev/s | client µs/ev | server µs/ev | keys | MB"
        " | B/event | B/actor seen | checks |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        m = r["memory"]
        cells = [_n(r["actors"]), _n(r["events"]), _n(r["actors_mapped"])]
        cells += _ingest_cells(r["ingest"])
        cells += [_n(m["keys"]), _n(m["bytes"] / 1e6, 1), _n(m["bytes_per_event"], 1)]
        cells += [_n(m["bytes"] / max(1, r["actors_mapped"]), 1), checks_text(r)]
        lines.append("| " + " | ".join(cells) + " |")
    out = (
        f"Actors (live stream over 14 days, {sec['per_actor']} events per actor):\n\n"
        + "\n".join(lines)
        + "\n"
    )
    fams = []
    for r in rows:
        fams += [f for f in _fams(r["memory"]) if f not in fams]
    head = "| key family | " + " | ".join(f"{r['actors']:,}: B/event, B/actor" for r in rows)
    lines = [head + " |", "|---|" + "--:|" * len(rows)]
    for fam in fams:
        cells = []
        for r in rows:
            f = r["memory"]["families"].get(fam)
            if f is None:
                cells.append("—")
            else:
                per_event = f["bytes"] / r["events"]
                cells.append(f"{per_event:.1f}, {f['bytes'] / max(1, r['actors_mapped']):.1f}")
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return out + "\nPer key family:\n\n" + "\n".join(lines) + "\n"


def table_queries(data: dict[str, Any]) -> str:
    cols: list[tuple[str, list[dict[str, Any]]]] = []
    for r in (data.get("actors") or {}).get("rows", []):
        cols.append((f"{r['actors']:,} actors, {r['days']} days", r["queries"]))
    for r in (data.get("wide") or {}).get("rows", []):
        cols.append((f"wide: {r['actors_mapped']:,} actors, {r['events']:,} events", r["queries"]))
    for rate in (data.get("rate"), data.get("rate_approx")):
        if not rate or not rate.get("queries"):
            continue
        events = rate["points"][-1]["events"]
        cols.append(
            (
                f"rate, sessions {rate.get('sessions', 'unique')}: {rate['actors']:,} actors,"
                f" {events:,} events, {rate['days']} day",
                rate["queries"],
            )
        )
    if not cols:
        return ""
    names: list[str] = []
    for _, qs in cols:
        names += [q["query"] for q in qs if q["query"] not in names]
    lines = ["| query (median ms) | " + " | ".join(c for c, _ in cols) + " |"]
    lines.append("|---|" + "--:|" * len(cols))
    for name in names:
        cells = []
        for _, qs in cols:
            q = next((q for q in qs if q["query"] == name), None)
            cells.append("—" if q is None else f"{q['median_ms']:.2f}" + ("" if q["ok"] else " ✗"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "Query latency (median ms; ✗ = answer differs from the truth):\n\n" + "\n".join(lines)


def table_periods(data: dict[str, Any]) -> str:
    sec = data.get("periods")
    if not sec:
        return ""
    lines = [
        "| periods | keys | MB | B/event | ev/s | client µs/ev | server µs/ev | checks |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in sec["rows"]:
        m = r["memory"]
        cells = [r["variant"], _n(m["keys"]), _n(m["bytes"] / 1e6, 1), _n(m["bytes_per_event"], 1)]
        cells += [*_ingest_cells(r["ingest"]), checks_text(r)]
        lines.append("| " + " | ".join(cells) + " |")
    r0 = sec["rows"][0]
    return (
        f"Periods (the same stream: {r0['actors']:,} actors, {r0['events']:,} events):\n\n"
        + "\n".join(lines)
        + "\n"
    )


RATE_COLUMNS = (
    ("actor bitmaps", ("actor bitmaps",)),
    ("segments", ("segment bitmaps",)),
    ("counters", ("metrics hashes", "counts", "sums by label", "top zsets")),
    ("distinct", ("distinct bitmaps", "approx HLLs")),
    ("value maps", ("value maps",)),
    ("id map", ("id map",)),
)


def table_rate(data: dict[str, Any]) -> str:
    return "\n".join(_table_rate(data[k]) for k in ("rate", "rate_approx") if data.get(k))


def _table_rate(sec: dict[str, Any]) -> str:
    lines = [
        "| event time | events | actors mapped | sessions numbered | MB | B/event | "
        + " | ".join(f"{name} MB" for name, _ in RATE_COLUMNS)
        + " | span ev/s | span server µs/ev |",
        "|--:|--:|--:|--:|--:|--:|" + "--:|" * len(RATE_COLUMNS) + "--:|--:|",
    ]
    for p in sec["points"]:
        m = p["memory"]
        fams = m["families"]
        cells = [f"{p['seconds_of_event_time']:g} s", _n(p["events"]), _n(p["actors_mapped"])]
        cells += [_n(p["session_values_numbered"]), _n(m["bytes"] / 1e6, 1)]
        cells.append(_n(m["bytes_per_event"], 1))
        for _, group in RATE_COLUMNS:
            cells.append(_n(sum(fams.get(f, {"bytes": 0})["bytes"] for f in group) / 1e6, 1))
        span = p["ingest_of_this_span"]
        cells += [_n(span["events_per_s"]), _n(span["server_cpu_us_per_event"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Rate, sessions {sec.get('sessions', 'unique')} ({sec['rate']:,.0f} events a second"
        f" of event time from {sec['start']}, {sec['actors']:,} actors, one namespace, measured"
        " after each span):\n\n" + "\n".join(lines) + "\n"
    )


def table_coefficients(ex: dict[str, Any]) -> str:
    if not ex:
        return ""
    c = ex["coefficients"]
    lines = ["| family | period | measured per bucket | unit |", "|---|---|--:|---|"]
    for fam, per in c["per_actor_per_bucket"].items():
        for p in PERIODS:
            if p in per:
                lines.append(f"| {fam} | {p} | {per[p]:.4f} | bytes per actor mapped |")
    for fam, per in c["per_bucket"].items():
        for p in PERIODS:
            if p in per:
                lines.append(f"| {fam} | {p} | {per[p]:,.0f} | bytes |")
    for p in PERIODS:
        if p in c["distinct_per_value_per_bucket"]:
            v = c["distinct_per_value_per_bucket"][p]
            lines.append(f"| distinct bitmaps | {p} | {v:.4f} | bytes per session value |")
    lines.append(f"| value maps | — | {c['value_maps_per_value']:.1f} | bytes per session value |")
    lines.append(f"| id map | — | {c['id_map_per_actor']:.1f} | bytes per actor mapped |")
    lines.append(f"| all-actors bitmap | — | {c['all_actors_per_actor']:.4f} | bytes per actor |")
    return (
        f"Per-bucket costs of the dense stream (rate section, after {c['events']:,} events,"
        f" {c['actors_mapped']:,} actors mapped, {c['session_values_numbered']:,} session values,"
        f" {c['session_values_per_event']:.3f} a event):\n\n" + "\n".join(lines) + "\n"
    )


def table_ids(data: dict[str, Any]) -> str:
    sec = data.get("ids")
    if not sec:
        return ""
    lines = [
        "| actors | ev/s | client µs/ev | server µs/ev | id map keys | id map MB | B/actor"
        " | checks |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in sec["rows"]:
        f = r["memory"]["families"].get("id map", {"keys": 0, "bytes": 0})
        cells = [_n(r["actors"]), *_ingest_cells(r["ingest"])]
        cells += [_n(f["keys"]), _n(f["bytes"] / 1e6, 1), _n(f["bytes"] / r["actors"], 1)]
        lines.append("| " + " | ".join([*cells, checks_text(r)]) + " |")
    return "Id map (new UUIDs, one event each, day bitmaps only):\n\n" + "\n".join(lines) + "\n"


def table_wide(data: dict[str, Any]) -> str:
    sec = data.get("wide")
    if not sec:
        return ""
    lines = [
        "| actors mapped | mapping: ev/s | server µs/ev | stream events | ev/s | client µs/ev"
        " | server µs/ev | MB | B/event | checks |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in sec["rows"]:
        pre, m = r["premap"], r["memory"]
        cells = [
            _n(r["actors_mapped"]),
            _n(pre["events_per_s"]),
            _n(pre["server_cpu_us_per_event"], 1),
        ]
        cells += [_n(r["events"]), *_ingest_cells(r["ingest"])]
        cells += [_n(m["bytes"] / 1e6, 1), _n(m["bytes_per_event"], 1), checks_text(r)]
        lines.append("| " + " | ".join(cells) + " |")
    fams = sec["rows"][0]["memory"]["families"]
    per = []
    for fam in WIDTH:
        for p in PERIODS:
            v = fams.get(fam, {}).get("periods", {}).get(p)
            if v:
                keys, size = v["keys"] / v["buckets"], v["bytes"] / v["buckets"] / 1e6
                per.append(f"{fam} {p}: {size:,.1f} MB a bucket ({keys:,.0f} keys)")
    return (
        f"Wide (every actor mapped, then {sec['seconds']:g} s at {sec['rate']:,.0f} events/s):\n\n"
        + "\n".join(lines)
        + "\n\n"
        + "; ".join(per)
        + "\n"
    )


def table_cluster(data: dict[str, Any]) -> str:
    sec = data.get("cluster")
    if not sec:
        return ""
    pick = ("unique page_view, one day", "counts purchase", "top 10", "retention", "funnel")
    qnames: list[str] = []
    for r in sec["rows"]:
        for q in r["queries"]:
            if q["query"].startswith(pick) and q["query"] not in qnames:
                qnames.append(q["query"])
    lines = [
        "| data | actors | masters | ev/s | client µs/ev | server µs/ev, all masters | per master"
        " | keys per master | " + " | ".join(f"{q} ms" for q in qnames) + " | checks |",
        "|---|--:|--:|--:|--:|--:|---|---|" + "--:|" * len(qnames) + "--:|",
    ]
    for r in sec["rows"]:
        cost = r["ingest"]
        per = " / ".join(f"{x:.1f}" for x in cost["server_cpu_us_per_event_per_node"])
        keys = " / ".join(f"{k:,}" for k in r["keys_per_node"])
        data = r.get("data", "live")
        what = f"{data}, {r['events']:,} events"
        cells = [what, _n(r["actors"]), str(r["masters"]), *_ingest_cells(cost), per, keys]
        for name in qnames:
            q = next((q for q in r["queries"] if q["query"] == name), None)
            cells.append("—" if q is None else f"{q['median_ms']:.2f}" + ("" if q["ok"] else " ✗"))
        lines.append("| " + " | ".join([*cells, checks_text(r)]) + " |")
    return (
        "Cluster (live: the stream of the actors section; wide: the wide section's; masters on"
        " loopback, no replicas):\n\n" + "\n".join(lines) + "\n"
    )


def table_extrapolated(ex: dict[str, Any]) -> str:
    if not ex:
        return ""
    out = [
        f"Extrapolated (not measured): a day at {ex['rate']:,.0f} events/s ="
        f" {ex['events_a_day']:,.0f} events."
    ]
    for sessions, ing in ex["ingest"].items():
        out.append(
            f"CPU, sessions {sessions}: the rate run's {ing['server_cpu_us_per_event']:.2f} µs"
            f" (server) and {ing['client_cpu_us_per_event']:.2f} µs (client) an event x the rate"
            f" = {ing['server_cores_at_rate']:.3f} of a server core and"
            f" {ing['client_cores_at_rate']:.3f} of a client core, busy all day."
        )
    out[-1] += "\n"
    parts: list[str] = []
    for row in ex["day"]:
        parts += [p for p in row["bytes"] if p not in parts and p != "total"]
    parts.append("total")
    lines = [
        "| a day | " + " | ".join(p for p in parts) + " |",
        "|---|" + "--:|" * len(parts),
    ]
    for row in ex["day"]:
        b = row["bytes"]
        name = f"{row['actors']:,} actors, sessions {row['sessions']}"
        lines.append(
            f"| {name} | " + " | ".join(_mb(b[p]) if p in b else "—" for p in parts) + " |"
        )
    out.append("\n".join(lines) + "\n")
    lines = [
        "| 100M actors, a year, Schema(expire=...) | sessions approx: total | of which bitmaps"
        " | sessions unique: total |",
        "|---|--:|--:|--:|",
    ]
    for row in ex["year"]:
        a = row.get("bytes_approx_sessions")
        u = row["bytes_unique_sessions"]
        bitmaps = None if a is None else a["actor bitmaps"] + a.get("segment bitmaps", 0)
        lines.append(
            f"| {row['retention']} `{row['expire']}` | {'—' if a is None else _mb(a['total'])}"
            f" | {'—' if bitmaps is None else _mb(bitmaps)} | {_mb(u['total'])} |"
        )
    steady = ex.get("steady")
    if steady:
        a = steady["bytes_approx_sessions"]
        bitmaps = a["actor bitmaps"] + a.get("segment bitmaps", 0)
        lines.append(
            f"| {steady['retention']} `{steady['expire']}` | {_mb(a['total'])} | {_mb(bitmaps)}"
            " | grows: value maps keep every session |"
        )
    out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def markdown(data: dict[str, Any]) -> str:
    ex = data.get("extrapolated") or {}
    parts = [
        header(data),
        table_keys(data),
        table_actors(data),
        table_queries(data),
        table_periods(data),
        table_rate(data),
        table_coefficients(ex),
        table_ids(data),
        table_wide(data),
        table_cluster(data),
        table_extrapolated(ex),
    ]
    if data.get("errors"):
        parts.append("Errors:\n\n" + "\n".join(f"- {e}" for e in data["errors"]) + "\n")
    return "\n".join(p for p in parts if p)
