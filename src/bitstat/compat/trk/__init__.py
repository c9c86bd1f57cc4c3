"""A drop-in replacement for trk 0.3.0 (node.js), in Python: same map, same answers, same keys.

    from bitstat.compat.trk import Trk

    trk = Trk("redis://localhost:6379/0", key="tky", map={"add": ["event", "country~event"]})
    trk.record({"event": "view", "country": "US"})
    trk.query_days(7).find("add/country~event")

Data written by node trk is read here, and data written here is read by node trk: the keys
are trk's (see `_digest`). What differs from trk, and why, is listed in docs/trk.md.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis.exceptions as rex

from bitstat.errors import BitstatError, InvalidEvent, QueryError, SchemaError, ServerError
from bitstat.store import client_from_url, resolve_url, wrapped_errors

from ._digest import Spec, Writes, check_text, digest
from ._js import INT64_MAX, INT64_MIN, parse_int, plus
from ._result import READERS, TrkResult, kept, parse_location, patterns

__all__ = ["LayoutError", "Recorded", "Trk", "TrkResult"]

# unix seconds of 10000-01-01: later (or as early before 1970) is past any date
_MAX_SECONDS = 253402300800
TRK_OPTIONS = ("redis", "client", "key", "prefix", "map", "memcached")
DEFAULT_PREFIX = "metrics"  # node trk's: `@key = opt.key ? opt.prefix ? 'metrics'`
OLD_DEFAULT = "tky"  # Trk(url, map=...)'s default before 2026-12-07
OLD_DEFAULT_DAYS = 7  # days before a record's day whose data under OLD_DEFAULT refuses it
TOP_LIMIT = 250  # trk reads the first 250 members of a top sorted set
SADD_CHUNK = 1000  # members per SADD op of the script (Lua's unpack has a limit)
WRITE_TRIES = 5  # calls of a batch whose totals near 64 bits other writers keep moving
_SCRIPT = resources.files(__package__).joinpath("record.lua").read_text("utf-8")
_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()
_KIND_LETTER = {"add": "h", "addv": "h", "top": "z", "bmp": "b"}


class LayoutError(BitstatError, ValueError):
    """trk's key layout cannot live where it is asked to (a cluster, without a hash tag)."""


@dataclass
class Recorded:
    """What `record_many` did. `rejected`: (index, reason) of the events not written at all;
    `not_summed`: (index, key, value) of addv values counted but not added to the sum, as trk
    did, because HINCRBY takes integers only (2.5, "1e3", "07")."""

    recorded: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    not_summed: list[tuple[int, str, str]] = field(default_factory=list)


class Zone:
    """Where days start: local midnight in an IANA zone, or in this process's zone (None)."""

    def __init__(self, tz: str | tzinfo | None) -> None:
        if tz is not None and not isinstance(tz, str | tzinfo):
            raise SchemaError(f"tz: a time zone's name (or a tzinfo, or None), got {tz!r}")
        try:
            self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SchemaError(f"tz: no time zone {tz!r}") from exc

    def date_of(self, when: Any, param: str) -> date:
        """The local date of `when` (as `seconds` takes it); QueryError naming `param` when
        `when` is no time, or has no date within years 1-9999 here."""
        seconds = self.seconds(when, param)
        try:
            day = datetime.fromtimestamp(seconds, self.tz).date()
            self.midnight(day)
        except (ValueError, OverflowError, OSError):
            raise QueryError(
                f"{param}: {when!r} has no day within years 1-9999 in this zone", param=param
            ) from None
        return day

    def midnight(self, day: date) -> int:
        local = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        return round(local.timestamp())

    def seconds(self, when: Any, param: str) -> float:
        """Unix seconds of `when`: a number (unix seconds, as trk) or its text, a datetime
        (naive: a wall time in this zone) or a date (its local midnight); None is now.
        Anything else is a QueryError naming `param` and the value given."""
        if when is None:
            return time.time()
        # trk's `min * 1000` took a text as JavaScript's Number(); not a number's text: NaN
        number = plus(when) if isinstance(when, str) else when
        if isinstance(number, numbers.Real) and not isinstance(number, bool):
            try:
                seconds = float(number)  # numpy's too: np.int64 is no int
            except OverflowError:
                seconds = math.inf
            if math.isfinite(seconds) and abs(seconds) < _MAX_SECONDS:
                return seconds
            hint = " (milliseconds? trk took seconds)" if abs(seconds) < _MAX_SECONDS * 1000 else ""
            if not math.isnan(seconds) or not isinstance(when, str):
                raise QueryError(
                    f"{param}: a time is unix seconds within years 1-9999, got {when!r}{hint}",
                    param=param,
                )
        try:
            if isinstance(when, datetime):
                if when.tzinfo is None and self.tz is not None:
                    when = when.replace(tzinfo=self.tz)
                return float(when.timestamp())
            if isinstance(when, date):
                return float(self.midnight(when))
        except (ValueError, OverflowError, OSError):
            raise QueryError(
                f"{param}: {when!r} is outside years 1-9999 in this zone", param=param
            ) from None
        raise QueryError(
            f"{param}: a time is unix seconds (a number, or its text), a datetime or a date, "
            f"got {when!r}",
            param=param,
        )


