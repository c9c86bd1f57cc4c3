"""What an operation asks of the store: a `Call` per server request, an `Emit` per piece of
an answer handed out while reading; an operation is a generator of them (`Op`)."""

from __future__ import annotations

import random
import time
from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

from .errors import BitstatError, ServerError

T = TypeVar("T")

# the calls that only read (their scratch keys expire): made again when the server refused them
# for the moment; a batch's writes are tried again by record.py, under their batch id
READS = frozenset(
    {"get", "hget", "hget_many", "smembers", "getrange", "read_sums", "scan_keys", "evaluate"}
    | {"evaluate_checked", "hsum", "zsum", "top", "pfcount"}
)
FIRST_BACKOFF = 0.05  # seconds before a read is made again, doubled each time (with jitter) ...
MAX_BACKOFF = 2.0  # ... up to this: as a batch's (record.py)


class Call(NamedTuple):
    """A request for the store: the name of a Store method and its arguments."""

    method: str
    args: tuple[Any, ...] = ()


class Emit(NamedTuple):
    """Values an iterating operation hands to its caller (ids() yields them as it reads)."""

    values: list[Any]


Op = Generator[Call, Any, T]
Y = TypeVar("Y", bound=Call | Emit)


def step(op: Op[T], reply: Any, error: BitstatError | None) -> Call:
    """Hand an operation the reply to its last call, or the error that call raised (thrown in
    at its `yield`, so an operation that can try again catches it); its next call."""
    return op.throw(error) if error is not None else op.send(reply)


def for_now(error: BitstatError) -> bool:
    """Whether the server refused a call for the moment: a cluster slot half moved (TRYAGAIN;
    redis-py gives up after 16 tries in well under a second, while a slot of many keys takes
    longer to move), a cluster failing over (CLUSTERDOWN), a server loading its data (LOADING).
    A connection lost or timed out is not: a read then fails at once, as it always did."""
    transient = getattr(error, "transient", False)
    return bool(transient and (getattr(error, "refused", False) or isinstance(error, ServerError)))


def patient(op: Generator[Y, Any, T], deadline: float) -> Generator[Y | Call, Any, T]:
    """`op`, each of its reads the server refuses for the moment made again after a backoff,
    for up to `deadline` seconds; any other error, or one past the deadline, is thrown into it."""
    reply: Any = None
    error: BitstatError | None = None
    while True:
        try:
            call = op.throw(error) if error is not None else op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        end: float | None = None
        delay = FIRST_BACKOFF
        while True:
            try:
                reply, error = (yield call), None
            except BitstatError as exc:
                reply, error = None, exc
                if isinstance(call, Call) and call.method in READS and for_now(exc):
                    now = time.monotonic()
                    end = now + deadline if end is None else end
                    if now < end:
                        yield Call("sleep", (min(end - now, delay * random.uniform(0.5, 1.0)),))
                        delay = min(delay * 2, MAX_BACKOFF)
                        continue
            break


def run(store: Any, op: Op[T], deadline: float = 0.0) -> T:
    """Drive an operation with a blocking store; reads refused for the moment are made again
    for up to `deadline` seconds (`patient`)."""
    if deadline > 0:
        op = patient(op, deadline)
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
