"""A large POST /v1/track is parsed and planned off the event loop, in batches of TRACK_CHUNK
events: reads are answered while it runs, and with an Idempotency-Key a request cut off half
way is recorded exactly once when it is sent again."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import bitstat
from bitstat import record
from bitstat.aio import AsyncStore
from bitstat.errors import ConnectionError
from bitstat.transport import Transport
from bitstat.web import ServerConfig, create_app, ingest
from bitstat.web import app as web_app
from webserver import running

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def batch(event: str, n: int, first_user: int = 0) -> list[dict[str, Any]]:
    return [{"event": event, "user": first_user + i, "time": "2025-11-05"} for i in range(n)]


def test_reads_are_answered_while_a_large_post_is_planned(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        st.track("visit", user=7, time="2025-11-05")
    events = batch("visit", 3 * web_app.TRACK_CHUNK, first_user=100)
    body = json.dumps(events).encode()
    assert len(body) > web_app.OFFLOAD_BYTES

    # Parsing the large body waits until the read below has been answered. Were it parsed on
    # the event loop, the loop would wait with it and the read would never be answered.
    planning, read_answered = threading.Event(), threading.Event()
    parse_batch = record.parse_batch

    def parse_after_the_read(events: Any, schema: Any, now: Any = None) -> Any:
        planning.set()
        read_answered.wait(timeout=60)
        return parse_batch(events, schema, now)

    monkeypatch.setattr(record, "parse_batch", parse_after_the_read)
    posted: dict[str, httpx.Response] = {}
    with running(ServerConfig(url=embedded_url, namespace=namespace)) as base:

        def post() -> None:
            posted["answer"] = httpx.post(
                f"{base}/v1/track",
                content=body,
                headers={"content-type": "application/json"},
                timeout=120,
            )

        writer = threading.Thread(target=post)
        writer.start()
        try:
            assert planning.wait(timeout=60), "the large body was never parsed"
            query = {"event": "visit", "start": "2025-11-05"}
            read = httpx.get(f"{base}/v1/unique", params=query, timeout=30)
            post_in_progress = writer.is_alive() and "answer" not in posted
        finally:
            read_answered.set()
            writer.join(timeout=120)
    assert read.json() == {"unique": 1}  # answered before the large batch was recorded
    assert post_in_progress
    assert posted["answer"].json() == {"recorded": len(events), "rejected": []}


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every body planned off the loop, in batches of 100 events; the sizes parsed, in order."""
    monkeypatch.setattr(web_app, "TRACK_CHUNK", 100)
    monkeypatch.setattr(web_app, "OFFLOAD_BYTES", 0)
    sizes: list[int] = []
    parse_batch = record.parse_batch

    def counted(events: Any, schema: Any, now: Any = None) -> Any:
        sizes.append(len(events))
        return parse_batch(events, schema, now)

    monkeypatch.setattr(record, "parse_batch", counted)
    return sizes


@pytest.fixture
def client(embedded_url: str, namespace: str) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(url=embedded_url, namespace=namespace))) as c:
        yield c


def test_a_large_body_is_recorded_in_batches_indexed_as_one(
    client: TestClient, small_chunks: list[int]
) -> None:
    events: list[Any] = batch("buy", 250)
    events[5] = {"user": 5}
    events[150] = "not an event"
    events[249] = {"event": "buy", "user": -1}
    answer = client.post("/v1/track", json=events, headers={"Idempotency-Key": "k-250"}).json()
    assert small_chunks == [100, 100, 50]
    assert answer["recorded"] == 247
    assert [r["index"] for r in answer["rejected"]] == [5, 150, 249]
    assert answer["rejected"][0]["reason"] == "event: missing event name"
    again = client.post("/v1/track", json=events, headers={"Idempotency-Key": "k-250"}).json()
    assert again["recorded"] == 0 and len(again["rejected"]) == 3
    total = client.get("/v1/total", params={"event": "buy", "start": "2025-11-05"}).json()
    assert total == {"total": 247}


