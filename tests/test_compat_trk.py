"""bitstat.compat.trk against the real trk 0.3.0: the 8 recorded cases of
../shared/data/trk/cases.json (every expected value produced by node trk), replayed on every
backend; data laid out as node trk left it, read back; a plain-Python model of trk's source as
an oracle for random events; and bitstat's own answers on the same events.

Every test writes under its own prefix (a hash tag with the test's namespace, so a cluster
keeps a day's keys in one slot) and deletes exactly those keys afterwards. On the embedded
server the cases also run under their own prefixes, so the keys are byte for byte node trk's.
Times are explicit everywhere; nothing depends on the wall clock.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitstat
import servers
from bitstat.compat.trk import _SHA as RECORD_SHA
from bitstat.compat.trk import LayoutError, Recorded, Trk
from bitstat.compat.trk import _js as js
from bitstat.compat.trk._result import glob_match
from bitstat.errors import InvalidEvent, QueryError, SchemaError, ServerError
from proxy import Proxy

CASES_FILE = Path(
    os.environ.get("BITSTAT_TRK_CASES", Path(__file__).parents[2] / "shared/data/trk/cases.json")
)
if not CASES_FILE.exists():  # the shared data sits next to the repository, not inside it
    pytest.skip(f"{CASES_FILE} is missing", allow_module_level=True)
DATA = json.loads(CASES_FILE.read_text())
CASES = {c["name"]: c for c in DATA["cases"]}
EXAMPLES = settings(
    max_examples=int(os.environ.get("BITSTAT_TRK_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COUNTER = itertools.count()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- reading Redis back in the cases' format -------------------------------------------------


def scan(client: servers.Client, prefix: str) -> list[str]:
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + ":*"
    return sorted(k.decode() for k in client.scan_iter(match=pattern, count=1000))


def bits(raw: bytes) -> list[int]:
    return [i * 8 + j for i, byte in enumerate(raw) for j in range(8) if byte & (0x80 >> j)]


def dump(client: servers.Client, prefix: str) -> dict[str, Any]:
    """Every key under `prefix`, as cases.json writes `redis_after_record`."""
    out: dict[str, Any] = {}
    for key in scan(client, prefix):
        kind = client.type(key).decode()
        if kind == "hash":
            value = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
            out[key] = {"type": "hash", "value": value}
        elif kind == "zset":
            pairs = [[m.decode(), int(s)] for m, s in client.zrevrange(key, 0, -1, withscores=True)]
            desc: Any = pairs if len(pairs) <= 20 else {"head": pairs[:5], "size": len(pairs)}
            out[key] = {"type": "zset", "value_desc": desc}
        elif kind == "string":
            set_bits = bits(client.get(key) or b"")
            out[key] = {"type": "bitmap", "bits_set": set_bits, "bitcount": len(set_bits)}
        else:
            out[key] = {"type": kind, "value": sorted(m.decode() for m in client.smembers(key))}
    return out


def delete(client: servers.Client, prefix: str) -> None:
    for key in scan(client, prefix):
        client.delete(key)


def moved(value: Any, old: str, new: str) -> Any:
    """`value` with every key name under prefix `old` renamed to prefix `new`."""
    if old == new:
        return value
    if isinstance(value, dict):
        return {moved(k, old, new): moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [moved(v, old, new) for v in value]
    if isinstance(value, str):
        for head in ("", "_cache:"):
            if value.startswith(head + old + ":"):
                return head + new + value[len(head + old) :]
    return value


def lay_out(client: servers.Client, dumped: Mapping[str, Any]) -> None:
    """Write keys as node trk left them (the `redis_after_record` of a case)."""
    for key, entry in dumped.items():
        if entry["type"] == "hash":
            client.hset(key, mapping=entry["value"])
        elif entry["type"] == "zset":
            client.zadd(key, {m: s for m, s in entry["value_desc"]})
        elif entry["type"] == "bitmap":
            for offset in entry["bits_set"]:
                client.setbit(key, offset, 1)
        else:
            client.sadd(key, *entry["value"])


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def prefixes(redis_client: servers.Client, namespace: str) -> Iterator[Callable[[str], str]]:
    """Makes trk prefixes `{<namespace>}:<name>`; all their keys are deleted afterwards."""
    made: list[str] = []

    def make(name: str) -> str:
        made.append(f"{{{namespace}-{next(COUNTER)}}}:{name}")
        return made[-1]

    yield make
    for prefix in made:
        delete(redis_client, prefix)


@pytest.fixture
def trk_for(
    server_url: str, prefixes: Callable[[str], str]
) -> Iterator[Callable[..., tuple[Trk, str]]]:
    """Makes a Trk on the backend under a fresh prefix: (trk, prefix)."""
    made: list[Trk] = []

    def make(name: str = "t", **kw: Any) -> tuple[Trk, str]:
        prefix = prefixes(name)
        made.append(Trk(server_url, key=prefix, **kw))
        return made[-1], prefix

    yield make
    for trk in made:
        trk.close()


# ---- the recorded cases -------------------------------------------------------------------


def ambiguous(result: Any, arg: Any) -> list[Any] | None:
    """Where several keys of one day end with a find's key, trk's answer followed SMEMBERS
    order (random per server process): the candidate answers per date, else None."""
    kind, key = (arg["type"], arg["key"]) if isinstance(arg, dict) else arg.split("/")[:2]
    key = "~".join(sorted(key.split("~")))
    per_date = []
    for entry in result.days.values():
        hits = [
            i for i in entry["result"] if i["type"] == kind and i["location"].endswith(":" + key)
        ]
        per_date.append([i["result"] for i in sorted(hits, key=lambda i: i["location"])])
    return per_date if any(len(h) > 1 for h in per_date) else None


def check_query(trk: Trk, query: dict[str, Any], old: str, new: str) -> None:
    if query["call"] == "query":
        result = trk.query(query["min"], query["max"])
    else:
        result = trk.query_days(query["n"], now=at(query["now"]))
    if "expected_raw" in query:
        assert dict(result) == moved(query["expected_raw"], old, new)
    else:
        assert list(result.days) == query["expected_raw_day_keys"]
    if not query["result_has_find"]:  # trk answered {} without find; here find still works
        assert dict(result) == {} and result.find("add/event") == {}
    for f in query.get("finds", []):
        got = result.find(f["arg"])
        candidates = ambiguous(result, f["arg"])
        if candidates is None:
            assert got == f["expected"], f["arg"]
        else:  # trk's answer was one of the candidates; ours is the first by key name
            for (d, value), options in zip(f["expected"].items(), candidates, strict=True):
                assert value in options and got[d] == options[0], f["arg"]
        if "canonical_order" in f:
            order = f["canonical_order"]
            if isinstance(order, dict):
                assert {d: list(v) for d, v in got.items()} == order
            else:
                assert list(got) == order


def replay(trk: Trk, case: dict[str, Any]) -> None:
    for step in case["timeline"]:
        done = trk.record_many(step["events"], now=at(step["now"]))
        assert done.recorded == len(step["events"]) and not done.rejected


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_gives_trks_keys_and_answers(
    name: str, trk_for: Callable[..., tuple[Trk, str]], redis_client: servers.Client
) -> None:
    case = CASES[name]
    old = case["config"]["key"]
    trk, new = trk_for(old, map=case["config"]["map"], tz=case["tz"])
    replay(trk, case)
    assert dump(redis_client, new) == moved(case["redis_after_record"], old, new)
    for query in case["queries"]:
        check_query(trk, query, old, new)


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_under_its_own_prefix_is_byte_for_byte_trks(name: str, embedded_url: str) -> None:
    """The cases' own prefixes (`t1`, `app:stats`...): on this session's private server."""
    case = CASES[name]
    prefix = case["config"]["key"]
    client = redis.Redis.from_url(embedded_url)
    assert scan(client, prefix) == [], f"keys under {prefix!r} exist already: not ours to delete"
    try:
        with Trk(embedded_url, key=prefix, map=case["config"]["map"], tz=case["tz"]) as trk:
            for step in case["timeline"]:  # one event per call, as trk records them
                for event in step["events"]:
                    trk.record(event, now=at(step["now"]))
            assert dump(client, prefix) == case["redis_after_record"]
            for query in case["queries"]:
                check_query(trk, query, prefix, prefix)
    finally:
        delete(client, prefix)
        client.close()


@pytest.mark.parametrize(
    "name",
    [n for n, c in CASES.items() if "head" not in json.dumps(c["redis_after_record"])],
)
def test_data_node_trk_left_is_read(
    name: str, trk_for: Callable[..., tuple[Trk, str]], redis_client: servers.Client
) -> None:
    """No recording here: the keys are written as node trk left them, then queried."""
    case = CASES[name]
    old = case["config"]["key"]
    trk, new = trk_for(old, tz=case["tz"])  # a reader needs no map, as in trk
    lay_out(redis_client, moved(case["redis_after_record"], old, new))
    for query in case["queries"]:
        check_query(trk, query, old, new)


def test_recording_continues_data_node_trk_left(
    trk_for: Callable[..., tuple[Trk, str]], redis_client: servers.Client
) -> None:
    case = CASES["basic_single_day"]
    trk, new = trk_for("t1", map=case["config"]["map"], tz="UTC")
    lay_out(redis_client, moved(case["redis_after_record"], "t1", new))
    trk.record({"event": "view", "user": "u4", "country": "US", "amount": 5}, now=1467900000)
    trk.record({"event": "view", "user": "u1", "country": "NL"}, now=1467900000)
    day = trk.query(1467900000)
    assert day.find("bmp/user/1467849600") == 4
    assert redis_client.zscore(f"{new}:1467849600:bmp:i:user", "u4") == 3.0
    assert day.find("add/country/1467849600") == {"US": "5", "CA": "1", "NL": "1"}
    assert day.find("addv/i/1467849600") == {"sum": "55", "count": "4"}


# ---- where trk was wrong, and what is done instead ------------------------------------------

NOW = datetime(2016, 7, 7, 15, tzinfo=UTC)
DAY_START = 1467849600
DAY = str(DAY_START)


def test_an_array_value_is_recorded_as_trk_writes_it_elsewhere(
    trk_for: Callable[..., tuple[Trk, str]],
) -> None:
    """trk: ioredis spread the array into HINCRBY's arguments, so the whole MULTI aborted and
    every add/top/addv write of the event was lost (bmp kept "a,b"). Here: "a,b" everywhere."""
    spec = {"add": ["event", "tags"], "top": ["tags"], "bmp": ["tags"], "addv": ["n"]}
    trk, _ = trk_for(map=spec, tz="UTC")
    trk.record({"event": "e", "tags": ["a", "b"], "n": [5]}, now=NOW)
    day = trk.query(NOW)
    assert day.find(f"add/event/{DAY}") == {"e": "1"}
    assert day.find(f"add/tags/{DAY}") == {"a,b": "1"}
    assert day.find(f"top/tags/{DAY}") == {"a,b": 1}
    assert day.find(f"bmp/tags/{DAY}") == 1
    assert day.find(f"addv/n:i/{DAY}") == {"sum": "5", "count": "1"}


def test_an_object_value_rejects_its_event_alone(
    trk_for: Callable[..., tuple[Trk, str]], redis_client: servers.Client
) -> None:
    """trk wrote "[object Object]" for any object; here the event is refused, with the reason."""
    trk, prefix = trk_for(map={"add": ["event", "meta~event"]}, tz="UTC")
    with pytest.raises(InvalidEvent, match="meta") as refused:
        trk.record({"event": "e", "meta": {"a": 1}}, now=NOW)
    assert refused.value.field == "meta"
    assert scan(redis_client, prefix) == []
    done = trk.record_many([{"event": "x"}, {"event": "y", "meta": {}}, {"event": "z"}], now=NOW)
    assert (done.recorded, [i for i, _ in done.rejected]) == (2, [1])
    assert trk.query(NOW).find(f"add/event/{DAY}") == {"x": "1", "z": "1"}
    assert trk.record_many([5, "text"], now=NOW).rejected[1][0] == 1  # type: ignore[list-item]


def test_recording_without_a_map_is_refused(
    trk_for: Callable[..., tuple[Trk, str]], redis_client: servers.Client
) -> None:
    """trk records nothing without a map ("recording requires a map configuration"); the
    drop-in wrote nothing too but answered recorded=1, so a reader's Trk (no map) used to
    record lost every event without a word."""
    for spec in (None, {}, {"add": [], "addv": []}):
        trk, prefix = trk_for(map=spec, tz="UTC")
        with pytest.raises(SchemaError, match="no map"):
            trk.record({"event": "e"}, now=NOW)
        with pytest.raises(SchemaError, match="no map"):
            trk.record_many([{"event": "e"}], now=NOW)
        assert scan(redis_client, prefix) == []
        assert trk.query(NOW).find(f"add/event/{DAY}") is None  # it still queries


def test_record_many_of_no_batch_is_refused_before_anything(
    trk_for: Callable[..., tuple[Trk, str]], redis_client: servers.Client
) -> None:
    """record_many(event) (one event, not a list of them) rejected each of its keys as 'an
    event is a mapping of properties, got str' and returned, recording nothing, raising
    nothing; a text was rejected letter by letter and None raised 'NoneType' object is not
    iterable. Each is a TypeError saying what it takes."""
    trk, prefix = trk_for(map={"add": ["event"]}, tz="UTC")
    for bad in ({"event": "e"}, "event", b"event", None, 5):
        with pytest.raises(TypeError, match=r"^record_many takes an iterable of events"):
            trk.record_many(bad, now=NOW)  # type: ignore[arg-type]
    assert scan(redis_client, prefix) == []
    done = trk.record_many(({"event": e} for e in "ab"), now=NOW)  # a generator is a batch
    assert done.recorded == 2 and trk.query(NOW).find(f"add/event/{DAY}") == {"a": "1", "b": "1"}


def test_a_value_no_key_can_hold_rejects_its_event_alone(
    trk_for: Callable[..., tuple[Trk, str]], redis_client: servers.Client
) -> None:
    """A lone surrogate (not UTF-8 text) and an integer past 10**308 or of more digits than
    Python writes raised UnicodeEncodeError, OverflowError or ValueError out of record_many,
    which then wrote none of its batch; bytes were written as "b'...'", a set in hash order
    (which differs per process) and a plain object as '<object object at 0x...>'. Each rejects
    its own event now, naming the property."""
    trk, prefix = trk_for(map={"add": ["event", "n", "event~n"], "addv": ["n"]}, tz="UTC")
    big = 10**400  # past any float: its digits, exactly, and not summed (HINCRBY: 64 bits)
    events = [
        {"event": "ok", "n": 2},
        {"event": "\ud800", "n": 1},
        {"event": "big", "n": big},
        {"event": "x", "n": 10**5000},
        {"event": "y", "n": ["a", "\udfff"]},
        {"event": "z", "n": b"7"},  # was written as "b'7'" (str() of bytes)
        {"event": "z", "n": ["a", bytearray(b"b")]},
        {"event": "s", "n": {"b", "a"}},  # was "{'b', 'a'}" or "{'a', 'b'}" by hash seed
        {"event": "o", "n": object()},  # was '<object object at 0x7f...>'
        {"event": "u", "n": uuid.UUID(int=7)},  # a value with a text of its own keeps it
    ]
    done = trk.record_many(events, now=NOW)
    assert done.recorded == 3
    assert [(i, r.split(":")[0]) for i, r in done.rejected] == [
        (1, "field 'event'"),
        (3, "field 'n'"),
        (4, "field 'n'"),
        (5, "field 'n'"),
        (6, "field 'n'"),
        (7, "field 'n'"),
        (8, "field 'n'"),
    ]
    assert "decode it to text first" in done.rejected[3][1]
    assert "pass a list" in done.rejected[5][1] and "object value" in done.rejected[6][1]
    assert "lone surrogate" in done.rejected[0][1] and "4,300 digits" in done.rejected[1][1]
    day = trk.query(NOW)
    uid = str(uuid.UUID(int=7))
    assert day.find(f"add/event/{DAY}") == {"ok": "1", "big": "1", "u": "1"}
    assert day.find(f"add/n/{DAY}") == {"2": "1", str(big): "1", uid: "1"}
    assert day.find(f"add/event~n/{DAY}") == {"ok~2": "1", f"big~{big}": "1", f"u~{uid}": "1"}
    assert day.find(f"addv/n:i/{DAY}") == {"sum": "2", "count": "2"}
    keys = scan(redis_client, prefix)
    with pytest.raises(InvalidEvent, match="lone surrogate") as refused:
        trk.record({"event": "e", "n": "\udc00"}, now=NOW)
    assert refused.value.field == "n" and scan(redis_client, prefix) == keys
    for bad in ({"key": "t\ud800"}, {"key": "t", "map": {"top": ["\ud800"]}}):
        with pytest.raises(SchemaError, match="lone surrogate"):
            Trk(**bad)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="lone surrogate"):
        Trk(key="t", map={"addv": [{"key": "c", "value": "\ud800"}]})


def test_a_value_hincrby_refuses_is_counted_not_summed_and_said(
    trk_for: Callable[..., tuple[Trk, str]],
) -> None:
    """As trk (its HINCRBY error swallowed): the count takes it, the sum does not; here the
    caller is told which values were not summed."""
    trk, _ = trk_for(map={"addv": [{"key": "c", "value": "v"}]}, tz="UTC")
    done = trk.record_many(
        [{"c": "x", "v": 2.5}, {"c": "x", "v": "1e3"}, {"c": "x", "v": 4}, {"c": "x", "v": "abc"}],
        now=NOW,
    )
    assert done.recorded == 4 and not done.rejected
    assert {(i, v) for i, _, v in done.not_summed} == {(0, "2.5"), (1, "1e3")}
    day = trk.query(NOW)
    assert day.find(f"addv/v:i/{DAY}") == {"sum": "4", "count": "3"}
    assert day.find(f"addv/c/{DAY}") == {"x": "4"}


def test_server_errors_are_raised_and_the_batch_writes_nothing(
    trk_for: Callable[..., tuple[Trk, str]], redis_client: servers.Client
) -> None:
    """trk swallowed every Redis error (and half-wrote the event); here nothing is written."""
    trk, prefix = trk_for(map={"add": ["event"], "top": ["page"], "addv": ["n"]}, tz="UTC")
    events = [{"event": "e", "page": "/", "n": 3}]
    redis_client.set(f"{prefix}:{DAY}:top:page", "not a sorted set")
    with pytest.raises(ServerError, match="top:page"):
        trk.record_many(events, now=NOW)
    assert scan(redis_client, prefix) == [f"{prefix}:{DAY}:top:page"]
    redis_client.delete(f"{prefix}:{DAY}:top:page")
    redis_client.hset(f"{prefix}:{DAY}:addv:n:i", "sum", "1.5")
    with pytest.raises(ServerError, match="not an integer"):
        trk.record_many(events, now=NOW)
    redis_client.hset(f"{prefix}:{DAY}:addv:n:i", "sum", str(2**64))  # no HINCRBY adds to it
    with pytest.raises(ServerError, match="holds 18446744073709551616, not an integer"):
        trk.record_many(events, now=NOW)
    assert scan(redis_client, prefix) == [f"{prefix}:{DAY}:addv:n:i"]
    redis_client.hset(f"{prefix}:{DAY}:addv:n:i", "sum", "1")
    trk.record_many(events, now=NOW)
    assert trk.query(NOW).find(f"addv/i/{DAY}") == {"sum": "4", "count": "1"}
    redis_client.sadd(f"{prefix}:k:{DAY}", f"{prefix}:{DAY}:bmp:n")  # listed, but a hash
    redis_client.hset(f"{prefix}:{DAY}:bmp:n", "a", "1")
    with pytest.raises(ServerError, match="WRONGTYPE"):  # trk: that item's result undefined
        trk.query(NOW)


def test_a_total_past_64_bits_rejects_its_event_alone(
    trk_for: Callable[..., tuple[Trk, str]], redis_client: servers.Client
) -> None:
    """A total near 2^63 refused the whole batch (ServerError 'would pass 64 bits'), and so did
    any total within 1024 of it, as record.lua checked in doubles. Now the event whose increment
    would take a total past what HINCRBY keeps, in batch order, is rejected alone, saying
    which property, which total and why; the others are recorded, exactly up to 2^63 - 1 and
    down to -2^63."""
    trk, prefix = trk_for(map={"add": ["event"], "addv": [{"key": "c", "value": "n"}]}, tz="UTC")
    totals, by_c = f"{prefix}:{DAY}:addv:n:i", f"{prefix}:{DAY}:addv:n:c"
    redis_client.hset(totals, "sum", str(2**63 - 10))
    redis_client.hset(by_c, "z", str(-(2**63) + 3))
    events = [
        {"event": "a", "c": "x", "n": 4},  # sum 2^63 - 6
        {"event": "b", "c": "x", "n": 6},  # sum 2^63: rejected
        {"event": "c", "c": "y", "n": 5},  # sum 2^63 - 1, the largest
        {"event": "d", "c": "y", "n": "1"},  # 2^63 again: rejected
        {"event": "e", "c": "z", "n": -3},  # z -2^63, the smallest; sum 2^63 - 4
        {"event": "f", "c": "z", "n": -1},  # z -2^63 - 1: rejected
        {"event": "g", "c": "x", "n": 2.5},  # counted, not summed, as before
    ]
    high = "past 2^63 - 1, the largest integer HINCRBY keeps: the event is not recorded"
    low = "past -2^63, the smallest integer HINCRBY keeps: the event is not recorded"

    def past(incr: int, field: str, key: str, start: int) -> str:
        end = start + incr
        return f"field 'n': adding {incr} would take {field!r} of {key} from {start} to {end}, " + (
            high if end > 0 else low
        )

    assert trk.record_many(events, now=NOW) == Recorded(
        4,
        rejected=[
            (1, past(6, "sum", totals, 9223372036854775802)),
            (3, past(1, "sum", totals, 9223372036854775807)),
            (5, past(-1, "z", by_c, -9223372036854775808)),
        ],
        not_summed=[(6, by_c, "2.5"), (6, totals, "2.5")],
    )
    assert past(1, "sum", "k", 2**63 - 1) == (
        "field 'n': adding 1 would take 'sum' of k from 9223372036854775807 to "
        f"9223372036854775808, {high}"
    )
    day = trk.query(NOW)
    assert day.find(f"add/event/{DAY}") == {"a": "1", "c": "1", "e": "1", "g": "1"}
    assert day.find(f"addv/n:i/{DAY}") == {"sum": str(2**63 - 4), "count": "4"}
    assert day.find(f"addv/n:c/{DAY}") == {"z": str(-(2**63)), "x": "4", "y": "5"}
    # in batch order: 10 would pass 2^63 - 1 before -20 comes; -20 is recorded
    done = trk.record_many([{"event": "h", "c": "x", "n": 10}, {"c": "x", "n": -20}], now=NOW)
    assert (done.recorded, [i for i, _ in done.rejected]) == (1, [0])
    day = trk.query(NOW)
    assert day.find(f"addv/n:i/{DAY}") == {"sum": str(2**63 - 24), "count": "5"}
    assert day.find(f"add/event/{DAY}") == {"a": "1", "c": "1", "e": "1", "g": "1"}
    before = dump(redis_client, prefix)
    with pytest.raises(InvalidEvent) as refused:
        trk.record({"event": "i", "c": "y", "n": 2**62}, now=NOW)
    assert refused.value.field == "n" and str(refused.value) == (
        f"field 'n': adding {2**62} would take 'sum' of {totals} from {2**63 - 24} "
        f"to {2**63 + 2**62 - 24}, {high}"
    )
    assert dump(redis_client, prefix) == before
    # increments of one field adding up past 64 bits, its total within: HINCRBY in parts
    trk, prefix = trk_for(map={"addv": ["n"]}, tz="UTC")
    redis_client.hset(f"{prefix}:{DAY}:addv:n:i", "sum", str(-(2**63)))
    assert trk.record_many([{"n": 2**63 - 1}, {"n": 1}, {"n": 2**63 - 1}], now=NOW) == Recorded(3)
    assert trk.query(NOW).find(f"addv/n:i/{DAY}") == {"sum": str(2**63 - 1), "count": "3"}


def test_a_total_moved_by_another_writer_between_tries_is_read_again(
    trk_for: Callable[..., tuple[Trk, str]],
    redis_client: servers.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server answers a batch that would pass 64 bits with its totals; when another writer
    adds to them before the rest is sent, the rest is refused with the new totals in turn, and
    the events are judged again on them."""
    trk, prefix = trk_for(map={"addv": ["n"]}, tz="UTC")
    totals = f"{prefix}:{DAY}:addv:n:i"
    redis_client.hset(totals, "sum", str(2**63 - 10))
    replies: list[Any] = []
    call = trk._call_once

    def racing(*args: Any) -> Any:
        replies.append(call(*args))
        if len(replies) == 1:  # another writer, between the first call and the second
            redis_client.hincrby(totals, "sum", 3)
        return replies[-1]

    monkeypatch.setattr(trk, "_call_once", racing)
    done = trk.record_many([{"n": 5}, {"n": 9}, {"n": 2}], now=NOW)
    # 2^63 - 10: 5 fits, 9 does not, 2 fits; then 2^63 - 7: 5 fits, 2 does not
    assert (done.recorded, [i for i, _ in done.rejected]) == (1, [1, 2])
    assert [r if r == 1 else [int(t) for t in r[1:]] for r in replies] == [
        [2**63 - 10, 0],  # sum and count, as stored
        [2**63 - 7, 0],
        1,  # written
    ]
    assert redis_client.hgetall(totals) == {b"sum": str(2**63 - 2).encode(), b"count": b"1"}


