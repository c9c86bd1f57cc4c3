"""trk's map, and what `record()` writes for one event under it, in trk's key layout. Pure.

Keys of a day (`dkey` = `<prefix>:<unix seconds of the local midnight>`):

- `<dkey>:add:<field>`            hash, value -> count                      (map.add)
- `<dkey>:top:<field>`            sorted set, value -> count                (map.top)
- `<dkey>:bmp:<field>`            bitmap, a bit per distinct value          (map.bmp)
- `<dkey>:bmp:i:<field>`          sorted set, value -> its bit (0, 1, ...)  (map.bmp)
- `<dkey>:addv:<value>:<label>`   hash, label value -> sum of `value`       (map.addv)
- `<dkey>:addv:<value>:i`         hash, `sum` and `count` of `value`        (map.addv)
- `<prefix>:k:<day>`              set of the day's keys above (but no `bmp:i`): what queries read
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bitstat.errors import InvalidEvent, SchemaError
from bitstat.events import unicode_problem

from . import _js

KINDS = ("bmp", "add", "top", "addv")


def utf16(name: str) -> bytes:
    """The sort key of JavaScript's default `sort()`: UTF-16 code units."""
    return name.encode("utf-16-be", "surrogatepass")


def field_name(name: str) -> str:
    """A compound name with its parts sorted, as trk stores it: `user~country` -> `country~user`."""
    return "~".join(sorted(name.split("~"), key=utf16)) if "~" in name else name


@dataclass(frozen=True)
class Spec:
    """A normalised trk map: field names with compound parts sorted; addv as (label, value)."""

    bmp: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    top: tuple[str, ...] = ()
    addv: tuple[tuple[str, str], ...] = ()
    pairs: tuple[tuple[str, str, str], ...] = ()  # (compound, first, second) trk builds itself

    @classmethod
    def parse(cls, map: Mapping[str, Any] | None) -> Spec:
        """Check and normalise trk's map: bmp, add, top: [names]; addv: [name or {key, value}]."""
        if map is not None and not isinstance(map, Mapping):
            raise SchemaError(f"trk map: a mapping of kinds ({', '.join(KINDS)}), got {map!r}")
        map = dict(map or {})
        unknown = sorted(set(map) - set(KINDS))
        if unknown:
            raise SchemaError(f"trk map: unknown kind {unknown[0]!r} (kinds: {', '.join(KINDS)})")
        lists = {kind: _names(kind, map.get(kind)) for kind in ("bmp", "add", "top")}
        addv = tuple(_addv_entry(x) for x in _entries("addv", map.get("addv")))
        used = [*lists["bmp"], *lists["add"], *lists["top"], *(label for label, _ in addv)]
        pairs = {}
        for name in used:
            parts = name.split("~")
            if len(parts) == 2 and parts[0] != parts[1]:
                pairs[name] = (name, parts[0], parts[1])
        return cls(lists["bmp"], lists["add"], lists["top"], addv, tuple(pairs.values()))


def _entries(kind: str, entries: Any) -> list[Any]:
    if entries is None:
        return []
    if isinstance(entries, str) or not isinstance(entries, Iterable):
        raise SchemaError(f"trk map: {kind} must be a list, got {entries!r}")
    return list(entries)


def _names(kind: str, entries: Any) -> tuple[str, ...]:
    names = []
    for entry in _entries(kind, entries):
        if not isinstance(entry, str) or not entry:
            raise SchemaError(f"trk map: {kind} entries are property names, got {entry!r}")
        check_text(f"trk map: {kind} {entry!r}", entry)
        if entry.count(":") == 1:  # <type>:a:b parses as a two-part type, as bmp:i does
            raise SchemaError(
                f"trk map: {kind} {entry!r} would be written but never read: trk's query takes "
                f"the key {kind}:{entry} for a two-part type (as bmp:i) and skips it"
            )
        names.append(field_name(entry))
    return tuple(names)


