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
    """A query whose arguments cannot be answered (bad date, unknown segment, ...)."""


class ConnectionError(BitstatError):
    """The server could not be reached or started; the cause is chained."""


class ServerError(BitstatError):
    """The server answered with an error; the cause is chained."""
