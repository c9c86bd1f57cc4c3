"""Drop-in replacements for the APIs of other analytics libraries, on bitstat's machinery.

`bitstat.compat.bitmapist` stands in for bitmapist 3.x: same names, behaviour and Redis keys.
"""

from __future__ import annotations
