"""The lifecycle and identity operations (forget, alias, drop, configure, expire) and the
client state they share with recording: caches, the queue, the schema a running client holds.
Found by a review on 2026-12-06; each test failed before its fix, for the reason its
docstring gives."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import bitstat
from bitstat import record
from bitstat.errors import SchemaError

T = "2026-11-03T10:00:00+00:00"


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def opened(embedded_url: str, ns: str) -> Iterator[list[bitstat.Stats]]:
    """Stats opened by a test, dropped and closed after it."""
    made: list[bitstat.Stats] = []
    yield made
    if made:
        made[0].drop()
    for st in made:
        st.close()


# --- forget and the id cache of the process that forgets ---------------------------------


def test_forget_between_a_batch_look_at_the_id_cache_and_its_reading(
    embedded_url: str, ns: str, opened: list[bitstat.Stats]
) -> None:
    """Two threads of one Stats (a tracker's sender and the caller of forget): a batch finds
    "u1" in the id cache, sends its new id to be numbered and, while it waits, forget("u1")
    pops "u1" from that very dict (identity.py: `self.ns.id_cache.pop`). The batch then reads
    cache["u1"]: KeyError, the kind of defect 5a375e5 fixed for the cache's limit."""
    st = bitstat.connect(embedded_url, namespace=ns, schema=bitstat.Schema(ids="map"))
    opened.append(st)
    st.track_many([{"event": "e", "user": u, "time": T} for u in ("u1", "u2")])
    batch = st._ns.offsets(["u1", "new"])
    asked = next(batch)  # u1 known here; "new" sent to be numbered
    assert asked.args[-1] == ["new"]
    reply = st._store.perform(asked)
    st.forget("u1")  # the other thread
    with pytest.raises(StopIteration):
        batch.send(reply)  # (it was: KeyError 'u1')


def test_a_batch_numbered_across_a_forget_does_not_leave_the_old_offset_in_the_cache(
    embedded_url: str, ns: str, opened: list[bitstat.Stats]
) -> None:
    """A batch of this Stats sends "x" to be numbered (ids.lua: its existing offset o) and,
    while it waits, forget("x") frees o and pops "x" from the cache. The batch then puts
    "x" -> o back into the cache (record.py `looked_up`), and every later event of "x" from
    this process goes to o, which no id names: `forget("x")` then finds nothing to erase,
    and the person stays counted. docs/identity.md: "The process that calls alias/forget
    updates its own cache"."""
    st = bitstat.connect(embedded_url, namespace=ns, schema=bitstat.Schema(ids="map"))
    opened.append(st)
    other = bitstat.connect(embedded_url, namespace=ns)
    opened.append(other)
    other.track_many([{"event": "e", "user": "x", "time": T}])  # mapped, unknown to `st`
    batch = st._ns.offsets(["x"])
    asked = next(batch)
    reply = st._store.perform(asked)  # x's offset, read before the erasure
    st.forget("x")  # another thread of the same Stats
    with pytest.raises(StopIteration):  # (that batch's own write would be "while" forget ran)
        batch.send(reply)
    # after the erasure, "x" is tracked again by this process: a new actor, erasable again
    st.track_many([{"event": "e", "user": "x", "time": "2026-11-05T10:00:00+00:00"}])
    assert st.forget("x").found  # (it was: False, no id names the offset written)
    assert st.unique("e", "2026-11-05") == 0  # (it was: 1)


# --- forget and events queued by track() -------------------------------------------------


def test_forget_applies_the_events_already_queued_before_erasing(
    embedded_url: str, ns: str, opened: list[bitstat.Stats]
) -> None:
    """An event of "x" tracked (queued in Redis: "when the call returns, the event is in
    Redis") by another process before forget("x") is called. forget runs through `settled`,
    which looks at other processes' queue only once a flush_interval: a forget soon after a
    read erases "x" and leaves its queued event, which the next flush records as a new actor
    "x" — the erased person is back, with its id text, after forget answered."""
    schema = bitstat.Schema(ids="map")
    seed = bitstat.connect(embedded_url, namespace=ns, schema=schema)
    writer = bitstat.connect(embedded_url, namespace=ns, schema=schema, flush_interval=30)
    eraser = bitstat.connect(embedded_url, namespace=ns, schema=schema, flush_interval=30)
    opened += [seed, writer, eraser]
    seed.track_many([{"event": "e", "user": "x", "time": T}])
    assert eraser.unique("e", "2026-11-03") == 1  # a read: the eraser looked at the queue
    writer.track("e", user="x", time="2026-11-04T10:00:00+00:00")  # queued, not applied
    assert eraser.forget("x").found
    writer.flush()  # (the writer never mapped "x": no stale id cache involved)
    assert eraser.unique("e", "2026-11") == 0  # (it was: 1)
    assert list(eraser.actors("e").month(2026, 11).ids()) == []  # (it was: ["x"])


# --- drop, then the namespace used again --------------------------------------------------


def test_a_namespace_dropped_and_written_again_by_the_same_client_keeps_its_schema(
    embedded_url: str, ns: str, opened: list[bitstat.Stats]
) -> None:
    """`drop()` deletes `{ns}:schema` with the rest, and the client keeps recording under the
    schema it holds in memory without storing it again. The namespace then holds data and no
    schema: every other client (connect() without a schema, `bitstat serve`, the CLI) reads
    it with the default one (ids="int", no counts): text ids are rejected, integer ids are
    taken as raw offsets among the mapped ones, the counts recorded cannot be asked for."""
    schema = bitstat.Schema(ids="map", count=["country"])
    st = bitstat.connect(embedded_url, namespace=ns, schema=schema)
    opened.append(st)
    st.track_many([{"event": "e", "user": "a", "time": T, "country": "NL"}])
    st.drop()
    st.track_many([{"event": "e", "user": "b", "time": T, "country": "DE"}])
    reader = bitstat.connect(embedded_url, namespace=ns)
    opened.append(reader)
    assert reader.schema == schema  # (it was: the default Schema())
    assert reader.counts("e", "country", "2026-11-03") == {"DE": 1}


@pytest.mark.parametrize("made_again", [True, False])
def test_a_namespace_dropped_by_another_client_is_forgotten_by_this_one(
    embedded_url: str,
    ns: str,
    opened: list[bitstat.Stats],
    monkeypatch: pytest.MonkeyPatch,
    made_again: bool,
) -> None:
    """Another client drops the namespace (and, maybe, makes it again and records into it):
    ids and values are numbered anew. This client kept the numbers it had learnt and wrote
    its next events with them: x under the offset the new map gave z, so x's event counted as
    z's (a day's uniques 1 where 2 came), and its `unique` values under another value's id.
    It now forgets them once it finds the namespace gone or made again (read with the schema),
    and stores its schema again where the namespace has none."""
    monkeypatch.setattr(record, "SCHEMA_TTL", 0.0)  # (the writer reads it again at each write)
    schema = bitstat.Schema(ids="map", unique=["ip"])
    writer = bitstat.connect(embedded_url, namespace=ns, schema=schema)
    admin = bitstat.connect(embedded_url, namespace=ns)
    opened += [writer, admin]
    first = [{"event": "e", "user": u, "time": T, "ip": f"10.0.0.{i}"} for i, u in enumerate("xy")]
    writer.track_many(first)
    admin.drop()
    if made_again:
        again = bitstat.connect(embedded_url, namespace=ns, schema=schema)
        opened.append(again)
        again.track_many([{"event": "e", "user": "z", "time": "2026-11-04", "ip": "10.9.9.9"}])
    writer.track_many([{"event": "e", "user": "x", "time": "2026-11-04", "ip": "10.0.0.0"}])
    day = admin.actors("e").day(2026, 11, 4)
    assert sorted(day.ids()) == (["x", "z"] if made_again else ["x"])
    assert admin.unique("e", "2026-11-04") == len(day) == (2 if made_again else 1)
    assert admin.distinct("e", "ip", "2026-11-04") == (2 if made_again else 1)
    reader = bitstat.connect(embedded_url, namespace=ns)
    opened.append(reader)
    assert reader.schema == schema


def test_a_client_that_configures_a_namespace_another_dropped_forgets_its_numbers(
    embedded_url: str, ns: str, opened: list[bitstat.Stats], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client dropped the namespace; this one, before its next read of the schema,
    called configure(): finding no schema it stored its own and marked the namespace made
    (`made_anew`) with its numbers from before the drop still cached, and noted that token
    as read, so it never forgot them: x under the offset the new map gave z (one actor on
    the day where two came). Making a namespace anew now forgets what was cached of it."""
    schema = bitstat.Schema(ids="map")
    writer = bitstat.connect(embedded_url, namespace=ns, schema=schema)
    admin = bitstat.connect(embedded_url, namespace=ns)
    opened += [writer, admin]
    writer.track_many([{"event": "e", "user": u, "time": T} for u in "xy"])
    monkeypatch.setattr(record, "SCHEMA_TTL", 1e9)  # (no read of the schema meanwhile)
    admin.drop()
    writer.configure(schema)
    again = bitstat.connect(embedded_url, namespace=ns)
    opened.append(again)
    again.track_many([{"event": "e", "user": "z", "time": "2026-11-04"}])
    monkeypatch.setattr(record, "SCHEMA_TTL", 0.0)
    writer.track_many([{"event": "e", "user": "x", "time": "2026-11-04"}])
    day = admin.actors("e").day(2026, 11, 4)
    assert sorted(day.ids()) == ["x", "z"]
    assert admin.unique("e", "2026-11-04") == 2


# --- configure() against the stored schema, not the one this client remembers ------------


def test_configure_checks_the_id_mode_against_the_stored_schema(
    embedded_url: str, ns: str, opened: list[bitstat.Stats]
) -> None:
    """`configure` refuses to switch `ids` once data is recorded, comparing the new schema
    with `self.schema`, the one this client remembers (ops.py). A client opened on an empty
    namespace remembers the default (ids="int"); another stores ids="map" and records text
    ids; the first then configures a schema with ids="int" (adding a count, say): no check
    runs, and the namespace's mapped data is now read with integer ids."""
    old = bitstat.connect(embedded_url, namespace=ns)  # nothing stored yet: ids="int"
    opened.append(old)
    new = bitstat.connect(embedded_url, namespace=ns, schema=bitstat.Schema(ids="map"))
    opened.append(new)
    new.track_many([{"event": "e", "user": "alice", "time": T}])
    with pytest.raises(SchemaError):  # (it was: stored, ids="int" over mapped data)
        old.configure(bitstat.Schema(ids="int", count=["country"]))


@pytest.mark.parametrize("same", [False, True])
def test_two_clients_connecting_at_once_with_their_schemas_are_checked(
    embedded_url: str,
    ns: str,
    opened: list[bitstat.Stats],
    monkeypatch: pytest.MonkeyPatch,
    same: bool,
) -> None:
    """Two clients connect() at once to an empty namespace, each with a schema of its own:
    both read no schema, both stored theirs (a plain SET) and both connected, one holding a
    schema the namespace does not hold: it recorded by rules no reader knows (counts where
    none are kept) until it read the schema again. Seen in 109 of 200 tries with two threads."""
    from bitstat.transport import Transport

    mine = bitstat.Schema(ids="map", count=["country"])
    theirs = mine if same else bitstat.Schema(ids="map", unique=["ip"])
    real_get, raced = Transport.get, []

    def get_then_another_stores(self: Transport, key: str):  # type: ignore[no-untyped-def]
        value = yield from real_get(self, key)
        if key.endswith(":schema") and value is None and not raced:
            raced.append(key)  # the other client stores its schema between our GET and SET
            opened.append(bitstat.connect(embedded_url, namespace=ns, schema=theirs))
        return value

    monkeypatch.setattr(Transport, "get", get_then_another_stores)
    if same:
        opened.append(bitstat.connect(embedded_url, namespace=ns, schema=mine))
        assert opened[-1].schema == mine
    else:
        with pytest.raises(SchemaError, match="already has a different schema"):
            opened.append(bitstat.connect(embedded_url, namespace=ns, schema=mine))
    assert raced
    monkeypatch.undo()
    assert bitstat.connect(embedded_url, namespace=ns).schema == theirs


# --- a schema change reaches the clients already open ------------------------------------


def test_an_expiry_configured_reaches_a_writer_opened_before(
    embedded_url: str, ns: str, opened: list[bitstat.Stats], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bitstat schema set` / `configure()` with `expire={"hour": "1d"}` while a writer is
    running (a `bitstat consume`, a Tracker, a worker): the Stats never reads the stored
    schema again after connect() (only `bitstat serve` does, every 5 s), so it keeps writing
    hour keys with no TTL, which never expire. (`schema set`: "Events recorded from now on
    follow the new rules".)"""
    periods = ("hour", "day", "week", "month", "year")
    writer = bitstat.connect(embedded_url, namespace=ns, schema=bitstat.Schema(periods=periods))
    opened.append(writer)
    admin = bitstat.connect(embedded_url, namespace=ns)
    opened.append(admin)
    admin.configure(bitstat.Schema(periods=periods, expire={"hour": "1d"}))
    import time

    from bitstat import record

    monkeypatch.setattr(record, "SCHEMA_TTL", 0.05)  # (5 s by default)
    time.sleep(0.1)
    now = time.time()
    writer.track_many([{"event": "e", "user": 1, "time": now}])
    key = next(iter(writer._store.client.scan_iter(match="{" + ns + ":s0}:a:e:*T*")))
    assert writer._store.client.ttl(key) > 0  # (it was: -1, kept forever)


def test_a_batch_in_flight_across_drop_does_not_bring_back_the_old_id_cache(
    embedded_url: str, ns: str, opened: list[bitstat.Stats]
) -> None:
    """`drop()` replaces the id cache with a new dict (ops.py `forget_caches`), but a batch of
    another thread of the same Stats, waiting for its new ids when the drop runs, then sets
    `self.id_cache = cache`, the dict it looked at (record.py `offsets`: `looked_up` returns
    it under its limit): the mappings of before the drop are back. The ids are numbered anew
    from 0 on the server, so an old mapping names a new actor's offset: "u0" is recorded as
    "v", the first id tracked after the drop."""
    st = bitstat.connect(embedded_url, namespace=ns, schema=bitstat.Schema(ids="map"))
    opened.append(st)
    st.track_many([{"event": "e", "user": f"u{i}", "time": T} for i in range(3)])
    batch = st._ns.offsets(["u1", "new"])
    asked = next(batch)
    reply = st._store.perform(asked)
    st.drop()  # another thread
    with pytest.raises(StopIteration):
        batch.send(reply)
    st.track_many([{"event": "e", "user": "v", "time": "2026-11-04T10:00:00+00:00"}])
    st.track_many([{"event": "e", "user": "u0", "time": "2026-11-05T10:00:00+00:00"}])
    assert list(st.actors("e").day(2026, 11, 5).ids()) == ["u0"]  # (it was: ["v"])


def test_the_token_set_of_track_made_again_after_drop_expires(
    embedded_url: str, ns: str, opened: list[bitstat.Stats], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`drop()` deletes the window's set of seen tokens; the next pushes of the window
    re-create `{ns}:q:tokens:...`, which must get a TTL again (it once held every token pushed
    until the window ended, and was never deleted)."""
    from bitstat import queued

    monkeypatch.setattr(queued, "PUSH_WINDOW", 10**6)  # (one window for the whole test)
    st = bitstat.connect(embedded_url, namespace=ns, flush_at=100, flush_interval=60)
    opened.append(st)
    st.track("e", user=1, time=T)
    st.drop()
    st.track("e", user=2, time=T)
    client = st._store.client
    seen = list(client.scan_iter(match="{" + ns + "}:q:tokens:*"))
    assert seen and all(client.ttl(k) > 0 for k in seen)  # (it was: -1, kept forever)
