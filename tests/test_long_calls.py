"""A large batch's numbering of new ids and values is cut into calls the server runs in a
moment: Redis runs nothing else meanwhile, and past `busy-reply-threshold` it answers BUSY to
every other command, the batch's own next one included."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

import bitstat
from bitstat import transport
from faultservers import Server


def test_a_batch_of_many_new_values_is_numbered_in_calls_under_the_busy_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two event names, 20,000 new values each: numbered in one values.lua call a name (~0.2 s
    here), the batch's next call (its marker "in parts", on another connection) came while the
    first ran past the threshold and was answered BUSY: the whole batch failed. The threshold is
    lowered (50 ms) and the calls cut small (200 values) to show it at this size; a million
    values held a server with the default 5 s threshold for 10 s."""
    monkeypatch.setattr(transport, "NUMBERED_AT_ONCE", 200, raising=False)
    server = Server(tmp_path / "busy", "--busy-reply-threshold", "50").start()
    schema = bitstat.Schema(ids="map", unique=["ip"])
    # (no time to try again: a call answered BUSY fails at once, as before BUSY was tried again)
    st = bitstat.connect(server.url, namespace="busy", schema=schema, deadline=0.01)
    try:
        t = "2026-11-03T10:00:00+00:00"
        # (the server has the scripts: a first call of one it lacks is sent again, alone)
        st.track_many([{"event": "c", "user": "w", "ip": f"w{i}", "time": t} for i in range(100)])
        events = [
            {"event": "ab"[i % 2], "user": f"u{i % 30_000}", "ip": f"ip{i}", "time": t}
            for i in range(40_000)
        ]
        assert st.track_many(events, batch_id="big").recorded == 40_000
        for name in "ab":
            mine = [e for e in events if e["event"] == name]
            assert st.unique(name, "2026-11-03") == len({e["user"] for e in mine})
            assert st.distinct(name, "ip", "2026-11-03") == len(mine)
        # every value has an id of its own: a second batch of the same values adds none
        again = [{**e, "time": "2026-11-04T10:00:00+00:00"} for e in events[:1000]]
        st.track_many(again)
        assert st.distinct("a", "ip", "2026-11-03", "2026-11-04") == 20_000
        assert sorted(st.actors("a").day(2026, 11, 4).ids()) == sorted(
            {e["user"] for e in again if e["event"] == "a"}
        )
    finally:
        st.close()
        server.stop()


def test_a_call_answered_busy_is_tried_again_until_the_script_ends(tmp_path: Path) -> None:
    """Another client's script running past `busy-reply-threshold` (a large batch of another
    process, an operator's slow script) makes the server answer BUSY to everyone: a batch or a
    read met it and failed at once ("the server answered with an error: BUSY"), though BUSY
    passes when the script ends (found with batches of a million events). It is now tried again
    within the deadline, as LOADING is; nothing was written by the refused call."""
    server = Server(tmp_path / "busy", "--busy-reply-threshold", "50").start()
    st = bitstat.connect(server.url, namespace="busy", schema=bitstat.Schema(ids="map"))
    other = server.client()
    try:
        st.track_many([{"event": "e", "user": "warm", "time": "2026-11-02"}])
        running = threading.Event()

        def long_script() -> None:
            running.set()
            other.eval(
                "local s = tonumber(redis.call('TIME')[1])"
                " while tonumber(redis.call('TIME')[1]) < s + 2 do end return 1",
                0,
            )

        thread = threading.Thread(target=long_script)
        thread.start()
        running.wait()
        probe = server.client()
        while True:  # (until the server answers BUSY: the script runs past the threshold)
            try:
                probe.ping()
            except redis.exceptions.ResponseError:  # BUSY ...
                break
        probe.close()
        events = [{"event": "e", "user": f"u{i}", "time": "2026-11-03"} for i in range(50)]
        assert st.track_many(events).recorded == 50
        thread.join()
        assert st.unique("e", "2026-11-03") == 50
        assert st.total("e", "2026-11-02", "2026-11-03") == 51
    finally:
        other.close()
        st.close()
        server.stop()