EDGES = st.one_of(
    st.integers(js.INT64_MIN, js.INT64_MIN + 2**12),
    st.integers(js.INT64_MAX - 2**12, js.INT64_MAX),
    st.integers(-(2**54), 2**54),
    st.integers(js.INT64_MIN, js.INT64_MAX),
)


@EXAMPLES
@given(stored=EDGES, amounts=st.lists(EDGES.filter(bool), min_size=1, max_size=6))
def test_totals_near_64_bits_are_exact(
    trk_for: Callable[..., tuple[Trk, str]],
    redis_client: servers.Client,
    stored: int,
    amounts: list[int],
) -> None:
    """record.lua decides in exact integers whether a batch's totals stay within 64 bits (a
    wrong yes fails its HINCRBY, a wrong no its every try): the answer is the sum of the
    amounts that keep the running total within, in order, from any stored total (0 is not
    recorded at all: falsy, as in trk)."""
    trk, prefix = trk_for(map={"addv": ["n"]}, tz="UTC")
    redis_client.hset(f"{prefix}:{DAY}:addv:n:i", "sum", str(stored))
    total, kept = stored, []
    for i, amount in enumerate(amounts):
        if js.INT64_MIN <= total + amount <= js.INT64_MAX:
            total += amount
            kept.append(i)
    done = trk.record_many([{"n": a} for a in amounts], now=NOW)
    assert [i for i, _ in done.rejected] == sorted(set(range(len(amounts))) - set(kept))
    answer = trk.query(NOW).find(f"addv/n:i/{DAY}")  # (no event recorded: the day lists none)
    assert answer == ({"sum": str(total), "count": str(len(kept))} if kept else None)


