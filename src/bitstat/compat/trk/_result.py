"""trk's query answer: the days, each with its result items, and `find` over them; which of a
day's keys a query reads (trk's location parsing and its accept/ignore globs). Pure."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from bitstat.errors import QueryError

from . import _js
from ._digest import field_name
from ._glob import glob_match

READERS = ("add", "addv", "bmp", "top")  # the key types a query reads (bmp:i never)
EMPTY: dict[str, Any] = {"bmp": 0, "add": {}, "top": {}, "addv": {}}


def parse_location(prefix: str, location: str) -> tuple[str, str] | None:
    """(day, type) of a key listed in a membership set, as trk's `_jobs` reads it: the
    segments after the prefix are `<day>:<type>[:...]:<field>`; `addv:<value>:<label>` is addv;
    a two-segment type (`bmp:i`) is skipped. None for a key trk would not read."""
    if not location.startswith(prefix + ":"):
        return None
    parts = location[len(prefix) + 1 :].split(":")
    if len(parts) < 3:
        return None
    day, kind = parts[0], parts[1:-1]
    if kind[0] == "addv":
        kind = ["addv"]
    if len(kind) == 2 or kind[0] not in READERS:
        return None
    return day, kind[0]


def patterns(option: str, value: str | Iterable[str] | None) -> list[str]:
    """The texts of a query option (`accept`, `allow`, `ignore`: globs; `ignore_jobs`: types):
    one text or a list of them; None or "" is none (trk skipped a filter whose length is 0,
    and a text's length is its own). Anything else is a QueryError naming the option."""
    if value is None or value == "":
        return []
    texts = [value] if isinstance(value, str) else value
    if isinstance(texts, Iterable) and not isinstance(texts, bytes | Mapping):
        texts = list(texts)
        if all(isinstance(text, str) for text in texts):
            return texts
    raise QueryError(f"{option}: a text or a list of texts, got {value!r}", param=option)


def kept(prefix: str, locations: Iterable[str], accept: list[str], ignore: list[str]) -> list[str]:
    """The locations a query reads: not matching an `ignore` glob and, when `accept` globs are
    given, matching one of them. Globs match `<type>:<field>` (the key without prefix and day)
    as trk matched them, with minimatch 3 (see `_glob`)."""
    out = []
    for location in locations:
        raw = ":".join(location[len(prefix) + 1 :].split(":")[1:])
        if any(glob_match(p, raw) for p in ignore):
            continue
        if accept and not any(glob_match(p, raw) for p in accept):
            continue
        out.append(location)
    return out


class TrkResult(dict[str, Any]):
    """trk's answer to a query: `{"days": {day: {"date", "result": [item]}}, "cache": "miss"}`.

    `day` keys are the unix seconds (text) of each local midnight, ascending; an item is
    `{day, type, location, cache_key, result, key}`. A query over no day (its start after its
    end) is `{}`, as in trk, but still has `find`.
    """

    @property
    def days(self) -> dict[str, Any]:
        days: dict[str, Any] = self.get("days", {})
        return days

    def find(self, arg: str | Mapping[str, Any], merge: bool = False) -> Any:
        """One metric of the answer: `"type/key"` (per date: `{"07/07/2016": value}`),
        `"type/key/day"` (that day's value, None without it), or `{type, key, day, merge}`.

        `key` is a field name, compound parts in any order (`user~country`), or ends with one
        (`amount:country` picks the addv of `amount` by `country`). Where several keys end
        with it, the first in key order answers. With `merge`, the dates' values are added up
        per value (numbers): `{"view": 4, ...}`; a `bmp` count does not merge (`{}`).
        """
        kind, key, day, merge = _find_args(arg, merge)
        suffix = ":" + key
        if day is not None:
            entry = self.days.get(day)
            if entry is None:
                return None
            return _first(entry["result"], kind, suffix, None)
        per_date = {
            entry["date"]: _first(entry["result"], kind, suffix, _empty(kind))
            for entry in self.days.values()
        }
        if not merge:
            return per_date
        total: dict[str, int | float] = {}
        for value in per_date.values():
            if isinstance(value, Mapping):
                for k, v in value.items():
                    total[k] = total.get(k, 0) + (_js.plus(v) if isinstance(v, str) else v)
        return total


def _empty(kind: str) -> Any:
    empty = EMPTY[kind]
    return dict(empty) if isinstance(empty, dict) else empty


def _first(items: list[dict[str, Any]], kind: str, suffix: str, default: Any) -> Any:
    for item in items:
        if item["type"] == kind and item["location"].endswith(suffix):
            return item["result"]
    return default


def _find_args(arg: str | Mapping[str, Any], merge: bool) -> tuple[str, str, str | None, bool]:
    if isinstance(arg, Mapping):
        kind, key, day = arg.get("type"), arg.get("key", arg.get("keys")), arg.get("day")
        merge = bool(arg.get("merge", merge))
        if isinstance(key, list | tuple):
            key = "~".join(map(str, key))
    elif isinstance(arg, str):
        parts = arg.split("/")
        kind = parts[0]
        key = parts[1] if len(parts) > 1 else None
        day = parts[2] if len(parts) > 2 else None
    else:
        raise QueryError(f"find takes 'type/key[/day]' or {{type, key}}, got {arg!r}")
    if kind not in EMPTY:
        raise QueryError(f"find: type must be one of {', '.join(EMPTY)}, got {kind!r}")
    if not isinstance(key, str) or not key:
        raise QueryError(f"find: a key is needed, as in {kind}/country, got {arg!r}")
    if isinstance(day, bool) or not isinstance(day, str | numbers.Real | None):
        raise QueryError(
            f"find: a day is the unix seconds of its local midnight (a key of the result's "
            f"days), got {day!r}"
        )
    if not _js.truthy(day):  # trk's `if opt.day`: 0 or "" is every day
        return kind, field_name(key), None, merge
    return kind, field_name(key), _js.text(day), merge  # JavaScript's obj[day]: String(day)