class Trk:
    """trk's `Metrics`: `record` events under a map, `query` days of counters.

    `url` is taken as `bitstat.connect` takes it (None: $BITSTAT_URL, else the embedded server
    under `data_dir`); `client` is an existing redis-py client to use instead. `key` is trk's
    prefix, "metrics" (node trk's) when not given (it may contain `:`; on a Redis Cluster it
    must carry a hash tag, as `{tky}`, so a day's keys share a slot). With no key given, a Trk
    refuses (SchemaError) to record or query where "tky", this default before 2026-12-07,
    holds data of the days concerned: pass key="tky" or key="metrics". `map` is trk's map:
    `bmp`, `add`, `top` (property names, compound ones joined with `~`) and `addv` (a name, or
    `{"key": label, "value": name}`). `tz` is the zone whose local midnight starts a day
    (None: this process's zone, as trk used).
    trk's own options object is taken too: `Trk({"redis": client, "key": ..., "map": ...})`.
    Nothing connects until the first call.
    """

    def __init__(
        self,
        url: str | Mapping[str, Any] | None = None,
        key: str | None = None,
        map: Mapping[str, Any] | None = None,
        tz: str | tzinfo | None = None,
        *,
        client: Any = None,
        data_dir: str | Path | None = None,
        timeout: float | None = None,
    ) -> None:
        if isinstance(url, Mapping):  # trk's own form: new Metrics({redis, key, map})
            if key is not None or map is not None or client is not None:
                raise SchemaError("Trk: give key, map and client in trk's options or as arguments")
            url, key, map, client = trk_options(url)
        elif url is not None and not isinstance(url, str):
            raise SchemaError(f"url: a server's URL, trk's options or None, got {url!r}")
        self._old_default = key is None  # (trk's options always named a key, or "metrics")
        key = DEFAULT_PREFIX if key is None else key
        if not isinstance(key, str) or not key:
            raise SchemaError(f"key (trk's prefix) must be a non-empty text, got {key!r}")
        check_text("key (trk's prefix)", key)
        self.key = key
        self.spec = Spec.parse(map)
        self.zone = Zone(tz)
        self._url = url
        self._data_dir = data_dir
        self._timeout = timeout
        self._client = client
        self._owned = client is None
        self._checked = False
        self._cluster = False

    @property
    def client(self) -> Any:
        """The redis-py client (made on first use), checked to fit trk's layout."""
        if self._client is None:
            url = resolve_url(self._url, self._data_dir, "everysec")
            self._client = client_from_url(url, self._timeout)[0]
        if not self._checked:
            self._cluster = hasattr(self._client, "get_nodes")
            if self._cluster and not has_hash_tag(self.key):
                raise LayoutError(
                    f"trk's keys of one day span slots of a Redis Cluster unless the prefix "
                    f"carries a hash tag: use key='{{{self.key}}}' (prefix {self.key!r} has none)"
                )
            self._checked = True
        return self._client

    def close(self) -> None:
        """Close the client this object made (a client passed in is left open)."""
        if self._client is not None and self._owned:
            self._client.close()
            self._client = None

    def __enter__(self) -> Trk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def day_of(self, now: Any = None) -> int:
        """trk's day bucket of `now`: the unix seconds of its local midnight."""
        return self.zone.midnight(self.zone.date_of(now, "now"))

    # recording
    def record(self, obj: Mapping[str, Any], now: Any = None) -> Recorded:
        """Record one event object on the day of `now` (default: the current time).

        An event that cannot be recorded raises InvalidEvent (naming the property) and writes
        nothing: a value with no text to send, or an increment that would take a total past
        64 bits.
        """
        dkey, membership, old = self._day_keys(now)
        writes = digest(self.spec, dkey, obj)
        refused = self._write(membership, [(0, writes)], old)
        if refused:
            raise refused[0]
        return Recorded(1, not_summed=[(0, key, value) for key, value in writes.not_summed])

    def record_many(self, objs: Iterable[Mapping[str, Any]], now: Any = None) -> Recorded:
        """Record a batch of event objects on the day of `now`, in one server call: the whole
        batch is written at once or, if the stored keys could not take it, not at all (an error
        names the key). An event that cannot be recorded is rejected alone, with the reason:
        among them an event whose increment would take a total past 64 bits, in batch order
        (the server tells the totals, and the rest is sent again: a second call)."""
        # one event, text or None would be iterated as keys, letters or not at all
        if isinstance(objs, Mapping | str | bytes) or not isinstance(objs, Iterable):
            given = f"a {type(objs).__name__}" if objs is not None else "None"
            raise TypeError(
                f"record_many takes an iterable of events (mappings), not {given}: "
                "pass a list of events, [] for none, or call record() for one"
            )
        dkey, membership, old = self._day_keys(now)
        rejected: dict[int, InvalidEvent] = {}
        batch = []
        for index, obj in enumerate(objs):
            try:
                batch.append((index, digest(self.spec, dkey, obj)))
            except InvalidEvent as exc:
                rejected[index] = exc
        refused = self._write(membership, batch, old)
        rejected |= refused
        result = Recorded(len(batch) - len(refused))
        result.rejected = [(index, str(rejected[index])) for index in sorted(rejected)]
        for index, writes in batch:
            if index not in refused:
                result.not_summed += [(index, key, value) for key, value in writes.not_summed]
        return result

    def _day_keys(self, now: Any) -> tuple[str, str, dict[str, date]]:
        """The day's key prefix, its membership set, and the old default's day sets that must
        not exist (`_old_sets`) to record on that day."""
        if self.spec == Spec():  # trk recorded nothing then, and said nothing
            raise SchemaError(
                "this Trk has no map, and records nothing without one: give map= (bmp, add, "
                "top, addv); a Trk that only queries needs none"
            )
        day = self.zone.date_of(now, "now")
        midnight = self.zone.midnight(day)
        back = min(OLD_DEFAULT_DAYS, (day - date.min).days)
        old = self._old_sets(day - timedelta(days=i) for i in range(back + 1))
        return f"{self.key}:{midnight}", f"{self.key}:k:{midnight}", old

    def _old_sets(self, dates: Iterable[date]) -> dict[str, date]:
        """With no key given, the day sets of `dates` under OLD_DEFAULT: while one holds data,
        this Trk would split (or miss) what a Trk of the old default recorded."""
        sets: dict[str, date] = {}
        for day in dates if self._old_default else ():
            try:
                sets[f"{OLD_DEFAULT}:k:{self.zone.midnight(day)}"] = day
            except (OverflowError, ValueError, OSError):  # before year 1 in this zone
                continue
        return sets

    def _old_data(self, key: str, day: date) -> SchemaError:
        return SchemaError(
            f"Trk: no key given, so the prefix is node trk's default {DEFAULT_PREFIX!r} (it was "
            f"{OLD_DEFAULT!r} before 2026-12-07), but {OLD_DEFAULT!r} holds trk data of "
            f"{day.isoformat()} ({key}): pass key={OLD_DEFAULT!r} to go on with that data, or "
            f"key={DEFAULT_PREFIX!r} to leave it unread"
        )

    def _write(
        self, membership: str, writes: list[tuple[int, Writes]], old: dict[str, date]
    ) -> dict[int, InvalidEvent]:
        """Write the (index, writes) of events in one record.lua call; the events it refused,
        by index: those whose increment would take a total past 64 bits. The server says so
        with the stored totals, writing nothing; the others are then sent again. A key of
        `old` (day sets of the old default prefix) that exists refuses all, writing nothing."""
        refused: dict[int, InvalidEvent] = {}
        for _ in range(WRITE_TRIES):
            kept = [(index, w) for index, w in writes if index not in refused]
            batch = Batch(membership, list(old))
            for _, w in kept:
                batch.add(w)
            if not batch.members:
                return refused
            keys, args = batch.call()
            with wrapped_errors("trk record"):
                try:
                    reply = self._call_once("EVALSHA", _SHA, keys, args)
                except rex.NoScriptError:
                    reply = self._call_once("EVAL", _SCRIPT, keys, args)
            if not isinstance(reply, list):
                return refused
            if _text(reply[0]) == "elsewhere":
                found = _text(reply[1])
                raise self._old_data(found, old[found])
            stored = dict(zip(batch.fields(), map(int, map(_text, reply[1:])), strict=True))
            refused |= past_64_bits(kept, stored)
        raise ServerError(
            f"trk record: totals near 64 bits changed under this batch {WRITE_TRIES} times "
            "(other writers adding to them): nothing of it was written"
        )

    def _call_once(self, command: str, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run record.lua once. A write whose reply was lost may have landed, so it must not be
        sent again: redis-py's cluster client resends a command after a connection error
        unless it is told the node to run it on (redirects are still followed)."""
        client = self.client
        on = {"target_nodes": client.get_node_from_key(keys[0])} if self._cluster else {}
        return client.execute_command(command, script, len(keys), *keys, *args, **on)

    # querying
    def query(
        self,
        min_ts: Any,
        max_ts: Any = None,
        *,
        accept: str | Iterable[str] | None = None,
        allow: str | Iterable[str] | None = None,
        ignore: str | Iterable[str] | None = None,
        ignore_jobs: str | Iterable[str] | None = (),
        return_jobs: bool = False,
    ) -> Any:
        """trk's `query(min, max, opt)`: every recorded metric of every local day from the day
        of `min_ts` to the day of `max_ts` (unix seconds, datetimes or dates; `max_ts` omitted:
        the day of `min_ts`), as a TrkResult.

        `accept` (or its alias `allow`) and `ignore` are globs (or lists of globs) on
        `<type>:<field>`, e.g. `"add:*"`, `"top:country~*"`; `ignore_jobs` leaves out whole
        types (`"bmp"`, ...). With `return_jobs`, only the list of keys that would be read.
        """
        first = self.zone.date_of(min_ts, "min_ts")
        last = first if max_ts is None else self.zone.date_of(max_ts, "max_ts")
        dates = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        days = {str(self.zone.midnight(d)): d for d in dates}
        # accept, even "", wins over allow (trk then left allow unread)
        accepted = patterns("accept", accept) if accept is not None else patterns("allow", allow)
        ignored = patterns("ignore", ignore)
        ignore_jobs = patterns("ignore_jobs", ignore_jobs)  # a text is one type, as globs are
        unknown = set(ignore_jobs) - set(READERS)
        if unknown:
            raise QueryError(
                f"ignore_jobs: unknown type {sorted(unknown)[0]!r} (types: {', '.join(READERS)})",
                param="ignore_jobs",
            )
        with wrapped_errors("trk query"):
            old = self._old_sets(days.values())
            members = self._pipeline(
                [("SMEMBERS", f"{self.key}:k:{d}") for d in days] + [("EXISTS", key) for key in old]
            )
            for (key, old_day), found in zip(old.items(), members[len(days) :], strict=True):
                if found:
                    raise self._old_data(key, old_day)
            del members[len(days) :]
            jobs: dict[str, tuple[str, str]] = {}
            for listed in members:
                for raw in listed:
                    location = _text(raw)  # (a client= may decode replies itself)
                    parsed = parse_location(self.key, location)
                    if parsed and parsed[1] not in ignore_jobs:
                        jobs.setdefault(location, parsed)
            locations = sorted(kept(self.key, jobs, accepted, ignored))
            if return_jobs:
                return locations
            values = self._pipeline([read_command(jobs[loc][1], loc) for loc in locations])
        if not days:
            return TrkResult()
        out: dict[str, Any] = {
            unix: {"date": d.strftime("%m/%d/%Y"), "result": []} for unix, d in days.items()
        }
        for location, raw_value in zip(locations, values, strict=True):
            day, kind = jobs[location]
            if day not in out:
                continue
            out[day]["result"].append(
                {
                    "day": day,
                    "type": kind,
                    "location": location,
                    "cache_key": f"_cache:{location}",
                    "result": decode(kind, raw_value),
                    "key": location.split(":")[-1].split("~"),
                }
            )
        return TrkResult(days=out, cache="miss")

    def query_days(self, n: int, now: Any = None, **opt: Any) -> Any:
        """trk's `query_days(n)`: the last `n` local days, today included (a negative `n` is
        the same as `-n`; 0 is no day at all). Takes `query`'s options."""
        days = plus(n) if isinstance(n, str) else n  # a text as trk's JavaScript took it
        if isinstance(days, bool) or not isinstance(days, numbers.Integral):
            raise QueryError(f"n: query_days takes a whole number of days, got {n!r}", param="n")
        days = int(days)  # timedelta takes no numpy integer
        today = self.zone.date_of(now, "now")
        if days == 0:
            return self.query(today + timedelta(days=1), today, **opt)
        try:
            first = today - timedelta(days=abs(days) - 1)
        except OverflowError:
            raise QueryError(f"n: query_days({n!r}) goes past year 1", param="n") from None
        return self.query(first, today, **opt)

    def _pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute())


