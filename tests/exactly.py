"""Events and answers shared by the exactly-once and fault tests: a realistic schema, batches
of events spread over two days, and every answer compared with the reference model."""

from __future__ import annotations

import random
from typing import Any

import pytest

import bitstat
from model import Model

SETTINGS: dict[str, Any] = {
    "ids": "map",
    "timezone": "Europe/Amsterdam",
    "count": ["country"],
    "sum": ["amount", "amount by country"],
    "top": ["item"],
    "unique": ["ip"],
    "segment": ["country"],
}
LABELS = ["2026-11-20", "2026-11-21", "2026-W47", "2026-11", "2026"]


def schema() -> bitstat.Schema:
    return bitstat.Schema(**SETTINGS)


def model() -> Model:
    return Model(**SETTINGS)


def batches(
    count: int, size: int, seed: int = 7, names: tuple[str, ...] = ("purchase",)
) -> list[list[dict[str, Any]]]:
    """`count` batches of `size` purchases by up to 5,000 users (ids as text); with several
    `names`, events of each, every name half as frequent as the one before."""
    rng = random.Random(seed)
    weights = [2.0**-i for i in range(len(names))]
    out = []
    for _ in range(count):
        out.append(
            [
                {
                    "event": rng.choices(names, weights)[0] if len(names) > 1 else names[0],
                    "user": f"u-{rng.randrange(5000)}",
                    "time": f"2026-11-{rng.choice((20, 21))}T{rng.randrange(24):02d}:00:00",
                    "amount": rng.randrange(1, 100),
                    "country": rng.choice(("NL", "DE", "FR")),
                    "item": f"sku-{rng.randrange(40)}",
                    "ip": f"10.0.{rng.randrange(4)}.{rng.randrange(50)}",
                }
                for _ in range(size)
            ]
        )
    return out


def same_answers(st: bitstat.Stats, want: Model, event: str = "purchase") -> None:
    """Every answer of bitstat equals the model's: nothing lost, nothing counted twice."""
    for label in LABELS:
        assert st.total(event, label) == want.total(event, label), label
        assert st.unique(event, label) == want.unique(event, label), label
        assert st.unique(event, label, country="NL") == want.unique(event, label, country="NL")
        assert st.counts(event, "country", label) == want.counts(event, "country", label)
        assert st.sums(event, "amount", label) == pytest.approx(want.sums(event, "amount", label))
        got = st.sums(event, "amount", label, by="country")
        expected = want.sums(event, "amount", label, by="country")
        assert isinstance(got, dict) and isinstance(expected, dict)
        assert got == pytest.approx(expected)
        assert st.top(event, "item", label, limit=5) == want.top(event, "item", label, limit=5)
        assert st.distinct(event, "ip", label) == want.distinct(event, "ip", label)


def marker_read_in_parts(monkeypatch: Any, namespace: str, batch_id: str) -> None:
    """Every read of the batch's marker says "in parts", as a try reads it just before another
    writer of the id finishes the batch in parts (the race a test cannot time)."""
    from bitstat import record
    from bitstat.keys import Keys
    from bitstat.transport import Transport

    keys = Keys(namespace)
    marker = keys.batch(keys.meta_tag, batch_id)
    reading = Transport.get

    def in_parts(self: Transport, key: str) -> Any:
        held = yield from reading(self, key)
        return record.IN_PARTS if key == marker else held

    monkeypatch.setattr(Transport, "get", in_parts)
