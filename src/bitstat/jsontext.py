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
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def loads(text: bytes | str) -> Any:
    """`json.loads(text)`, by msgspec where it reads the same.

    An integer of more digits than Python converts (4,300) is a JSONDecodeError saying so, at
    the number, as any other text that cannot be read: the standard module raises a bare
    ValueError there, which callers reading untrusted text would not take for malformed JSON."""
    try:
        return _decode(text)
    except ValueError:  # (DecodeError; UnicodeEncodeError: a str holding a lone surrogate)
        pass
    try:
        return json.loads(text)
    except ValueError as exc:
        if type(exc) is not ValueError:  # JSONDecodeError, UnicodeDecodeError: as they are
            raise
        raise too_many_digits(text) from None


def loads_each(texts: Iterable[bytes]) -> list[Any] | None:
    """`loads` of each text, by msgspec (one call a text, no array around them to build); None
    when msgspec refuses one: `loads` then reads them one by one, as the standard module does
    what msgspec does not, and says why a text cannot be read."""
    try:
        return list(map(_decode, texts))
    except ValueError:  # (DecodeError, UnicodeDecodeError)
        return None


# a string (skipped whole: digits inside one are no number) or a number, whose digits before
# any fraction or exponent are an integer's when it has neither (a float has no digit limit)
_STRING_OR_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|-?([0-9]+)(\.[0-9]+)?([eE][-+]?[0-9]+)?')


def too_many_digits(text: bytes | str) -> json.JSONDecodeError:
    """The error of `text` holding an integer past Python's digit limit, at that integer."""
    doc = text if isinstance(text, str) else text.decode(json.detect_encoding(text), "replace")
    limit = sys.get_int_max_str_digits()
    for found in _STRING_OR_NUMBER.finditer(doc):
        digits, fraction, exponent = found.groups()
        if digits is not None and fraction is exponent is None and len(digits) > limit:
            message = f"a number of {len(digits):,} digits; at most {limit:,} are read"
            return json.JSONDecodeError(message, doc, found.start())
    return json.JSONDecodeError(f"a number of more than {limit:,} digits", doc, 0)


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
