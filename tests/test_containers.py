"""Sets of actors and of value ids are containers: a small sparse set is kept as a Redis set
(an intset of its offsets), a bitmap once it is no longer small or sparse; every question reads
both. See the containers paragraphs of apply.lua and sets.lua."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import bitstat
import servers
from bitstat.keys import Keys
from model import Model

SETTINGS: dict[str, Any] = {
    "ids": "int",
    "periods": ("day", "week", "month"),
    "segment": ["plan"],
    "unique": ["ip"],
}
EXPIRE = {"day": "400d"}  # days expire (the model keeps them: none does within the test)
DAYS = ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-30"]  # a week and the next one's day
FAR = [10_007, 200_003, 500_009, 700_001, 999_983]  # offsets far apart in one 2^20 shard


def buy(user: int, day: str, plan: str = "pro", ip: str | None = None) -> dict[str, Any]:
    return {"event": "buy", "user": user, "time": f"{day}T12:00:00Z", "plan": plan, "ip": ip}


@pytest.fixture
def pair(server_url: str) -> Iterator[tuple[bitstat.Stats, Model]]:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    st = bitstat.connect(server_url, namespace=ns, schema=bitstat.Schema(**SETTINGS, expire=EXPIRE))
    yield st, Model(**SETTINGS)
    st.drop()
    st.close()


def both(st: bitstat.Stats, model: Model, events: list[dict[str, Any]]) -> None:
    assert st.track_many(events).recorded == model.track_many(events)[0] == len(events)


def kind(client: servers.Client, key: str) -> str:
    return str(client.type(key).decode())


def same_answers(st: bitstat.Stats, model: Model) -> None:
    for lo, hi in [(d, d) for d in [*DAYS, "2026-W48", "2026-11"]]:
        assert st.unique("buy", lo, hi) == model.unique("buy", lo, hi), lo
        assert st.unique("buy", lo, hi, plan="pro") == model.unique("buy", lo, hi, plan="pro")
        assert st.distinct("buy", "ip", lo, hi) == model.distinct("buy", "ip", lo, hi), lo
    a, b = st.actors("buy"), model.actors("buy")
    pro, free = st.actors("buy", plan="pro"), model.actors("buy", plan="pro")
    pairs = [
        (a.day(2026, 11, 23), b.day(2026, 11, 23)),
        (a.week(2026, 48), b.week(2026, 48)),
        (pro.day(2026, 11, 24), free.day(2026, 11, 24)),
    ]
    (x, mx), (y, my), (z, mz) = pairs
    for lib, ref in [
        (x, mx),
        (x & y, mx & my),
        (x | z, mx | mz),
        (y - x, my - mx),
        (x ^ z, mx ^ mz),
        (y & z & x, my & mz & mx),
        (~x & y, ~mx & my),
    ]:
        assert lib.count() == ref.count()
        assert sorted(lib.ids()) == sorted(ref.ids())
        for probe in [*FAR, 3, 42]:
            assert (probe in lib) == (probe in ref), probe
    now = "2026-12-01T00:00:00Z"
    got = st.retention("buy", "buy", DAYS[0], 3, "day", now=now)
    want = model.retention("buy", "buy", DAYS[0], 3, "day", now=now)
    assert [(r.cohort, r.size, r.counts) for r in got.rows] == want
    assert st.funnel(["buy", "buy"], DAYS[0], DAYS[-1]) == model.funnel(
        ["buy", "buy"], DAYS[0], DAYS[-1]
    )
    assert st.stickiness("buy", DAYS[0], DAYS[-1]) == model.stickiness("buy", DAYS[0], DAYS[-1])


def test_a_few_actors_far_apart_are_a_redis_set_many_a_bitmap(
    pair: tuple[bitstat.Stats, Model], redis_client: servers.Client
) -> None:
    st, model = pair
    keys = Keys(st.namespace)
    day_key, week_key = keys.actors(0, "buy", DAYS[0]), keys.actors(0, "buy", "2026-W48")
    both(st, model, [buy(u, DAYS[0], ip=f"10.0.0.{u % 7}") for u in FAR])
    both(st, model, [buy(FAR[0], DAYS[1], "free"), buy(77, DAYS[3], "free", "10.0.0.1")])
    assert kind(redis_client, day_key) == kind(redis_client, week_key) == "set"
    assert redis_client.scard(day_key) == len(FAR)
    same_answers(st, model)

    # 600 more actors that day, in batches: no longer small, the day (and week) become bitmaps
    rng = random.Random(5)
    crowd = rng.sample(range(1, 1 << 20), 600)
    ttl_before = redis_client.pttl(day_key)
    for start in range(0, len(crowd), 150):
        both(st, model, [buy(u, DAYS[0], rng.choice(["pro", "free"])) for u in crowd[start:][:150]])
    assert kind(redis_client, day_key) == kind(redis_client, week_key) == "string"
    assert 0 < redis_client.pttl(day_key) <= ttl_before  # the day's expiry survived the change
    # the quieter days stay sets
    assert kind(redis_client, keys.actors(0, "buy", DAYS[1])) == "set"
    same_answers(st, model)


def test_dense_sets_are_bitmaps_from_the_start(
    pair: tuple[bitstat.Stats, Model], redis_client: servers.Client
) -> None:
    """Actors numbered close together (the usual case: ids from a counter) are cheaper as bits."""
    st, model = pair
    both(st, model, [buy(u, DAYS[0], ip=str(u % 3)) for u in range(200)])
    keys = Keys(st.namespace)
    assert kind(redis_client, keys.actors(0, "buy", DAYS[0])) == "string"
    assert kind(redis_client, keys.distinct("buy", DAYS[0], "ip")) == "string"
    same_answers(st, model)


def test_sets_and_bitmaps_mixed_in_random_batches_answer_as_the_model(
    pair: tuple[bitstat.Stats, Model], redis_client: servers.Client
) -> None:
    st, model = pair
    rng = random.Random(11)
    regulars = rng.sample(range(1 << 20), 40)
    for _ in range(12):
        batch = []
        for _ in range(rng.randint(1, 120)):
            user = rng.choice(regulars) if rng.random() < 0.5 else rng.randrange(1 << 20)
            batch.append(buy(user, rng.choice(DAYS), rng.choice(["pro", "free"]), str(user % 50)))
        both(st, model, batch)
    kinds = {kind(redis_client, Keys(st.namespace).actors(0, "buy", d)) for d in DAYS}
    assert kinds == {"set", "string"} or len(kinds) == 1  # which ones depends on the draw
    same_answers(st, model)


def test_sets_known_to_be_bitmaps_get_a_bitmap_alone_and_a_wrong_guess_costs_no_answer(
    pair: tuple[bitstat.Stats, Model], redis_client: servers.Client, server_url: str
) -> None:
    """The script reports the sets that are bitmaps; the client then sends them the offsets as
    one bitmap (BITOP), not as offsets. A key it wrongly believes a bitmap (deleted, as an
    expired one is) is made a bitmap again: the answers stay the model's. Another client that
    knows nothing sends offsets, set bit by bit, and learns."""
    st, model = pair
    keys = Keys(st.namespace)
    day, week = keys.actors(0, "buy", DAYS[0]), keys.actors(0, "buy", "2026-W48")
    both(st, model, [buy(u, DAYS[0]) for u in range(300)])  # dense: bitmaps from the start
    assert {day, week} <= st._ns.bitmap_keys
    seen: list[list[Any]] = []
    original = bitstat.transport.apply_call

    def spied(g: Any, batch_ttl: int) -> tuple[list[str], list[Any]]:
        found = original(g, batch_ttl)
        seen.append(found[1])
        return found

    # 40 actors, few and apart: offsets to a set, a bitmap (a payload under 8 KB) to a known
    # bitmap; 40 spread over a million ids would make a payload of 128 KB: offsets again
    crowd = random.Random(3).sample(range(1000, 60_000), 40)
    wide = random.Random(5).sample(range(60_000, 1 << 20), 40)
    try:
        bitstat.transport.apply_call = spied
        both(st, model, [buy(u, DAYS[0]) for u in crowd])
        codes = [a for args in seen for a in args if a in ("B", "W", "O", "P")]
        assert "O" in codes and "W" not in codes
        seen.clear()
        both(st, model, [buy(u, DAYS[0]) for u in wide])
        codes = [a for args in seen for a in args if a in ("B", "W", "O", "P")]
        assert "O" not in codes and "P" not in codes
    finally:
        bitstat.transport.apply_call = original
    same_answers(st, model)

    redis_client.delete(day)  # gone (as an expired key is); the client still believes it a bitmap
    model_events = [buy(u, DAYS[0]) for u in crowd[:20]]
    both(st, model, model_events)
    assert kind(redis_client, day) == "string"  # a bitmap where a set would have done: no harm
    assert st.unique("buy", DAYS[0]) == 20
    model = Model(**SETTINGS)  # the model of what is left: the 20 re-sent, and the week
    model.track_many([buy(u, DAYS[0]) for u in [*range(300), *crowd, *wide]])
    assert st.unique("buy", "2026-W48") == model.unique("buy", "2026-W48", "2026-W48")

    other = bitstat.connect(server_url, namespace=st.namespace)
    try:
        more = random.Random(4).sample(range(1000, 1 << 20), 30)
        assert other.track_many([buy(u, DAYS[0]) for u in more]).recorded == 30
        assert {day, week} <= other._ns.bitmap_keys  # learnt from the script's answer
        model.track_many([buy(u, DAYS[0]) for u in more])
        assert st.unique("buy", "2026-W48") == model.unique("buy", "2026-W48", "2026-W48")
    finally:
        other.close()
