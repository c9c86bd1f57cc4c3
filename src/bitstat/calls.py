"""What an operation asks of the store: a `Call` per server request, an `Emit` per piece of
an answer handed out while reading; an operation is a generator of them (`Op`)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, NamedTuple, TypeVar

from .errors import BitstatError, ConnectionError

T = TypeVar("T")
FORKS = [0]  # forks so far: a child keeps none of its parent's connections or replies waiting
os.register_at_fork(after_in_child=lambda: FORKS.__setitem__(0, FORKS[0] + 1))


# the connections made by then (`Links.made`) of the numbers the running call writes
# (`Call.seal`, set by the store while it runs the call); None: the call writes none
SEAL: ContextVar[int | None] = ContextVar("bitstat_seal", default=None)


class MadeAgain(ConnectionError):
    """A write refused a connection made again after the numbers it writes were checked
    (`Links.check`): nothing was sent; its next try looks them up again."""

    refused = True


class Links:
    """How many connections a store's clients have made: each is counted by its client's
    connect callback (`counting`, `counting_after`, `counting_async`). A connection made again
    may reach a server that restarted with less than it had (no persistence, a snapshot older
    than its last writes, an asynchronous failover): its counters of actor offsets and value
    ids went back, so the numbers a client learnt before may be handed to others
    (`Recording.check_links`).

    Each connection keeps its number (`bitstat_link`), and a call that writes numbers takes
    none made again after the count they were checked at (`Call.seal`, `check`): redis-py's
    pool makes a connection found closed again as it hands it out, the write going on it at
    once, before any later look could tell."""

    def __init__(self) -> None:
        self.made = 0
        self._numbers = itertools.count(1)  # (next() of it is atomic: threads share a store)

    def counted(self, connection: Any) -> None:
        """Count `connection`, just made, and give it its number (`bitstat_again`: it was
        made before, and lost)."""
        connection.bitstat_again = hasattr(connection, "bitstat_link")
        self.made = connection.bitstat_link = next(self._numbers)

    def counting(self, connection: Any) -> None:
        """A blocking single server's `redis_connect_func` (it replaces `on_connect`)."""
        connection.on_connect()
        self.counted(connection)

    def counting_after(self, connection: Any) -> None:
        """A blocking cluster's `redis_connect_func` (run after the cluster's `on_connect`)."""
        self.counted(connection)

    async def counting_async(self, connection: Any) -> None:
        """An asyncio client's `redis_connect_func` (a single server's or a cluster's
        connections: it replaces `on_connect`)."""
        await connection.on_connect()
        self.counted(connection)

    @staticmethod
    def check(connection: Any) -> None:
        """Refuse `connection` to the call running (its `SEAL`) when it was made again after
        the numbers the call writes were checked: the server it reached may have restarted
        since (nothing is sent; the write's next try checks them again, and takes this
        connection). One made for the first time is not refused: a pool grows so while threads
        write at once, and a refusal would cost each of them a try."""
        seal = SEAL.get()
        if (
            seal is not None
            and getattr(connection, "bitstat_again", False)
            and connection.bitstat_link > seal
        ):
            raise MadeAgain(
                "a connection was made again while a batch was written: its ids are looked up"
                " again (the server may have restarted with less than it had)"
            )


class Call(NamedTuple):
    """A request for the store: a `transport.Transport` method and its arguments (made by
    `transport.call`, which has the type checker check them)."""

    method: Callable[..., Generator[Any, Any, Any]]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = {}
    # a write of actor offsets or value ids learnt by then (`Links.made`): it goes on no
    # connection made since (`Links.check`)
    seal: int | None = None


class Emit(NamedTuple):
    """Values an iterating operation hands to its caller (ids() yields them as it reads)."""

    values: list[Any]


Op = Generator[Call, Any, T]
Y = TypeVar("Y", bound="Call | Emit")


def step(op: Op[T], reply: Any, error: BitstatError | None) -> Call:
    """Hand an operation the reply to its last call, or the error that call raised (thrown in
    at its `yield`, so an operation that can try again catches it); its next call."""
    return op.throw(error) if error is not None else op.send(reply)


class Driver(Generic[Y, T]):
    """An operation driven ask by ask, by a blocking loop and an asyncio one alike:

    try:
        while (asked := driver.next()) is not None:
            with driver.replying():
                driver.reply = store.perform(asked)
    except BaseException:
        driver.stop(op)
        raise
    return driver.answer
    """

    answer: T  # what the operation returned, once `next()` is None

    def __init__(self, op: Generator[Y, Any, T]) -> None:
        self.op = op
        self.reply: Any = None
        self.error: BitstatError | None = None

    def next(self) -> Y | None:
        """What the operation asks next, handed the last reply (or error thrown in at its
        `yield`, so an operation that can try again catches it); None once it has returned."""
        try:
            asked = (
                self.op.throw(self.error) if self.error is not None else self.op.send(self.reply)
            )
        except StopIteration as stop:
            self.answer = stop.value
            return None
        self.reply, self.error = None, None
        return asked

    def stop(self, *inner: Generator[Any, Any, Any]) -> None:
        """The caller gives up mid-operation (a cancelled task, an interrupt): the operation is
        closed now (GeneratorExit at its `yield`), so that it notes what it leaves in doubt
        before the caller can call again, not once the garbage collector gets to it. `inner`:
        the operation a wrapper drives by hand (`transport.patient`'s), closed first."""
        for op in (*inner, self.op):
            op.close()

    @contextmanager
    def replying(self) -> Iterator[None]:
        """A bitstat error raised inside becomes the `error` thrown into the operation next."""
        try:
            yield
        except BitstatError as exc:
            self.error = exc
