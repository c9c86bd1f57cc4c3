"""Every Redis key name bitstat uses, in one place: escaping, hash tags, layout.

Names and values are percent-escaped (every byte outside `[A-Za-z0-9._-]`), so the escaped
text never holds `:`, `{`, `}`, `~`, `=` or `%` unescaped: separators stay unambiguous, no two
names collide, and no user text can open or close a hash tag.

The layout, each family with an example, is `layout()`: the storage docs print it (a test
holds them to it). A set of actors or of value ids (`:all`, `:a:`, `:u:`) is a bitmap, or while
it is small and sparse a Redis set of the same offsets (scripts/apply.lua: "containers").
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import lru_cache

SHARD_BITS = 20  # 1,048,576 ids per shard: a full shard bitmap is 128 KiB.
SHARD_SIZE = 1 << SHARD_BITS
SHARD_MASK = SHARD_SIZE - 1
FORWARD_BUCKETS = 1 << 16  # id -> offset hashes: small enough to stay compact (listpack).
REVERSE_BUCKET_BITS = 7  # offset -> id hashes of 128 entries each.
# value -> id hashes per event and property: up to 128 values each (Redis keeps a hash that small
# as a listpack, ~20 bytes a value against ~55 in a hash table) up to 262,144 values
VALUE_BUCKETS = 1 << 11

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_ESCAPES = {b: f"%{b:02X}" for b in range(256)}
_ESCAPES.update({b: chr(b) for b in _SAFE})


@lru_cache(maxsize=100_000)
def escape(text: str) -> str:
    """Percent-escape text so it is safe and unambiguous inside a key."""
    if text.isascii() and text.replace(".", "").replace("-", "").replace("_", "").isalnum():
        return text
    return "".join(_ESCAPES[b] for b in text.encode("utf-8", "surrogatepass"))


def encode_value(value: str | Sequence[str]) -> str:
    """A property value (text, or the parts of a compound value) as key/field text."""
    if isinstance(value, str):
        return escape(value)
    return "~".join(escape(part) for part in value)


def member_text(value: str | Sequence[str]) -> str:
    """A value as a hash field or sorted-set member: raw text, so byte order is text order.

    Compound values join their parts so that the byte order of the joined text is the order of
    the tuples: NUL inside a part becomes NUL STX, parts are separated by NUL SOH.
    """
    if isinstance(value, str):
        return value
    return "\x00\x01".join(part.replace("\x00", "\x00\x02") for part in value)


def member_value(text: str, compound: bool) -> str | tuple[str, ...]:
    if not compound:
        return text
    return tuple(part.replace("\x00\x02", "\x00") for part in text.split("\x00\x01"))


@lru_cache(maxsize=10_000)
def prop_part(name: str) -> str:
    """A normalised (possibly compound) property name as key text."""
    return "~".join(escape(part) for part in name.split("~"))


class Keys:
    """Key names of one namespace. Pure: formatting only, no I/O."""

    def __init__(self, namespace: str) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be non-empty text, got {namespace!r}")
        self.namespace = namespace
        self.ns = escape(namespace)
        meta = "{" + self.ns + "}"
        self.schema = f"{meta}:schema"
        self.events = f"{meta}:events"
        self.shards = f"{meta}:shards"
        self.span_first = f"{meta}:span:first"
        self.span_last = f"{meta}:span:last"
        # a token set when the namespace is made (its schema first stored), and one changed by
        # every merge and forget: a client that finds either changed forgets what it learnt
        self.made = f"{meta}:made"
        self.identity_epoch = f"{meta}:identity"
        self.meta_tag = meta
        # the events track() queued (queued.py, scripts/queue.lua)
        self.queue = f"{meta}:q"
        self.queue_claims = f"{meta}:q:claims"
        self.ids_tag = "{" + self.ns + ":ids}"
        self.ids_next = f"{self.ids_tag}:next"
        # the reverse buckets and alias sets of the id map are these prefixes and a number
        # (scripts/ids.lua and identity.lua append it)
        self.id_reverse_prefix = f"{self.ids_tag}:r:"
        self.id_alias_prefix = f"{self.ids_tag}:al:"
        self._event_tags: dict[str, str] = {}
        self._actor_prefixes: dict[tuple[int, str], str] = {}

    # tags: every key of one tag lands in one cluster slot
    def shard_tag(self, shard: int) -> str:
        return "{" + f"{self.ns}:s{shard}" + "}"

    def event_tag(self, event: str) -> str:
        tag = self._event_tags.get(event)
        if tag is None:  # named for every key of an event: worth remembering
            if len(self._event_tags) > 10_000:
                self._event_tags.clear()
            tag = self._event_tags[event] = "{" + f"{self.ns}:e:{escape(event)}" + "}"
        return tag

    def batch(self, tag: str, batch_id: str | None) -> str:
        """The marker of a batch id in one slot (without an id: a name the script ignores)."""
        return f"{tag}:batch" if batch_id is None else f"{tag}:batch:{escape(batch_id)}"

    def batch_part(self, batch_id: str, part: str) -> str:
        """The marker of one part of a batch written in parts (`record.parts_of`), an event
        name's: never a `batch` marker (those hold no ':' after "batch:")."""
        return f"{self.batch(self.meta_tag, batch_id)}:part:{escape(part)}"

    def batch_piece(self, batch_id: str, part: str, week: int) -> str:
        """The marker of one week (`record.week_numbers`) of a part of a batch written in
        parts: its event name's events of that week are in."""
        return f"{self.batch_part(batch_id, part)}:{week}"

    def cookieless_salt(self, day: str) -> str:
        """The secret salt of a day's ids of posthog-js cookieless events (web/cookieless.py)."""
        return f"{self.meta_tag}:cookieless:salt:{day}"

    def message_hold(self, message_id: str) -> str:
        """A request's hold on an SDK message's id while it records it (web/ingest.py): not
        under "batch:", where a caller's batch id could name it."""
        return f"{self.meta_tag}:hold:{escape(message_id)}"

    def queue_seen(self, seconds: int, window: int) -> str:
        """The tokens made in one window of time (`seconds` long, a number) of the events
        queued. (Before 2026-12-06 `q:seen:`: a set of the tokens pushed in a window, its TTL
        reset by each client's first push; not shared with those.)"""
        return f"{self.meta_tag}:q:tokens:{seconds}:{window}"

    @staticmethod
    def temp(tag: str, token: str) -> str:
        """A scratch key in the slot of `tag` (given a TTL or deleted by whoever writes it)."""
        return f"{tag}:tmp:{token}"

    @property
    def patterns(self) -> list[str]:
        """SCAN patterns that find every key of the namespace (its own tag and sub-tags)."""
        return ["{" + self.ns + "}*", "{" + self.ns + ":*"]

    @property
    def web_namespaces(self) -> str:
        """The namespaces `bitstat serve` processes have met (kept in this one's slot)."""
        return f"{self.meta_tag}:web:namespaces"

    # actor bitmaps, one set per shard
    def all_actors(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:all"

    def actors_pattern(self, shard: int) -> str:
        """A SCAN pattern of every actor set of a shard but `all_actors`."""
        return f"{self.shard_tag(shard)}:a:*"

    def actors(
        self, shard: int, event: str, label: str, segment: tuple[str, str] | None = None
    ) -> str:
        prefix = self._actor_prefixes.get((shard, event))
        if prefix is None:  # (a backfill names an event's actor set of ~1,300 hours a batch)
            if len(self._actor_prefixes) > 10_000:
                self._actor_prefixes.clear()
            prefix = f"{self.shard_tag(shard)}:a:{escape(event)}:"
            self._actor_prefixes[(shard, event)] = prefix
        key = prefix + label
        if segment is None:
            return key
        return key + self.segment(*segment)

    @staticmethod
    def segment(prop: str, encoded: str) -> str:
        """What a segment adds to the name of an actor bitmap: property and encoded value."""
        return f":{prop_part(prop)}={encoded}"

    # counters, tagged by event
    def metrics(self, event: str, label: str) -> str:
        return f"{self.event_tag(event)}:m:{label}"

    def counts(self, event: str, label: str, prop: str) -> str:
        return f"{self.event_tag(event)}:c:{label}:{prop_part(prop)}"

    def sums_by(self, event: str, label: str, prop: str, by: str) -> str:
        return f"{self.event_tag(event)}:s:{label}:{escape(prop)}:{prop_part(by)}"

    def top(self, event: str, label: str, prop: str) -> str:
        return f"{self.event_tag(event)}:t:{label}:{prop_part(prop)}"

    def value_ids(self, event: str, prop: str) -> str:
        """The one hash of every value's id, as namespaces kept them before buckets."""
        return f"{self.event_tag(event)}:v:{prop_part(prop)}"

    def value_buckets(self, event: str, prop: str) -> str:
        """The name of the hashes of value ids but their numbers (the scripts append them)."""
        return f"{self.event_tag(event)}:v:{prop_part(prop)}:"

    def value_bucket(self, event: str, prop: str, value: str) -> str:
        """The hash that holds `value`'s id (value as `member_text` gives it)."""
        return f"{self.value_buckets(event, prop)}{value_bucket_of(value)}"

    def value_next(self, event: str, prop: str) -> str:
        return f"{self.event_tag(event)}:vn:{prop_part(prop)}"

    def value_layout(self, event: str, prop: str) -> str:
        """Set when the property's first values were numbered in 2,048 buckets: none of its
        values can be in the buckets 2,048 further on (namespaces written with 4,096 buckets,
        before 2026-12-03, kept some there), which are then not looked in."""
        return f"{self.event_tag(event)}:vb:{prop_part(prop)}"

    def distinct(self, event: str, label: str, prop: str) -> str:
        return f"{self.event_tag(event)}:u:{label}:{prop_part(prop)}"

    def approx(self, event: str, label: str, prop: str) -> str:
        return f"{self.event_tag(event)}:h:{label}:{prop_part(prop)}"

    # the id map (ids="map")
    def id_forward(self, canonical: str) -> str:
        bucket = zlib.crc32(canonical.encode("utf-8", "surrogatepass")) % FORWARD_BUCKETS
        return f"{self.ids_tag}:f:{bucket}"

    def id_reverse(self, offset: int) -> str:
        return f"{self.id_reverse_prefix}{offset >> REVERSE_BUCKET_BITS}"

    def id_aliases(self, offset: int) -> str:
        """The set of the other ids an offset's person is known by (st.alias)."""
        return f"{self.id_alias_prefix}{offset}"


def stream_bounds(stream: str, group: str) -> str:
    """The hash of `bitstat consume`: first entry id -> [batch id, every entry id] of each
    batch a consumer group took and has not acknowledged yet, and the stream's identity
    (beside the stream, outside any namespace)."""
    return f"{stream}:bitstat-batches:{group}"


def register(tag: str, token: str, index: int) -> str:
    """A register of a sets.lua program: a temp key of the program's slot."""
    return f"{Keys.temp(tag, token)}:{index}"


def set_bitmap(key: str) -> str:
    """The bitmap sets.lua builds of a set kept as a Redis set of offsets (a scratch key of its
    slot, named in the script as here)."""
    tag = tag_of(key)
    return Keys.temp(tag, "set:" + key[len(tag) :])


def value_bucket_of(value: str) -> int:
    """The number of the hash that holds a value's id (of `Keys.value_buckets`)."""
    return zlib.crc32(value.encode("utf-8", "surrogatepass")) & (VALUE_BUCKETS - 1)


def is_temp(key: str) -> bool:
    """Whether a key is a scratch result (deleted after use), not a bucket key."""
    return ":tmp:" in key


def tag_of(key: str) -> str:
    """The hash tag of a key (its slot on a cluster), braces included."""
    return key[: key.index("}") + 1]


# the families of keys kept per bucket, by their letter after the tag: a shard's actor sets
# (the event's name, then the label) and an event's metrics, counts, sums, top values,
# distinct values and HyperLogLogs (the label first)
_BUCKET_FAMILIES = {"a": ("s", 3), "m": ("e", 2), "c": ("e", 2), "s": ("e", 2), "t": ("e", 2)}
_BUCKET_FAMILIES |= {"u": ("e", 2), "h": ("e", 2)}


def bucket_label(key: str) -> str | None:
    """The label of the bucket (`2026-11`, `2026-W48`, ...) a key of one belongs to, None for
    the namespace's other keys (escaped names hold no `:`, `{` or `}`)."""
    if not key.startswith("{") or "}" not in key or is_temp(key):
        return None
    tag = tag_of(key)
    inner, parts = tag[1:-1].split(":"), key[len(tag) :].split(":")
    found = _BUCKET_FAMILIES.get(parts[1]) if len(parts) > 2 and len(inner) > 1 else None
    if found is None or len(parts) <= found[1] or not inner[1].startswith(found[0]):
        return None
    return parts[found[1]]


def metric_sum_field(prop: str) -> str:
    return f"s:{escape(prop)}"


def metric_count_field(prop: str) -> str:
    return f"k:{escape(prop)}"


def layout(namespace: str = "shop") -> list[tuple[str, str]]:
    """Every family of keys as an example name and what it holds (namespace `shop`, events
    login and purchase, November 2026, id shard 0): the key table of the storage docs."""
    k = Keys(namespace)
    nov, day, s0 = "2026-11", "2026-11-22", k.shard_tag(0)
    login = k.event_tag("login")
    set_key = k.actors(0, "login", day)
    return [
        (f"{k.schema}  {k.events}  {k.shards}", "schema (JSON), event names, id shards in use"),
        (f"{k.span_first}  {k.span_last}", "first and last day with data (day numbers)"),
        (k.actors(0, "login", nov), "actors of login in November, shard 0"),
        (k.actors(0, "purchase", day, ("country", encode_value("NL"))), "... with a segment value"),
        (k.all_actors(0), "every actor seen (for ~)"),
        (k.metrics("purchase", nov), "hash: n (events), s:amount (sum), k:amount (how many)"),
        (k.counts("purchase", nov, "country"), "sorted set: value -> count"),
        (k.top("purchase", nov, "item"), "sorted set for top values"),
        (
            k.sums_by("purchase", nov, "amount", "country"),
            "sorted set: s:value -> sum, k:value -> count",
        ),
        (k.distinct("login", nov, "ip"), "set of the distinct-value ids of ip"),
        (
            f"{k.value_bucket('login', 'ip', '10.0.0.1')}  {k.value_next('login', 'ip')}",
            "value -> id (2,048 hashes, by CRC-32), next id",
        ),
        (k.value_ids("login", "ip"), "value -> id in one hash (older layout; emptied)"),
        (k.value_layout("login", "ip"), "its values began in 2,048 buckets (none further on)"),
        (k.approx("login", nov, "visitor"), "HyperLogLog of an approx property"),
        (f"{k.ids_next}  {k.id_forward('u-42')}", 'id map (ids="map"): next offset, id -> offset'),
        (f"{k.made}  {k.identity_epoch}", "tokens: namespace made, id map changed (caches)"),
        (f"{k.id_reverse(42)}  {k.id_aliases(42)}", "offset -> id (128 a hash), other ids of 42"),
        (k.batch(k.meta_tag, "b-1"), "batch b-1 applied (a marker in each tag it wrote)"),
        (k.batch_part("b-1", "purchase"), "its purchases applied (a large batch, in parts)"),
        (k.batch_piece("b-1", "purchase", 2970), "its purchases of week 2970 (from 1969-12-29)"),
        (k.message_hold("m-1"), "an SDK request recording message m-1 (bitstat serve)"),
        (k.cookieless_salt("2026-11-03"), "salt of the day's cookieless posthog-js ids (serve)"),
        (f"{k.queue}  {k.queue_claims}", "events track() queued, claims being applied"),
        (k.queue_seen(60, 29_700_000), "tokens of the events queued in one minute"),
        (k.temp(login, "<token>"), "scratch of a read (always with a TTL or deleted)"),
        (register(s0, "<token>", 1), "register 1 of a sets.lua program"),
        (k.temp(s0, "set:" + set_key[len(s0) :]), "a Redis set read as a bitmap (sets.lua)"),
        (k.web_namespaces, "the namespaces `bitstat serve` has met"),
        (stream_bounds("clicks", "bitstat"), "ids of its batches, its identity (bitstat consume)"),
    ]


def layout_text(namespace: str = "shop") -> str:
    """`layout()` as the lines of the docs' key table: the name, then what it holds."""
    width = 50
    return "".join(
        f"{key:<{width}} {what}\n" if len(key) < width else f"{key}  {what}\n"
        for key, what in layout(namespace)
    )
