"""Schema(expire=...) on the write side: what a write keeps of a bucket, and for how long, is what
the reads judge kept (ops.Namespace.kept_for), before and after configure() changes an expiry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import bitstat
import servers
from bitstat.periods import expire_at

PERIODS = ("hour", "day", "week", "month", "year")
SETTINGS: dict[str, Any] = {
    "periods": PERIODS,
    "segment": ["country"],
    "count": ["country"],
    "hourly": ["segment"],
}


def bucket_keys(client: servers.Client, ns: str, label: str) -> dict[str, int]:
    """The namespace's keys of one bucket, with the Unix time each expires at (-1: never)."""
    return {
        k.decode(): int(client.expiretime(k))
        for k in client.scan_iter(match=f"{{{ns}*:{label}*", count=1000)
        if label in k.decode().split(":")
    }


@pytest.mark.parametrize("after", [{}, {"hour": "7d"}], ids=["lifted", "lengthened"])
def test_a_write_after_expire_was_changed_keeps_a_bucket_as_long_as_reads_do(
    server_url: str, redis_client: servers.Client, after: dict[str, str]
) -> None:
    """Before: the reads judge a bucket begun before the change by the 1-day expiry it was
    begun under, the writes by the new one: a backfill of an hour 3 days old was recorded in
    hour keys that no question reads (refused: 'kept 1 day'), kept for ever once the expiry
    was lifted, and `expired` did not count it; an hour still kept lost its TTL to the BITOP
    of a batch of many actors (no expiry of the hour to set again after it)."""
    ns = f"ex-{uuid.uuid4().hex[:8]}"
    st = bitstat.connect(
        server_url, namespace=ns, schema=bitstat.Schema(**SETTINGS, expire={"hour": "1d"})
    )
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    recent, old = now - timedelta(hours=2), now - timedelta(days=3)
    hour, gone = f"{recent:%Y-%m-%dT%H}", f"{old:%Y-%m-%dT%H}"
    try:
        one = [{"event": "buy", "user": 1, "time": recent, "country": "NL"}]
        assert st.track_many(one).recorded == 1
        st.configure(bitstat.Schema(**SETTINGS, expire=after))

        late = [{"event": "buy", "user": u, "time": old, "country": "NL"} for u in (2, 3)]
        assert st.track_many(late).expired == {"hour": 2}
        assert bucket_keys(redis_client, ns, gone) == {}
        with pytest.raises(bitstat.QueryError, match="kept 1 day"):
            st.total("buy", gone)
        assert st.total("buy", f"{old:%Y-%m-%d}") == 2
        assert st.unique("buy", f"{old:%Y-%m-%d}", country="NL") == 2

        # an hour begun under the 1-day expiry keeps it, however many actors come later
        many = [{"event": "buy", "user": u, "time": recent, "country": "NL"} for u in range(900)]
        assert st.track_many(many).expired == {}
        ends = expire_at("hour", hour, "UTC", 86400)
        kept = bucket_keys(redis_client, ns, hour)
        assert len(kept) == 3  # actors, actors of NL, totals (counts are kept per day)
        assert set(kept.values()) == {ends}, kept
        assert st.unique("buy", hour) == st.unique("buy", hour, country="NL") == 900
        assert st.total("buy", hour) == 901

        # an hour begun after the change is kept as the schema says now
        later = now + timedelta(hours=1)
        assert st.track_many([{"event": "buy", "user": 1, "time": later}]).expired == {}
        want = -1 if not after else expire_at("hour", f"{later:%Y-%m-%dT%H}", "UTC", 7 * 86400)
        assert set(bucket_keys(redis_client, ns, f"{later:%Y-%m-%dT%H}").values()) == {want}
    finally:
        st.drop()
        st.close()


