"""`jsontext.loads` reads what `json.loads` reads, the same way, and fails where it fails with
its message: msgspec is only the fast path."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitstat import jsontext

# what the standard module accepts and msgspec refuses, and forms both read
EDGES = [
    b'{"a": NaN, "b": Infinity, "c": -Infinity}',
    b'{"big": 123456789012345678901234567890, "neg": -98765432109876543210}',
    b'{"lone": "\\ud800x"}',
    b'\xef\xbb\xbf{"bom": 1}',
    '{"utf16": "é"}'.encode("utf-16"),
    b'{"dup": 1, "dup": 2}',
    b'{"float": 1e400, "tiny": 5e-324, "neg0": -0.0, "e": 1E5}',
    b'[{"a": 1}, {"b": [1, 2, {"c": null}]}, true, false, "x\\u00e9\\n"]',
    '"é ü 中"'.encode(),
]


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (JSON's NaN literal is read as float nan)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("text", EDGES)
def test_edges_read_as_the_standard_module_reads_them(text: bytes) -> None:
    assert same(jsontext.loads(text), json.loads(text))


@pytest.mark.parametrize(
    "text", [b"", b"{", b'{"a": 1,}', b"[1, 2", b'{"a": tru}', b"\xff\xfe\x00", b"1 2", b"// c"]
)
def test_errors_are_the_standard_modules(text: bytes) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        jsontext.loads(text)
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)


def test_text_holding_a_lone_surrogate_reads_as_the_standard_module_reads_it() -> None:
    assert jsontext.loads('"\ud800x"') == json.loads('"\ud800x"') == "\ud800x"
    assert jsontext.loads('["\ud800"]') == ["\ud800"]


def test_deep_nesting_fails_as_the_standard_module_does() -> None:
    text = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(text)
    with pytest.raises(RecursionError):
        jsontext.loads(text)


def test_an_integer_past_pythons_digit_limit_is_malformed_json_at_the_number() -> None:
    """json.loads raises a bare ValueError there ('Exceeds the limit (4300 digits) for integer
    string conversion'), which callers that catch JSONDecodeError let through as a crash."""
    huge = "9" * 5_000
    text = '{"note": "' + huge + '", "ratio": 0.' + huge + ', "user": -' + huge + "}"
    for sent in (text, text.encode(), text.encode("utf-16")):
        with pytest.raises(json.JSONDecodeError) as caught:
            jsontext.loads(sent)
        assert caught.value.msg == "a number of 5,000 digits; at most 4,300 are read"
        assert caught.value.pos == text.index(', "user"') + len(', "user": ')
    assert jsontext.loads("[" + "9" * 4_300 + "]") == [int("9" * 4_300)]


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(values, st.booleans())
def test_any_value_reads_back_as_the_standard_module_reads_it(value: Any, ascii: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii)
    assert same(jsontext.loads(text), json.loads(text))
    assert same(jsontext.loads(text.encode("utf-8", "surrogatepass")), json.loads(text))


class Text(str):
    """A str subclass (msgspec refuses it; the standard module writes it)."""


@pytest.mark.parametrize(
    "record",
    [
        {"event": "buy", "user": "0f8fad5b-d9cb", "time": "2025-11-03T14:07:09.123+01:00"},
        {"amount": 2**70, "neg": -(2**64), "f": 1e20, "z": -0.0, "tenth": 0.1},
        {"nan": math.nan, "inf": math.inf, "ninf": -math.inf},
        {"text": "a:null", "u": "é\u2028中", "sub": Text("x")},
        {"nested": [math.nan, {"x": math.inf}], "ok": [1, "null"]},
    ],
)
def test_records_written_read_back_equal(record: dict[str, Any]) -> None:
    text = jsontext.dumps(record)
    assert same(jsontext.loads(text), json.loads(json.dumps(record)))
    assert same(json.loads(text), json.loads(json.dumps(record)))


@given(
    st.dictionaries(
        st.text(),
        st.booleans() | st.integers() | st.floats() | st.text(),
        max_size=8,
    )
)
def test_any_record_written_reads_back_equal(record: dict[str, Any]) -> None:
    assert same(jsontext.loads(jsontext.dumps(record)), record)


@pytest.mark.parametrize("text", EDGES)
def test_loads_each_reads_as_loads_or_hands_the_texts_back_to_it(text: bytes) -> None:
    """`loads_each` is msgspec alone: what it reads is what `loads` reads; what it refuses
    (NaN, a byte order mark, UTF-16, ...) it refuses for all the texts, for `loads` to read."""
    good = b'{"a": 1, "b": [2.5, "x"]}\n'
    each = jsontext.loads_each([good, text])
    if each is None:
        with pytest.raises(ValueError):
            msgspec.json.decode(text)
    else:
        assert same(each, [jsontext.loads(good), jsontext.loads(text)])
    assert jsontext.loads_each([good, b'{"a": 1} {"b": 2}']) is None  # (two values: refused)