def trk_options(opt: Mapping[str, Any]) -> tuple[str | None, str, Any, Any]:
    """(url, key, map, client) of trk's constructor object, read as trk read it: `redis` (or
    `client`; here also a URL), `key` (or `prefix`, else trk's "metrics"), `map`; `memcached`
    is left unused (nothing is cached)."""
    unknown = sorted(set(opt) - set(TRK_OPTIONS), key=str)
    if unknown:
        raise SchemaError(
            f"Trk: {unknown[0]!r} is none of trk's options ({', '.join(TRK_OPTIONS)})"
        )

    def given(*names: str) -> Any:  # CoffeeScript's `a ? b`: the first that is not null
        return next((opt[n] for n in names if opt.get(n) is not None), None)

    redis = given("redis", "client")
    key = given("key", "prefix")
    url = redis if isinstance(redis, str) else None
    return url, DEFAULT_PREFIX if key is None else key, opt.get("map"), None if url else redis


def has_hash_tag(prefix: str) -> bool:
    """Whether every key `<prefix>:...` hashes by a tag inside the prefix (one cluster slot)."""
    start = prefix.find("{")
    end = prefix.find("}", start + 1) if start >= 0 else -1
    return start >= 0 and end > start + 1


def read_command(kind: str, location: str) -> tuple[Any, ...]:
    if kind == "bmp":
        return ("BITCOUNT", location)
    if kind == "top":
        return ("ZREVRANGEBYSCORE", location, "+inf", "-inf", "WITHSCORES", "LIMIT", 0, TOP_LIMIT)
    return ("HGETALL", location)


