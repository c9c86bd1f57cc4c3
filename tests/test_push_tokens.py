"""How long the server keeps the tokens of `track()`'s pushes, against every way a push of one
can come again: bitstat's own retries (up to `deadline`), the caller's track() again after a
BatchError (within the time it gives, each such call retrying too), and `track_ahead`'s pushes
whose replies are read only later (after an idle spell, say). A token is never pushed again
once the server may have forgotten it: the error then names its event as stale instead.

Minutes cannot pass in a test, so they pass on a virtual clock: bitstat.queued's time module
is moved on, a retry's wait moves it on instead of sleeping, and a set of tokens is deleted
once its TTL (as the server gave or last raised it) has passed on that clock, as the server
would after as many real seconds."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import bitstat
import bitstat.queued
from bitstat.transport import Transport
from exactly import batches, schema
from faultservers import Server
from proxy import Proxy

PUSH = b"push"  # in queue.lua's requests that push an event
NEVER = {"flush_at": 10**6, "flush_interval": 1e6}


class Clock:
    """bitstat.queued's time module on a virtual clock, 0.5 s into a window of tokens at
    first; `advance` moves it on."""

    def __init__(self) -> None:
        now, window = time.time(), bitstat.queued.PUSH_WINDOW
        self.offset = (int(now) // window + 1) * window + 0.5 - now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class TokenSets:
    """A namespace's sets of tokens, each deleted once its TTL has passed on the clock."""

    def __init__(self, client: redis.Redis, clock: Clock, namespace: str) -> None:
        self.client, self.clock, self.namespace = client, clock, namespace
        self.until: dict[bytes, tuple[float, int]] = {}  # key -> (expires at, TTL read then)

    def look(self) -> None:
        for key in self.client.scan_iter(match="{" + self.namespace + "}:q:tokens:*"):
            ttl = self.client.ttl(key)
            if key not in self.until or ttl > self.until[key][1] + 1:  # new, or raised
                self.until[key] = (self.clock.time() + ttl, ttl)

    def expire(self) -> None:
        self.look()
        for key, (at, _) in list(self.until.items()):
            if self.clock.time() >= at:
                self.client.delete(key)
                del self.until[key]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(bitstat.queued, "time", clock)
    return clock


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sets(fault_server: Server, clock: Clock, namespace: str) -> TokenSets:
    return TokenSets(redis.Redis(port=fault_server.port), clock, namespace)


def waits_pass(monkeypatch: pytest.MonkeyPatch, clock: Clock, sets: TokenSets, step: float) -> None:
    """A retry's wait takes no real time: the clock moves on (at least `step`), and the sets
    whose TTL has passed go."""
    real = Transport.sleep

    def sleep(self: Any, seconds: float) -> Any:
        clock.advance(max(seconds, step))
        sets.expire()
        return real(self, 0)

    monkeypatch.setattr(Transport, "sleep", sleep)


@pytest.fixture
def opened(proxy: Proxy) -> Iterator[list[bitstat.Stats]]:
    made: list[bitstat.Stats] = []
    yield made
    proxy.cut_replies(0, b"")
    made[0].drop()
    for st in made:
        st.close()


def stats(proxy: Proxy, namespace: str, opened: list[bitstat.Stats], **options: Any) -> Any:
    st = bitstat.connect(proxy.url(), namespace=namespace, schema=schema(), **NEVER, **options)
    opened.append(st)
    return st


def queued(st: bitstat.Stats, client: redis.Redis) -> int:
    return int(client.llen(st._ns.keys.queue))