@pytest.mark.parametrize("before", [{}, {"hour": "30d"}], ids=["added", "shortened"])
def test_configure_that_adds_or_shortens_an_expire_applies_it_to_the_keys_written(
    server_url: str, redis_client: servers.Client, before: dict[str, str]
) -> None:
    """Before: the keys written before the change kept no expiry (or the longer one): an
    operator adding `expire={"hour": "2d"}` to cut memory kept every hour ever written, and
    those past 2 days for ever, though no question reads them any more ('kept 2 days')."""
    ns = f"ex-{uuid.uuid4().hex[:8]}"
    settings: dict[str, Any] = {**SETTINGS, "hourly": "all", "top": ["country"], "sum": ["n"]}
    settings |= {"ids": "map", "unique": ["ip"], "approx": ["visitor"]}
    st = bitstat.connect(server_url, namespace=ns, schema=bitstat.Schema(**settings, expire=before))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    times = [now - timedelta(days=d) for d in (0, 1, 5, 10)]
    extra = {"country": "NL", "n": 2, "ip": "10.0.0.1", "visitor": "v"}
    events = [{"event": "buy", "user": f"u{i}", "time": t, **extra} for i, t in enumerate(times)]
    try:
        assert st.track_many(events).recorded == 4
        st.configure(bitstat.Schema(**settings, expire={"hour": "2d"}))

        for t in times:
            hour = f"{t:%Y-%m-%dT%H}"
            kept = bucket_keys(redis_client, ns, hour)
            if t < now - timedelta(days=2):
                assert kept == {}, hour
                with pytest.raises(bitstat.QueryError, match="kept 2 days"):
                    st.total("buy", hour)
            else:  # actors, actors of NL, totals, counts, top, sums by, distinct, approx
                assert len(kept) == 7, kept
                assert set(kept.values()) == {expire_at("hour", hour, "UTC", 2 * 86400)}
                assert st.total("buy", hour) == 1
            # the day is kept as it was
            assert set(bucket_keys(redis_client, ns, f"{t:%Y-%m-%d}").values()) == {-1}
            assert st.unique("buy", f"{t:%Y-%m-%d}", country="NL") == 1
        first = f"{times[-1]:%Y-%m-%d}"
        assert st.distinct("buy", "ip", first, now) == 1
        assert sorted(st.actors("buy").between(first, now).ids()) == ["u0", "u1", "u2", "u3"]
    finally:
        st.drop()
        st.close()


def test_a_writer_still_on_the_schema_before_an_expiry_keeps_the_keys_expiry(
    server_url: str, redis_client: servers.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client on the schema before `configure()` added an expiry (it reads the schema again
    within 5 s) merged bitmaps (BITOP OR) and counters (ZUNIONSTORE) into keys the change had
    just given their expiry: both commands drop a key's TTL, and the keys were kept for ever."""
    from bitstat import record

    monkeypatch.setattr(record, "SCHEMA_TTL", 3600.0)  # (the old writer's 5 s, held open)
    ns = f"ex-{uuid.uuid4().hex[:8]}"
    settings: dict[str, Any] = {"periods": ("day",), "count": ["country"]}
    old = bitstat.connect(server_url, namespace=ns, schema=bitstat.Schema(**settings))
    admin = bitstat.connect(server_url, namespace=ns, schema=bitstat.Schema(**settings))
    now = datetime.now(UTC).replace(microsecond=0)
    day = f"{now:%Y-%m-%d}"

    def visits(first: int) -> list[dict[str, Any]]:
        return [
            {"event": "visit", "user": first + i, "time": now, "country": f"C{i % 30}"}
            for i in range(3000)
        ]

    try:
        assert old.track_many(visits(0)).recorded == 3000
        admin.configure(bitstat.Schema(**settings, expire={"day": "30d"}))
        ends = expire_at("day", day, "UTC", 30 * 86400)
        assert set(bucket_keys(redis_client, ns, day).values()) == {ends}
        assert old.track_many(visits(3000)).recorded == 3000  # (no expiry in its schema)
        assert set(bucket_keys(redis_client, ns, day).values()) == {ends}
        assert admin.unique("visit", day) == 6000
        assert admin.counts("visit", "country", day)["C0"] == 200
    finally:
        admin.drop()
        old.close()
        admin.close()