def check_text(what: str, text: str) -> None:
    """SchemaError for a name no key can hold (a lone surrogate is not UTF-8 text)."""
    if problem := unicode_problem(text):
        raise SchemaError(f"{what} {problem}")


def _addv_entry(entry: Any) -> tuple[str, str]:
    if isinstance(entry, str) and entry:
        check_text(f"trk map: addv {entry!r}", entry)
        return entry, entry
    if isinstance(entry, Mapping):
        label = entry.get("key")
        value = entry["value"] if entry.get("value") is not None else entry.get("val")
        if isinstance(label, str) and label and isinstance(value, str) and value:
            check_text(f"trk map: addv {entry!r}", label + value)
            return field_name(label), value
    raise SchemaError(
        f"trk map: addv entries are a property name or {{key, value}} names, got {entry!r}"
    )


@dataclass
class Writes:
    """What one event writes: trk's Redis commands, in its order, with full key names."""

    idents: list[tuple[str, str, str]] = field(default_factory=list)  # (id map, bitmap, member)
    # (hash, field, increment, the property whose value it counts or sums)
    hincr: list[tuple[str, str, int, str]] = field(default_factory=list)
    zincr: list[tuple[str, str]] = field(default_factory=list)  # (sorted set, member)
    members: list[str] = field(default_factory=list)  # keys added to the day's membership set
    not_summed: list[tuple[str, str]] = field(default_factory=list)  # (key, value's text)


def digest(spec: Spec, dkey: str, event: Any) -> Writes:
    """trk's `record()` of `event` under `spec`, for the day `dkey`.

    Every pair of top-level properties without `~` also stands as `a~b` (names sorted, values
    joined in that order) unless the event has a truthy `a~b` itself; a property is recorded
    only when its value is truthy (JavaScript's sense); values are written as JavaScript's
    `String(v)` would. A mapping value raises InvalidEvent (trk wrote "[object Object]").
    """
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"an event is a mapping of properties, got {type(event).__name__}")
    obj = {k if isinstance(k, str) else _js.text(k): v for k, v in event.items()}
    for name, first, second in spec.pairs:
        if first in obj and second in obj and not _js.truthy(obj.get(name)):
            obj[name] = _text(obj, first) + "~" + _text(obj, second)
    out = Writes()
    for name in spec.bmp:
        if _js.truthy(obj.get(name)):
            bitmap = f"{dkey}:bmp:{name}"
            out.members.append(bitmap)
            out.idents.append((f"{dkey}:bmp:i:{name}", bitmap, _text(obj, name)))
    for name in spec.add:
        if _js.truthy(obj.get(name)):
            key = f"{dkey}:add:{name}"
            out.members.append(key)
            out.hincr.append((key, _text(obj, name), 1, name))
    for name in spec.top:
        if _js.truthy(obj.get(name)):
            key = f"{dkey}:top:{name}"
            out.members.append(key)
            out.zincr.append((key, _text(obj, name)))
    for label, value in spec.addv:
        amount = obj.get(value)
        if not (_js.truthy(obj.get(label)) and _js.truthy(amount) and not _js.is_nan(amount)):
            continue
        by_label, totals = f"{dkey}:addv:{value}:{label}", f"{dkey}:addv:{value}:i"
        out.members += [by_label, totals]
        amount_text = _text(obj, value)
        increment = _js.redis_int(amount_text)
        if label != value:
            if increment is None:
                out.not_summed.append((by_label, amount_text))
            else:
                out.hincr.append((by_label, _text(obj, label), increment, value))
        if increment is None:
            out.not_summed.append((totals, amount_text))
        else:
            out.hincr.append((totals, "sum", increment, value))
        out.hincr.append((totals, "count", 1, value))
    return out


def _text(obj: Mapping[str, Any], name: str) -> str:
    try:
        return _js.text(obj[name])
    except _js.ObjectValue:
        raise InvalidEvent(
            "an object value cannot be recorded (trk wrote it as '[object Object]')", field=name
        ) from None
    except _js.Unwritable as exc:
        raise InvalidEvent(str(exc), field=name) from None
