"""`bitstat alias` and `bitstat forget`: what they print, and what the namespace answers after."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import bitstat
from bitstat.identity import Aliased
from test_cli import Cli


@pytest.fixture
def cli(server_url: str, namespace: str) -> Iterator[Cli]:
    with bitstat.connect(
        server_url, namespace=namespace, schema=bitstat.Schema(ids="map", count=["country"])
    ) as st:
        st.track_many(
            [
                {"event": "visit", "user": "anon-1", "time": "2026-10-01", "country": "NL"},
                {"event": "visit", "user": "user-1", "time": "2026-10-02", "country": "NL"},
                {"event": "visit", "user": "user-2", "time": "2026-10-02", "country": "DE"},
            ]
        )
    yield Cli(server_url, namespace)
    with bitstat.connect(server_url, namespace=namespace) as st:
        st.drop()


def test_alias_merges_and_says_so_then_changes_nothing(cli: Cli) -> None:
    assert cli.ok("alias", "anon-1", "user-1").startswith("merged: ")
    assert cli.ok("unique", "visit", "2026-10", "--format", "json").strip() == "2"
    again = json.loads(cli.ok("alias", "anon-1", "user-1", "--format", "json"))
    assert again == {"anon": "anon-1", "user": "user-1", "outcome": "same", "moved": 0}
    assert cli.ok("alias", "anon-9", "user-2", "--format", "csv").splitlines() == [
        "anon,user,outcome,moved",
        "anon-9,user-2,linked,0",
    ]


def test_forget_erases_the_person_and_names_what_is_kept(cli: Cli) -> None:
    cli.ok("alias", "anon-1", "user-1")
    out = json.loads(cli.ok("forget", "anon-1", "--format", "json"))
    assert out["found"] is True and sorted(out["ids"]) == ["anon-1", "user-1"]
    assert out["kept"] == ["event totals", "counts per value"]
    assert cli.ok("unique", "visit", "2026-10", "--format", "json").strip() == "1"
    assert cli.ok("total", "visit", "2026-10", "--format", "json").strip() == "3"
    assert "nothing to erase" in cli.ok("forget", "user-1")
    assert cli.ok("forget", "user-2").startswith("Erased user-2: taken out of ")


def test_alias_that_lost_a_race_names_the_sets_it_moved(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of two calls linking the same ids at once, the one answering "same" may have moved
    sets too: it said "nothing changed"."""
    late = Aliased("anon-1", "user-1", "same", 3)
    monkeypatch.setattr(bitstat.Stats, "alias", lambda self, anon, user: late)
    assert cli.ok("alias", "anon-1", "user-1") == (
        "anon-1 and user-1 are one actor (another call merged them meanwhile):"
        " 3 actor sets moved by this one\n"
    )
