"""bitmapist's bit operations: `BitOpAnd`, `BitOpOr`, `BitOpXor`, `BitOpNot`, nestable.

The result key is bitmapist's, `trackist_bitop_<OP>_<operand keys joined by "-">`, so it is
shared by equal operations and found by `delete_temporary_bitop_keys`. Unlike bitmapist, the
BITOP runs when an answer is first needed (not in the constructor), the whole tree in one
server call, and the result key expires (`_engine.TTL_SECONDS`, renewed on use).
"""

from __future__ import annotations

from typing import Any

import redis

from .events import KEY_PREFIX, Computed


def _split(system_or_event: Any, events: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """bitmapist's calling convention: an optional system name (or client) before the events."""
    if isinstance(system_or_event, str | redis.Redis):
        return system_or_event, events
    return "default", (system_or_event, *events)


def _operand_key(event: Any) -> str:
    key = getattr(event, "_key", None)
    if isinstance(key, str):
        return key
    return str(event.redis_key)


class BitOperation(Computed):
    """BITOP `op_name` over `events` (AND, OR, XOR, or NOT of a single event).

    `BitOperation("AND", a, b)` runs on the "default" system; `BitOperation("AND", "stats",
    a, b)` on the system named "stats".
    """

    def __init__(self, op_name: str, system_or_event: Any, *events: Any) -> None:
        system, operands = _split(system_or_event, events)
        self.events = operands
        keys = "-".join(_operand_key(e) for e in operands)
        self._start(system, op_name, f"{KEY_PREFIX}bitop_{op_name}_{keys}")

    def _operands(self) -> list[Any]:
        return list(self.events)


class BitOpAnd(BitOperation):
    """The ids in every one of the events."""

    def __init__(self, system_or_event: Any, *events: Any) -> None:
        super().__init__("AND", system_or_event, *events)


class BitOpOr(BitOperation):
    """The ids in any of the events."""

    def __init__(self, system_or_event: Any, *events: Any) -> None:
        super().__init__("OR", system_or_event, *events)


class BitOpXor(BitOperation):
    """The ids in an odd number of the events."""

    def __init__(self, system_or_event: Any, *events: Any) -> None:
        super().__init__("XOR", system_or_event, *events)


class BitOpNot(BitOperation):
    """The ids not in the event, up to the last byte of its bitmap (Redis BITOP NOT)."""

    def __init__(self, system_or_event: Any, *events: Any) -> None:
        super().__init__("NOT", system_or_event, *events)