def test_a_large_post_cut_off_half_way_is_recorded_once_when_sent_again(
    client: TestClient, small_chunks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    events = batch("pay", 250)
    headers = {"Idempotency-Key": "k-cut"}
    perform = AsyncStore.perform
    calls = 0

    async def lost_on_the_second_batch(self: AsyncStore, call: Any) -> Any:
        nonlocal calls
        if call.method is Transport.apply:
            calls += 1
            if calls == 2:  # gone for good: not a failure bitstat's own retries would mend
                lost = ConnectionError("recording a batch: cannot reach the server: gone")
                lost.transient = False
                raise lost
        return await perform(self, call)

    monkeypatch.setattr(AsyncStore, "perform", lost_on_the_second_batch)
    cut = client.post("/v1/track", json=events, headers=headers)
    assert cut.status_code == 503
    monkeypatch.setattr(AsyncStore, "perform", perform)
    retried = client.post("/v1/track", json=events, headers=headers).json()
    assert retried == {"recorded": 150, "rejected": []}  # the first 100 were recorded before
    query = {"event": "pay", "start": "2025-11-05"}
    assert client.get("/v1/total", params=query).json() == {"total": 250}
    assert client.get("/v1/unique", params=query).json() == {"unique": 250}


def test_a_body_of_one_batch_keeps_the_key_as_its_batch_id(
    embedded_url: str, namespace: str, client: TestClient, small_chunks: list[int]
) -> None:
    events = batch("join", 80)
    with bitstat.connect(embedded_url, namespace=namespace) as st:
        assert st.track_many(events, batch_id="k-80").recorded == 80
    small_chunks.clear()
    answer = client.post("/v1/track", json=events, headers={"Idempotency-Key": "k-80"}).json()
    assert answer == {"recorded": 0, "rejected": []}  # the same batch id as the Python API's
    assert small_chunks == [80]  # planned off the loop, in one batch


@pytest.mark.parametrize(
    "text",
    [
        # a `},{` inside strings and nested values: cutting there must not change the answer
        json.dumps(
            [
                {"event": "e", "user": i, "note": "}, {", "deep": [{"a": 1}, {"b": "},{"}]}
                for i in range(50)
            ]
        ),
        json.dumps([{"event": "e", "user": i} for i in range(50)], indent=2),
    ],
)
def test_a_large_array_parsed_in_pieces_is_the_array(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_app, "JSON_PIECE", 10)  # cut after nearly every event
    assert web_app._loads_in_pieces(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    ['[{"event": "e", "user": 1}, {"event": "e", "user": 2}', '[{"a": 1}, {"b": 2}] 7', "[1, 2"],
)
def test_a_malformed_array_gives_the_error_of_the_whole_body(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_app, "JSON_PIECE", 5)
    with pytest.raises(json.JSONDecodeError) as cut:
        web_app._loads_in_pieces(text.encode())
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(text)
    assert (cut.value.msg, cut.value.pos) == (whole.value.msg, whole.value.pos)


def _at_most_inside(real: Any, peak: list[int], senders: int) -> Any:
    """`real` (an async function), counting how many requests are inside it at once in
    `peak[0]`; each waits for up to 1.5 s for all `senders` to come in, so that whatever the
    server lets run together does."""
    inside = [0]

    async def counted(*args: Any, **kwargs: Any) -> Any:
        inside[0] += 1
        peak[0] = max(peak[0], inside[0])
        give_up = time.monotonic() + 1.5
        while peak[0] < senders and time.monotonic() < give_up:
            await asyncio.sleep(0.01)
        try:
            return await real(*args, **kwargs)
        finally:
            inside[0] -= 1

    return counted


@pytest.mark.parametrize("route", ["/v1/track", "/batch/"])
@pytest.mark.parametrize("budget", [250_000, None])
def test_large_bodies_are_parsed_and_recorded_up_to_a_budget_of_bytes_at_once(
    embedded_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    budget: int | None,
) -> None:
    """Parsed, a body takes about ten times its size in memory: ten clients sending 10 MB at
    once took the server to 1.1 GB. Large bodies are let in up to LARGE_BODY_BYTES in all
    (two of the largest, 20 MB): with room for two and a half of them, four bodies sent
    together are let in two at a time, each answered in full; with the default, all four at
    once (until 2026-12-07 two large bodies at most, whatever their size)."""
    senders, peak = 4, [0]
    if budget is not None:
        monkeypatch.setattr(ingest, "LARGE_BODY_BYTES", budget)  # (a body: ~100 KB)
    if route == "/v1/track":
        real = web_app._record_body
        monkeypatch.setattr(web_app, "_record_body", _at_most_inside(real, peak, senders))
    else:
        real = ingest.record_once
        monkeypatch.setattr(ingest, "record_once", _at_most_inside(real, peak, senders))
    answers: list[httpx.Response] = []
    config = ServerConfig(url=embedded_url, namespace=namespace, write_keys={"wk-1": namespace})
    with running(config) as base:

        def post(n: int) -> None:
            events = batch("visit", 2_000, first_user=n * 2_000)
            if route == "/batch/":
                events = [{"event": "visit", "distinct_id": f"u{n}-{i}"} for i in range(2_000)]
                body = json.dumps({"api_key": "wk-1", "batch": events}).encode()
            else:
                body = json.dumps(events).encode()
            assert web_app.OFFLOAD_BYTES < len(body) < 125_000
            answers.append(httpx.post(f"{base}{route}", content=body, timeout=120))

        writers = [threading.Thread(target=post, args=(n,)) for n in range(senders)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=120)
    assert [a.json()["recorded"] for a in answers] == [2_000] * senders
    assert peak[0] == (2 if budget is not None else senders)


def test_a_large_body_waiting_for_room_is_not_passed_by_smaller_ones() -> None:
    """First come, first in: with 1 MB bodies coming all the time, a 15 MB one waited for ever
    while each of them fitted in the room left (found by review, 2026-12-08). A body cancelled
    while it waits leaves the line; its room, if it was given, goes back."""
    mb = 1024 * 1024

    async def main() -> None:
        bodies = ingest.LargeBodies(20 * mb)
        big_in, stop = asyncio.Event(), asyncio.Event()

        async def small() -> None:
            while not stop.is_set():
                async with bodies.slot(mb):
                    await asyncio.sleep(0.01)

        async def big() -> None:
            async with bodies.slot(15 * mb):
                big_in.set()

        smalls = []
        for _ in range(8):  # eight senders of 1 MB bodies, one after the other
            smalls.append(asyncio.create_task(small()))
            await asyncio.sleep(0.002)
        waiting = asyncio.create_task(big())
        await asyncio.wait_for(big_in.wait(), 10)
        stop.set()
        await asyncio.gather(*smalls, waiting)
        assert bodies.taken == 0 and not bodies.waiting

        # cancelled in the line: it leaves it, and the one behind it comes in
        later = bodies.slot(2 * mb)  # (held here: a context left unexited would be closed)
        async with bodies.slot(15 * mb):
            queued = asyncio.create_task(bodies.slot(15 * mb).__aenter__())
            behind = asyncio.create_task(later.__aenter__())
            await asyncio.sleep(0.01)
            assert len(bodies.waiting) == 2
            queued.cancel()
            await asyncio.sleep(0.01)
            assert behind.done() and bodies.taken == 17 * mb
        assert bodies.taken == 2 * mb  # (the one let in holds its room)
        await later.__aexit__(None, None, None)
        assert bodies.taken == 0 and not bodies.waiting

    asyncio.run(main())
