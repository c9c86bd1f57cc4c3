# Vendored from bitmapist (github.com/Doist/bitmapist): test/test_period_start_end.py, its
# newest version (a time zone-aware `dt`; see README.md). Copyright 2012 Doist Ltd.
# BSD 3-Clause licence: see LICENSE beside this file.
# Changed for bitstat: the import line only (bitmapist -> bitstat.compat.bitmapist).
from datetime import datetime, timezone

import pytest

from bitstat.compat import bitmapist


@pytest.mark.parametrize(
    "cls",
    [
        bitmapist.HourEvents,
        bitmapist.DayEvents,
        bitmapist.WeekEvents,
        bitmapist.MonthEvents,
        bitmapist.YearEvents,
    ],
)
def test_period_start_end(cls):
    dt = datetime(2014, 1, 1, 8, 30, tzinfo=timezone.utc)
    ev = cls.from_date("foo", dt)
    assert ev.period_start() <= dt <= ev.period_end()
