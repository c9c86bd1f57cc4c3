"""minimatch 3 (what trk's `accept` / `ignore` globs went through), in Python. Pure.

trk matched each pattern with `minimatch(text, pattern)` and no options. This follows
minimatch 3.1's rules step by step: the pattern is trimmed; `#...` matches nothing; leading
`!`s negate; braces expand as bash does (`{a,b}`, `{1..3}`, `{a..c}`); the text and the
pattern are split on `/`; a `**` segment spans segments; wildcards never match a segment's
leading dot; `*`, `?`, `[...]` (with `[!...]`), `\\` escapes and the extglobs `+(a|b)`,
`*(...)`, `?(...)`, `@(...)`, `!(...)` work within a segment. minimatch builds a JavaScript
regular expression per segment, editing it as text on the way; the same text is built here,
then translated to Python's `re` (JavaScript's `.`, `$` and character classes differ).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from ._js import JS_SPACE


class _Globstar:
    """A `**` segment."""


GLOBSTAR: Final = _Globstar()
Segment = str | re.Pattern[str] | _Globstar | None  # None: a regex JavaScript refuses

_QMARK = "[^/]"
_STAR = _QMARK + "*?"
_RE_SPECIALS = frozenset("().*{}+?[]^$\\!")
_LISTS = {  # extglob kind -> (open, close) as minimatch writes them
    "!": ("(?:(?!(?:", "))[^/]*?)"),
    "?": ("(?:", ")?"),
    "+": ("(?:", ")+"),
    "*": ("(?:", ")*"),
    "@": ("(?:", ")"),
}
_LINE_ENDS = "\n\r\u2028\u2029"  # what JavaScript's `.` does not match


def glob_match(pattern: str, text: str) -> bool:
    """`minimatch(text, pattern)` of minimatch 3, without options."""
    if pattern.startswith("#"):
        return False
    return _compiled(pattern).match(text)


@dataclass(frozen=True)
class Glob:
    """A compiled pattern: alternatives (from braces), each a list of segments."""

    negate: bool
    comment: bool
    empty: bool
    alternatives: tuple[tuple[Segment, ...], ...]

    def match(self, text: str) -> bool:
        if self.comment:
            return False
        if self.empty:
            return text == ""
        parts = re.split("/+", text)
        for alternative in self.alternatives:
            if _match_one(parts, list(alternative)):
                return not self.negate
        return self.negate


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> Glob:
    pattern = pattern.strip(JS_SPACE)
    if pattern.startswith("#"):
        return Glob(False, True, False, ())
    if not pattern:
        return Glob(False, False, True, ())
    bangs = len(pattern) - len(pattern.lstrip("!"))
    pattern = pattern[bangs:]
    expanded = [pattern]
    if re.search(r"\{(?:(?!\{)[^" + _LINE_ENDS + r"])*\}", pattern):
        expanded = expand_braces(pattern)
    alternatives = tuple(tuple(_segment(s) for s in re.split("/+", e)) for e in expanded)
    return Glob(bangs % 2 == 1, False, False, alternatives)


def _match_one(file: list[str], pattern: list[Segment]) -> bool:
    """minimatch's matchOne: segments in order; a `**` swallows whole segments, but never
    one that starts with a dot."""
    fi = pi = 0
    while fi < len(file) and pi < len(pattern):
        p, f = pattern[pi], file[fi]
        if p is GLOBSTAR:
            if pi + 1 == len(pattern):
                return not any(x.startswith(".") for x in file[fi:])
            for fr in range(fi, len(file)):
                if _match_one(file[fr:], pattern[pi + 1 :]):
                    return True
                if file[fr].startswith("."):
                    break
            return False
        matched = p.fullmatch(f) is not None if isinstance(p, re.Pattern) else f == p
        if not matched:
            return False
        fi, pi = fi + 1, pi + 1
    if fi == len(file) and pi == len(pattern):
        return True
    if fi == len(file):
        return False
    return fi == len(file) - 1 and file[fi] == ""  # a trailing slash


def _segment(pattern: str) -> Segment:
    """minimatch's parse of one segment: `**`, a plain text, or a regular expression."""
    if pattern == "**":
        return GLOBSTAR
    if pattern == "":
        return ""
    source, magic = _parse(pattern, sub=False)
    if not magic:
        return re.sub(f"\\\\([^{_LINE_ENDS}])", r"\1", pattern)  # JavaScript's /\\(.)/g
    return _python_regex("^" + source + "$")


