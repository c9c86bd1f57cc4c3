"""Files at paths the user gives (`report --out`, `ingest --rejects` and its input files, a
schema file, `--write-keys-file`): an OS error reading or writing one is a one-line message
naming the path and the reason, not a traceback.

Only errors of these paths are turned into messages: an OSError from anywhere else is a bug
and stays a traceback.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from types import TracebackType

import click


def cannot(doing: str, path: str | Path, exc: Exception) -> click.ClickException:
    """`cannot write /tmp/x/report.html: No such file or directory`: an OSError's reason
    without its number and path (the message names the path), another error's text."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return click.ClickException(f"cannot {doing} {path}: {reason}")


def read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise cannot("read", path, exc) from exc


def read_text(path: str) -> str:
    """A UTF-8 text file's text."""
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"cannot read {path}: not UTF-8 text ({exc})") from exc


class Output:
    """A text file a command writes, opened when the command starts, before its work: a path
    that cannot be written fails at once, not after a long run. It is emptied only when the
    command `begin`s writing, so a command that fails before that leaves a file that was
    there as it was, and removes one it created."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._created = not path.exists()
        self._begun = False
        try:
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise cannot("write", path, exc) from exc

    def begin(self) -> Output:
        """Empty the file (a regular file: not a pipe or /dev/null), to be written afresh."""
        self._begun = True
        try:
            if stat.S_ISREG(os.fstat(self._file.fileno()).st_mode):
                self._file.truncate(0)
        except OSError as exc:
            raise cannot("write", self.path, exc) from exc
        return self

    def write(self, text: str) -> None:
        try:
            self._file.write(text)
        except OSError as exc:
            raise cannot("write", self.path, exc) from exc

    def __enter__(self) -> Output:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._file.close()  # writes what is buffered: a full disk may fail here
        except OSError as error:
            if kind is None:
                raise cannot("write", self.path, error) from error
        finally:
            if kind is not None and self._created and not self._begun:
                with contextlib.suppress(OSError):
                    self.path.unlink()
