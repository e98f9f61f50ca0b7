"""`TrackerLogger`: a Lightning ``Logger`` that logs to a tracker run.

It does what Lightning's ``WandbLogger`` does with W&B: the run starts on first use in
the rank-zero process (or the current run is used), hyperparameters go to its config,
metrics are logged with ``trainer/global_step`` (every key plotted against it through
``define_metric``), and checkpoints are stored with the run when ``log_model`` asks.

    from tracker.integrations.lightning import TrackerLogger
    trainer = lightning.Trainer(logger=TrackerLogger(project="mnist"))

Imports ``lightning`` (or the older ``pytorch_lightning``).
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tracker
from tracker._errors import UsageError
from tracker._run import Run
from tracker.integrations._common import loggable_config

try:
    from lightning.fabric.utilities.logger import _add_prefix, _convert_params, _flatten_dict
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the package before Lightning 2.0's rename
    from lightning_fabric.utilities.logger import _add_prefix, _convert_params, _flatten_dict
    from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
    from pytorch_lightning.utilities import rank_zero_only

__all__ = ["TrackerLogger"]

STEP_KEY = "trainer/global_step"


class TrackerLogger(Logger):
    """Log a Lightning training to a tracker run.

    Args:
        name: the run's display name.
        save_dir: where the run directories go (``init(dir=...)``), default ``"."``.
        version: the run id (to resume one, with ``resume="allow"`` in ``init_kwargs``).
        offline: log offline even when a server is configured.
        dir: the same as ``save_dir`` (W&B's name); wins when both are given.
        id: the same as ``version``.
        project: the project.
        log_model: ``True`` stores the checkpoints at the end of training, ``"all"`` as
            they are saved, ``False`` (default) none.
        experiment: a run to log to instead of starting one.
        prefix: put before every metric key (with ``-``), as Lightning's loggers do.
        init_kwargs: anything else `tracker.init` takes (``config``, ``tags``, ...).

    Raises:
        UsageError: ``log_model`` is not True, False or ``"all"``.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike[str] = ".",
        version: str | None = None,
        offline: bool = False,
        dir: str | os.PathLike[str] | None = None,
        id: str | None = None,
        project: str | None = None,
        log_model: bool | str = False,
        experiment: Run | None = None,
        prefix: str = "",
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        if log_model not in (True, False, "all"):
            raise UsageError(f"TrackerLogger(log_model={log_model!r}): use True, False or 'all'")
        self._save_dir = os.fspath(dir if dir is not None else save_dir)
        self._init = {
            "name": name,
            "project": project,
            "id": id or version,
            "dir": self._save_dir,
            "mode": "offline" if offline else None,
            **init_kwargs,
        }
        self._log_model = log_model
        self._prefix = prefix
        self._experiment = experiment
        self._checkpoints: set[str] = set()
        self._checkpoint_callback: Any = None

    @property
    @rank_zero_experiment
    def experiment(self) -> Run:
        """The run (started on first use in the rank-zero process; the current run if
        there is one)."""
        if self._experiment is None:
            current = tracker.run
            self._experiment = current if current is not None else tracker.init(**self._init)
            self._experiment.define_metric(STEP_KEY)
            self._experiment.define_metric("*", step_metric=STEP_KEY, step_sync=True)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace) -> None:
        """Put the hyperparameters in the run's config (nested ones flattened with ``/``)."""
        flat = _flatten_dict(_convert_params(params), delimiter="/")
        self.experiment.config.update(loggable_config(flat), allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log one row: the metrics, with the trainer's step as ``trainer/global_step``."""
        row = dict(_add_prefix(dict(metrics), self._prefix, self.LOGGER_JOIN_CHAR))
        if step is not None:
            row[STEP_KEY] = step
        self.experiment.log(row)

    @property
    def name(self) -> str | None:
        """The run's project."""
        return self._experiment.project if self._experiment else self._init["project"]

    @property
    def version(self) -> str | None:
        """The run's id."""
        return self._experiment.id if self._experiment else self._init["id"]

    @property
    def save_dir(self) -> str:
        """Where the run directories go."""
        return self._save_dir

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Store the checkpoint now (``log_model="all"``) or remember it for the end."""
        if self._log_model == "all":
            self._store_checkpoints(checkpoint_callback)
        elif self._log_model:
            self._checkpoint_callback = checkpoint_callback

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Store the remembered checkpoints (``log_model=True``); the run stays open, as
        with W&B (finish it with `tracker.finish`, or at exit)."""
        if self._checkpoint_callback is not None and self._experiment is not None:
            self._store_checkpoints(self._checkpoint_callback)

    def _store_checkpoints(self, callback: Any) -> None:
        paths = [getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", "")]
        paths += list(getattr(callback, "best_k_models", {}) or {})
        for path in paths:
            if path and Path(path).is_file() and path not in self._checkpoints:
                self._checkpoints.add(path)
                self.experiment._store_file(Path(path), f"checkpoints/{Path(path).name}", "now")
