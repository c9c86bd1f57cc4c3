"""The columnar ISO-8601 reader agrees with Python's own, text by text, or declines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from bitstat import timetext
from bitstat.timetext import parse_column

_NAIVE_EPOCH = datetime(1970, 1, 1)


def python_reads(text: str) -> tuple[int, bool] | None:
    """(seconds, is_utc) as `datetime.fromisoformat` reads the text, None if it cannot."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    # (exactly: a float of total_seconds() rounds .999997 into the next second in year 3059)
    span = t - (datetime(1970, 1, 1, tzinfo=UTC) if t.tzinfo is not None else _NAIVE_EPOCH)
    return span.days * 86400 + span.seconds, t.tzinfo is not None


@st.composite
def iso_texts(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    text = (
        f"{moment.year:04d}"
        + moment.strftime("-%m-%d")
        + draw(st.sampled_from("T "))
        + moment.strftime("%H:%M:%S")
    )
    digits = draw(st.integers(0, 6))
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    suffix = draw(st.sampled_from(["", "Z", "offset"]))
    if suffix == "offset":
        minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
        text += datetime(2000, 1, 1, tzinfo=timezone(timedelta(minutes=minutes))).strftime("%z")
        text = text[:-2] + ":" + text[-2:]
    else:
        text += suffix
    return text


def mutated(text: str, data: st.DataObject) -> str:
    at = data.draw(st.integers(0, len(text)))
    change = data.draw(st.sampled_from(["drop", "insert", "replace"]))
    char = data.draw(st.sampled_from(list("0123456789:-+.TZ xé\x00")))
    if change == "drop":
        return text[:at] + text[at + 1 :]
    if change == "insert":
        return text[:at] + char + text[at:]
    return text[:at] + char + text[at + 1 :]


@given(st.lists(iso_texts(), min_size=1, max_size=8))
def test_well_formed_columns_read_as_python_reads_them(texts: list[str]) -> None:
    parsed = parse_column(texts)
    assert parsed is not None, texts
    seconds, utc = parsed
    assert [(int(s), bool(u)) for s, u in zip(seconds, utc, strict=True)] == [
        python_reads(t) for t in texts
    ]


@settings(max_examples=20, deadline=None)
@given(st.lists(iso_texts(), min_size=1, max_size=8), st.integers(0, 2), st.data())
def test_a_column_longer_than_a_chunk_reads_as_its_texts_alone(
    forms: list[str], bad_chunk: int, data: st.DataObject
) -> None:
    """A column is read CHUNK texts at a time: the same seconds as each text alone, and one
    bad text in any chunk declines the whole column."""
    n = 2 * timetext.CHUNK + 5
    texts = [forms[i % len(forms)] for i in range(n)]
    parsed = parse_column(texts)
    assert parsed is not None
    alone = {t: python_reads(t) for t in forms}
    assert [(int(s), bool(u)) for s, u in zip(*parsed, strict=True)] == [alone[t] for t in texts]
    at = bad_chunk * timetext.CHUNK + data.draw(st.integers(0, 4))
    texts[at] = "2026-13-01T00:00:00"
    assert parse_column(texts) is None


@given(st.lists(iso_texts(), min_size=1, max_size=4), st.data())
def test_a_column_with_a_changed_text_is_read_right_or_declined(
    texts: list[str], data: st.DataObject
) -> None:
    texts[0] = mutated(texts[0], data)
    parsed = parse_column(texts)
    if parsed is None:
        return
    seconds, utc = parsed
    # what the strict reader accepts, Python reads the same way
    assert [(int(s), bool(u)) for s, u in zip(seconds, utc, strict=True)] == [
        python_reads(t) for t in texts
    ]


def test_other_forms_are_declined() -> None:
    for text in [
        "2025-11-03",  # a date: a day label, read on the event-by-event path
        "2025-11-03T14:07",
        "2025-11-03T14:07:09+0100",
        "2025-11-03T14:07:09.1234567",
        " 2025-11-03T14:07:09",
        "2025-02-29T00:00:00",
        "2025-11-03T24:00:00",
        "2025-11-03T14:07:09+24:00",
        "\uff12\uff10\uff12\uff15-11-03T14:07:09",  # full-width digits
        "",
    ]:
        assert parse_column([text]) is None, text
    assert parse_column([]) is None