def test_query_with_one_time_is_that_day(trk_for: Callable[..., tuple[Trk, str]]) -> None:
    """trk's `query(min, cb)` crashed (opt undefined); here `query(min)` answers min's day."""
    trk, _ = trk_for(map={"add": ["event"]}, tz="UTC")
    trk.record({"event": "e"}, now=NOW)
    assert trk.query(NOW.timestamp()) == trk.query(DAY_START, DAY_START + 86399)
    assert trk.query(date(2016, 7, 7)).find("add/event") == {"07/07/2016": {"e": "1"}}


def test_filters_accept_allow_ignore_and_jobs(trk_for: Callable[..., tuple[Trk, str]]) -> None:
    spec = {"add": ["event", "country"], "top": ["page", "country~page"], "bmp": ["user"]}
    trk, prefix = trk_for(map=spec, tz="UTC")
    trk.record({"event": "e", "country": "US", "page": "/", "user": "u"}, now=NOW)

    def read(**opt: Any) -> list[str]:
        return [i["location"][len(prefix) + 1 :] for i in trk.query(NOW, **opt).days[DAY]["result"]]

    everything = [f"{DAY}:add:country", f"{DAY}:add:event", f"{DAY}:bmp:user"]
    everything += [f"{DAY}:top:country~page", f"{DAY}:top:page"]
    assert read() == everything
    assert read(accept="add:*") == [f"{DAY}:add:country", f"{DAY}:add:event"]
    assert read(allow=["top:*", "bmp:*"]) == everything[2:]
    assert read(accept="top:*", allow="add:*") == everything[3:]  # accept wins, as in trk
    assert read(ignore="*:country*") == [f"{DAY}:add:event", f"{DAY}:bmp:user", everything[4]]
    assert read(accept="{add,bmp}:*", ignore="add:e*") == [everything[0], everything[2]]
    assert read(ignore_jobs=["top", "bmp"]) == everything[:2]
    jobs = trk.query(NOW, accept="top:*", return_jobs=True)
    assert jobs == [f"{prefix}:{everything[3]}", f"{prefix}:{everything[4]}"]
    with pytest.raises(QueryError):
        trk.query(NOW, ignore_jobs=["nope"])
    # one text is one type (it said "unknown type 'b'" for "bmp"), None is none (TypeError)
    assert read(ignore_jobs="bmp") == read(ignore_jobs=["bmp"]) == everything[:2] + everything[3:]
    assert read(ignore_jobs=None) == everything
    # a glob that is no text raised AttributeError ('int' object has no attribute 'startswith')
    for option, bad in (("accept", 5), ("allow", [None]), ("ignore", ["add:*", 3]), ("ignore", {})):
        with pytest.raises(QueryError, match=f"^{option}: a text or a list of texts") as refused:
            trk.query(NOW, **{option: bad})
        assert refused.value.param == option


