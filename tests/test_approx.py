"""`approx` properties: distinct values estimated with HyperLogLog, on every backend.

The oracle tests (test_oracle.py) check small sets against the model; these check the estimate
at sizes where it is an estimate, its memory, and the rules around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import bitstat
import servers

DAY1 = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday
# Redis's HyperLogLog has a standard error of 0.81%; 3% is more than 3.5 of them
TOLERANCE = 0.03


@pytest.fixture
def stats(server_url: str, namespace: str, redis_client: servers.Client) -> Iterator[bitstat.Stats]:
    st = bitstat.connect(
        server_url,
        namespace=namespace,
        schema=bitstat.Schema(
            periods=("hour", "day", "week", "month"),
            unique=["page"],
            approx=["visitor", "ip~country"],
            expire={"hour": "36500d"},  # long: DAY1 is in the past
            hourly=["approx"],
            anonymous=True,  # page views by visitors, none of them a known user
        ),
    )
    yield st
    st.close()
    for key in list(redis_client.scan_iter(match="{" + namespace + "*", count=1000)):
        redis_client.delete(key)


def views(visitors: range, when: datetime) -> list[dict[str, object]]:
    return [
        {"event": "view", "visitor": f"v-{i}", "page": f"/p{i % 7}", "time": when} for i in visitors
    ]


def close_to(estimate: int, exact: int) -> bool:
    return abs(estimate - exact) <= TOLERANCE * exact


def test_estimates_distinct_values_over_any_range(stats: bitstat.Stats) -> None:
    """Two days sharing half their visitors: each day, and the union PFCOUNT merges."""
    day2 = DAY1 + timedelta(days=1)
    for chunk in range(0, 60_000, 10_000):
        assert stats.track_many(views(range(chunk, chunk + 10_000), DAY1)).recorded == 10_000
        assert stats.track_many(views(range(30_000 + chunk, 40_000 + chunk), day2)).recorded
    one = stats.distinct("view", "visitor", DAY1.date())
    two = stats.distinct("view", "visitor", day2.date().isoformat())
    both = stats.distinct("view", "visitor", DAY1.date(), day2.date())
    week = stats.distinct("view", "visitor", "2026-W10")
    assert close_to(one, 60_000) and close_to(two, 60_000), (one, two)
    assert close_to(both, 90_000) and close_to(week, 90_000), (both, week)
    assert stats.distinct("view", "page", "2026-03") == 7  # a `unique` property stays exact


def test_memory_is_bounded_whatever_the_cardinality(
    stats: bitstat.Stats, redis_client: servers.Client, namespace: str
) -> None:
    """A HyperLogLog is at most 12 KB (16,384 six-bit registers) however many values."""
    for chunk in range(0, 100_000, 10_000):
        stats.track_many(views(range(chunk, chunk + 10_000), DAY1))
    pattern = "{" + namespace + ":e:view}:h:*"
    sizes = {key: redis_client.strlen(key) for key in redis_client.scan_iter(match=pattern)}
    assert len(sizes) == 4  # the hour, day, week and month of DAY1
    assert all(n <= 12_304 for n in sizes.values()), sizes  # 16-byte header + 12,288


def test_compound_values_in_either_order_and_events_without_them(stats: bitstat.Stats) -> None:
    events: list[dict[str, object]] = [
        {"event": "view", "ip": f"10.0.0.{i % 50}", "country": "NL" if i % 2 else "DE"}
        for i in range(300)
    ]
    events += [{"event": "view", "ip": "10.9.9.9"}]  # no country: not a value of ip~country
    for ev in events:
        ev["time"] = DAY1
    assert stats.track_many(events).recorded == 301
    # 50 addresses, each seen with one country (i % 50 keeps the parity of i)
    assert stats.distinct("view", "ip~country", "2026-03-02") == 50
    assert stats.distinct("view", "country~ip", "2026-03-02") == 50
    assert stats.distinct("view", "visitor", "2026-03-02") == 0
    assert stats.query("view", "2026-03-02")["distinct"]["country~ip"] == 50


def test_keys_of_periods_with_an_expiry_get_it(
    stats: bitstat.Stats, redis_client: servers.Client, namespace: str
) -> None:
    stats.track_many(views(range(10), DAY1))
    hour = "{" + namespace + ":e:view}:h:2026-03-02T12:visitor"
    day = "{" + namespace + ":e:view}:h:2026-03-02:visitor"
    assert redis_client.ttl(hour) > 0
    assert redis_client.ttl(day) == -1


def test_bad_values_are_rejected_alone(stats: bitstat.Stats) -> None:
    result = stats.track_many(
        [
            {"event": "view", "visitor": ["a", "list"], "time": DAY1},
            {"event": "view", "visitor": "fine", "time": DAY1},
        ]
    )
    assert result.recorded == 1
    assert [i for i, _ in result.rejected] == [0]
    assert "visitor" in result.rejected[0][1]
    assert stats.distinct("view", "visitor", "2026-03-02") == 1


def test_asking_for_a_property_not_recorded(stats: bitstat.Stats) -> None:
    with pytest.raises(bitstat.QueryError, match=r"approx|unique"):
        stats.distinct("view", "nothing", "2026-03-02")


def test_a_property_cannot_be_both_exact_and_approximate() -> None:
    with pytest.raises(bitstat.SchemaError, match=r"'ip'.*both"):
        bitstat.Schema(unique=["ip"], approx=["ip"])
    with pytest.raises(bitstat.SchemaError, match="both"):
        bitstat.Schema(events={"view": {"unique": ["a~b"], "approx": ["b~a"]}})


def test_the_schema_round_trips_and_omits_an_empty_list() -> None:
    schema = bitstat.Schema(approx=["visitor"], events={"view": {"approx": ["ip"]}})
    assert bitstat.Schema.from_json(schema.to_json()) == schema
    assert schema.to_dict()["events"]["view"]["approx"] == ["ip"]
    assert "approx" not in bitstat.Schema().to_dict()
