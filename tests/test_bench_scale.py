"""benchmarks/scale.py at tiny sizes: every section runs on real servers (a private Valkey and
clusters of 1 and 3 masters) and every answer equals the truth computed from the generated
columns; the key families and periods of the layout are told apart."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))

import pytest

import realistic_data as rd
import scale
import scale_data as sd
from bitstat.keys import Keys, escape


def test_quick_run_is_exact(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    argv = ["--quick", "--actors", "300", "1200", "--periods-actors", "300"]
    argv += ["--rate-actors", "400", "--checkpoints", "0.5", "1", "--ids-actors", "500"]
    argv += ["--wide-actors", "400", "--wide-seconds", "0.5"]
    argv += ["--masters", "1", "3", "--cluster-actors", "300", "--runs", "1", "--batch", "700"]
    assert scale.main([*argv, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    asked = (
        [
            q
            for part in (
                data["actors"]["rows"],
                data["periods"]["rows"],
                data["ids"]["rows"],
                data["wide"]["rows"],
                data["cluster"]["rows"],
            )
            for r in part
            for q in r["queries"]
        ]
        + data["rate"]["queries"]
        + data["rate_approx"]["queries"]
    )
    assert len(asked) > 80
    assert all(q["ok"] for q in asked), [q for q in asked if not q["ok"]]
    for r in data["actors"]["rows"]:
        assert r["ingest"]["events"] == r["events"] == r["actors"] * 5
        assert r["memory"]["bytes"] > 0 and r["actors_mapped"] == r["distinct_actors"]
    rows = [(r["data"], r["masters"]) for r in data["cluster"]["rows"]]
    assert rows == [("live", 1), ("live", 3), ("wide", 1), ("wide", 3)]
    assert data["wide"]["rows"][0]["actors_mapped"] == 400
    assert len(data["cluster"]["rows"][1]["ingest"]["server_cpu_us_per_event_per_node"]) == 3
    for key in ("rate", "rate_approx"):
        assert [p["events"] for p in data[key]["points"]] == [5_000, 10_000]
    assert "approx HLLs" in data["rate_approx"]["points"][-1]["memory"]["families"]
    # one event of every name writes the same keys per period: 5 actor sets, 5 metrics hashes
    for name, r in data["keys"].items():
        assert r["families"]["actor bitmaps"] == dict.fromkeys(rd.SCHEMA.periods, 1), name
        assert r["families"]["segment bitmaps"] == dict.fromkeys(rd.SCHEMA.periods[1:], 2)
    assert data["extrapolated"]["day"] and data["extrapolated"]["year"]


def test_keys_have_family_and_period() -> None:
    k = Keys("shop: a{b}")
    ns = escape("shop: a{b}")
    expected = {
        k.actors(0, "login", "2026-11-03T14"): ("actor bitmaps", "hour", "2026-11-03T14"),
        k.actors(1, "login", "2026-W45", ("plan", "pro")): ("segment bitmaps", "week", "2026-W45"),
        k.counts("buy", "2026-11", "country~plan"): ("counts", "month", "2026-11"),
        k.top("buy", "2026", "item"): ("top zsets", "year", "2026"),
        k.distinct("buy", "2026-11-03", "session"): ("distinct bitmaps", "day", "2026-11-03"),
        k.metrics("buy", "2026-11-03T00"): ("metrics hashes", "hour", "2026-11-03T00"),
        k.value_bucket("buy", "session", "x"): ("value maps", "", ""),
        k.id_forward("u-1"): ("id map", "", ""),
        k.schema: ("meta", "", ""),
    }
    for key, place in expected.items():
        assert scale.key_place(key, ns) == place, key


@pytest.mark.parametrize("shape", ["live", "rate"])
def test_truth_against_plain_python(shape: str) -> None:
    """The numpy truth of retention and the funnel against loops over the events."""
    s = sd.stream(rd.population(3, users=60), 900, shape=shape, rate=0.002, seed=3)
    t = sd.Truth(s)
    days: dict[str, dict[int, set[int]]] = {}
    columns = zip(s.events.name.tolist(), s.events.user.tolist(), t.day.tolist(), strict=True)
    for name, user, day in columns:
        days.setdefault(rd.EVENTS[name][0], {}).setdefault(user, set()).add(day - t.first)
    steps = ["page_view", "add_to_cart", "purchase"]
    reached = [0, 0, 0]
    for user, first_days in days["page_view"].items():
        best = 0
        for d in first_days:
            at, k = d, 1
            while k < 3:
                later = [x for x in days[steps[k]].get(user, ()) if at <= x < d + 7]
                if not later:
                    break
                at, k = min(later), k + 1
            best = max(best, k)
        for j in range(best):
            reached[j] += 1
    assert t.funnel(steps, 7) == reached
    seen = days["page_view"]
    rows = []
    for i in range(4):
        cohort = {u for u, ds in seen.items() if min(ds) == i}
        rows.append((len(cohort), [sum(1 for u in cohort if i + k in seen[u]) for k in range(4)]))
    assert t.retention_first("page_view", "page_view", 4) == rows