def _parse(pattern: str, sub: bool) -> tuple[str, bool]:
    """The JavaScript regular expression minimatch 3 writes for a segment, and whether the
    segment had any magic (else it is compared as text)."""
    if sub and pattern in ("", "**"):
        return "undefined", False  # minimatch reads `""[0]` (or GLOBSTAR[0]): undefined
    out = ""
    magic = False
    escaping = False
    lists: list[dict[str, int | str]] = []
    negatives: list[dict[str, int | str]] = []
    state = ""
    in_class = False
    class_start = class_re_start = -1
    pattern_start = "" if pattern.startswith(".") else "(?!\\.)"

    def clear_state() -> None:
        nonlocal out, magic, state
        if state == "*":
            out, magic = out + _STAR, True
        elif state == "?":
            out, magic = out + _QMARK, True
        elif state:
            out += "\\" + state
        state = ""

    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escaping and c in _RE_SPECIALS:
            out += "\\" + c
            escaping = False
        elif c == "\\":
            clear_state()
            escaping = True
        elif c in "?*+@!":
            if in_class:
                out += "^" if c == "!" and i == class_start + 1 else c
            elif not (c == "*" and state == "*"):
                clear_state()
                state = c
        elif c == "(":
            if in_class:
                out += "("
            elif not state:
                out += "\\("
            else:
                open_, close = _LISTS[state]
                lists.append({"type": state, "re_start": len(out), "open": open_, "close": close})
                out += open_
                state = ""
        elif c == ")":
            if in_class or not lists:
                out += "\\)"
            else:
                clear_state()
                magic = True
                done = lists.pop()
                out += str(done["close"])
                if done["type"] == "!":
                    negatives.append(done)
                done["re_end"] = len(out)
        elif c == "|":
            if in_class or not lists or escaping:
                out += "\\|"
                escaping = False
            else:
                clear_state()
                out += "|"
        elif c == "[":
            clear_state()
            if in_class:
                out += "\\["
            else:
                in_class, class_start, class_re_start = True, i, len(out)
                out += c
        elif c == "]":
            if i == class_start + 1 or not in_class:
                out += "\\]"
                escaping = False
            elif not _js_class_ok(pattern[class_start + 1 : i]):
                inner, inner_magic = _parse(pattern[class_start + 1 : i], sub=True)
                out = out[:class_re_start] + "\\[" + inner + "\\]"
                magic = magic or inner_magic
                in_class = False
            else:
                magic, in_class = True, False
                out += c
        else:
            clear_state()
            if escaping:
                escaping = False
            elif c in _RE_SPECIALS and not (c == "^" and in_class):
                out += "\\"
            out += c
        i += 1

    if in_class:  # "[abc" is "\[abc"
        inner, inner_magic = _parse(pattern[class_start + 1 :], sub=True)
        out = out[:class_re_start] + "\\[" + inner
        magic = magic or inner_magic
    while lists:  # an extglob left open is literal text
        pl = lists.pop()
        start = int(pl["re_start"])
        tail = out[start + len(str(pl["open"])) :]
        tail = re.sub(
            r"((?:\\{2}){0,64})(\\?)\|", lambda m: m[1] + m[1] + (m[2] or "\\") + "|", tail
        )
        kind = str(pl["type"])
        head = _STAR if kind == "*" else _QMARK if kind == "?" else "\\" + kind
        magic = True
        out = out[:start] + head + "\\(" + tail
    clear_state()
    if escaping:
        out += "\\\\"
    add_pattern_start = out[:1] in ("[", ".", "(")
    for nl in reversed(negatives):  # !(x) looks ahead to the end of the segment
        start, end = int(nl["re_start"]), int(nl["re_end"])
        before, first, last, after = (
            out[:start],
            out[start : end - 8],
            out[end - 8 : end],
            out[end:],
        )
        last += after
        for _ in range(before.count("(")):
            after = re.sub(r"\)[+*?]?", "", after, count=1)
        dollar = "$" if after == "" and not sub else ""
        out = before + first + after + dollar + last
    if out and magic:
        out = "(?=.)" + out
    if add_pattern_start:
        out = pattern_start + out
    return out, magic


