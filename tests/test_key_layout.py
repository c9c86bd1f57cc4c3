"""The key layout is written in one place, keys.py: the docs' key table is `keys.layout_text()`,
and `keys.layout()` shows every family of key names that keys.py makes. No server."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from bitstat import keys

ROOT = Path(__file__).resolve().parent.parent
# members of Keys that are not key names: tags, parts of names, patterns, prefixes scripts extend
NOT_KEY_NAMES = {
    "namespace",
    "ns",
    "meta_tag",
    "ids_tag",
    "shard_tag",
    "event_tag",
    "segment",
    "patterns",
    "actors_pattern",
    "value_buckets",
    "id_reverse_prefix",
    "id_alias_prefix",
}


def doc_tables() -> list[tuple[Path, str]]:
    """Every fenced block of the docs that shows the key layout (it starts with the schema)."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S):
            if block.startswith("{shop}:schema"):
                found.append((path, block))
    return found


def test_the_docs_key_table_is_the_layout_of_keys_py() -> None:
    tables = doc_tables()
    assert tables, "no key table (a block starting with {shop}:schema) in README.md or docs/"
    for path, block in tables:
        assert block == keys.layout_text(), (
            f"the key table of {path.relative_to(ROOT)} differs from keys.layout_text(); "
            f"paste this:\n{keys.layout_text()}"
        )


def test_the_layout_shows_every_key_name_keys_py_makes() -> None:
    k = keys.Keys("shop")
    members = {name for name in dir(k) if not name.startswith("_")} - NOT_KEY_NAMES
    shown = inspect.getsource(keys.layout)
    missing = sorted(name for name in members if not re.search(rf"\.{name}\b", shown))
    assert not missing, f"keys.layout() shows no example of {missing}"
    for function in (keys.register, keys.stream_bounds):
        assert f"{function.__name__}(" in shown


def test_the_examples_are_the_names_the_code_makes() -> None:
    k = keys.Keys("shop")
    names = " ".join(key for key, _ in keys.layout())
    assert k.actors(0, "login", "2026-11") in names.split()
    assert k.id_aliases(42) == "{shop:ids}:al:42" and k.id_reverse(42) == "{shop:ids}:r:0"
    assert k.id_reverse(200).startswith(k.id_reverse_prefix)
    assert k.value_bucket("login", "ip", "10.0.0.1").startswith(k.value_buckets("login", "ip"))
    assert keys.register(k.shard_tag(0), "t", 1) == keys.Keys.temp(k.shard_tag(0), "t") + ":1"
    assert keys.is_temp(keys.register(k.shard_tag(0), "t", 1))
    assert keys.tag_of(k.actors_pattern(3)) == k.shard_tag(3)
    # every name of the layout keeps its hash tag first (one slot per tag on a cluster)
    for key in names.split():
        if key.startswith("{"):
            assert keys.tag_of(key).count("{") == 1, key