def test_an_empty_filter_is_no_filter(trk_for: Callable[..., tuple[Trk, str]]) -> None:
    """trk's `opt.accept ?= (opt.allow ? [])` keeps a "" (it is not null), then skips it: its
    `if opt.accept.length` is 0. So "" filters nothing, and an `allow` behind it is not read."""
    trk, _ = trk_for(map={"add": ["event"], "bmp": ["user"]}, tz="UTC")
    trk.record({"event": "e", "user": "u"}, now=NOW)
    everything = trk.query(NOW)
    assert len(everything.days[DAY]["result"]) == 2
    for opt in ({"accept": ""}, {"allow": ""}, {"ignore": ""}, {"accept": "", "allow": "add:*"}):
        assert trk.query(NOW, **opt) == everything, opt


def test_find_forms_and_errors(trk_for: Callable[..., tuple[Trk, str]]) -> None:
    trk, _ = trk_for(map={"add": ["country~event"], "addv": [{"key": "c", "value": "n"}]}, tz="UTC")
    trk.record({"event": "e", "country": "US", "c": "x", "n": 2}, now=DAY_START + 10)
    result = trk.query(DAY_START)
    assert result.find({"type": "add", "keys": ["event", "country"], "day": DAY_START}) == {
        "US~e": "1"
    }
    assert result.find("addv/n:c/" + DAY) == {"x": "2"}  # `value:label` names one addv
    assert result.find({"type": "add", "key": "country~event"}, merge=True) == {"US~e": 1}
    assert result.find("add/country~event/1") is None
    for bad in ("nope/x", "add", {"type": "add"}, 5):
        with pytest.raises(QueryError):
            result.find(bad)  # type: ignore[arg-type]
    # a day that is no number raised TypeError from int(); a falsy one (trk's `if opt.day`) is
    # every day, where it read as day "0"; any number is its JavaScript text, obj[day]
    for bad_day in ([DAY_START], {"day": 1}, True, date(2016, 7, 7)):
        with pytest.raises(QueryError, match="a day is the unix seconds"):
            result.find({"type": "add", "key": "country~event", "day": bad_day})
    every_day = result.find("add/country~event")
    for falsy in (0, "", 0.0, None):
        assert result.find({"type": "add", "key": "country~event", "day": falsy}) == every_day
    for one in (float(DAY_START), np.int64(DAY_START)):
        assert result.find({"type": "add", "key": "country~event", "day": one}) == {"US~e": "1"}
    assert result.find({"type": "add", "key": "country~event", "day": DAY_START + 0.5}) is None


def test_times_and_days_as_texts_as_trk_took_them(
    trk_for: Callable[..., tuple[Trk, str]],
) -> None:
    """trk multiplied its times by 1000 and compared its day count with 0, so JavaScript took
    texts of numbers ("1467849600", " 2 "); anything else is a QueryError here."""
    trk, _ = trk_for(map={"add": ["event"]}, tz="UTC")
    trk.record({"event": "e"}, now=str(DAY_START + 5))
    assert trk.query(DAY, str(DAY_START + 86399)) == trk.query(DAY_START)
    assert trk.query_days(" 2 ", now=NOW) == trk.query_days(2, now=NOW)
    for bad in ("soon", "nan", "Infinity", math.nan, 1e300, -1e20):
        with pytest.raises(QueryError):
            trk.query(bad)
    for days in ("1.5", "x", 10**9):
        with pytest.raises(QueryError):
            trk.query_days(days, now=NOW)  # type: ignore[arg-type]


def test_a_bad_time_names_its_argument_and_the_value_given(
    trk_for: Callable[..., tuple[Trk, str]],
) -> None:
    """The errors said 'a time is unix seconds within years 1-9999, got nan' for now="2016-07-07"
    (the text's Number(), not the text) and named no argument: query(min, max) left the caller
    to guess which. A time past the zone's calendar raised OverflowError or ValueError."""
    trk, prefix = trk_for(map={"add": ["event"]}, tz="UTC")
    calls: list[tuple[Callable[[], Any], str, str]] = [
        (lambda: trk.record({"event": "e"}, now="2016-07-07"), "now", "'2016-07-07'"),
        (lambda: trk.record_many([{"event": "e"}], now=b"1"), "now", "b'1'"),
        (lambda: trk.query("soon"), "min_ts", "'soon'"),
        (lambda: trk.query(DAY_START, datetime), "max_ts", "datetime.datetime"),
        (lambda: trk.query(DAY_START, 1e300), "max_ts", "1e+300"),
        (lambda: trk.query_days(2, now=True), "now", "True"),
        (lambda: trk.query_days("x", now=NOW), "n", "'x'"),
        (lambda: trk.query(DAY_START * 1000), "min_ts", "milliseconds? trk took seconds"),
    ]
    for call, param, shown in calls:
        with pytest.raises(QueryError) as refused:
            call()
        assert (refused.value.param, shown in str(refused.value)) == (param, True), str(refused)
        assert str(refused.value).startswith(f"{param}: ")
    east = Trk(key=prefix, tz="Pacific/Kiritimati")  # +14: the last second of 9999 is in 10000
    for last in (253402300799, datetime(9999, 12, 31, 23, tzinfo=UTC)):
        with pytest.raises(QueryError, match="years 1-9999") as refused:
            east.query(DAY_START, last)
        assert refused.value.param == "max_ts"


def test_numpy_numbers_are_times_and_day_counts(trk_for: Callable[..., tuple[Trk, str]]) -> None:
    trk, _ = trk_for(map={"add": ["event"]}, tz="UTC")
    trk.record({"event": "e"}, now=np.int64(DAY_START + 5))
    assert trk.query(np.int64(DAY_START), np.float32(DAY_START + 60)) == trk.query(DAY_START)
    assert trk.query_days(np.int64(2), now=np.uint32(DAY_START)) == trk.query_days(2, now=NOW)
    for bad in (True, np.bool_(True)):
        with pytest.raises(QueryError):
            trk.query(bad)
        with pytest.raises(QueryError):
            trk.query_days(bad, now=NOW)


