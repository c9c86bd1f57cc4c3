"""A batch is all or nothing per script call: what could fail is checked before the first write.

Sums that would leave +-1e308 reject the events that would carry them there, alone, and every
other event of the batch is recorded; a foreign key of the wrong type where a bitstat key goes
stops the batch before anything of it is written, and the same batch id then records it whole.
Every answer is compared with the reference model.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import bitstat
import bitstat.web
import servers
from bitstat.keys import Keys
from model import Model

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

DAY = "2026-11-20"
T = f"{DAY}T10:00:00"
SETTINGS: dict[str, Any] = {
    "ids": "map",
    "timezone": "Europe/Amsterdam",
    "count": ["country"],
    "sum": ["amount", "amount by country"],
    "top": ["item"],
    "unique": ["ip"],
    "approx": ["visitor"],
    "segment": ["country"],
}
LABELS = [DAY, "2026-W47", "2026-11", "2026"]


def event(amount: Any = 1, country: str = "NL", user: str = "u-1", **more: Any) -> dict[str, Any]:
    return {
        "event": "buy",
        "user": user,
        "time": T,
        "amount": amount,
        "country": country,
        "item": "sku-1",
        "ip": "10.0.0.1",
        "visitor": "v-1",
        **more,
    }


Open = Callable[[], tuple[bitstat.Stats, Model]]


@pytest.fixture
def fresh(server_url: str, redis_client: servers.Client) -> Iterator[Open]:
    opened: list[bitstat.Stats] = []

    def make() -> tuple[bitstat.Stats, Model]:
        ns = f"t-{uuid.uuid4().hex[:8]}"
        st = bitstat.connect(server_url, namespace=ns, schema=bitstat.Schema(**SETTINGS))
        opened.append(st)
        return st, Model(**SETTINGS)

    yield make
    for st in opened:
        st.drop()
        st.close()


def same_answers(st: bitstat.Stats, model: Model) -> None:
    for label in LABELS:
        assert st.total("buy", label) == model.total("buy", label), label
        assert st.unique("buy", label) == model.unique("buy", label), label
        assert st.unique("buy", label, country="NL") == model.unique("buy", label, country="NL")
        assert st.sums("buy", "amount", label) == pytest.approx(model.sums("buy", "amount", label))
        got, want = (
            st.sums("buy", "amount", label, by="country"),
            model.sums("buy", "amount", label, by="country"),
        )
        assert isinstance(got, dict) and isinstance(want, dict)
        assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k]) for k in want)
        assert st.counts("buy", "country", label) == model.counts("buy", "country", label)
        assert st.top("buy", "item", label) == model.top("buy", "item", label)
        assert st.distinct("buy", "ip", label) == model.distinct("buy", "ip", label)
        assert st.distinct("buy", "visitor", label) == model.distinct("buy", "visitor", label)


def both(st: bitstat.Stats, model: Model, events: list[Any], batch_id: str | None = None) -> None:
    """Record on both; they agree on what is recorded and on which events are rejected."""
    got = st.track_many(events, batch_id=batch_id)
    recorded, rejected = model.track_many(events, batch_id=batch_id)
    assert (got.recorded, [i for i, _ in got.rejected]) == (recorded, rejected), got.rejected


def test_values_beyond_the_largest_sum_are_rejected_alone_and_a_retry_stays_safe(
    fresh: Open,
) -> None:
    """The batch of the bug report: two values too large and one fine, with a batch id."""
    st, model = fresh()
    batch = [event(1.7e308), event(1.7e308, "DE"), event(3)]
    result = st.track_many(batch, batch_id="b1")
    assert result.recorded == 1
    assert [i for i, _ in result.rejected] == [0, 1]
    assert all(why.startswith("amount: ") and "1e+308" in why for _, why in result.rejected)
    model.track_many(batch, batch_id="b1")
    same_answers(st, model)
    assert st.total("buy", DAY) == 1 and st.unique("buy", DAY) == 1
    assert st.sums("buy", "amount", DAY) == 3.0
    again = st.track_many(batch, batch_id="b1")  # "already recorded": and it was, whole
    assert again.recorded == 0
    same_answers(st, model)


def test_a_batch_whose_values_add_up_past_the_limit_rejects_the_ones_that_would_carry_it(
    fresh: Open,
) -> None:
    st, model = fresh()
    both(st, model, [event(6e307), event(6e307), event(-6e307), event(6e307, "DE"), event(2)])
    same_answers(st, model)
    assert st.sums("buy", "amount", DAY) == pytest.approx(6e307 + 2)


def test_totals_already_stored_count_against_the_limit(fresh: Open) -> None:
    st, model = fresh()
    both(st, model, [event(9e307)])
    # 9e307 + 9e307 would pass it; the 1 fits. Per label too (by country): DE is far from it.
    both(st, model, [event(9e307), event(1), event(9e307, "DE")])
    same_answers(st, model)
    # the order counts: this batch ends where it started, yet its first event would pass it
    both(st, model, [event(5e307), event(-5e307)], batch_id="ordered")
    same_answers(st, model)
    assert st.sums("buy", "amount", DAY) == pytest.approx(9e307 + 1 - 5e307)


def test_a_batch_whose_every_event_was_refused_answers_the_same_when_sent_again(
    fresh: Open,
) -> None:
    """Its id is kept though nothing was written: sent again once the totals have room, it
    records nothing and reports the same refusals (found by the oracle on a cluster)."""
    st, model = fresh()
    both(st, model, [event(9e307)])
    refused = st.track_many([event(9e307), event(9e307)], batch_id="all-refused")
    assert (refused.recorded, [i for i, _ in refused.rejected]) == (0, [0, 1])
    model.track_many([event(9e307), event(9e307)], batch_id="all-refused")
    both(st, model, [event(-9e307)])  # the total has room again
    again = st.track_many([event(9e307), event(9e307)], batch_id="all-refused")
    assert again.recorded == 0 and again.rejected == refused.rejected
    assert model.track_many([event(9e307), event(9e307)], batch_id="all-refused")[0] == 0
    same_answers(st, model)


def test_a_sum_refused_for_one_event_counts_nothing_twice_for_another(fresh: Open) -> None:
    """On a cluster a batch is written one hash tag (event) at a time: 'a' is written before
    'buy' is refused; when the batch is checked again, 'a' must not meet its own share."""
    st, model = fresh()
    both(st, model, [event(6e307)])
    both(st, model, [{**event(6e307), "event": "a"}, event(0)])
    both(st, model, [{**event(1), "event": "a"}, event(6e307)])
    same_answers(st, model)
    assert st.sums("a", "amount", DAY) == pytest.approx(6e307 + 1)


def test_every_rule_family_keeps_the_good_events_of_a_batch_with_bad_ones(fresh: Open) -> None:
    st, model = fresh()
    events = [
        event(1, user="a"),
        event(float("inf"), user="b"),  # not finite
        event(2, "x" * 2000, user="c"),  # a segment, count and sum label too long
        event(3, user="d", item="i" * 1025),  # top value too long
        event(4, user="e", ip=["10.0.0.1"]),  # unique value not a scalar
        event(5, user="f", visitor={"id": 1}),  # approx value not a scalar
        event(6, user="u" * 1025),  # actor id too long
        event(7, user="g"),
        {**event(8), "user": None},  # no actor
        event(2e308, user="h"),  # beyond float range: not finite
        event(1.5e308, user="i"),  # finite, beyond the largest sum
    ]
    both(st, model, events)
    same_answers(st, model)
    assert st.total("buy", DAY) == 2


FOREIGN: list[tuple[str, Callable[[Keys], str], Callable[[servers.Client, str], Any]]] = [
    ("metrics hash", lambda k: k.metrics("buy", DAY), lambda r, key: r.set(key, "x")),
    ("counts", lambda k: k.counts("buy", "2026-11", "country"), lambda r, key: r.rpush(key, 1)),
    (
        "sums by label",
        lambda k: k.sums_by("buy", "2026", "amount", "country"),
        lambda r, key: r.set(key, "x"),
    ),
    ("top", lambda k: k.top("buy", "2026-W47", "item"), lambda r, key: r.hset(key, "a", 1)),
    # (a set is no foreign key there: a small sparse set of ids is kept as a Redis set)
    ("distinct values", lambda k: k.distinct("buy", DAY, "ip"), lambda r, key: r.rpush(key, 1)),
    ("estimate", lambda k: k.approx("buy", DAY, "visitor"), lambda r, key: r.set(key, "nothll")),
    ("actor bitmap", lambda k: k.actors(0, "buy", DAY), lambda r, key: r.hset(key, "a", 1)),
    (
        "segment bitmap",
        lambda k: k.actors(0, "buy", "2026-11", ("country", "NL")),
        lambda r, key: r.zadd(key, {"a": 1}),
    ),
    ("event names", lambda k: k.events, lambda r, key: r.set(key, "x")),
    ("first days", lambda k: k.span_first, lambda r, key: r.rpush(key, 1)),
]


def snapshot(client: servers.Client, st: bitstat.Stats) -> dict[bytes, bytes | None]:
    """Every key of the namespace and its value, but the id numbering: new actors and values
    get their numbers before the batch is written (a number without data counts nothing)."""
    keys = Keys(st.namespace)
    numbering = (keys.ids_tag, ":v:", ":vn:", ":vb:")
    found = [
        k
        for pattern in ("{" + st.namespace + "}*", "{" + st.namespace + ":*")
        for k in client.scan_iter(match=pattern, count=1000)
        if not any(part.encode() in k for part in numbering)
    ]
    return {k: client.dump(k) for k in found}


@pytest.mark.parametrize("family", [f[0] for f in FOREIGN])
def test_a_foreign_key_of_another_type_stops_the_batch_before_any_write(
    fresh: Open, redis_client: servers.Client, server_url: str, family: str
) -> None:
    _, name_of, plant = next(f for f in FOREIGN if f[0] == family)
    st, model = fresh()
    both(st, model, [event(1, user="a")], batch_id="first")
    key = name_of(Keys(st.namespace))
    if redis_client.exists(key):
        redis_client.delete(key)
        both_missing = True  # the planted key replaces a key of the first batch
    else:
        both_missing = False
    plant(redis_client, key)
    before = snapshot(redis_client, st)
    batch = [event(2, user="b"), event(3, "DE", user="c")]
    with pytest.raises(bitstat.ServerError) as caught:
        st.track_many(batch, batch_id="second")
    assert key in str(caught.value) and "nothing of this batch was written" in str(caught.value)
    if not server_url.startswith("redis+cluster"):
        # one server: one script call for the whole batch, stopped before its first write
        assert snapshot(redis_client, st) == before
    # the foreign key goes; the same batch id records what had not been written, once
    redis_client.delete(key)
    if both_missing:  # what the first batch had kept there is gone with the foreign key
        return
    st.track_many(batch, batch_id="second")
    model.track_many(batch, batch_id="second")
    assert st.track_many(batch, batch_id="second").recorded == 0
    same_answers(st, model)


def test_over_http_a_batch_with_values_too_large_answers_which_were_rejected(
    server_url: str, namespace: str
) -> None:
    """It answered 503, or a plain-text 500 with an Idempotency-Key or a sum by a label."""
    with bitstat.connect(server_url, namespace=namespace, schema=bitstat.Schema(**SETTINGS)) as st:
        app = bitstat.web.create_app(bitstat.web.ServerConfig(url=server_url, namespace=namespace))
        try:
            with TestClient(app) as client:
                batch = [event(1.7e308), event(1.7e308, "DE"), event(3)]
                for headers in ({}, {"Idempotency-Key": "k-1"}):
                    answer = client.post("/v1/track", json=batch, headers=headers)
                    assert answer.status_code == 200, answer.text
                    body = answer.json()
                    assert body["recorded"] == 1
                    assert [r["index"] for r in body["rejected"]] == [0, 1]
            assert st.sums("buy", "amount", DAY) == 6.0
        finally:
            st.drop()


def test_a_foreign_key_where_a_count_alone_goes_stops_the_batch_before_any_write(
    redis_client: servers.Client, server_url: str
) -> None:
    """A hash given one field's increment (an hour's event count: apply.lua's packed N op) is
    checked as every target is: a foreign key there is an error naming it, nothing written."""
    schema = bitstat.Schema(ids="map", periods=("hour", "day", "week", "month", "year"))
    st = bitstat.connect(server_url, namespace=f"t-{uuid.uuid4().hex[:8]}", schema=schema)
    try:
        st.track_many([event(user="a")], batch_id="first")
        key = Keys(st.namespace).metrics("buy", f"{DAY}T10")
        redis_client.delete(key)
        redis_client.set(key, "x")
        before = snapshot(redis_client, st)
        with pytest.raises(bitstat.ServerError) as caught:
            st.track_many([event(user="b"), event(user="c")], batch_id="second")
        assert key in str(caught.value) and "nothing of this batch was written" in str(caught.value)
        if not server_url.startswith("redis+cluster"):
            assert snapshot(redis_client, st) == before
        redis_client.delete(key)
        st.track_many([event(user="b"), event(user="c")], batch_id="second")
        assert st.total("buy", f"{DAY}T10") == 2  # (the first batch's count went with the key)
        assert st.total("buy", DAY) == 3
    finally:
        st.drop()
        st.close()


def test_a_foreign_key_in_the_id_map_takes_back_the_ids_mapped_before_it(
    fresh: Open, redis_client: servers.Client
) -> None:
    """ids.lua writes each new id as it goes (one HSETNX, not a look and a write): a key of
    another type where an id's bucket goes takes back those written before it, so no id keeps
    an offset the counter never gave out (the next new actor would take it too)."""
    st, model = fresh()
    both(st, model, [event(user="a")], batch_id="first")
    keys = Keys(st.namespace)
    planted = keys.id_forward("c")
    assert planted != keys.id_forward("b")
    redis_client.set(planted, "x")
    with pytest.raises(bitstat.BitstatError) as caught:
        st.track_many([event(user="b"), event(user="c")], batch_id="second")
    assert "WRONGTYPE" in str(caught.value)
    assert redis_client.hget(keys.id_forward("b"), "b") is None
    assert redis_client.get(keys.ids_next) == b"1"
    redis_client.delete(planted)
    batch = [event(user="b"), event(user="c"), event(user="d")]
    both(st, model, batch, batch_id="second")
    same_answers(st, model)
    found = st.actors("buy").day(2026, 11, 20)
    assert sorted(found.ids()) == ["a", "b", "c", "d"]
    offsets = [int(redis_client.hget(keys.id_forward(u), u)) for u in "abcd"]
    assert sorted(offsets) == [0, 1, 2, 3]  # (dense: none given twice, none skipped)


@pytest.mark.parametrize("bucket", [0, 1])
def test_a_foreign_key_in_the_reverse_id_map_takes_back_the_ids_mapped_before_it(
    fresh: Open, redis_client: servers.Client, bucket: int
) -> None:
    """ids.lua writes the new offsets' reverse entries after their forward ones: a key of
    another type where one goes (in the first bucket, or in a later one) takes back those
    written before it, so the same batch maps its ids again; an id kept forward only had no
    reverse entry, ever, and `ids()` left it out."""
    st, model = fresh()
    keys = Keys(st.namespace)
    planted = keys.id_reverse(bucket * 128)
    redis_client.set(planted, "x")
    users = [f"u{i:03}" for i in range(200)]
    batch = [event(user=u) for u in users]
    with pytest.raises(bitstat.BitstatError) as caught:
        st.track_many(batch, batch_id="first")
    assert "WRONGTYPE" in str(caught.value)
    assert redis_client.hget(keys.id_forward(users[0]), users[0]) is None
    assert redis_client.get(keys.ids_next) is None
    assert not redis_client.exists(keys.id_reverse(0)) or bucket == 0
    redis_client.delete(planted)
    both(st, model, batch, batch_id="first")
    same_answers(st, model)
    assert sorted(st.actors("buy").day(2026, 11, 20).ids()) == users
