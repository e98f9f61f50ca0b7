"""`run.watch(model)`: histograms of a torch model's gradients and parameters, as W&B's.

Gradients are caught by a hook on each parameter (called as backward computes it),
parameters by a forward hook on the model; every ``log_freq``-th call logs the
histograms (64 bins) under ``gradients/NAME`` and ``parameters/NAME`` with
``commit=False``, so they join the row the training loop logs next. torch is never
imported here until a model is watched.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from tracker._errors import UsageError
from tracker._lifecycle import Lifecycle
from tracker._media import Histogram

if TYPE_CHECKING:
    from tracker._run import Run

__all__ = ["Watches"]

_LOG_CHOICES: Final = ("gradients", "parameters", "all", None)
_BINS: Final = 64


@dataclass
class _Watched:
    """One watched model and the hooks that watch it."""

    model: Any
    handles: list[Any] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)


class Watches:
    """The models one run watches."""

    def __init__(self, run: Run) -> None:
        """Watch for ``run``; its `finish()` removes every hook."""
        self._run = run
        self._watched: list[_Watched] = []
        run._before_finish.append(self.unwatch)

    def watch(
        self, models: Any, log: str | None, log_freq: int, idx: int | None, log_graph: bool
    ) -> None:
        """Hook ``models`` (a torch module or a list of them); see `tracker.Run.watch`."""
        if log not in _LOG_CHOICES:
            raise UsageError(f"watch(log={log!r}): use 'gradients', 'parameters', 'all' or None")
        if isinstance(log_freq, bool) or not isinstance(log_freq, int) or log_freq < 1:
            raise UsageError(f"watch(log_freq={log_freq!r}): log every N calls, N an int >= 1")
        if log_graph:
            warnings.warn(
                "tracker: watch(log_graph=True): model graphs are not drawn here; the "
                "histograms are logged as asked",
                UserWarning,
                stacklevel=3,
            )
        listed = list(models) if isinstance(models, (list, tuple)) else [models]
        for model in listed:
            if not callable(getattr(model, "named_parameters", None)) or not callable(
                getattr(model, "register_forward_hook", None)
            ):
                raise UsageError(
                    f"watch() takes torch.nn.Module objects, not {type(model).__qualname__}"
                )
        first = len(self._watched) if idx is None else idx
        for offset, model in enumerate(listed):
            number = first + offset
            prefix = "" if number == 0 else f"graph_{number}/"
            watched = _Watched(model)
            if log in ("parameters", "all"):
                hook = functools.partial(self._on_forward, watched, prefix, log_freq)
                watched.handles.append(model.register_forward_hook(hook))
            if log in ("gradients", "all"):
                for name, parameter in model.named_parameters():
                    if parameter.requires_grad:
                        key = f"gradients/{prefix}{name}"
                        on_grad = functools.partial(self._on_gradient, watched, key, log_freq)
                        watched.handles.append(parameter.register_hook(on_grad))
            self._watched.append(watched)

    def unwatch(self, models: Any = None) -> None:
        """Remove the hooks of ``models`` (a module or a list of them), or of every model."""
        if models is None:
            chosen = list(self._watched)
        else:
            listed = list(models) if isinstance(models, (list, tuple)) else [models]
            chosen = [w for w in self._watched if any(w.model is m for m in listed)]
        for watched in chosen:
            for handle in watched.handles:
                handle.remove()
            self._watched.remove(watched)

    def _due(self, watched: _Watched, key: str, log_freq: int) -> bool:
        """Whether this call is the ``log_freq``-th since the last log of ``key``."""
        count = watched.calls.get(key, 0) + 1
        watched.calls[key] = 0 if count >= log_freq else count
        return count >= log_freq and self._run._lifecycle is Lifecycle.LIVE

    def _on_forward(
        self, watched: _Watched, prefix: str, log_freq: int, module: Any, *_: Any
    ) -> None:
        if not self._due(watched, "parameters", log_freq):
            return
        row = {}
        for name, parameter in module.named_parameters():
            histogram = tensor_histogram(parameter)
            if histogram is not None:
                row[f"parameters/{prefix}{name}"] = histogram
        if row:
            self._run.log(row, commit=False)

    def _on_gradient(self, watched: _Watched, key: str, log_freq: int, gradient: Any) -> None:
        if self._due(watched, key, log_freq):
            histogram = tensor_histogram(gradient)
            if histogram is not None:
                self._run.log({key: histogram}, commit=False)


def tensor_histogram(tensor: Any, bins: int = _BINS) -> Histogram | None:
    """A `Histogram` of a tensor's finite values in ``bins`` equal bins (None if it has
    none), computed by torch where the tensor lives."""
    import torch

    values = tensor.detach().reshape(-1).float()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return None
    low, high = values.min().item(), values.max().item()
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts = torch.histc(values, bins=bins, min=low, max=high)
    edges = torch.linspace(low, high, bins + 1)
    return Histogram(np_histogram=(counts.long().tolist(), edges.tolist()))