def test_query_days(trk_for: Callable[..., tuple[Trk, str]]) -> None:
    trk, _ = trk_for(map={"add": ["event"]}, tz="UTC")
    trk.record({"event": "e"}, now=NOW)
    assert list(trk.query_days(3, now=NOW).days) == ["1467676800", "1467763200", DAY]
    assert trk.query_days(-2, now=NOW) == trk.query_days(2, now=NOW)
    assert trk.query_days(0, now=NOW) == {}
    with pytest.raises(QueryError):
        trk.query_days(1.5, now=NOW)  # type: ignore[arg-type]


def test_days_start_at_local_midnight_of_tz(trk_for: Callable[..., tuple[Trk, str]]) -> None:
    """The instants of case local_time_bucketing_utc, in New York: two days, not one; and the
    23-hour day of a DST change is one day keyed by its own midnight."""
    trk, _ = trk_for(map={"add": ["event"]}, tz="America/New_York")
    trk.record({"event": "late"}, now=at("2016-07-08T02:00:00Z"))
    trk.record({"event": "early"}, now=at("2016-07-08T05:00:00Z"))
    result = trk.query_days(2, now=at("2016-07-08T12:00:00Z"))
    assert result.find("add/event") == {"07/07/2016": {"late": "1"}, "07/08/2016": {"early": "1"}}
    assert list(result.days) == ["1467864000", "1467950400"]  # 04:00 UTC: EDT midnights
    trk.record({"event": "dst"}, now=at("2016-03-14T03:30:00Z"))  # 23:30 EDT on the 13th
    spring = trk.query(datetime(2016, 3, 12), datetime(2016, 3, 14))
    assert list(spring.days) == ["1457758800", "1457845200", "1457928000"]
    assert spring.find("add/event/1457845200") == {"dst": "1"}


def test_a_range_over_a_midnight_clock_change_keeps_its_last_day(
    trk_for: Callable[..., tuple[Trk, str]],
) -> None:
    """In Sao Paulo clocks went from 00:00 to 01:00 on 2013-10-20. trk's day loop (date-utils'
    addDays, run under TZ=America/Sao_Paulo) then stood at 01:00 and, compared with the last
    day's 00:00, dropped that day: query(10/19 00:00, 10/21 11:20) gave 10/19 and 10/20 only,
    query_days(4) three days. Here every day of the range is there."""
    trk, _ = trk_for(map={"add": ["event"]}, tz="America/Sao_Paulo")
    trk.record({"event": "e"}, now=1382400000)  # 10/21 22:20 local
    result = trk.query(1382151600, 1382400000)
    assert list(result.days) == ["1382151600", "1382238000", "1382320800"]
    assert result.find("add/event/1382320800") == {"e": "1"}
    assert [d["date"] for d in trk.query_days(4, now=1382400000).days.values()] == [
        "10/18/2013",
        "10/19/2013",
        "10/20/2013",
        "10/21/2013",
    ]


