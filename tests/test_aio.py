"""The asyncio API runs through the same oracle tests as the blocking one.

`Bridge` gives an `AsyncStats` the blocking surface the oracle drives (each call runs its
coroutine to the end on one event loop), so every comparison with the reference model in
test_oracle.py runs again on `bitstat.aio`, on every backend.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bitstat
import bitstat.aio as aio
import test_oracle

fresh = test_oracle.fresh  # the oracle's fixture: one namespace per example, dropped after
# the blocking API is tested with more examples; these show the asyncio driver agrees
ASYNC_EXAMPLES = settings(test_oracle.EXAMPLES, max_examples=10)


class SetBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop, inner: aio.AsyncActorSet) -> None:
        self._loop = loop
        self.inner = inner

    def _wrap(self, inner: aio.AsyncActorSet) -> SetBridge:
        return SetBridge(self._loop, inner)

    def __and__(self, other: SetBridge) -> SetBridge:
        return self._wrap(self.inner & other.inner)

    def __or__(self, other: SetBridge) -> SetBridge:
        return self._wrap(self.inner | other.inner)

    def __xor__(self, other: SetBridge) -> SetBridge:
        return self._wrap(self.inner ^ other.inner)

    def __sub__(self, other: SetBridge) -> SetBridge:
        return self._wrap(self.inner - other.inner)

    def __invert__(self) -> SetBridge:
        return self._wrap(~self.inner)

    def count(self) -> int:
        return self._loop.run_until_complete(self.inner.count())

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, actor: object) -> bool:
        return self._loop.run_until_complete(self.inner.contains(actor))

    def ids(self) -> Iterator[Any]:
        async def collect() -> list[Any]:
            return [actor async for actor in self.inner.ids()]

        return iter(self._loop.run_until_complete(collect()))


class QueryBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop, inner: Any) -> None:
        self._loop = loop
        self._inner = inner

    def __getattr__(self, name: str) -> Callable[..., SetBridge]:
        method = getattr(self._inner, name)
        return lambda *a, **k: SetBridge(self._loop, method(*a, **k))


class Bridge:
    """The blocking face of an AsyncStats, for tests only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, inner: aio.AsyncStats) -> None:
        self._loop = loop
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **k: self._loop.run_until_complete(attr(*a, **k))
        return attr

    def actors(self, event: str, **segment: Any) -> QueryBridge:
        return QueryBridge(self._loop, self._inner.actors(event, **segment))

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.run_until_complete(self._inner.close())