def _js_class_ok(body: str) -> bool:
    """Whether JavaScript accepts `[body]` as a regular expression (no `u` flag): it refuses a
    range out of order and a class whose `]` is escaped by a lone trailing backslash."""
    atoms: list[tuple[int | None, bool]] = []  # (code unit or None for \\d etc., a bare `-`)
    i = 0
    while i < len(body):
        if body[i] != "\\":
            atoms.append((ord(body[i]), body[i] == "-"))
            i += 1
        elif i + 1 == len(body):
            return False
        else:
            value, i = _js_class_escape(body, i + 1)
            atoms.append((value, False))
    k = 0
    while k < len(atoms):
        if k + 2 < len(atoms) and atoms[k + 1][1]:
            lo, hi = atoms[k][0], atoms[k + 2][0]
            if lo is not None and hi is not None and lo > hi:
                return False
            k += 3
        else:
            k += 1
    return True


def _js_class_escape(body: str, i: int) -> tuple[int | None, int]:
    """The code unit of the class escape whose letter is at `i`, and where the next atom starts."""
    c = body[i]
    simple = {"b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13}
    if c in "dDwWsS":
        return None, i + 1
    if c in simple:
        return simple[c], i + 1
    if c == "c":
        after = body[i + 1 : i + 2]
        if after and after.isascii() and (after.isalnum() or after == "_"):
            return ord(after) % 32, i + 2
        return ord("\\"), i  # `\\c` without a control letter is a backslash, then `c`
    hexdigits = "0123456789abcdefABCDEF"
    for letter, width in (("x", 2), ("u", 4)):
        digits = body[i + 1 : i + 1 + width]
        if c == letter and len(digits) == width and all(d in hexdigits for d in digits):
            return int(digits, 16), i + 1 + width
    if c in "01234567":
        j = i + 1
        while j < len(body) and j < i + 3 and body[j] in "01234567":
            if int(body[i : j + 1], 8) > 255:
                break
            j += 1
        return int(body[i:j], 8), j
    return ord(c), i + 1


def _python_regex(source: str) -> re.Pattern[str] | None:
    """A JavaScript regular expression (the subset minimatch writes) as Python's; None where
    JavaScript would refuse it (minimatch then matches nothing)."""
    out: list[str] = []
    i = 0
    while i < len(source):
        c = source[i]
        if c == "\\":
            if i + 1 == len(source):
                return None
            out.append(re.escape(source[i + 1]))
            i += 2
        elif c == "[":
            end, text = _python_class(source, i + 1)
            if end < 0:
                return None
            out.append(text)
            i = end + 1
        elif c == ".":
            out.append(f"[^{_LINE_ENDS}]")
            i += 1
        elif c == "$":
            out.append(r"\Z")
            i += 1
        elif c in "()|*+?^{}":
            out.append(c)
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    try:
        return re.compile("".join(out))
    except re.error:
        return None


def _python_class(source: str, i: int) -> tuple[int, str]:
    """The class starting after the `[` at `i - 1`: (index of its `]`, Python's class)."""
    negated = source[i : i + 1] == "^"
    i += negated
    chars: list[str] = []
    while i < len(source) and source[i] != "]":
        if source[i] == "\\" and i + 1 < len(source):
            chars.append("\\" + source[i + 1])
            i += 2
        else:
            chars.append(source[i])
            i += 1
    if i >= len(source):
        return -1, ""
    if not chars:
        return i, "(?s:.)" if negated else "(?!)"
    items = []
    k = 0
    literal = [c[-1] for c in chars]
    while k < len(chars):
        if k + 2 < len(chars) and chars[k + 1] == "-":
            items.append(re.escape(literal[k]) + "-" + re.escape(literal[k + 2]))
            k += 3
        else:
            items.append(re.escape(literal[k]))
            k += 1
    return i, "[" + ("^" if negated else "") + "".join(items) + "]"


# ---- brace expansion, as bash (the brace-expansion package minimatch uses) -----------------

_ESCAPES = (
    ("\\\\", "\0SLASH\0", "\\"),
    ("\\{", "\0OPEN\0", "{"),
    ("\\}", "\0CLOSE\0", "}"),
    ("\\,", "\0COMMA\0", ","),
    ("\\.", "\0PERIOD\0", "."),
)
_NUMERIC_SEQUENCE = re.compile(r"-?[0-9]+\.\.-?[0-9]+(?:\.\.-?[0-9]+)?")
_ALPHA_SEQUENCE = re.compile(r"[a-zA-Z]\.\.[a-zA-Z](?:\.\.-?[0-9]+)?")
_EXPANSION_MAX = 100_000


def expand_braces(pattern: str) -> list[str]:
    """`a{b,c}d` -> `abd`, `acd`; `{1..3}`, `{a..c}`, nested sets; an unpaired brace is text."""
    if not pattern:
        return []
    if pattern.startswith("{}"):
        pattern = "\\{\\}" + pattern[2:]
    for text, mark, _ in _ESCAPES:
        pattern = pattern.replace(text, mark)
    out = _expand(pattern, top=True)[:_EXPANSION_MAX]
    for _, mark, plain in _ESCAPES:
        out = [x.replace(mark, plain) for x in out]
    return out


def _balanced(text: str) -> tuple[int, int] | None:
    """balanced-match's range of the first balanced `{...}` pair of `text`."""
    ai = text.find("{")
    bi = text.find("}", ai + 1)
    if ai < 0 or bi <= 0:
        return None
    i, begs, left, right = ai, [], len(text), -1
    result = None
    while i >= 0 and result is None:
        if i == ai:
            begs.append(i)
            ai = text.find("{", i + 1)
        elif len(begs) == 1:
            result = (begs.pop(), bi)
        else:
            beg = begs.pop()
            if beg < left:
                left, right = beg, bi
            bi = text.find("}", i + 1)
        i = ai if 0 <= ai < bi else bi
    if begs:
        result = (left, right)
    return result


def _expand(text: str, top: bool = False) -> list[str]:
    found = _balanced(text)
    if found is None:
        return [text]
    pre, body, post = text[: found[0]], text[found[0] + 1 : found[1]], text[found[1] + 1 :]
    if pre.endswith("$"):
        return [text]
    numeric = _NUMERIC_SEQUENCE.fullmatch(body) is not None
    alpha = _ALPHA_SEQUENCE.fullmatch(body) is not None
    sequence = numeric or alpha
    if not sequence and "," not in body:
        if re.search(f",[^{_LINE_ENDS}]*}}", post):  # `{a},b}`: the first } is text
            return _expand(pre + "{" + body + "\0CLOSE\0" + post)
        return [text]
    posts = _expand(post) if post else [""]
    if sequence:
        values = _sequence(body.split(".."), alpha)
    else:
        parts = _comma_parts(body)
        if len(parts) == 1:  # x{{a,b}}y is x{a}y x{b}y
            inner = ["{" + x + "}" for x in _expand(parts[0])]
            if len(inner) == 1:
                return [pre + inner[0] + p for p in posts]
            values = inner
        else:
            values = [x for part in parts for x in _expand(part)]
    return [pre + v + p for v in values for p in posts if not top or sequence or pre + v + p]


def _comma_parts(text: str) -> list[str]:
    if not text:
        return [""]
    found = _balanced(text)
    if found is None:
        return text.split(",")
    pre, body, post = text[: found[0]], text[found[0] + 1 : found[1]], text[found[1] + 1 :]
    parts = pre.split(",")
    parts[-1] += "{" + body + "}"
    rest = _comma_parts(post)
    if post:
        parts[-1] += rest.pop(0)
        parts += rest
    return parts


def _sequence(n: list[str], alpha: bool) -> list[str]:
    def value(s: str) -> int:
        return int(s) if not alpha or s.lstrip("-").isdigit() else ord(s[0])

    x, y = value(n[0]), value(n[1])
    width = max(len(n[0]), len(n[1]))
    step = max(abs(int(n[2])), 1) if len(n) == 3 else 1
    if y < x:
        step = -step
    pad = any(re.match(r"-?0[0-9]", s) for s in n)
    out: list[str] = []
    i = x
    while (i <= y if step > 0 else i >= y) and len(out) < _EXPANSION_MAX:
        if alpha:
            c = chr(i) if chr(i) != "\\" else ""
        else:
            c = str(i)
            if pad and len(c) < width:
                zeros = "0" * (width - len(c))
                c = "-" + zeros + c[1:] if i < 0 else zeros + c
        out.append(c)
        i += step
    return out
