"""The module-level twins of `Run` methods that act on the current run, as W&B's do:
`tracker.define_metric`, `save`, `watch`, `unwatch` and `log_code` (`tracker.log` and
`tracker.finish` live with `init` in `tracker._init`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tracker import _process
from tracker._errors import UsageError
from tracker._records.summary import MetricRule
from tracker._run import Run

__all__ = ["define_metric", "log_code", "save", "unwatch", "watch"]


def _current(what: str) -> Run:
    run = _process.current()
    if run is None:
        raise UsageError(f"tracker.{what}(): no active run; call tracker.init() first")
    return run


def define_metric(
    name: str,
    step_metric: str | None = None,
    summary: str | None = None,
    goal: str | None = None,
    hidden: bool | None = False,
    *,
    step_sync: bool | None = None,
    overwrite: bool | None = None,
) -> MetricRule:
    """`Run.define_metric()` on the current run.

    Raises:
        UsageError: there is no current run, or a bad argument.
    """
    return _current("define_metric").define_metric(
        name,
        step_metric=step_metric,
        summary=summary,
        goal=goal,
        hidden=hidden,
        step_sync=step_sync,
        overwrite=overwrite,
    )


def save(
    glob_str: str | os.PathLike[str],
    base_path: str | os.PathLike[str] | None = None,
    policy: str = "live",
) -> list[str]:
    """`Run.save()` on the current run.

    Raises:
        UsageError: there is no current run, or nothing matches.
    """
    return _current("save").save(glob_str, base_path=base_path, policy=policy)


def watch(
    models: Any,
    criterion: Any = None,
    log: str | None = "gradients",
    log_freq: int = 1000,
    idx: int | None = None,
    log_graph: bool = False,
) -> None:
    """`Run.watch()` on the current run.

    Raises:
        UsageError: there is no current run, or a model is not a torch module.
    """
    _current("watch").watch(models, criterion, log, log_freq, idx, log_graph)


def unwatch(models: Any = None) -> None:
    """`Run.unwatch()` on the current run; does nothing when there is none."""
    run = _process.current()
    if run is not None:
        run.unwatch(models)


def log_code(
    root: str | os.PathLike[str] | None = ".",
    name: str | None = None,
    include_fn: Callable[..., bool] | None = None,
    exclude_fn: Callable[..., bool] | None = None,
) -> list[str]:
    """`Run.log_code()` on the current run.

    Raises:
        UsageError: there is no current run, or ``root`` is not a folder.
    """
    return _current("log_code").log_code(root, name, include_fn, exclude_fn)