def test_record_many_is_one_server_call_and_a_query_two(
    trk_for: Callable[..., tuple[Trk, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {
        "bmp": ["user", "country~user"],
        "add": ["event", "country~event"],
        "top": ["page"],
        "addv": ["n", {"key": "country", "value": "n"}],
    }
    trk, _ = trk_for(map=spec, tz="UTC")
    trk.record({"event": "warm"}, now=NOW)  # the script is now cached by the server
    client = trk.client
    calls: list[Any] = []
    pipelines: list[int] = []
    execute, pipeline = client.execute_command, client.pipeline

    def counted_pipeline(*args: Any, **kw: Any) -> Any:
        pipe = pipeline(*args, **kw)
        run = pipe.execute
        monkeypatch.setattr(pipe, "execute", lambda: pipelines.append(len(pipe)) or run())
        return pipe

    monkeypatch.setattr(
        client, "execute_command", lambda *a, **k: calls.append(a[0]) or execute(*a, **k)
    )
    monkeypatch.setattr(client, "pipeline", counted_pipeline)
    events = [
        {"event": f"e{i % 7}", "user": f"u{i % 300}", "country": f"c{i % 5}", "page": f"/{i % 400}"}
        | ({"n": i % 50} if i % 3 else {})
        for i in range(5000)
    ]
    done = trk.record_many(events, now=NOW)
    assert (done.recorded, calls, pipelines) == (5000, ["EVALSHA"], [])
    result = trk.query(NOW)
    assert calls == ["EVALSHA"] and len(pipelines) == 2  # the day's keys, then their values
    assert result.find(f"bmp/user/{DAY}") == 300
    assert result.find(f"bmp/country~user/{DAY}") == 300  # u<i % 300> always has c<i % 5>
    assert len(result.find(f"top/page/{DAY}")) == 250  # 400 pages, the first 250 read
    assert sum(map(int, result.find(f"add/event/{DAY}").values())) == 5001
    totals = result.find(f"addv/n:i/{DAY}")
    expected = [i % 50 for i in range(5000) if i % 3 and i % 50]
    assert totals == {"sum": str(2 * sum(expected)), "count": str(2 * len(expected))}


def test_without_tz_days_follow_this_process_zone(
    trk_for: Callable[..., tuple[Trk, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """tz=None is trk's behaviour: the zone of the process (TZ), here Asia/Tokyo."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        trk, _ = trk_for(map={"add": ["event"]})
        trk.record({"event": "e"}, now=at("2016-07-07T16:00:00Z"))  # 01:00 on the 8th in Tokyo
        assert list(trk.query_days(1, now=at("2016-07-07T16:00:00Z")).days) == ["1467903600"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_url_is_taken_as_bitstat_connect_takes_it(
    tmp_path: Path, embedded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No url and no $BITSTAT_URL: the embedded server of `data_dir`, with its data kept across
    a restart; $BITSTAT_URL when set; `client=` used as given and left open."""
    from bitstat import embedded

    monkeypatch.delenv("BITSTAT_URL", raising=False)
    data_dir = tmp_path / "data"
    try:
        with Trk(key="tky", map={"add": ["event"]}, tz="UTC", data_dir=data_dir) as trk:
            trk.record({"event": "e"}, now=NOW)
        assert embedded.stop(data_dir) is True
        with Trk(key="tky", tz="UTC", data_dir=data_dir) as trk:  # started again, from its AOF
            assert trk.query(NOW).find(f"add/event/{DAY}") == {"e": "1"}
    finally:
        embedded.stop(data_dir)
    monkeypatch.setenv("BITSTAT_URL", embedded_url)
    client = redis.Redis.from_url(embedded_url)
    prefix = f"{{trk-env-{next(COUNTER)}}}"
    try:
        with Trk(key=prefix, map={"add": ["event"]}, tz="UTC") as trk:
            trk.record({"event": "env"}, now=NOW)
        with Trk(key=prefix, tz="UTC", client=client) as trk:
            assert trk.query(NOW).find(f"add/event/{DAY}") == {"env": "1"}
        assert client.ping()  # a client passed in stays open
    finally:
        delete(client, prefix)
        client.close()


def test_a_client_that_decodes_replies_reads_the_same(
    server_url: str, prefixes: Callable[[str], str]
) -> None:
    """`client=` takes the application's own client, which often decodes replies to text
    (decode_responses=True, RESP3 or not): query read the day's keys as bytes and raised
    AttributeError ('str' object has no attribute 'decode')."""
    prefix = prefixes("d")
    spec = {"add": ["event"], "bmp": ["user"], "top": ["page"], "addv": ["n"]}
    with Trk(server_url, key=prefix, map=spec, tz="UTC") as trk:
        trk.record({"event": "e", "user": "u", "page": "/", "n": 3}, now=NOW)
        expected = trk.query(NOW)
    assert expected.find(f"addv/n:i/{DAY}") == {"sum": "3", "count": "1"}
    cluster = server_url.startswith(servers.CLUSTER_SCHEME)
    for protocol in (2, 3):
        if cluster:
            url = "redis://" + server_url.removeprefix(servers.CLUSTER_SCHEME)
            client: Any = redis.RedisCluster.from_url(url, decode_responses=True, protocol=protocol)
        else:
            client = redis.Redis.from_url(server_url, decode_responses=True, protocol=protocol)
        try:
            assert Trk(client=client, key=prefix, tz="UTC").query(NOW) == expected, protocol
        finally:
            client.close()


def test_trks_own_options_object_is_taken_as_trk_took_it(
    server_url: str, prefixes: Callable[[str], str], redis_client: servers.Client
) -> None:
    """Code moved from node passes trk's one options object, `new Metrics({redis, key, map})`.
    It was taken as the URL: the Trk kept prefix "tky" and no map, so record() wrote nothing and
    answered recorded=1, and the first query raised TypeError (unhashable type: 'dict')."""
    prefix = prefixes("o")
    client = servers.client_for(server_url)
    try:
        trk = Trk({"redis": client, "key": prefix, "map": {"add": ["event"]}}, tz="UTC")
        assert trk.record({"event": "e"}, now=NOW).recorded == 1
        assert scan(redis_client, prefix) == [f"{prefix}:{DAY}:add:event", f"{prefix}:k:{DAY}"]
        # `prefix` for `key`, `client` for `redis` (or a URL), `memcached` unused, as in trk
        same = Trk({"client": client, "prefix": prefix, "memcached": object()}, tz="UTC")
        assert same.query(NOW).find(f"add/event/{DAY}") == {"e": "1"}
        if not server_url.startswith(servers.CLUSTER_SCHEME):
            by_url = Trk({"redis": server_url, "key": prefix}, tz="UTC")
            assert by_url.query(NOW).find(f"add/event/{DAY}") == {"e": "1"}
            by_url.close()
        assert Trk({"redis": client}).key == "metrics"  # trk's default prefix, in trk's form
    finally:
        client.close()
    for bad, says in (
        ({"kee": "x"}, "'kee' is none of trk's options"),
        (5, "url: a server's URL, trk's options or None, got 5"),
    ):
        with pytest.raises(SchemaError, match=says):
            Trk(bad)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="in trk's options or as arguments"):
        Trk({"key": "x"}, key="y")


def test_the_default_prefix_is_node_trks_and_the_old_one_is_not_missed(embedded_url: str) -> None:
    """Trk(url, map=...) without a key wrote under "tky", where node trk (`opt.key ?
    opt.prefix ? 'metrics'`) and Trk's own options form use "metrics": code moved from node
    read none of its data. The default is "metrics" now. A Trk given no key refuses to record
    while "tky" holds data of the day or the 7 before, and to query days "tky" holds data of,
    saying which key to pass, so the old default's data is neither split nor missed; either
    key given is read and written as named. (The embedded server only: these prefixes are not
    a test's own, so they must be empty, and are deleted after.)"""
    client = redis.Redis.from_url(embedded_url)
    for prefix in ("metrics", "tky"):
        assert scan(client, prefix) == [], f"keys under {prefix!r} exist already: not ours"
    spec = {"add": ["event"]}
    earlier = datetime(2016, 7, 4, 12, tzinfo=UTC)  # 3 days before NOW
    try:
        with Trk(embedded_url, map=spec, tz="UTC") as trk:
            assert trk.key == "metrics"
            trk.record({"event": "e"}, now=NOW)
        assert scan(client, "metrics") == [f"metrics:{DAY}:add:event", f"metrics:k:{DAY}"]
        with Trk({"redis": embedded_url}, tz="UTC") as node_form:  # trk's own form, its keys
            assert node_form.query(NOW).find(f"add/event/{DAY}") == {"e": "1"}
        with Trk(embedded_url, key="tky", map=spec, tz="UTC") as old:  # the old default's data
            old.record({"event": "old"}, now=earlier)
        before = dump(client, "metrics")
        says = (
            "Trk: no key given, so the prefix is node trk's default 'metrics' (it was 'tky' "
            "before 2026-12-07), but 'tky' holds trk data of 2016-07-04 (tky:k:1467590400): "
            "pass key='tky' to go on with that data, or key='metrics' to leave it unread"
        )
        with Trk(embedded_url, map=spec, tz="UTC") as trk:
            with pytest.raises(SchemaError) as refused:
                trk.record({"event": "new"}, now=NOW)
            assert str(refused.value) == says
            with pytest.raises(SchemaError) as refused:
                trk.query_days(7, now=NOW)
            assert str(refused.value) == says
            assert trk.query(NOW).find(f"add/event/{DAY}") == {"e": "1"}  # no 'tky' data that day
            trk.record({"event": "later"}, now=datetime(2016, 7, 12, tzinfo=UTC))  # 8 days on
        after = dump(client, "metrics")
        assert after.pop("metrics:1468281600:add:event") == {
            "type": "hash",
            "value": {"later": "1"},
        }
        assert after.pop("metrics:k:1468281600")["value"] == ["metrics:1468281600:add:event"]
        assert after == before  # the refused record wrote nothing
        with Trk(embedded_url, key="tky", tz="UTC") as old:
            assert old.query_days(7, now=NOW).find("add/event")["07/04/2016"] == {"old": "1"}
        with Trk(embedded_url, key="metrics", map=spec, tz="UTC") as named:
            named.record({"event": "new"}, now=NOW)
            assert named.query_days(7, now=NOW).find("add/event", merge=True) == {"e": 1, "new": 1}
    finally:
        delete(client, "metrics")
        delete(client, "tky")
        client.close()


def test_a_cluster_needs_a_hash_tag_in_the_prefix(cluster_url: str) -> None:
    trk = Trk(cluster_url, key="tky", map={"add": ["event"]})
    with pytest.raises(LayoutError, match="hash tag"):
        trk.record({"event": "e"}, now=NOW)
    with pytest.raises(LayoutError):
        trk.query(NOW)
    trk.close()


def test_a_lost_reply_on_a_cluster_is_not_written_again(
    cluster: servers.Cluster, namespace: str
) -> None:
    """redis-py's cluster client runs a command again after a connection error (3 more times by
    default): a record whose write landed but whose reply was lost was applied twice. Here the
    loss is raised, as on a single server, and the write counts once."""
    proxies = [Proxy("127.0.0.1", port) for port in cluster.ports]
    via_proxy = {("127.0.0.1", p.target[1]): ("127.0.0.1", p.port) for p in proxies}
    client = redis.RedisCluster(
        host="127.0.0.1", port=proxies[0].port, address_remap=lambda a: via_proxy.get(a, a)
    )
    prefix = f"{{{namespace}}}:lost"
    trk = Trk(client=client, key=prefix, map={"add": ["event"]}, tz="UTC")
    try:
        trk.record({"event": "e"}, now=NOW)  # (loads the script: the write below goes by SHA)
        for p in proxies:
            p.cut_replies(1, RECORD_SHA.encode())
        try:
            trk.record({"event": "e"}, now=NOW)
            outcome = "answered"
        except bitstat.errors.ConnectionError:
            outcome = "raised"
        assert sum(p.cut for p in proxies) == 1
        assert (outcome, trk.query(NOW).find(f"add/event/{DAY}")) == ("raised", {"e": "2"})
    finally:
        delete(client, prefix)
        client.close()
        for p in proxies:
            p.close()


def test_a_lost_reply_on_one_server_is_not_written_again(proxy: Proxy, namespace: str) -> None:
    """A record whose write landed but whose reply was lost raises, and counts once: the client
    trk makes of a URL does not send it again. redis-py 6 changed its clients' retry defaults,
    so this runs on the newest redis-py too (scripts/test-newest-redis-py.sh)."""
    prefix = f"{namespace}:lost"
    trk = Trk(proxy.url(), key=prefix, map={"add": ["event"]}, tz="UTC")
    try:
        trk.record({"event": "e"}, now=NOW)  # (loads the script: the write below goes by SHA)
        proxy.cut_replies(1, RECORD_SHA.encode())
        with pytest.raises(bitstat.errors.ConnectionError):
            trk.record({"event": "e"}, now=NOW)
        assert proxy.cut == 1
        assert trk.query(NOW).find(f"add/event/{DAY}") == {"e": "2"}
    finally:
        delete(trk.client, prefix)
        trk.close()


def test_a_field_with_two_colons_is_read(trk_for: Callable[..., tuple[Trk, str]]) -> None:
    """`add:a:b:c` is read as an `add` (type `add:a:b`, its first part), in trk too."""
    trk, _ = trk_for(map={"add": ["a:b:c"]}, tz="UTC")
    trk.record({"a:b:c": "x"}, now=NOW)
    assert trk.query(NOW).find(f"add/a:b:c/{DAY}") == {"x": "1"}


def test_a_bad_map_is_refused() -> None:
    for bad in (
        {"sum": ["x"]},
        {"add": "event"},
        {"add": [3]},
        {"addv": [{"key": "c"}]},
        {"addv": [{"value": "n"}]},
        {"add": ["page:path"]},
        {"bmp": ["a:b"]},
    ):
        with pytest.raises(SchemaError):
            Trk(key="t", map=bad)
    with pytest.raises(SchemaError):
        Trk(key="")
    with pytest.raises(SchemaError, match="Mars/Olympus"):
        Trk(key="t", tz="Mars/Olympus")
    # a map that is no mapping raised ValueError from dict(); a tz of no zone was taken, and
    # every call then raised TypeError from datetime
    for bad_map in (["add", "event"], "add", [("add", ["event"])]):
        with pytest.raises(SchemaError, match="trk map: a mapping of kinds"):
            Trk(key="t", map=bad_map)  # type: ignore[arg-type]
    for bad_tz in (5, b"UTC", 1.5):
        with pytest.raises(SchemaError, match=r"^tz: a time zone's name"):
            Trk(key="t", tz=bad_tz)  # type: ignore[arg-type]


def test_javascript_value_semantics() -> None:
    cases = {1e21: "1e+21", 1e-7: "1e-7", 1e-6: "0.000001", 0.1: "0.1", 2.5: "2.5", -0.0: "0"}
    cases |= {123456789012345680000.0: "123456789012345680000", 1.5e300: "1.5e+300", 7.0: "7"}
    cases |= {math.inf: "Infinity", -1e-10: "-1e-10", 100.25: "100.25"}
    for number, text in cases.items():
        assert js.text(number) == text, number
    assert [js.text(v) for v in (None, True, [1, None, "a"], [], 12)] == [
        "null",
        "true",
        "1,,a",
        "",
        "12",
    ]
    assert [js.truthy(v) for v in (0, 0.0, math.nan, "", None, False)] == [False] * 6
    assert all(js.truthy(v) for v in ([], {}, "0", -1, "false"))
    assert [js.is_nan(v) for v in ("abc", "1e3", " 8 ", "0x1f", "", True, [5], {}, "1,2")] == [
        True, False, False, False, False, False, False, True, True,
    ]  # fmt: skip
    assert [js.redis_int(v) for v in ("7", "-3", "0", "07", "-0", "+1", " 1", "1e3")] == [
        7, -3, 0, None, None, None, None, None,
    ]  # fmt: skip
    assert js.redis_int(str(2**63 - 1)) == 2**63 - 1 and js.redis_int(str(2**63)) is None
    scores = ("12", "2.5", "1e+21", "inf", "-3", " 0x1F", "0x", "-0x1")
    assert [js.parse_int(v) for v in scores] == [12, 2, 1, None, -3, 31, None, -1]
    assert [js.plus(v) for v in ("", " 7 ", "0x10", "-Infinity", "1.5", "07")] == [
        0, 7, 16, -math.inf, 1.5, 7,
    ]  # fmt: skip
    assert math.isnan(js.plus("1_0")) and math.isnan(js.plus("-0x10"))


def test_numpy_values_are_the_numbers_they_hold(trk_for: Callable[..., tuple[Trk, str]]) -> None:
    """A pandas row gives numpy scalars: np.int64(0) and np.False_ are falsy, as 0 and false."""
    falsy = (np.int64(0), np.bool_(False), np.float32(0), np.float64(math.nan), np.uint8(0))
    assert [js.truthy(v) for v in falsy] == [False] * len(falsy)
    assert all(js.truthy(v) for v in (np.int64(-1), np.bool_(True), np.float32(0.5)))
    assert [js.text(v) for v in (np.int64(7), np.bool_(True), np.float32(0.5))] == [
        "7",
        "true",
        "0.5",
    ]
    assert not js.is_nan(np.int32(3)) and not js.is_nan(np.bool_(True))
    trk, _ = trk_for(map={"add": ["event", "n"], "addv": ["n"]}, tz="UTC")
    trk.record({"event": "e", "n": np.int64(0)}, now=NOW)
    trk.record({"event": "e", "n": np.int64(5)}, now=NOW)
    result = trk.query(NOW)
    assert result.find(f"add/n/{DAY}") == {"5": "1"}
    assert result.find(f"addv/n:i/{DAY}") == {"sum": "5", "count": "1"}


# (pattern, text, minimatch(text, pattern)) as minimatch 3.1.5 (node 20) answered, the version
# trk's `"minimatch": "^3.0.2"` installs: trim, comments, negation, dots, `**` only as a whole
# segment, classes (an invalid one is text), extglobs, braces (sets, sequences, padding)
MINIMATCH = [
    ("add:*", "add:country~event", True),
    ("add:*", "top:page", False),
    ("add:*", "add:a/b", False),
    ("add:**", "add:a/b", False),
    ("add:*/**", "add:a/b/c", True),
    ("add:a/**", "add:a/.b", False),
    ("add:a/*", "add:a/.b", False),
    ("add:a/.*", "add:a/.b", True),
    ("*", "add:x/", True),
    ("*:.x", "add:.x", True),
    ("{add,top}:c?untry", "top:country", True),
    ("{add,top}:c?untry", "bmp:country", False),
    ("!add:*", "top:page", True),
    ("!add:*", "add:page", False),
    ("!!add:*", "add:page", True),
    ("  add:*  ", "add:page", True),
    ("#add:*", "#add:x", False),
    ("", "", True),
    ("   ", "add:x", False),
    ("[at]*:page", "top:page", True),
    ("[!at]*:page", "top:page", False),
    ("[^at]*:page", "bmp:page", True),
    ("[c-a]dd:x", "[c-a]dd:x", True),
    ("add:[a", "add:[a", True),
    ("*[", "add:[undefined", True),
    ("add:\\*", "add:*", True),
    ("add:\\*", "add:x", False),
    ("+(add|top):x", "addtop:x", True),
    ("@(add|top):x", "addtop:x", False),
    ("!(add):x", "top:x", True),
    ("!(add):x", "add:x", True),
    ("*.!(js)", "a.ts", True),
    ("*.!(js)", "a.js", False),
    ("add:?(x)y", "add:y", True),
    ("add:*(ab)", "add:abab", True),
    ("{1..3}:x", "2:x", True),
    ("{a..c}dd:x", "add:x", True),
    ("{01..10}:x", "07:x", True),
    ("add:{a,b}{c,d}", "add:bd", True),
    ("add:{x}", "add:{x}", True),
    ("add:{,x}", "add:", True),
    ("add:{}", "add:{}", True),
    ("top:country~*", "top:country~page", True),
    ("top:*~page", "top:country~page", True),
    ("addv:amount:*", "addv:amount:i", True),
    ("*:*~*", "add:event", False),
    ("add:country+(~*)", "add:country~event~page", True),
]


@pytest.mark.parametrize(("pattern", "text", "expected"), MINIMATCH)
def test_globs_as_minimatch(pattern: str, text: str, expected: bool) -> None:
    assert glob_match(pattern, text) is expected


# ---- a plain-Python model of trk's source, as an oracle -----------------------------------

TEXTS = st.sampled_from(["view", "buy", "US", "CA", "", "0", "a~b"])
AMOUNTS = st.one_of(
    st.sampled_from(["7", "-3", "07", "-0", "1e3", " 8", "abc", "", "0"]),
    st.sampled_from([0, 1, 7, -3, 12, 2.5, 0.0, True, False, None]),
)
PROPS = {"event": TEXTS, "country": TEXTS, "user": st.one_of(TEXTS, AMOUNTS), "amount": AMOUNTS}
MAPS = st.fixed_dictionaries(
    {
        "bmp": st.lists(st.sampled_from(["user", "country~user", "amount"]), max_size=2),
        "add": st.lists(
            st.sampled_from(["event", "country", "event~country", "amount"]), max_size=3
        ),
        "top": st.lists(st.sampled_from(["country", "user~event", "event"]), max_size=2),
        "addv": st.lists(
            st.sampled_from(
                ["amount", {"key": "country", "value": "amount"}, {"key": "event", "val": "amount"}]
            ),
            min_size=1,
            max_size=2,
        ),
    }
)
EVENTS = st.lists(
    st.fixed_dictionaries({}, optional=PROPS),
    max_size=12,
)


def model_text(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v == int(v):
        return str(int(v))
    return str(v)


def model_truthy(v: Any) -> bool:
    return v not in (None, False, 0, "") and not (isinstance(v, float) and math.isnan(v))


def model_number_ok(v: Any) -> bool:  # !isNaN(v) for the values above
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return v.strip() == ""
    return True


class TrkModel:
    """trk 0.3.0's record() read literally: all pairs compounded, one Redis command at a time,
    a command Redis refuses (HINCRBY by "2.5") failing alone. The store is plain dicts."""

    def __init__(self, prefix: str, spec: Mapping[str, Any]) -> None:
        self.prefix, self.spec = prefix, spec
        self.keys: dict[str, dict[str, Any]] = {}

    def cell(self, key: str, kind: str) -> dict[str, Any]:
        return self.keys.setdefault(key, {"type": kind, "value": {}})["value"]

    def record(self, event: Mapping[str, Any], day: int) -> None:
        dkey, obj = f"{self.prefix}:{day}", dict(event)
        for x in list(event):
            for y in list(event):
                if x != y:
                    a, b = sorted([x, y])
                    if not model_truthy(obj.get(f"{a}~{b}")):
                        obj[f"{a}~{b}"] = model_text(obj[a]) + "~" + model_text(obj[b])
        listed: list[str] = []

        def name(n: str) -> str:
            return "~".join(sorted(n.split("~")))

        for n in map(name, self.spec.get("bmp", [])):
            if model_truthy(obj.get(n)):
                ids = self.cell(f"{dkey}:bmp:i:{n}", "zset")
                ident = ids.setdefault(model_text(obj[n]), len(ids))
                self.cell(f"{dkey}:bmp:{n}", "bitmap")[ident] = 1
                listed.append(f"{dkey}:bmp:{n}")
        for kind in ("add", "top"):
            for n in map(name, self.spec.get(kind, [])):
                if model_truthy(obj.get(n)):
                    c = self.cell(f"{dkey}:{kind}:{n}", "hash" if kind == "add" else "zset")
                    c[model_text(obj[n])] = c.get(model_text(obj[n]), 0) + 1
                    listed.append(f"{dkey}:{kind}:{n}")
        for entry in self.spec.get("addv", []):
            label, value = (entry, entry) if isinstance(entry, str) else (entry["key"], None)
            if value is None:
                value = entry.get("value") or entry.get("val")
            v = obj.get(value)
            if model_truthy(obj.get(label)) and model_truthy(v) and model_number_ok(v):
                listed += [f"{dkey}:addv:{value}:{label}", f"{dkey}:addv:{value}:i"]
                ok = re.fullmatch(r"-?[1-9][0-9]*|0", model_text(v)) is not None
                totals = self.cell(f"{dkey}:addv:{value}:i", "hash")
                if ok and label != value:
                    c = self.cell(f"{dkey}:addv:{value}:{label}", "hash")
                    c[model_text(obj[label])] = c.get(model_text(obj[label]), 0) + int(
                        model_text(v)
                    )
                if ok:
                    totals["sum"] = totals.get("sum", 0) + int(model_text(v))
                totals["count"] = totals.get("count", 0) + 1
        if listed:
            members = self.keys.setdefault(f"{self.prefix}:k:{day}", {"type": "set", "value": {}})
            members["value"].update(dict.fromkeys(listed, 1))

    def dump(self) -> dict[str, Any]:
        """The model's keys in `dump()`'s format (keys never written are absent, as in Redis)."""
        out: dict[str, Any] = {}
        for key, entry in sorted(self.keys.items()):
            kind, v = entry["type"], entry["value"]
            if kind == "hash" and v:
                out[key] = {"type": "hash", "value": {f: str(n) for f, n in v.items()}}
            elif kind == "zset" and v:
                pairs = sorted(v.items(), key=lambda p: (p[1], p[0].encode()), reverse=True)
                desc: Any = [[m, s] for m, s in pairs]
                out[key] = {"type": "zset", "value_desc": desc if len(desc) <= 20 else None}
            elif kind == "bitmap":
                out[key] = {"type": "bitmap", "bits_set": sorted(v), "bitcount": len(v)}
            elif kind == "set":
                out[key] = {"type": "set", "value": sorted(v)}
        return out

    def find(self, kind: str, key: str, day: int) -> Any:
        """The model's `find("<kind>/<key>/<day>")`, read from its store."""
        location = f"{self.prefix}:{day}:{kind}:{key}"
        listed = self.keys.get(f"{self.prefix}:k:{day}", {"value": {}})["value"]
        if location not in listed:
            return None
        v = self.keys.get(location, {"value": {}})["value"]
        if kind == "bmp":
            return len(v)
        if kind == "top":
            return {m: s for m, s in sorted(v.items(), key=lambda p: (p[1], p[0]), reverse=True)}
        return {f: str(n) for f, n in v.items()}


@EXAMPLES
@given(spec=MAPS, days=st.lists(EVENTS, min_size=1, max_size=2), data=st.data())
def test_random_events_match_a_model_of_trks_source(
    spec: dict[str, Any],
    days: list[list[dict[str, Any]]],
    data: st.DataObject,
    server_url: str,
    redis_client: servers.Client,
    prefixes: Callable[[str], str],
) -> None:
    prefix = prefixes("m")
    model = TrkModel(prefix, spec)
    with Trk(server_url, key=prefix, map=spec, tz="UTC") as trk:
        for d, events in enumerate(days):
            now = DAY_START + d * 86400 + 3600
            for event in events:
                model.record(event, DAY_START + d * 86400)
            if data.draw(st.booleans(), label="one call per event"):
                for event in events:
                    trk.record(event, now=now)
            else:
                trk.record_many(events, now=now)
        assert dump(redis_client, prefix) == model.dump()
        result = trk.query(DAY_START, DAY_START + 86400 * (len(days) - 1))
        for d in range(len(days)):
            day = DAY_START + d * 86400
            for item in result.days[str(day)]["result"]:
                kind, key = item["type"], item["location"].split(":")[-1]
                if kind == "addv":
                    key = ":".join(item["location"].split(":")[-2:])
                assert result.find(f"{kind}/{key}/{day}") == model.find(kind, key, day)


# ---- bitstat's own answers on the same events ----------------------------------------------

BITSTAT_MAP = {
    "add": ["country", "country~platform"],
    "top": ["country"],
    "bmp": ["ip"],
    # "total" alone: total:i of every event; amount by country: amount:country, and amount:i
    # of the events with a country (trk needs the label to sum the value)
    "addv": ["total", {"key": "country", "value": "amount"}],
}
BITSTAT_SCHEMA = bitstat.Schema(
    ids="int",
    timezone="UTC",
    periods=("day",),
    count=["country", "country~platform"],
    top=["country"],
    unique=["ip"],
    sum=["total", "amount by country"],
)
# Values both count alike: trk skips "" and 0 (falsy) and joins compound values with "~", so
# those are left out; everything else may be missing, or contain `:`, braces, spaces, unicode.
NAMES = st.sampled_from(["US", "CA", "NL", "n:l", "{x}", "a b", "é", "=", "1"])
SHOP = st.fixed_dictionaries(
    {"user": st.integers(0, 50)},
    optional={
        "country": NAMES,
        "platform": st.sampled_from(["ios", "web", "w:b", "ü"]),
        "ip": st.sampled_from([f"10.0.0.{i}" for i in range(1, 9)] + ["::1", "{ip}"]),
        "amount": st.integers(-1000, 1000).filter(bool),
    },
).map(lambda e: {**e, "total": e["amount"]} if "amount" in e else e)


@EXAMPLES
@given(days=st.lists(st.lists(SHOP, min_size=1, max_size=15), min_size=1, max_size=3))
def test_trk_answers_equal_bitstats_own(
    days: list[list[dict[str, Any]]],
    server_url: str,
    prefixes: Callable[[str], str],
    namespace: str,
) -> None:
    """add per value equals `counts`, top equals `top`, bmp equals `distinct`, addv equals
    `sums` (in total and per label), day by day."""
    ns = f"{namespace}-{next(COUNTER)}"
    stats = bitstat.connect(server_url, namespace=ns, schema=BITSTAT_SCHEMA)
    try:
        with Trk(server_url, key=prefixes("b"), map=BITSTAT_MAP, tz="UTC") as trk:
            for d, events in enumerate(days):
                when = datetime.fromtimestamp(DAY_START + d * 86400 + 7200, UTC)
                assert trk.record_many(events, now=when).recorded == len(events)
                stats.track_many(
                    [{"event": "hit", "time": when, **e} for e in events], now=when.timestamp()
                )
            result = trk.query_days(len(days), now=DAY_START + (len(days) - 1) * 86400)
            for d, events in enumerate(days):
                day, label = str(DAY_START + d * 86400), date(2016, 7, 7 + d).isoformat()

                def find(arg: str, day: str = day) -> Any:  # a key never written: None
                    return result.find(f"{arg}/{day}")

                counts = stats.counts("hit", "country", label)
                assert (find("add/country") or {}) == {k: str(v) for k, v in counts.items()}
                pairs = stats.counts("hit", "country~platform", label)
                assert (find("add/country~platform") or {}) == {
                    "~".join(k): str(v) for k, v in pairs.items()
                }
                top = stats.top("hit", "country", label, limit=250)
                assert (find("top/country") or {}) == dict(top)
                assert (find("bmp/ip") or 0) == stats.distinct("hit", "ip", label)
                totals = find("addv/total:i") or {"sum": "0", "count": "0"}
                assert float(totals["sum"]) == stats.sums("hit", "total", label)
                assert int(totals["count"]) == sum("total" in e for e in events)
                by = stats.sums("hit", "amount", label, by="country")
                assert isinstance(by, dict)
                assert (find("addv/amount:country") or {}) == {
                    k: str(int(v)) for k, v in by.items()
                }
                labelled = find("addv/amount:i") or {"sum": "0", "count": "0"}
                assert float(labelled["sum"]) == sum(by.values())
                assert int(labelled["count"]) == sum(
                    "amount" in e and "country" in e for e in events
                )
    finally:
        stats.drop()
        stats.close()


# ---- the usage example of docs/trk.md, run as written ------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "trk.md"


def test_the_docs_example_prints_what_it_shows(embedded_url: str) -> None:
    """Each `# -> value` line of the example is the repr of the statement just above it."""
    block = DOC.read_text("utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    source = block.replace('"redis://localhost:6379/0"', repr(embedded_url))
    lines = source.splitlines()
    shown = {i: line[5:] for i, line in enumerate(lines, 1) if line.startswith("# -> ")}
    assert len(shown) >= 6
    client = redis.Redis.from_url(embedded_url)
    assert scan(client, "tky") == [], "keys under 'tky' exist already: not ours to delete"
    scope: dict[str, Any] = {}
    checked = 0
    try:
        for statement in ast.parse(source).body:
            code = ast.get_source_segment(source, statement)
            assert code is not None
            if isinstance(statement, ast.Expr):
                value = eval(code, scope)
                if statement.end_lineno is not None and statement.end_lineno + 1 in shown:
                    assert repr(value) == shown[statement.end_lineno + 1], code
                    checked += 1
            else:
                exec(code, scope)
        assert checked == len(shown)
        scope["trk"].close()
    finally:
        delete(client, "tky")
        client.close()
