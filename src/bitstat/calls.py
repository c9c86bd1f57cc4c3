"""What an operation asks of the store: a `Call` per server request, an `Emit` per piece of
an answer handed out while reading; an operation is a generator of them (`Op`)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

from .errors import BitstatError

T = TypeVar("T")


class Call(NamedTuple):
    """A request for the store: the name of a Store method and its arguments."""

    method: str
    args: tuple[Any, ...] = ()


class Emit(NamedTuple):
    """Values an iterating operation hands to its caller (ids() yields them as it reads)."""

    values: list[Any]


Op = Generator[Call, Any, T]


def step(op: Op[T], reply: Any, error: BitstatError | None) -> Call:
    """Hand an operation the reply to its last call, or the error that call raised (thrown in
    at its `yield`, so an operation that can try again catches it); its next call."""
    return op.throw(error) if error is not None else op.send(reply)


def run(store: Any, op: Op[T]) -> T:
    """Drive an operation with a blocking store."""
    reply: Any = None
    error: BitstatError | None = None
    while True:
        try:
            call = step(op, reply, error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            reply, error = getattr(store, call.method)(*call.args), None
        except BitstatError as exc:
            reply, error = None, exc
