# Vendored from bitmapist (github.com/Doist/bitmapist): test/test_equality.py,
# as its 3.107 sdist ships it. Copyright 2012 Doist Ltd.
# BSD 3-Clause licence: see LICENSE beside this file.
# Changed for bitstat: the import line only (bitmapist -> bitstat.compat.bitmapist).
from bitstat.compat import bitmapist


def test_equality():
    ev1 = bitmapist.YearEvents("foo", 2014)
    ev2 = bitmapist.YearEvents("foo", 2014)
    ev3 = bitmapist.YearEvents("foo", 2015)
    assert ev1 == ev2
    assert ev1 != ev3
