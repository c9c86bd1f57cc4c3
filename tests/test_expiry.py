"""Schema(expire=...) on the write side: what a write keeps of a bucket, and for how long, is what
the reads judge kept (ops.Namespace.kept_for), before and after configure() changes an expiry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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


@pytest.fixture
def client(embedded_url: str) -> Iterator[servers.Client]:
    found = servers.client_for(embedded_url)
    yield found
    found.close()


def hour_keys(client: servers.Client, ns: str, hour: str) -> dict[str, int]:
    """The namespace's keys of one hour bucket, with the Unix time each expires at (-1: never)."""
    return {
        k.decode(): int(client.expiretime(k))
        for k in client.scan_iter(match=f"{{{ns}*:{hour}*", count=1000)
    }


@pytest.mark.parametrize("after", [{}, {"hour": "7d"}], ids=["lifted", "lengthened"])
def test_a_write_after_expire_was_changed_keeps_a_bucket_as_long_as_reads_do(
    embedded_url: str, client: servers.Client, after: dict[str, str]
) -> None:
    """Before: the reads judge a bucket begun before the change by the 1-day expiry it was
    begun under, the writes by the new one: a backfill of an hour 3 days old was recorded in
    hour keys that no question reads (refused: 'kept 1 day'), kept for ever once the expiry
    was lifted, and `expired` did not count it; an hour still kept lost its TTL to the BITOP
    of a batch of many actors (no expiry of the hour to set again after it)."""
    ns = f"ex-{uuid.uuid4().hex[:8]}"
    st = bitstat.connect(
        embedded_url, namespace=ns, schema=bitstat.Schema(**SETTINGS, expire={"hour": "1d"})
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
        assert hour_keys(client, ns, gone) == {}
        with pytest.raises(bitstat.QueryError, match="kept 1 day"):
            st.total("buy", gone)
        assert st.total("buy", f"{old:%Y-%m-%d}") == 2
        assert st.unique("buy", f"{old:%Y-%m-%d}", country="NL") == 2

        # an hour begun under the 1-day expiry keeps it, however many actors come later
        many = [{"event": "buy", "user": u, "time": recent, "country": "NL"} for u in range(900)]
        assert st.track_many(many).expired == {}
        ends = expire_at("hour", hour, "UTC", 86400)
        kept = hour_keys(client, ns, hour)
        assert len(kept) == 3  # actors, actors of NL, totals (counts are kept per day)
        assert set(kept.values()) == {ends}, kept
        assert st.unique("buy", hour) == st.unique("buy", hour, country="NL") == 900
        assert st.total("buy", hour) == 901

        # an hour begun after the change is kept as the schema says now
        later = now + timedelta(hours=1)
        assert st.track_many([{"event": "buy", "user": 1, "time": later}]).expired == {}
        want = -1 if not after else expire_at("hour", f"{later:%Y-%m-%dT%H}", "UTC", 7 * 86400)
        assert set(hour_keys(client, ns, f"{later:%Y-%m-%dT%H}").values()) == {want}
    finally:
        st.drop()
        st.close()
