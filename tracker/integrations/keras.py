"""`TrackerCallback`: a Keras callback that logs to a tracker run, as W&B's
``WandbMetricsLogger`` does.

Each epoch's logs are a row of ``epoch/<metric>`` with ``epoch/epoch`` (and
``epoch/learning_rate``); with ``log_freq="batch"`` or an int, every N-th batch's logs
are a row of ``batch/<metric>`` with ``batch/batch_step`` too. ``define_metric`` plots
``epoch/*`` against ``epoch/epoch`` and ``batch/*`` against ``batch/batch_step``. Only
the rank-zero process of a distributed job logs.

    import tracker
    from tracker.integrations.keras import TrackerCallback
    tracker.init(project="mnist")
    model.fit(x, y, epochs=5, callbacks=[TrackerCallback()])

Imports ``keras``.
"""

from __future__ import annotations

from typing import Any

import keras

import tracker
from tracker._errors import UsageError
from tracker._run import Run
from tracker.integrations._common import rank_zero

__all__ = ["TrackerCallback"]


class TrackerCallback(keras.callbacks.Callback):
    """Log a Keras ``fit`` to the current tracker run.

    Args:
        log_freq: ``"epoch"`` (default): a row per epoch; ``"batch"`` or N: also a row
            every N batches.
        initial_global_step: the first ``batch/batch_step`` (to continue a resumed run).

    Raises:
        UsageError: no run was started (call `tracker.init` first), or a bad ``log_freq``.
    """

    def __init__(self, log_freq: str | int = "epoch", initial_global_step: int = 0) -> None:
        super().__init__()
        run = tracker.run
        if run is None:
            raise UsageError(
                "TrackerCallback(): no active run; call tracker.init() before making the callback"
            )
        if log_freq == "batch":
            log_freq = 1
        if log_freq != "epoch" and (
            isinstance(log_freq, bool) or not isinstance(log_freq, int) or log_freq < 1
        ):
            raise UsageError(
                f"TrackerCallback(log_freq={log_freq!r}): use 'epoch', 'batch' or an int >= 1"
            )
        self._run: Run | None = run if rank_zero() else None
        self._every = log_freq if isinstance(log_freq, int) else None
        self._batch_step = initial_global_step
        if self._run is not None:
            self._run.define_metric("epoch/epoch")
            self._run.define_metric("epoch/*", step_metric="epoch/epoch")
            if self._every is not None:
                self._run.define_metric("batch/batch_step")
                self._run.define_metric("batch/*", step_metric="batch/batch_step")

    def _learning_rate(self) -> float | None:
        optimizer = getattr(getattr(self, "model", None), "optimizer", None)
        rate = getattr(optimizer, "learning_rate", None)
        try:  # a backend Variable: its value is the backend's tensor (float() reads it)
            return None if rate is None else float(getattr(rate, "value", rate))
        except (TypeError, ValueError):
            return None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Log the epoch's metrics as ``epoch/...``."""
        if self._run is None:
            return
        row = {f"epoch/{key}": value for key, value in (logs or {}).items()}
        row["epoch/epoch"] = epoch
        rate = self._learning_rate()
        if rate is not None:
            row["epoch/learning_rate"] = rate
        self._run.log(row)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Log every N-th batch's metrics as ``batch/...`` (with ``log_freq`` an int)."""
        if self._run is None or self._every is None or batch % self._every:
            return
        row = {f"batch/{key}": value for key, value in (logs or {}).items()}
        row["batch/batch_step"] = self._batch_step
        rate = self._learning_rate()
        if rate is not None:
            row["batch/learning_rate"] = rate
        self._run.log(row)
        self._batch_step += self._every
