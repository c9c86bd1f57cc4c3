"""JSON answers that can always be sent.

An answer may echo text a client sent (a message id, a target's name), and JSON text may hold
a lone surrogate (`"\\ud800"`), which has no UTF-8 form: Starlette's JSONResponse then fails
while rendering, after the work is done, with a 500. Such an answer is sent with every
non-ASCII character escaped instead, which JSON allows and gives the client back its own text.
"""

from __future__ import annotations

import json
from typing import Any

from starlette import responses


class JSONResponse(responses.JSONResponse):
    """Starlette's JSONResponse, escaping what has no UTF-8 form."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
            return text.encode("ascii")
