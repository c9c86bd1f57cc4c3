"""JSON read and written fast: the queue of `track()`, `bitstat ingest`'s lines and the bodies
of `bitstat serve`.

msgspec reads and writes JSON 2-10x faster than the standard module, integers of any size
included, but it is stricter: it refuses NaN and Infinity, lone surrogates, UTF-16 text, a byte
order mark and numbers past a double's range, and writes NaN as null. So whatever it refuses is
read by the standard module, and a record it would change is written by it: what is accepted,
how it reads back, and every error message stay the standard module's
(tests/test_jsontext.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def loads(text: bytes | str) -> Any:
    """`json.loads(text)`, by msgspec where it reads the same."""
    try:
        return _decode(text)
    except ValueError:  # (DecodeError; UnicodeEncodeError: a str holding a lone surrogate)
        return json.loads(text)


def dumps(record: Mapping[str, Any]) -> bytes:
    """A record without None values as compact UTF-8 JSON that `loads` reads back equal (NaN
    and Infinity as the standard module writes them)."""
    try:
        text = _encode(record)
    except TypeError:  # (a subclass of str, say: the standard module knows more types)
        text = b"null"
    if b"null" in text:  # NaN or Infinity became null (or a text holds "null": no harm)
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    return text