def decode(kind: str, raw: Any) -> Any:
    """A read's reply as trk returned it: texts for hashes, parseInt'ed scores, a count."""
    if kind == "bmp":
        return int(raw)
    if kind == "top":
        pairs = _pairs(raw)
        return {_text(m): _score(s) for m, s in pairs}
    return {_text(k): _text(v) for k, v in dict(raw).items()}


def _pairs(raw: Any) -> Iterator[tuple[Any, Any]]:
    if raw and isinstance(raw[0], list | tuple):
        yield from ((m, s) for m, s in raw)
    else:
        yield from zip(raw[::2], raw[1::2], strict=True)


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _score(raw: Any) -> int | None:
    return parse_int(_text(raw)) if not isinstance(raw, int | float) else int(raw)


class Batch:
    """The events of one record_many call as one record.lua call: increments of a field added
    up (in 64-bit parts), each value numbered once, every key named once."""

    def __init__(self, membership: str, absent: Sequence[str] = ()) -> None:
        self.membership = membership
        self.absent = absent  # keys that must not exist (record.lua's type letter n)
        self.members: dict[str, None] = {}
        self.idents: dict[tuple[str, str, str], None] = {}
        # (hash, field) -> its ops: [sum of increments, highest and lowest running sum]
        self.hincr: dict[tuple[str, str], list[list[int]]] = {}
        self.zincr: dict[tuple[str, str], int] = {}

    def add(self, w: Writes) -> None:
        self.members.update(dict.fromkeys(w.members))
        self.idents.update(dict.fromkeys(w.idents))
        for key, name, incr, _ in w.hincr:
            ops = self.hincr.setdefault((key, name), [])
            if ops and INT64_MIN <= ops[-1][0] + incr <= INT64_MAX:
                op = ops[-1]
                op[0] += incr
                op[1], op[2] = max(op[1], op[0]), min(op[2], op[0])
            else:  # (HINCRBY takes no increment past 64 bits, though the total may be within)
                ops.append([incr, incr, incr])
        for key, member in w.zincr:
            self.zincr[key, member] = self.zincr.get((key, member), 0) + 1

    def fields(self) -> list[tuple[str, str]]:
        """The (hash, field) of each H op, in the order `call` sends them."""
        return [field for field, ops in self.hincr.items() for _ in ops]

    def call(self) -> tuple[list[str], list[Any]]:
        keys: dict[str, int] = {}
        letters: list[str] = []

        def index(key: str, letter: str) -> int:
            if key not in keys:
                keys[key] = len(keys) + 1
                letters.append(letter)
            return keys[key]

        for key in self.absent:
            index(key, "n")
        args: list[Any] = []
        for idmap, bitmap, member in self.idents:
            args += ["I", index(idmap, "z"), index(bitmap, "b"), member]
        for (key, name), ops in self.hincr.items():
            for incr, most, least in ops:
                args += ["H", index(key, "h"), name, incr, most, least]
        for (key, member), incr in self.zincr.items():
            args += ["Z", index(key, "z"), member, incr]
        listed = list(self.members)
        for i in range(0, len(listed), SADD_CHUNK):
            chunk = listed[i : i + SADD_CHUNK]
            args += ["S", index(self.membership, "s"), len(chunk), *chunk]
        return list(keys), ["".join(letters), *args]


def past_64_bits(
    events: list[tuple[int, Writes]], totals: dict[tuple[str, str], int]
) -> dict[int, InvalidEvent]:
    """The events (by index) whose increment would take a hash field past what HINCRBY keeps
    (-2^63 .. 2^63 - 1), adding them in batch order to the stored `totals` (the others'
    increments are added to it), each with why."""
    refused: dict[int, InvalidEvent] = {}
    for index, w in events:
        after: dict[tuple[str, str], int] = {}
        for key, name, incr, prop in w.hincr:
            before = after.get((key, name), totals.get((key, name), 0))
            total = before + incr
            if not INT64_MIN <= total <= INT64_MAX:
                bound = "2^63 - 1, the largest" if total > 0 else "-2^63, the smallest"
                refused[index] = InvalidEvent(
                    f"adding {incr} would take {name!r} of {key} from {before} to {total}, past "
                    f"{bound} integer HINCRBY keeps: the event is not recorded",
                    field=prop,
                )
                break
            after[key, name] = total
        else:
            totals.update(after)
    return refused
