"""Bad input: each bad event is an InvalidEvent naming the field and the reason, rejected alone in
a batch; each unanswerable query is a QueryError."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

import bitstat
import servers

T = "2026-11-22T12:00:00+01:00"
DAY = "2026-11-22"
MAX_ID = 1_000_000


def schema(ids: str = "int") -> bitstat.Schema:
    return bitstat.Schema(
        ids=ids,
        timezone="Europe/Amsterdam",
        periods=("day", "week", "month", "year"),
        count=["country", "country~platform"],
        sum=["amount", "amount by country"],
        top=["item"],
        unique=["ip"],
        segment=["country"],
        max_id=MAX_ID,
    )


@pytest.fixture
def st(
    server_url: str, namespace: str, redis_client: servers.Client
) -> Iterator[Callable[[str], bitstat.Stats]]:
    opened: list[bitstat.Stats] = []

    def make(ids: str = "int") -> bitstat.Stats:
        s = bitstat.connect(server_url, namespace=f"{namespace}-{ids}", schema=schema(ids))
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
        for pattern in ("{" + s.namespace + "}*", "{" + s.namespace + ":*"):
            for key in list(redis_client.scan_iter(match=pattern, count=1000)):
                redis_client.delete(key)


def bad(**fields: Any) -> dict[str, Any]:
    """A bad event: apart from the bad field, it carries values that would leave a trace."""
    event: dict[str, Any] = {
        "event": "login",
        "user": 99,
        "time": T,
        "country": "BAD",
        "platform": "BAD",
        "item": "BAD",
        "ip": "BAD",
        "amount": 1000,
    }
    for key, value in fields.items():
        if value is DROP:
            del event[key]
        else:
            event[key] = value
    return event


DROP = object()

# (event, field named in the message, a word of the reason)
BAD_EVENTS: list[Any] = [
    ("missing name", bad(event=DROP), "event", "missing"),
    ("empty name", bad(event=""), "event", "empty"),
    ("name is a number", bad(event=5), "event", "text"),
    ("name is bytes", bad(event=b"login"), "event", "text"),
    ("name is a list", bad(event=["login"]), "event", "text"),
    ("name is a mapping", bad(event={"a": 1}), "event", "text"),
    ("unparseable time", bad(time="yesterday"), "time", "time"),
    ("impossible date", bad(time="2026-02-30T10:00"), "time", ""),
    ("time is a list", bad(time=[2026, 11, 22]), "time", "time"),
    ("time is a mapping", bad(time={"year": 2026}), "time", "time"),
    ("time is a boolean", bad(time=True), "time", "time"),
    ("time is NaN", bad(time=float("nan")), "time", "finite"),
    ("time is infinite", bad(time=float("inf")), "time", "finite"),
    ("time before 1970", bad(time=-1), "time", "1970"),
    ("sum is NaN", bad(amount=float("nan")), "amount", "finite"),
    ("sum is infinite", bad(amount=float("inf")), "amount", "finite"),
    ("sum is -infinite", bad(amount=float("-inf")), "amount", "finite"),
    ("sum is 'nan'", bad(amount="nan"), "amount", "finite"),
    ("sum is text", bad(amount="abc"), "amount", "number"),
    ("sum is a list", bad(amount=[1, 2]), "amount", "number"),
    ("sum is a mapping", bad(amount={"v": 1}), "amount", "number"),
    ("sum is a boolean", bad(amount=True), "amount", "number"),
    ("actor is a list", bad(user=[1]), "user", ""),
    ("actor is a mapping", bad(user={"id": 1}), "user", ""),
    ("actor is negative", bad(user=-5), "user", ""),
    ("actor above max_id", bad(user=MAX_ID + 1), "user", str(MAX_ID)),
    ("actor far above max_id", bad(user=2**70), "user", str(MAX_ID)),
    ("actor is a float", bad(user=4.0), "user", ""),
    ("actor is a boolean", bad(user=True), "user", ""),
    ("actor is text", bad(user="abc"), "user", ""),
    ("actor is negative text", bad(user="-5"), "user", ""),
    ("counted value is a list", bad(country=["NL"]), "country", "list"),
    ("counted value is a mapping", bad(country={"NL": 1}), "country", "dict"),
    ("top value is a list", bad(item=["sku"]), "item", "list"),
    ("unique value is a set", bad(ip={"1.2.3.4"}), "ip", "set"),
    ("compound part is a list", bad(platform=["ios"]), "platform", "list"),
]
NOT_MAPPINGS: list[Any] = ["login", 42, None, ["event", "login"], ("login",)]


def good(user: int) -> dict[str, Any]:
    return {
        "event": "login",
        "user": user,
        "time": T,
        "country": "NL",
        "platform": "ios",
        "item": "sku-1",
        "ip": "1.1.1.1",
        "amount": 2.5,
    }


def assert_nothing_of_the_bad_event(s: bitstat.Stats, goods: int) -> None:
    if not goods:  # not even the name: asking about it is an error
        assert s.events() == []
        with pytest.raises(bitstat.UnknownEvent):
            s.total("login", DAY)
        return
    assert s.total("login", DAY) == goods
    assert s.unique("login", DAY) == goods
    assert 99 not in s.actors("login").day(2026, 11, 22)
    assert s.counts("login", "country", DAY) == ({"NL": goods} if goods else {})
    assert s.top("login", "item", DAY) == ([("sku-1", goods)] if goods else [])
    assert s.distinct("login", "ip", DAY) == (1 if goods else 0)
    assert s.sums("login", "amount", DAY) == pytest.approx(2.5 * goods)
    assert s.sums("login", "amount", DAY, by="country") == ({"NL": 2.5 * goods} if goods else {})
    assert s.unique("login", DAY, country="BAD") == 0


def assert_names(message: str, field: str, word: str) -> None:
    assert field in message, message
    assert word.lower() in message.lower(), message


def test_error_classes_share_one_root() -> None:
    for cls in (bitstat.InvalidEvent, bitstat.QueryError, bitstat.SchemaError):
        assert issubclass(cls, bitstat.BitstatError)


@pytest.mark.parametrize(("case", "event", "field", "word"), BAD_EVENTS, ids=lambda x: x)
def test_bad_event_raises_naming_field_and_reason(
    st: Callable[[str], bitstat.Stats], case: str, event: Any, field: str, word: str
) -> None:
    s = st("int")
    with pytest.raises(bitstat.InvalidEvent) as info:
        s.track(event)
    assert_names(str(info.value), field, word)
    assert info.value.field == field  # as data too
    assert_nothing_of_the_bad_event(s, 0)


@pytest.mark.parametrize(("case", "event", "field", "word"), BAD_EVENTS, ids=lambda x: x)
def test_bad_event_is_rejected_alone_in_a_batch(
    st: Callable[[str], bitstat.Stats], case: str, event: Any, field: str, word: str
) -> None:
    s = st("int")
    res = s.track_many([good(1), event, good(2)])
    assert res.recorded == 2
    assert len(res.rejected) == 1
    index, reason = res.rejected[0]
    assert index == 1
    assert_names(reason, field, word)
    assert isinstance(reason, bitstat.errors.Reason) and reason.field == field  # as data too
    assert pickle.loads(pickle.dumps(reason)).field == field  # (ingest --workers sends it)
    assert_nothing_of_the_bad_event(s, 2)


@pytest.mark.parametrize("event", NOT_MAPPINGS, ids=repr)
def test_an_event_that_is_not_a_mapping(st: Callable[[str], bitstat.Stats], event: Any) -> None:
    s = st("int")
    res = s.track_many([good(1), event, good(2)])
    assert res.recorded == 2
    assert [i for i, _ in res.rejected] == [1]
    assert "mapping" in res.rejected[0][1]
    assert_nothing_of_the_bad_event(s, 2)


EPOCH = int(datetime.fromisoformat(T).timestamp())
# Batches that look clean (dicts, int ids, epoch times, plain values) until one field is not.
EPOCH_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("actor above max_id", {"user": MAX_ID + 1}, "user"),
    ("actor negative", {"user": -5}, "user"),
    ("actor far above max_id", {"user": 2**63 + 5}, "user"),
    ("sum NaN", {"amount": float("nan")}, "amount"),
    ("sum infinite", {"amount": float("inf")}, "amount"),
    ("time infinite", {"time": float("inf")}, "time"),
    ("time before 1970", {"time": -10}, "time"),
    ("time after 9999", {"time": 253402300800}, "time"),
]


@pytest.mark.parametrize(("case", "change", "field"), EPOCH_BAD, ids=[c for c, _, _ in EPOCH_BAD])
def test_bad_event_in_a_clean_looking_batch(
    st: Callable[[str], bitstat.Stats], case: str, change: dict[str, Any], field: str
) -> None:
    s = st("int")

    def event(user: int, country: str, amount: float) -> dict[str, Any]:
        return {"event": "login", "user": user, "time": EPOCH, "country": country, "amount": amount}

    res = s.track_many(
        [event(1, "NL", 1.0), {**event(99, "BAD", 9.0), **change}, event(2, "NL", 2)]
    )
    assert res.recorded == 2
    assert [i for i, _ in res.rejected] == [1]
    assert field in res.rejected[0][1]
    assert s.unique("login", DAY) == 2
    assert s.counts("login", "country", DAY) == {"NL": 2}
    assert s.sums("login", "amount", DAY) == pytest.approx(3.0)


def test_negative_actor_is_rejected_next_to_an_actorless_event(
    st: Callable[[str], bitstat.Stats],
) -> None:
    s = st("int")
    res = s.track_many(
        [{"event": "login", "user": -1, "time": EPOCH}, {"event": "login", "time": EPOCH}]
    )
    # without anonymous=True in the schema, an event without an actor is rejected too
    assert [i for i, _ in res.rejected] == [0, 1]
    assert "no actor" in res.rejected[1][1] and "anonymous=True" in res.rejected[1][1]
    assert res.recorded == 0


def test_sum_too_large_for_a_float_is_rejected_alone(st: Callable[[str], bitstat.Stats]) -> None:
    s = st("int")
    res = s.track_many([good(1), bad(amount=10**400), good(2)])
    assert res.recorded == 2
    assert [i for i, _ in res.rejected] == [1]
    assert "amount" in res.rejected[0][1]
    assert getattr(res.rejected[0][1], "field", None) == "amount"


def test_a_batch_marker_keeps_the_field_of_each_refusal() -> None:
    from bitstat.record import note, noted

    refused: list[tuple[int, str]] = [(3, bitstat.errors.Reason("amount: too large", "amount"))]
    back = noted(note(refused).encode())
    assert back == refused and getattr(back[0][1], "field", None) == "amount"
    old = noted(b'[[3, "amount: too large"]]')  # a marker written before fields were kept
    assert old == refused and getattr(old[0][1], "field", "?") is None


def test_list_in_a_later_compound_part_is_rejected(st: Callable[[str], bitstat.Stats]) -> None:
    s = st("int")
    res = s.track_many([{"event": "login", "user": 1, "time": T, "platform": ["ios"]}])
    assert [i for i, _ in res.rejected] == [0]
    assert "platform" in res.rejected[0][1]


def test_sum_overflow_leaves_no_half_written_event(st: Callable[[str], bitstat.Stats]) -> None:
    """Finite values whose running total overflows: all of the event is kept, or none of it."""
    s = st("int")
    s.track({**good(1), "amount": 1e308})
    with contextlib.suppress(bitstat.BitstatError):
        s.track({**good(2), "amount": 1e308})
    assert s.total("login", DAY) == s.unique("login", DAY)


def test_bad_map_mode_actors(st: Callable[[str], bitstat.Stats]) -> None:
    s = st("map")
    for actor in ("", 1.5, True, [1], {"a": 1}, ("a",), b"bytes"):
        with pytest.raises(bitstat.InvalidEvent) as info:
            s.track({**good(1), "user": actor})
        assert "user" in str(info.value)
    res = s.track_many(
        [{**good(1), "user": "u-1"}, {**good(1), "user": ""}, {**good(1), "user": 7}]
    )
    assert res.recorded == 2
    assert [i for i, _ in res.rejected] == [1]
    assert sorted(s.actors("login").day(2026, 11, 22).ids(), key=str) == [7, "u-1"]


def test_track_form_errors(st: Callable[[str], bitstat.Stats]) -> None:
    s = st("int")
    with pytest.raises(bitstat.InvalidEvent):
        s.track({"event": "login", "user": 1, "time": T}, country="NL")
    with pytest.raises(bitstat.InvalidEvent) as info:
        s.track("login", event="other", time=T)
    assert "event" in str(info.value)
    with pytest.raises(bitstat.InvalidEvent):
        s.track_many([good(1)], batch_id="")
    assert s.events() == []


def test_unconfigured_properties_are_ignored_whatever_their_type(
    st: Callable[[str], bitstat.Stats],
) -> None:
    s = st("int")
    s.track({**good(1), "extra": [1, {"a": 2}], "note": object()})
    assert s.total("login", DAY) == 1


# queries


@pytest.fixture
def filled(st: Callable[[str], bitstat.Stats]) -> bitstat.Stats:
    s = st("int")
    s.track_many([good(1), good(2)])
    return s


QUERY_ERRORS: list[tuple[str, Callable[[bitstat.Stats], Any], str]] = [
    ("unknown segment", lambda s: s.unique("login", DAY, planet="mars"), "segment"),
    (
        "unconfigured compound segment",
        lambda s: s.unique("login", DAY, country="NL", item="x"),
        "segment",
    ),
    ("segment on actors()", lambda s: s.actors("login", planet="mars"), "segment"),
    ("segment value is a list", lambda s: s.unique("login", DAY, country=["NL"]), "segment"),
    ("unknown count property", lambda s: s.counts("login", "planet", DAY), "prop"),
    ("count of a top property", lambda s: s.counts("login", "item", DAY), "prop"),
    ("unknown sum", lambda s: s.sums("login", "price", DAY), "prop"),
    ("unknown sum by", lambda s: s.sums("login", "amount", DAY, by="item"), "prop"),
    ("average of unknown", lambda s: s.averages("login", "price", DAY), "prop"),
    ("unknown top property", lambda s: s.top("login", "planet", DAY), "prop"),
    ("top limit 0", lambda s: s.top("login", "item", DAY, limit=0), "limit"),
    ("unknown distinct property", lambda s: s.distinct("login", "planet", DAY), "prop"),
    ("bad label month 13", lambda s: s.unique("login", "2026-13"), "start"),
    ("bad label week 60", lambda s: s.unique("login", "2026-W60"), "start"),
    ("bad label day", lambda s: s.unique("login", "2026-02-30"), "start"),
    ("bad label hour", lambda s: s.unique("login", "2026-11-22T25"), "start"),
    ("not a date", lambda s: s.unique("login", "yesterday"), "start"),
    ("start is a list", lambda s: s.total("login", [2026]), "start"),
    ("end before start", lambda s: s.unique("login", "2026-11-22", "2026-11-01"), "end"),
    ("end month before start", lambda s: s.total("login", "2026-11", "2026-10"), "end"),
    ("end before start in counts", lambda s: s.counts("login", "country", "2026", "2025"), "end"),
    ("no start", lambda s: s.unique("login", None), "start"),
    ("series by unrecorded period", lambda s: s.series("login", DAY, by="hour"), "by"),
    ("series by unknown period", lambda s: s.series("login", DAY, by="fortnight"), "by"),
    ("series with unknown metric", lambda s: s.series("login", DAY, metric="sum"), "metric"),
    ("hour() without hour buckets", lambda s: s.actors("login").hour(2026, 11, 22, 1), "period"),
    ("empty event name", lambda s: s.unique("", DAY), "event"),
    ("event name not text", lambda s: s.total(5, DAY), "event"),
    ("query_days of 0", lambda s: s.query_days("login", 0, end=DAY), "days"),
    ("retention kind", lambda s: s.retention("login", "login", DAY, kind="sometimes"), "kind"),
    (
        "retention by hour unrecorded",
        lambda s: s.retention("login", "login", DAY, period="hour"),
        "period",
    ),
    ("retention of 0 periods", lambda s: s.retention("login", "login", DAY, periods=0), "periods"),
    (
        "retention unknown segment",
        lambda s: s.retention("login", "login", DAY, planet="x"),
        "segment",
    ),
    ("funnel without steps", lambda s: s.funnel([], DAY), "steps"),
    ("funnel steps as text", lambda s: s.funnel("login", DAY), "steps"),
    ("funnel empty step", lambda s: s.funnel(["login", ""], DAY), "steps"),
    ("funnel window in hours", lambda s: s.funnel(["login"], DAY, within="36h"), "within"),
    ("funnel window of 0", lambda s: s.funnel(["login"], DAY, within="0d"), "within"),
    ("funnel window text", lambda s: s.funnel(["login"], DAY, within="soon"), "within"),
    ("funnel end before start", lambda s: s.funnel(["login"], "2026-11-22", "2026-11-01"), "end"),
    ("query_days end not a time", lambda s: s.query_days("login", 7, end="soon"), "end"),
    ("retention start not a time", lambda s: s.retention("login", "login", "soon"), "start"),
    ("retention now not a time", lambda s: s.retention("login", "login", DAY, now="soon"), "now"),
    ("retention of 0 columns", lambda s: s.retention("login", "login", DAY, columns=0), "columns"),
    ("retention first event empty", lambda s: s.retention("", "login", DAY), "first_event"),
    ("lifecycle start not a time", lambda s: s.lifecycle("login", "soon"), "start"),
]


@pytest.mark.parametrize(
    ("case", "call", "param"), QUERY_ERRORS, ids=[c for c, _, _ in QUERY_ERRORS]
)
def test_query_errors_name_the_argument_at_fault(
    filled: bitstat.Stats, case: str, call: Callable[..., Any], param: str
) -> None:
    with pytest.raises(bitstat.QueryError) as info:
        call(filled)
    assert str(info.value)
    assert info.value.param == param


def test_schema_errors() -> None:
    for kwargs in (
        {"ids": "uuid"},
        {"timezone": "Mars/Olympus"},
        {"periods": ("fortnight",)},
        {"periods": ()},
        {"actor": "event"},
        {"count": ["a~"]},
        {"sum": ["a~b"]},
        {"max_id": 0},
    ):
        with pytest.raises(bitstat.SchemaError):
            bitstat.Schema(**kwargs)


def test_connection_errors(server_url: str) -> None:
    with pytest.raises(bitstat.ConnectionError):
        bitstat.connect("http://127.0.0.1:6379/0")
    with pytest.raises(bitstat.ConnectionError):
        bitstat.connect("redis://127.0.0.1:1/0")
    with pytest.raises(bitstat.SchemaError):
        bitstat.connect(server_url, namespace="")
    assert issubclass(bitstat.ConnectionError, bitstat.BitstatError)
