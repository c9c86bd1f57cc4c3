"""The realistic benchmark profile's own parts, without a server: the generated events are what
the profile promises, and every key bitstat writes falls in its memory family."""

from __future__ import annotations

import re
import sys
import uuid
from datetime import datetime
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))

import realistic_data as rd
from bitstat.keys import Keys, escape
from realistic_report import classify

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


def test_events_are_seeded_and_realistic() -> None:
    users = rd.population(7, users=500)
    live = rd.events(2000, "live", seed=7, users=users)
    again = rd.events(2000, "live", seed=7, users=rd.population(7, users=500))
    assert live.dicts() == again.dicts()
    assert (live.millis[1:] >= live.millis[:-1]).all()  # a live stream is time-ordered
    offsets = set()
    for e, ms in zip(live.dicts(), live.millis.tolist(), strict=True):
        assert ISO.match(e["time"]), e["time"]
        assert datetime.fromisoformat(e["time"]).timestamp() * 1000 == ms
        offsets.add(e["time"][-6:])
        assert uuid.UUID(e["user"]).version == 4
        assert ("amount" in e) == (e["event"] == "purchase")
        assert ("item" in e) == (e["event"] in rd.WITH_ITEM)
    assert offsets == {"+00:00", "+01:00", "-05:00", "+05:30"}
    assert len(live.names_present()) == 5
    first, last = live.days()
    assert (last - first).days <= rd.LIVE_DAYS
    backfill = rd.events(2000, "backfill", seed=7, users=users)
    assert not (backfill.millis[1:] >= backfill.millis[:-1]).all()
    assert (backfill.days()[1] - backfill.days()[0]).days <= rd.BACKFILL_DAYS


def test_every_key_has_its_family() -> None:
    k = Keys("shop: a{b}")
    ns = escape("shop: a{b}")
    hour, day = "2026-11-03T14", "2026-11-03"
    expected = {
        k.actors(0, "page view", hour): ("actor bitmaps", "hour"),
        k.actors(3, "login", "2026-W45"): ("actor bitmaps", "day+"),
        k.actors(0, "login", hour, ("plan", "pro")): ("segment bitmaps", "hour"),
        k.actors(0, "login", day, ("country", "N:L")): ("segment bitmaps", "day+"),
        k.all_actors(2): ("all-actors bitmaps", ""),
        k.metrics("login", hour): ("metrics hashes", "hour"),
        k.counts("login", "2026", "country~plan"): ("counts", "day+"),
        k.sums_by("purchase", day, "amount", "country"): ("sums by label", "day+"),
        k.top("purchase", hour, "item"): ("top zsets", "hour"),
        k.distinct("login", "2026-11", "session"): ("distinct bitmaps", "day+"),
        k.approx("login", hour, "ip"): ("approx HLLs", "hour"),
        k.value_ids("login", "session"): ("value maps", ""),
        k.value_next("login", "session"): ("value maps", ""),
        k.id_forward("9d6ce42e-82df-420a-b7f1-a6cfbbe10a1a"): ("id map", ""),
        k.id_reverse(5000): ("id map", ""),
        k.ids_next: ("id map", ""),
        k.schema: ("meta", ""),
        k.span_first: ("meta", ""),
        k.batch(k.shard_tag(0), "b:1"): ("batch ids", ""),
        k.batch(k.event_tag("login"), "b1"): ("batch ids", ""),
        k.temp(k.shard_tag(0), "x1"): ("temp", ""),
    }
    for key, family in expected.items():
        assert classify(key, ns) == family, key
