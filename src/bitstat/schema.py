"""Schema: what a namespace records for each event; parsed, validated, normalised, serialised."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import SchemaError
from .integers import whole
from .periods import PERIODS, parse_label

ID_MODES = ("int", "map")
DEFAULT_MAX_ID = 2**32 - 1
DEFAULT_MAX_VALUE_LENGTH = 1024
DEFAULT_HORIZON = 86400
MAX_NAME_LENGTH = 200  # event and property names
RULE_KINDS = ("count", "sum", "top", "unique", "approx", "segment")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an event or a property (None if it can): names are printed one
    per line by the CLI and shown in the dashboard, so they are printable and short."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name):,} characters long; at most {MAX_NAME_LENGTH} are allowed"
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        return f"holds the unprintable character {bad!r}; names must be printable text"
    return None


def compound(name: str) -> tuple[str, ...]:
    """Split a property name on `~` into its parts, sorted: `b~a` and `a~b` are one key."""
    if not isinstance(name, str) or not name:
        raise SchemaError(f"property name must be non-empty text, got {name!r}")
    problem = name_problem(name)
    if problem:
        raise SchemaError(f"property name {name!r} {problem}")
    parts = name.split("~")
    if any(not p for p in parts):
        raise SchemaError(f"property name {name!r} has an empty part between '~'")
    if len(set(parts)) != len(parts):
        raise SchemaError(f"property name {name!r} repeats a part")
    return tuple(sorted(parts))


def normalise(name: str) -> str:
    return "~".join(compound(name))


@dataclass(frozen=True)
class SumRule:
    """`amount` (one running total) or `amount by country` (a total per value of `country`)."""

    prop: str
    by: str | None = None

    @classmethod
    def parse(cls, text: str) -> SumRule:
        if not isinstance(text, str):
            raise SchemaError(
                f"sum entry must be text like 'amount' or 'amount by country': {text!r}"
            )
        head, sep, tail = text.partition(" by ")
        prop = head.strip()
        if "~" in prop or not prop:
            raise SchemaError(f"sum entry {text!r}: the summed property must be one plain name")
        by = normalise(tail.strip()) if sep else None
        return cls(prop, by)

    def __str__(self) -> str:
        return self.prop if self.by is None else f"{self.prop} by {self.by}"


@dataclass(frozen=True)
class Rules:
    """The properties recorded for one event name."""

    count: tuple[str, ...] = ()
    sum: tuple[SumRule, ...] = ()
    top: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    segment: tuple[str, ...] = ()
    approx: tuple[str, ...] = ()


def _names(kind: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        raise SchemaError(f"{kind}: expected a list of property names, got {value!r}")
    out: list[str] = []
    for item in value:
        name = normalise(item)
        if name not in out:
            out.append(name)
    return tuple(out)


def _rules(spec: Mapping[str, Any], where: str) -> Rules:
    unknown = set(spec) - set(RULE_KINDS)
    if unknown:
        raise SchemaError(f"{where}: unknown keys {sorted(unknown)}; allowed: {list(RULE_KINDS)}")
    sums: list[SumRule] = []
    raw_sums = spec.get("sum") or ()
    for entry in [raw_sums] if isinstance(raw_sums, str) else raw_sums:
        rule = entry if isinstance(entry, SumRule) else SumRule.parse(entry)
        if rule not in sums:
            sums.append(rule)
    rules = Rules(
        count=_names("count", spec.get("count")),
        sum=tuple(sums),
        top=_names("top", spec.get("top")),
        unique=_names("unique", spec.get("unique")),
        segment=_names("segment", spec.get("segment")),
        approx=_names("approx", spec.get("approx")),
    )
    both = [name for name in rules.approx if name in rules.unique]
    if both:
        raise SchemaError(
            f"{where}: {both[0]!r} is in both `unique` (exact distinct values) and `approx`"
            " (estimated with HyperLogLog); choose one"
        )
    return rules


# the units of durations, largest first: (letter parse_duration reads, word, seconds)
DURATION_UNITS = (
    ("w", "week", 604800),
    ("d", "day", 86400),
    ("h", "hour", 3600),
    ("m", "minute", 60),
)


def duration_text(seconds: int) -> str:
    """'1 day', '36 hours', '90 seconds': in the largest unit that divides `seconds`."""
    for _, word, size in DURATION_UNITS:
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {word}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def duration_short(seconds: int) -> str:
    """'1d', '36h', '90': the form `parse_duration` reads back."""
    for letter, _, size in DURATION_UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{letter}"
    return str(seconds)


def _hourly(value: Iterable[str] | str, periods: tuple[str, ...]) -> tuple[str, ...]:
    """The rule families kept per hour, in RULE_KINDS order; "all" names every one."""
    names = list(RULE_KINDS) if value == "all" else [value] if isinstance(value, str) else value
    try:
        chosen = set(names)
    except TypeError:
        raise SchemaError(f"hourly must be a list of rule families, got {value!r}") from None
    stray = chosen - set(RULE_KINDS)
    if stray:
        raise SchemaError(
            f"hourly: {sorted(map(str, stray))} not rule families; choose from {RULE_KINDS}"
            " or 'all'"
        )
    if chosen and "hour" not in periods:
        raise SchemaError("hourly names families kept per hour, but 'hour' is not in periods")
    return tuple(k for k in RULE_KINDS if k in chosen)


def parse_duration(value: Any) -> int:
    """Seconds from `3600`, `"14d"`, `"12h"`, `"30m"`, `"2w"` or a timedelta."""
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
    elif (count := whole(value)) is not None:
        seconds = count
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise SchemaError(f"not a duration: {value!r} (use seconds or text like '14d', '12h')")
    if seconds <= 0:
        raise SchemaError(f"a duration must be positive: {value!r}")
    return seconds


@dataclass(frozen=True)
class Schema(Rules):
    """What a namespace records. Stored in Redis, so readers need no configuration.

    `count`, `sum`, `top`, `unique`, `approx` and `segment` (the `Rules` it is) apply to every
    event; `events` maps an event name to overrides of any of those six lists for that event
    alone. `approx` properties have their distinct values estimated with HyperLogLog (standard
    error 0.81%, at most 12 KB a bucket however many values) instead of counted exactly like
    `unique` ones. `expire` maps a period to how long its keys live after the period ends (e.g.
    `{"hour": "14d"}`).

    With "hour" among `periods`, unique actors and event totals are kept per hour; the rule
    families (`count`, `sum`, `top`, `unique`, `approx`, `segment`) are kept per day and up,
    unless `hourly` names them: an hour holds few events, so per-hour counts, value sets and
    segment bitmaps cost most of the memory and writes for little use. A family kept per day
    answers for whole days only (a range ending mid-day is a QueryError that says so).

    Limits, each rejecting an event alone with the reason: an event without an actor is
    rejected unless `anonymous` is true (it then counts in totals, counts and sums, never in
    unique actors); a value (or a text actor id) longer than `max_value_length` characters is
    rejected; an event more than `horizon` ahead of the clock is rejected (a clock or unit
    mistake, not the future). Times before 1970-01-01 or after 9998-12-31 are never recorded.
    """

    if TYPE_CHECKING:  # set in __init__, not a field: what modules derive from the schema
        derived: dict[Any, Any] = field(init=False)

    actor: str = "user"
    ids: str = "int"
    timezone: str = "UTC"
    periods: tuple[str, ...] = ("day", "week", "month", "year")
    events: Mapping[str, Rules] = field(default_factory=dict)
    expire: Mapping[str, int] = field(default_factory=dict)
    max_id: int = DEFAULT_MAX_ID
    anonymous: bool = False
    max_value_length: int = DEFAULT_MAX_VALUE_LENGTH
    horizon: int = DEFAULT_HORIZON
    hourly: tuple[str, ...] = ()

    def __init__(
        self,
        actor: str = "user",
        ids: str = "int",
        timezone: str = "UTC",
        periods: Iterable[str] = ("day", "week", "month", "year"),
        count: Iterable[str] | str | None = None,
        sum: Iterable[str | SumRule] | str | None = None,
        top: Iterable[str] | str | None = None,
        unique: Iterable[str] | str | None = None,
        segment: Iterable[str] | str | None = None,
        approx: Iterable[str] | str | None = None,
        events: Mapping[str, Mapping[str, Any] | Rules] | None = None,
        expire: Mapping[str, Any] | None = None,
        max_id: int = DEFAULT_MAX_ID,
        anonymous: bool = False,
        max_value_length: int = DEFAULT_MAX_VALUE_LENGTH,
        horizon: Any = DEFAULT_HORIZON,
        hourly: Iterable[str] | str = (),
    ) -> None:
        set_ = object.__setattr__
        if not isinstance(actor, str) or not actor or actor in ("event", "time"):
            raise SchemaError(f"actor must be a property name other than event/time: {actor!r}")
        if problem := name_problem(actor):
            raise SchemaError(f"actor name {actor!r} {problem}")
        if ids not in ID_MODES:
            raise SchemaError(f"ids must be one of {ID_MODES}, got {ids!r}")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise SchemaError(f"unknown time zone {timezone!r}") from exc
        chosen = tuple(p for p in PERIODS if p in set(periods))
        stray = set(periods) - set(PERIODS)
        if stray or not chosen:
            raise SchemaError(f"periods must be a non-empty subset of {PERIODS}, got {periods!r}")
        id_limit = whole(max_id)
        if id_limit is None or not 0 < id_limit < 2**63:
            raise SchemaError(f"max_id must be a positive integer below 2^63, got {max_id!r}")
        if not isinstance(anonymous, bool):
            raise SchemaError(f"anonymous must be true or false, got {anonymous!r}")
        value_limit = whole(max_value_length)
        if value_limit is None or value_limit < 1:
            raise SchemaError(
                f"max_value_length must be a positive integer, got {max_value_length!r}"
            )
        try:
            future = parse_duration(horizon)
        except SchemaError as exc:
            raise SchemaError(f"horizon: {exc}") from None
        kept_hourly = _hourly(hourly, chosen)
        base = _rules(
            {
                "count": count,
                "sum": sum,
                "top": top,
                "unique": unique,
                "approx": approx,
                "segment": segment,
            },
            "schema",
        )
        overrides: dict[str, Rules] = {}
        for name, spec in (events or {}).items():
            if not isinstance(name, str) or not name:
                raise SchemaError(f"events: event names must be non-empty text, got {name!r}")
            if problem := name_problem(name):
                raise SchemaError(f"events: event name {name!r} {problem}")
            overrides[name] = spec if isinstance(spec, Rules) else _rules(spec, f"events[{name!r}]")
        expiry: dict[str, int] = {}
        for period, ttl in (expire or {}).items():
            if period not in chosen:
                raise SchemaError(f"expire: {period!r} is not one of the recorded periods {chosen}")
            expiry[period] = parse_duration(ttl)
        for key, value in (
            ("actor", actor),
            ("ids", ids),
            ("timezone", timezone),
            ("periods", chosen),
            ("count", base.count),
            ("sum", base.sum),
            ("top", base.top),
            ("unique", base.unique),
            ("segment", base.segment),
            ("approx", base.approx),
            ("events", overrides),
            ("expire", expiry),
            ("max_id", id_limit),
            ("anonymous", anonymous),
            ("max_value_length", value_limit),
            ("horizon", future),
            ("hourly", kept_hourly),
        ):
            set_(self, key, value)
        # what other modules compute from the schema alone, remembered per schema (not a field)
        set_(self, "derived", {})

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def periods_of(self, family: str | None) -> tuple[str, ...]:
        """The periods a rule family is kept for (None: unique actors and event totals)."""
        if family is None or family in self.hourly or "hour" not in self.periods:
            return self.periods
        return self.periods[1:]  # "hour" is always first

    def rules_for(self, event: str) -> Rules:
        """The rules for one event: its override where one is given, else the schema's lists."""
        base = self.base_rules()
        override = self.events.get(event)
        if override is None:
            return base
        return override

    def base_rules(self) -> Rules:
        """The lists that apply to every event without an override."""
        return Rules(self.count, self.sum, self.top, self.unique, self.segment, self.approx)

    def to_dict(self) -> dict[str, Any]:
        def rules(r: Rules) -> dict[str, Any]:
            out: dict[str, Any] = {
                "count": list(r.count),
                "sum": [str(s) for s in r.sum],
                "top": list(r.top),
                "unique": list(r.unique),
            }
            if r.approx:  # absent when unused: a schema without it is stored as it was before
                out["approx"] = list(r.approx)
            out["segment"] = list(r.segment)
            return out

        return {
            "actor": self.actor,
            "ids": self.ids,
            "timezone": self.timezone,
            "periods": list(self.periods),
            **rules(self.base_rules()),
            "events": {name: rules(r) for name, r in sorted(self.events.items())},
            "expire": dict(sorted(self.expire.items())),
            "max_id": self.max_id,
            # the limits are stored only when they differ from the defaults, so a schema
            # stored before they existed reads back equal
            **({"anonymous": True} if self.anonymous else {}),
            **(
                {"max_value_length": self.max_value_length}
                if self.max_value_length != DEFAULT_MAX_VALUE_LENGTH
                else {}
            ),
            **({"horizon": self.horizon} if self.horizon != DEFAULT_HORIZON else {}),
            # always stored with hours: a stored schema without it predates it (see from_json)
            **({"hourly": list(self.hourly)} if "hour" in self.periods else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SchemaError(f"unknown schema keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Schema:
        return read_stored(text)[0]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"Schema({self.to_json()})"


# (period, Unix time, expire seconds before): configure() lengthened that period's `expire` then.
# Keys written before keep the expiry they were written with, so a bucket begun before the
# change is judged by the shorter one (it may be gone).
ExpireChange = tuple[str, int, int]


def expire_lengthened(old: Schema, new: Schema, now: float) -> tuple[ExpireChange, ...]:
    """The periods whose expiry `new` lengthens (or lifts) from `old`'s, at `now`."""
    return tuple(
        (period, int(now), ttl)
        for period, ttl in sorted(old.expire.items())
        if period in new.periods and new.expire.get(period, ttl + 1) > ttl
    )


def kept_for(
    schema: Schema, changes: Iterable[ExpireChange], period: str, label: str
) -> int | None:
    """Seconds a bucket's keys live after it ends (None: for ever): the schema's expiry, or
    a shorter one in force when the bucket began (its keys were written with that). Reads
    and writes both judge a bucket by it, so no write keeps what no read would answer."""
    ttl = schema.expire.get(period)
    began: float | None = None
    for changed, at, before in changes:
        if changed == period:
            if began is None:
                began = parse_label(label).start.replace(tzinfo=schema.tz).timestamp()
            if began < at and (ttl is None or before < ttl):
                ttl = before
    return ttl


# (period, first day, last day): configure() added that period while the namespace held data
# on those days (day numbers since 1970-01-01, local; the last one at least the day it was
# added). Its buckets touching them hold only what was recorded since: a question reads them
# from finer periods. An entry "distinct:<event>:<prop>" is a property switched between
# `unique` and `approx` (ops.DISTINCT_SWITCHED): its buckets touching those days are refused.
PeriodAdded = tuple[str, int, int]


class Stored(NamedTuple):
    """A namespace's stored schema, and what its data went through."""

    schema: Schema
    expire_changes: tuple[ExpireChange, ...] = ()
    periods_added: tuple[PeriodAdded, ...] = ()


def stored_text(
    schema: Schema,
    changes: tuple[ExpireChange, ...] = (),
    added: tuple[PeriodAdded, ...] = (),
) -> str:
    """A namespace's stored schema: the schema, the expiry changes its data went through and
    the periods added while it held data."""
    data = schema.to_dict()
    if changes:
        data["expire_changes"] = [list(c) for c in changes]
    if added:
        data["periods_added"] = [list(a) for a in added]
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def read_stored(text: str | bytes) -> Stored:
    """`stored_text` read back."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SchemaError(f"stored schema is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError("stored schema is not a JSON object")
    changes = tuple((str(p), int(t), int(ttl)) for p, t, ttl in data.pop("expire_changes", ()))
    added = tuple((str(p), int(a), int(b)) for p, a, b in data.pop("periods_added", ()))
    if "hour" in data.get("periods", ()) and "hourly" not in data:
        # stored before `hourly` existed, when every family was kept per hour
        data["hourly"] = list(RULE_KINDS)
    return Stored(Schema.from_dict(data), changes, added)
