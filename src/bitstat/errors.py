"""The exceptions bitstat raises: one root, a few precise kinds."""

from __future__ import annotations


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


class SchemaError(BitstatError, ValueError):
    """A schema that is malformed, or differs from the one stored for the namespace."""


class QueryError(BitstatError, ValueError):
    """A query whose arguments cannot be answered (bad date, unknown segment, ...).

    `param` names the argument at fault when the library knows it (`"event"`, `"start"`, ...),
    so an HTTP layer can name it without reading the message."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


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
    """The server could not be reached or started; the cause is chained."""


class ServerError(BitstatError):
    """The server answered with an error; the cause is chained."""