def test_a_set_is_kept_as_long_as_the_longest_deadline_sharing_it_needs(
    proxy: Proxy,
    sets: TokenSets,
    clock: Clock,
    namespace: str,
    opened: list[bitstat.Stats],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two Stats of one namespace, deadlines 0.3 s and 600 s, push in one minute, the short one
    first. The long one's event lands, its reply lost and the server away for 200 s: its
    retries go on, and the one that gets through finds the token (it counted twice when the
    first push of a minute set the set's TTL for all)."""
    e0, e1, e2 = batches(1, 3, seed=21)[0]
    short = stats(proxy, namespace, opened, deadline=0.3)
    long = stats(proxy, namespace, opened, deadline=600)
    short.track(e0)
    clock.advance(1)
    long.track(e1)
    sets.look()
    ((_, (_, ttl)),) = sets.until.items()
    token = bitstat.queued.TOKENS.next(long._ns.window_now())  # (one the long Stats makes now)
    assert ttl >= long._ns.seen_ttl(token) - 6  # (queue.lua refreshes when 5 s short)
    waits_pass(monkeypatch, clock, sets, step=30)
    began = clock.time()
    wait = Transport.sleep

    def back_after_200_s(self: Any, seconds: float) -> Any:
        if clock.time() - began >= 200:
            proxy.cut_replies(0, b"")
        return wait(self, seconds)

    monkeypatch.setattr(Transport, "sleep", back_after_200_s)
    proxy.cut_replies(1, PUSH, then_all=True)  # e2 lands, its reply is lost, the server away
    long.track(e2)  # (within its deadline: no error)
    assert queued(long, sets.client) == 3  # e0, e1, e2 once each


@pytest.mark.parametrize("deadline, calls", [(600, 2), (60, 3), (0.3, 4)])
def test_the_callers_calls_again_never_count_an_event_twice(
    proxy: Proxy,
    sets: TokenSets,
    clock: Clock,
    namespace: str,
    opened: list[bitstat.Stats],
    monkeypatch: pytest.MonkeyPatch,
    deadline: float,
    calls: int,
) -> None:
    """A push made late in its minute lands, its reply lost, the server away: BatchError. The
    caller calls track() again near the end of the time each error gives, `calls` times in
    all (each failing, until the server comes back during the last one's retries): the event
    is queued once, or the error says it is stale (may be in, not sent again)."""
    e0, e1 = batches(1, 2, seed=22)[0]
    st = stats(proxy, namespace, opened, deadline=deadline)
    step = min(30.0, deadline)
    waits_pass(monkeypatch, clock, sets, step)
    st.track(e0)
    clock.advance(58)  # e1's token: late in the same minute
    proxy.cut_replies(1, PUSH, then_all=True)
    stale: list[Any] = []
    for call in range(1, calls + 1):
        if call == calls:  # the server comes back during this call's own retries
            began, wait = clock.time(), Transport.sleep

            def back(self: Any, seconds: float, began: float = began, wait: Any = wait) -> Any:
                if clock.time() - began >= deadline - step:
                    proxy.cut_replies(0, b"")
                return wait(self, seconds)

            monkeypatch.setattr(Transport, "sleep", back)
        try:
            st.track(e1)
            break
        except bitstat.BatchError as exc:
            assert exc.may_have_landed
            given = re.search(r"within (\d+) s", str(exc))
            if not given:  # too late to be sent again: said so
                assert exc.stale_events == [st._ns.one_record(e1, {})]
                assert "may count it twice" in str(exc)
                stale = exc.stale_events
                break
            clock.advance(int(given[1]) - 1)  # within the time it gives
            sets.expire()
    proxy.cut_replies(0, b"")
    assert queued(st, sets.client) == 2 or (stale and queued(st, sets.client) <= 2)


def test_a_push_sent_ahead_whose_reply_is_lost_over_an_idle_spell_is_not_sent_again(
    proxy: Proxy,
    sets: TokenSets,
    clock: Clock,
    namespace: str,
    opened: list[bitstat.Stats],
) -> None:
    """track_ahead: a push lands and its connection is reset (a load balancer's idle timeout)
    with the reply unread; nothing is tracked for 10 minutes. The next call finds the reply
    lost: the token's set may be gone, so the push is not made again (it counted twice): the
    error names its event as stale."""
    e0, e1, e2 = batches(1, 3, seed=23)[0]
    st = stats(proxy, namespace, opened, track_ahead=100)
    st.track(e0)  # (waits: loads the script)
    proxy.cut_replies(1, PUSH)
    st.track(e1)  # sent ahead: it lands, its reply is lost with the connection
    until = time.monotonic() + 5
    while queued(st, sets.client) < 2 and time.monotonic() < until:
        time.sleep(0.01)
    assert queued(st, sets.client) == 2 and st._ns.unconfirmed
    clock.advance(600)
    sets.expire()
    with pytest.raises(bitstat.BatchError) as raised:
        st.flush()
    error = raised.value
    assert error.may_have_landed and error.events == []
    assert error.stale_events == [st._ns.one_record(e1, {})]
    assert "may count it twice" in str(error)
    st.track(e2)
    assert st.flush() == 3  # e0, e1, e2 once each


def test_a_push_whose_reply_is_lost_for_a_moment_is_still_sent_again(
    proxy: Proxy,
    sets: TokenSets,
    clock: Clock,
    namespace: str,
    opened: list[bitstat.Stats],
) -> None:
    """The same with a short pause (within the token's life): pushed again, queued once."""
    e0, e1 = batches(1, 2, seed=24)[0]
    st = stats(proxy, namespace, opened, track_ahead=100)
    st.track(e0)
    proxy.cut_replies(1, PUSH)
    st.track(e1)
    clock.advance(60)
    sets.expire()
    assert st.flush() == 2
