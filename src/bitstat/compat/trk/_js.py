"""How trk (node.js) saw a property value: JavaScript truthiness, `String(v)`, `isNaN(v)`, and
which increments Redis's HINCRBY accepts. Pure functions; the drop-in records exactly these."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

from ...events import digit_limit, int_text, js_number, unicode_problem

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_REDIS_INT = re.compile(r"-?[1-9][0-9]*|0")
_JS_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_JS_RADIX = re.compile(r"0([xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
JS_SPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
JS_SPACE += "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


class ObjectValue(TypeError):
    """A value that is a mapping (a JavaScript object): trk wrote it as "[object Object]"."""


class Unwritable(ValueError):
    """A value that has no text Redis can be sent: its message says why."""


def plain(value: Any) -> Any:
    """A numpy scalar (a pandas cell, say) as the Python value it holds: np.int64 is not an int,
    nor np.bool_ a bool. Anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def truthy(value: Any) -> bool:
    """JavaScript truthiness: 0, NaN, "", null and false are false; [] and {} are true."""
    value = plain(value)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # (isnan would take it as a float: past 1e308, OverflowError)
        return value != 0
    if isinstance(value, float):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def number_text(value: float) -> str:
    """`String(x)` of a JavaScript number (ECMAScript Number::toString, radix 10)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return js_number(value)


def text(value: Any) -> str:
    """`String(value)` as trk's writes saw it. Mappings, and objects with no text of their
    own, raise ObjectValue (JavaScript would say "[object Object]" for every one of them
    alike); what has no one text to send (a lone surrogate, an integer of more digits than
    Python writes, bytes, a set) raises Unwritable."""
    value = plain(value)
    if isinstance(value, str):
        if problem := unicode_problem(value):
            raise Unwritable(f"value {problem}")
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        digits = int_text(value)
        if digits is None:
            raise Unwritable(f"value is an integer of more than {digit_limit():,} digits")
        return digits
    if isinstance(value, float):
        return number_text(value)
    if isinstance(value, Mapping):
        raise ObjectValue("an object value")
    if isinstance(value, bytes | bytearray | memoryview):  # str() would write "b'...'"
        raise Unwritable("value is bytes: decode it to text first")
    if isinstance(value, list | tuple):  # Array.prototype.join: null and undefined are ""
        return ",".join("" if item is None else text(item) for item in value)
    if isinstance(value, AbstractSet):  # str() follows hash order, which differs per process
        raise Unwritable("value is a set, which has no order to write it in: pass a list")
    written = str(value)
    if written == object.__repr__(value):  # no text of its own: '<... object at 0x...>'
        raise ObjectValue("an object value")
    return written


def is_nan(value: Any) -> bool:
    """JavaScript's global `isNaN(value)`: whether `Number(value)` is NaN."""
    value = plain(value)
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int):
        return False
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, Mapping):
        return True
    if isinstance(value, list | tuple):
        return is_nan(text(value))
    s = str(value).strip(JS_SPACE)
    if s in ("", "Infinity", "+Infinity", "-Infinity"):
        return False
    return not (_JS_DECIMAL.fullmatch(s) or _JS_RADIX.fullmatch(s))


def redis_int(value: str) -> int | None:
    """The integer HINCRBY takes `value` for, or None when Redis refuses it (its string2ll: an
    optional minus, no leading zero, no sign, space, point or exponent, within 64 bits)."""
    if len(value) > 20 or not _REDIS_INT.fullmatch(value):
        return None
    number = int(value)
    return number if INT64_MIN <= number <= INT64_MAX else None


def plus(value: str) -> int | float:
    """`+value`, JavaScript's Number() of a text: what trk's merge adds up for a stored count.
    A whole decimal number stays an exact int."""
    s = value.strip(JS_SPACE)
    if s == "":
        return 0
    if re.fullmatch(r"[+-]?[0-9]+", s):
        return int(s)
    if _JS_RADIX.fullmatch(s):
        return int(s[2:], {"x": 16, "o": 8, "b": 2}[s[1].lower()])
    if s.lstrip("+-") == "Infinity" and len(s) <= len("-Infinity"):
        return -math.inf if s.startswith("-") else math.inf
    return float(s) if _JS_DECIMAL.fullmatch(s) else math.nan


def parse_int(value: str) -> int | None:
    """JavaScript's `parseInt(value)` of a sorted-set score; None where it gives NaN."""
    s = value.strip(JS_SPACE)
    head = re.match(r"([+-]?)(0[xX])?", s)
    assert head is not None  # both parts are optional
    digits = re.match("[0-9a-fA-F]+" if head[2] else "[0-9]+", s[head.end() :])
    if not digits:
        return None
    number = int(digits[0], 16 if head[2] else 10)
    return -number if head[1] == "-" else number
