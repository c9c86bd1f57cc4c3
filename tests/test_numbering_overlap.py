"""A batch's new values are numbered by the server while the client plans the rest of the
batch (`Sent`, then `Received`): every answer stays exact when the server forgot its scripts,
when the connection fails between the two steps, and when planning fails between them (the
connection holding the unread replies is not kept)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
import redis.exceptions as rex

import bitstat
import bitstat.aio
from bitstat import record, store
from exactly import batches, model, same_answers, schema


def test_values_numbered_meanwhile_are_exact_after_the_scripts_are_forgotten(
    server_url: str, namespace: str, redis_client: Any
) -> None:
    want = model()
    with bitstat.connect(server_url, namespace=namespace, schema=schema()) as st:
        for batch in batches(3, 600, seed=71):
            redis_client.script_flush()  # values.lua answers NOSCRIPT: loaded, then run
            assert st.track_many(batch).recorded == len(batch)
            want.track_many(batch)
        same_answers(st, want)


def test_the_asyncio_api_numbers_values_meanwhile_too(server_url: str, namespace: str) -> None:
    want = model()
    work = batches(3, 600, seed=73)

    async def record_all() -> None:
        opened = bitstat.aio.connect(server_url, namespace=namespace, schema=schema())
        async with await opened as st:
            for batch in work:
                assert (await st.track_many(batch)).recorded == len(batch)

    asyncio.run(record_all())
    for batch in work:
        want.track_many(batch)
    with bitstat.connect(server_url, namespace=namespace) as st:
        same_answers(st, want)


def test_a_connection_lost_before_the_ids_are_read_records_the_batch_once(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ids' connection breaks after the server numbered the values: the batch is sent
    again and numbered again (get or create: the same ids), and counted once."""
    failures = [1]
    read = store.Unread.read

    def breaking(self: store.Unread) -> list[Any]:
        replies = read(self)  # the server did number them
        if failures:
            failures.pop()
            raise rex.ConnectionError("connection lost reading the ids")
        return replies

    monkeypatch.setattr(store.Unread, "read", breaking)
    want = model()
    with bitstat.connect(embedded_url, namespace=namespace, schema=schema()) as st:
        for batch in batches(2, 600, seed=75):
            assert st.track_many(batch).recorded == len(batch)
            want.track_many(batch)
        assert not failures
        same_answers(st, want)


def test_a_plan_that_fails_meanwhile_leaves_no_connection_in_use(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("planning failed")

    with bitstat.connect(embedded_url, namespace=namespace, schema=schema()) as st:
        pool = st._store.client.connection_pool  # type: ignore[attr-defined]
        with monkeypatch.context() as patched:
            patched.setattr(record, "planning", failing)
            with pytest.raises(RuntimeError, match="planning failed"):
                st.track_many(batches(1, 600, seed=77)[0])
        gc.collect()
        assert not pool._in_use_connections  # the unread replies' connection was closed
        (batch,) = batches(1, 600, seed=78)
        assert st.track_many(batch).recorded == len(batch)
        want = model()
        want.track_many(batch)
        same_answers(st, want)
