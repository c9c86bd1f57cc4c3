"""What an operation asks of the store: a `Call` per server request, an `Emit` per piece of
an answer handed out while reading; an operation is a generator of them (`Op`)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")


class Call(NamedTuple):
    """A request for the store: the name of a Store method and its arguments."""

    method: str
    args: tuple[Any, ...] = ()


class Emit(NamedTuple):
    """Values an iterating operation hands to its caller (ids() yields them as it reads)."""

    values: list[Any]


Op = Generator[Call, Any, T]
