"""The ops a write plan's Builder writes (apply.lua's contract header says what each means)."""

from __future__ import annotations

import struct

import bitstat
from bitstat.keys import Keys
from bitstat.writes import UINT32, Builder


def test_an_event_count_goes_packed_and_one_past_uint32_goes_as_a_hash_op() -> None:
    b = Builder(Keys("ns"), bitstat.Schema(), None, True, 0.0)
    b.increment("hour-a", "n", 3, "hour", "2026-11-03T14", "tag")
    b.increment("hour-b", "n", UINT32 + 1, "hour", "2026-11-03T15", "tag")
    b.increment("hour-c", "n", UINT32, "hour", "2026-11-03T16", "tag")
    [g] = b.finish()
    a, past, c = (g.key(k) for k in ("hour-a", "hour-b", "hour-c"))
    assert ["H", past, 1, "n", UINT32 + 1] == g.args[:5]
    assert g.args[5:] == ["N", "n", 2, struct.pack("<4I", a, 3, c, UINT32)]
