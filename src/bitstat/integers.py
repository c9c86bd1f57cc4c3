"""Integer arguments, read alike by every function that takes one: any integral number, numpy's
too (the cells of a DataFrame), never a boolean nor a float."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np


def whole(value: Any) -> int | None:
    """`value` as an int when it is an integer of any kind (a type with `__index__`: int,
    numpy's integers); None for anything else, booleans included (Python's and numpy's: True
    counts nothing) and floats, even whole ones (7.0: a number computed, not a count)."""
    if isinstance(value, bool | np.bool_):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None
