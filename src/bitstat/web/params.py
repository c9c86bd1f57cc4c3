"""Query parameters of the HTTP API: declared once, read and checked from a query string.

Each endpoint lists its `Param`s; the same list drives the reading here and the OpenAPI
document, so what is documented is what is checked. A bad value raises `BadParameter`, which
names the parameter (a library `QueryError` names its own: `QueryError.param`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import periods as P
from ..errors import BitstatError
from ..schema import Schema


class BadParameter(BitstatError):
    """A query parameter that cannot be used; `parameter` is its name (None: the whole query)."""

    def __init__(self, parameter: str | None, message: str) -> None:
        self.parameter = parameter
        self.message = message
        # (a message that starts with the parameter's name names it already: "start '...': ...")
        named = not parameter or message.startswith(f"{parameter} ")
        super().__init__(message if named else f"{parameter}: {message}")


@dataclass(frozen=True)
class Param:
    """One query parameter: its name, type and limits, as documented in /openapi.json.

    kind: "string", "integer", "time" (ISO date/time or period label), "where" (PROP:VALUE);
    `multiple` parameters may be repeated and arrive as a list.
    """

    name: str
    kind: str = "string"
    required: bool = False
    description: str = ""
    enum: tuple[str, ...] = ()
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    multiple: bool = False

    def json_schema(self) -> dict[str, Any]:
        item: dict[str, Any]
        if self.kind == "integer":
            item = {"type": "integer"}
            if self.minimum is not None:
                item["minimum"] = self.minimum
            if self.maximum is not None:
                item["maximum"] = self.maximum
        else:
            item = {"type": "string", "minLength": 1}
            if self.enum:
                item = {"type": "string", "enum": list(self.enum)}
            elif self.kind == "where":
                item["pattern"] = "^[^:]+:.*$"
        if self.default is not None:
            item["default"] = self.default
        if self.multiple:
            return {"type": "array", "items": item}
        return item


# The namespace parameter every endpoint takes.
NAMESPACE = Param(
    "namespace", description="Namespace (dataset) to use; default: the server's namespace."
)
EVENT = Param("event", required=True, description="Event name.")
START = Param(
    "start",
    "time",
    required=True,
    description="Start of the range (inclusive): a date `2026-11-01`, a time"
    " `2026-11-01T13:00`, or a period label `2026-11`, `2026-W47`, `2026`.",
)
END = Param(
    "end",
    "time",
    description="End of the range (inclusive), same forms as `start`; default: the whole"
    " bucket of `start` (so `start=2026-11` alone is November).",
)
WHERE = Param(
    "where",
    "where",
    multiple=True,
    description="Segment filter `PROP:VALUE` on a `segment` property of the schema, e.g."
    " `where=country:NL`; repeat it for a compound segment (`where=country:NL&where=platform:ios`)."
    " The value is everything after the first colon.",
)


def _where(values: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not name:
            raise BadParameter("where", f"expected PROP:VALUE, got {item!r}")
        if name in found:
            raise BadParameter("where", f"property {name!r} is given twice")
        found[name] = value
    return found


def read(params: Sequence[Param], query: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The declared parameters from a query string's (name, value) pairs, checked and typed.

    Unknown names and repeated single-valued names are errors, so a typo never passes silently.
    A `where` parameter comes back as a dict {prop: value}; missing optional ones as their default.
    """
    by_name = {p.name: p for p in params}
    raw: dict[str, list[str]] = {}
    for name, value in query:
        if name not in by_name:
            known = ", ".join(sorted(by_name))
            raise BadParameter(name, f"unknown parameter (this endpoint takes: {known})")
        raw.setdefault(name, []).append(value)
    out: dict[str, Any] = {}
    for p in params:
        values = raw.get(p.name)
        if not values:
            if p.required:
                raise BadParameter(p.name, "is required")
            out[p.name] = ({} if p.kind == "where" else []) if p.multiple else p.default
            continue
        if not p.multiple and len(values) > 1:
            raise BadParameter(p.name, "is given more than once")
        checked = [_value(p, v) for v in values]
        out[p.name] = (
            (_where(checked) if p.kind == "where" else checked) if p.multiple else checked[0]
        )
    return out


def _value(p: Param, text: str) -> Any:
    if p.kind == "integer":
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", text.strip()):
            raise BadParameter(p.name, f"must be an integer, got {text!r}")
        number = int(text)
        if p.minimum is not None and number < p.minimum:
            raise BadParameter(p.name, f"must be at least {p.minimum}, got {number}")
        if p.maximum is not None and number > p.maximum:
            raise BadParameter(p.name, f"must be at most {p.maximum}, got {number}")
        return number
    if not text:
        raise BadParameter(p.name, "is empty")
    if p.enum and text not in p.enum:
        raise BadParameter(p.name, f"must be one of {', '.join(p.enum)}, got {text!r}")
    return text


def time_range(
    schema: Schema, start: str, end: str | None, *, start_name: str = "start"
) -> tuple[datetime, datetime]:
    """The wall-clock range [lo, hi) of `start`..`end`, each endpoint checked on its own first
    so that an error names the one at fault (`start_name`: what the client called `start`)."""
    first = bucket_span(schema, start, start_name)
    if end is None:
        return first
    bucket_span(schema, end, "end")
    try:
        return P.resolve_range(start, end, schema.tz, schema.periods)
    except BitstatError as exc:
        raise BadParameter("end", str(exc)) from None


# a time whose "+HH:MM" offset came as " HH:MM": an unescaped '+' in a query string; looked
# for only in text as long as a time (the pattern backtracks: quadratic in the length, and a
# query string's length is not bounded, so 100,000 digits held the event loop for seconds)
_PLUS_AS_SPACE = re.compile(r".*[0-9]T?[0-9:.]* ([0-9]{2}(?::?[0-9]{2})?)")
_LONGEST_TIME = 64


def bucket_span(schema: Schema, value: str, name: str) -> tuple[datetime, datetime]:
    """The wall-clock range [lo, hi) of the bucket `value` stands for, given as parameter `name`."""
    try:
        return P.resolve_range(value, None, schema.tz, schema.periods)
    except BitstatError as exc:
        # the library reads a lone time as a range's start, and says so: name what was sent
        message = str(exc)
        if message.startswith("start "):
            message = f"{name} {message.removeprefix('start ')}"
        if len(value) <= _LONGEST_TIME and (offset := _PLUS_AS_SPACE.fullmatch(value)):
            message += (
                f"; a '+' in a URL's query reads as a space: send the offset {offset[1]!r}"
                f" as %2B{offset[1]}"
            )
        raise BadParameter(name, message) from None


def too_long(end: str | None) -> str:
    """The parameter to name when a range is too long for a question: `end`, or `start` when no
    end was given (the range is then the bucket of `start`, so `start` is what to change)."""
    return "end" if end is not None else "start"


def check_period(schema: Schema, name: str, period: str) -> None:
    """`period` must be one the namespace records actor bitmaps for."""
    if period not in schema.periods:
        raise BadParameter(
            name,
            f"{period!r} buckets are not recorded in this namespace"
            f" (periods: {', '.join(schema.periods)})",
        )
