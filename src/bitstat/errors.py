"""The exceptions bitstat raises: one root, a few precise kinds."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any


class BitstatError(Exception):
    """Root of every error bitstat raises on purpose."""


class InvalidEvent(BitstatError, ValueError):
    """An event that cannot be recorded; the message names the field and the reason."""

    def __init__(self, reason: str, *, field: str | None = None, index: int | None = None):
        self.reason = reason
        self.field = field
        self.index = index
        where = f"event {index}: " if index is not None else ""
        what = f"field {field!r}: " if field is not None else ""
        super().__init__(f"{where}{what}{reason}")

    @classmethod
    def of(cls, reason: str) -> InvalidEvent:
        """The error of a rejected event: the reason's text as message, its field as `field`."""
        error = cls(reason)
        error.field = getattr(reason, "field", None)
        return error


class Reason(str):
    """Why an event was rejected, as `TrackResult.rejected` gives it: the text, which names the
    field at fault first ("time: ..."), and that field as data (`field`; None: the event as a
    whole), so a caller can point at it without reading the text."""

    field: str | None

    def __new__(cls, text: str, field: str | None = None) -> Reason:
        self = super().__new__(cls, text)
        self.field = field
        return self


class SchemaError(BitstatError, ValueError):
    """A schema that is malformed, or differs from the one stored for the namespace."""


class QueryError(BitstatError, ValueError):
    """A query whose arguments cannot be answered (bad date, unknown segment, ...).

    `param` names the argument at fault when the library knows it (`"event"`, `"start"`, ...),
    so an HTTP layer can name it without reading the message."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


@contextmanager
def blaming(param: str) -> Iterator[None]:
    """Name `param` in a QueryError raised inside that names no argument (the pure helpers it
    calls cannot know which of the caller's arguments their input was)."""
    try:
        yield
    except QueryError as exc:
        if exc.param is None:
            exc.param = param
        raise


class UnknownEvent(QueryError):
    """A query names an event the namespace has never recorded (nor configures): a typo, most
    likely. `suggestions` holds the closest known names."""

    def __init__(
        self, event: str, suggestions: list[str] | None = None, *, param: str = "event"
    ) -> None:
        self.event = event
        self.suggestions = suggestions or []
        hint = f"; did you mean {' or '.join(map(repr, self.suggestions))}?" if suggestions else ""
        super().__init__(f"no event {event!r} is recorded in this namespace{hint}", param=param)


class ConnectionError(BitstatError):
    """The server could not be reached or started; the cause is chained.

    `transient`: the call may succeed when tried again (a connection reset, a timeout, a server
    still loading its data): bitstat retries a batch on these by itself. `refused`: the server
    answered, so the call wrote nothing (False: its reply was lost, it may have written)."""

    transient = True
    refused = False


class ServerError(BitstatError):
    """The server answered with an error; the cause is chained. `transient`: it refused for the
    moment (a cluster moving slots or failing over); `refused`: as for ConnectionError."""

    transient = False
    refused = True


class BatchError(ConnectionError, ServerError):
    """A batch bitstat gave up recording after its own retries (a ConnectionError and a
    ServerError, so that handlers of either catch it). `batch_id` is the id it was sent under
    (given, or made by bitstat), `may_have_landed` whether any of it may have been written,
    `attempts` how many times it was sent. The message says how to send it again safely: with
    the same id (or, for an id bitstat made, the same events again from the same process) it is
    recorded once. `events`: the events of earlier `track()` calls it concerns, for
    `track_ahead` (empty otherwise). `stale_events`: events of `track()` that may have been
    queued but whose pushes are too old to be checked again (rare: a reply lost, then minutes
    passing); sending them again may count them twice, so bitstat does not."""

    def __init__(
        self,
        message: str,
        *,
        batch_id: str,
        may_have_landed: bool,
        attempts: int,
        events: Sequence[Mapping[str, Any]] = (),
        stale_events: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.batch_id = batch_id
        self.may_have_landed = may_have_landed
        self.attempts = attempts
        self.events = list(events)
        self.stale_events = list(stale_events)
        super().__init__(message)

    transient = False
    refused = False
