"""One parameter list for functions that must take the same arguments.

`@takes_arguments_of(Model)` turns `def f(arguments: Model) -> R` into a function with the
parameters of `Model` (typically a dataclass whose fields are the parameters) that calls
`f(Model(*args, **kwargs))`. The parameters are written once, in `Model`, and mypy, IDEs and
`inspect.signature` see them on every function made so: `bitstat.connect` and
`bitstat.aio.connect`; bitmapist's `mark_event` and `unmark_event`, `render_csv_data` and
`render_html_data`.

Pure: no I/O.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import update_wrapper
from typing import Any, ParamSpec, TypeVar, cast

P = ParamSpec("P")
A = TypeVar("A")
R = TypeVar("R")


def takes_arguments_of(model: Callable[P, A]) -> Callable[[Callable[[A], R]], Callable[P, R]]:
    """Give `f(arguments)` the parameters of `model` (see the module's docstring).

    The function made keeps f's name and docstring and is async when f is: then a call with
    wrong arguments raises its TypeError (naming `model`) when awaited, not when made."""
    signature = inspect.signature(model)

    def decorate(f: Callable[[A], R]) -> Callable[P, R]:
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return f(model(*args, **kwargs))

        async def call_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await cast(Awaitable[Any], f(model(*args, **kwargs)))

        made: Any = call_async if inspect.iscoroutinefunction(f) else call
        update_wrapper(made, f)
        returns = inspect.signature(f).return_annotation
        made.__signature__ = signature.replace(return_annotation=returns)
        made.__annotations__ = {  # evaluated: names of model's module may be missing in f's
            name: p.annotation
            for name, p in inspect.signature(model, eval_str=True).parameters.items()
            if p.annotation is not p.empty
        }
        made.__annotations__["return"] = inspect.signature(f, eval_str=True).return_annotation
        return cast(Callable[P, R], made)

    return decorate