@pytest.fixture
def async_connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`bitstat.connect` answers with a bridged AsyncStats while the test runs."""
    loop = asyncio.new_event_loop()

    def connect(url: str | None = None, **kwargs: Any) -> Bridge:
        return Bridge(loop, loop.run_until_complete(aio.connect(url, **kwargs)))

    monkeypatch.setattr(bitstat, "connect", connect)
    yield
    loop.close()


@ASYNC_EXAMPLES
@given(data=st.data())
def test_async_int_ids_agree_with_model(
    server_url: str, fresh: Callable[[], str], async_connect: None, data: st.DataObject
) -> None:
    test_oracle.test_int_ids_agree_with_model.hypothesis.inner_test(  # type: ignore[attr-defined]
        server_url=server_url, fresh=fresh, data=data
    )


@ASYNC_EXAMPLES
@given(data=st.data())
def test_async_mapped_ids_agree_with_model(
    server_url: str, fresh: Callable[[], str], async_connect: None, data: st.DataObject
) -> None:
    test_oracle.test_mapped_ids_agree_with_model.hypothesis.inner_test(  # type: ignore[attr-defined]
        server_url=server_url, fresh=fresh, data=data
    )


def test_async_connect_stores_and_checks_the_schema(server_url: str, namespace: str) -> None:
    async def go() -> None:
        schema = bitstat.Schema(count=["country"])
        st_ = await aio.connect(server_url, namespace=namespace, schema=schema)
        await st_.track("login", user=1, country="NL", time="2026-11-22T10:00")
        reader = await aio.connect(server_url, namespace=namespace)
        assert reader.schema == schema
        assert await reader.counts("login", "country", "2026-11-22") == {"NL": 1}
        with pytest.raises(bitstat.SchemaError):
            await aio.connect(server_url, namespace=namespace, schema=bitstat.Schema())
        with pytest.raises(bitstat.InvalidEvent):
            await st_.track("login", user=-5)
        assert await st_.drop() > 0
        await st_.close()
        await reader.close()

    asyncio.run(go())


def test_span_gives_the_first_and_last_local_day(server_url: str, namespace: str) -> None:
    schema = bitstat.Schema(timezone="Europe/Amsterdam")
    with bitstat.connect(server_url, namespace=namespace, schema=schema) as st_:
        assert st_.span("login") is None
        st_.track_many(
            [
                {"event": "login", "user": 1, "time": "2026-11-20T10:00:00+00:00"},
                # 23:30 UTC is already the next day in Amsterdam
                {"event": "login", "user": 2, "time": "2026-11-22T23:30:00+00:00"},
            ]
        )
        want = (date(2026, 11, 20), date(2026, 11, 23))
        assert st_.span("login") == want

        async def read() -> Any:
            ast = await aio.connect(server_url, namespace=namespace)
            try:
                return await ast.span("login")
            finally:
                await ast.close()

        assert asyncio.run(read()) == want
        st_.drop()


def test_every_stats_method_has_an_async_twin_with_a_docstring() -> None:
    public = [n for n in dir(bitstat.Stats) if not n.startswith("_")]
    for name in public:
        twin = getattr(aio.AsyncStats, name, None)
        assert twin is not None, f"AsyncStats has no {name}"
        assert inspect.getdoc(twin), f"AsyncStats.{name} has no docstring"
        if inspect.isfunction(twin) and name not in ("actors", "tracker"):
            assert inspect.iscoroutinefunction(twin), name
            want = inspect.signature(getattr(bitstat.Stats, name))
            assert inspect.signature(twin).parameters == want.parameters, name
    for name in ("count", "contains", "ids"):
        assert inspect.getdoc(getattr(aio.AsyncActorSet, name)), name


def public_methods(kind: type) -> dict[str, Any]:
    return {n: m for n, m in vars(kind).items() if not n.startswith("_") and callable(m)}


def test_actor_sets_queries_and_trackers_have_twins_that_say_what_they_do() -> None:
    """help() on an actor set, a query or a tracker says what each method does, and the asyncio
    twins take the same arguments (ActorSet.count, ActorQuery.day/hour/month/year had no
    docstring, and ActorSet had no `contains` beside AsyncActorSet's)."""
    pairs = [
        (bitstat.ActorSet, aio.AsyncActorSet),
        (bitstat.ActorQuery, bitstat.ActorQuery),
        (bitstat.Tracker, bitstat.AsyncTracker),
    ]
    for blocking, asynchronous in pairs:
        methods = public_methods(blocking) | public_methods(blocking.__mro__[1])
        for name, method in methods.items():
            twin = getattr(asynchronous, name, None)
            assert twin is not None, f"{asynchronous.__name__} has no {name}"
            for m in (method, twin):
                assert inspect.getdoc(m), f"{m.__qualname__} has no docstring"
            want = inspect.signature(method).parameters
            assert inspect.signature(twin).parameters == want, name
    for name in ("count", "contains", "ids"):
        assert inspect.isfunction(getattr(bitstat.ActorSet, name)), name
    for name in ("flush", "close"):
        assert inspect.iscoroutinefunction(getattr(bitstat.AsyncTracker, name)), name


def test_aio_connect_takes_the_arguments_of_connect() -> None:
    # written out twice (the two differ at their I/O), so held equal here
    want = inspect.signature(bitstat.connect).parameters
    assert inspect.signature(aio.connect).parameters == want
