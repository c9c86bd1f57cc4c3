"""What an operation asks of the store: a `Call` per server request, an `Emit` per piece of
an answer handed out while reading; an operation is a generator of them (`Op`)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any, NamedTuple, TypeVar

from .errors import BitstatError

T = TypeVar("T")


class Call(NamedTuple):
    """A request for the store: a `transport.Transport` method and its arguments (made by
    `transport.call`, which has the type checker check them)."""

    method: Callable[..., Generator[Any, Any, Any]]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = {}


class Emit(NamedTuple):
    """Values an iterating operation hands to its caller (ids() yields them as it reads)."""

    values: list[Any]


Op = Generator[Call, Any, T]
Y = TypeVar("Y", bound="Call | Emit")


def step(op: Op[T], reply: Any, error: BitstatError | None) -> Call:
    """Hand an operation the reply to its last call, or the error that call raised (thrown in
    at its `yield`, so an operation that can try again catches it); its next call."""
    return op.throw(error) if error is not None else op.send(reply)
