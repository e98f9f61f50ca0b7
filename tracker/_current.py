"""The module-level twins of `Run` methods that act on the current run, as W&B's do:
`tracker.define_metric`, `save`, `watch`, `unwatch` and `log_code` (`tracker.log` and
`tracker.finish` live with `init` in `tracker._init`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from tracker import _process
from tracker._errors import UsageError
from tracker._run import Run

__all__ = ["define_metric", "log_code", "save", "unwatch", "watch"]

P = ParamSpec("P")
T = TypeVar("T")


def _on_the_current_run(
    method: Callable[Concatenate[Run, P], T], *, without_run: Any = UsageError
) -> Callable[P, T]:
    """``method`` called on `tracker.run`, with the method's signature (less ``self``) and
    its name; with no current run it raises `UsageError`, or returns ``without_run``."""
    name = method.__name__

    @functools.wraps(method)
    def on_current_run(*args: P.args, **kwargs: P.kwargs) -> T:
        run = _process.current()
        if run is None:
            if without_run is UsageError:
                raise UsageError(f"tracker.{name}(): no active run; call tracker.init() first")
            return without_run  # type: ignore[no-any-return]
        bound: Callable[P, T] = getattr(run, name)  # a DisabledRun's own, for one
        return bound(*args, **kwargs)

    signature = inspect.signature(method)
    on_current_run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    on_current_run.__doc__ = (
        f"`Run.{name}()` on the current run (`tracker.run`)"
        + (": UsageError when there is none." if without_run is UsageError else "; none: nothing.")
        + f"\n\n{inspect.getdoc(method) or ''}"
    )
    del on_current_run.__wrapped__  # help() shows the signature above, without ``self``
    return on_current_run


define_metric = _on_the_current_run(Run.define_metric)
save = _on_the_current_run(Run.save)
watch = _on_the_current_run(Run.watch)
unwatch = _on_the_current_run(Run.unwatch, without_run=None)
log_code = _on_the_current_run(Run.log_code)
