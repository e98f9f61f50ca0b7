"""`TrackerCallback`: a transformers ``TrainerCallback`` that logs to a tracker run.

It does what transformers' ``WandbCallback`` does with W&B: in the main process
(``state.is_world_process_zero``) it starts a run (or uses the current one), puts the
training arguments and the model's config in the run's config, and logs each of the
Trainer's logs as a row with its keys renamed W&B's way (``eval_loss`` becomes
``eval/loss``, ``loss`` becomes ``train/loss``) and ``train/global_step``, against which
every key is plotted (``define_metric``); end-of-training totals go to the summary.

    from tracker.integrations.transformers import TrackerCallback
    trainer = Trainer(..., args=TrainingArguments(..., report_to="none"),
                      callbacks=[TrackerCallback()])

Imports ``transformers``.
"""

from __future__ import annotations

import os
from typing import Any, Final

from transformers import TrainerCallback

import tracker
from tracker._run import Run
from tracker.integrations._common import loggable_config

__all__ = ["TrackerCallback", "rewrite_logs"]

STEP_KEY: Final = "train/global_step"
_SUMMARY_ONLY: Final = frozenset(
    {
        "train_runtime",
        "train_samples_per_second",
        "train_steps_per_second",
        "train_loss",
        "total_flos",
    }
)
"""The Trainer's end-of-training totals: summary values, not history (as W&B keeps them)."""
_PREFIXES: Final = (("eval_", "eval/"), ("test_", "test/"))


def rewrite_logs(logs: dict[str, Any]) -> dict[str, Any]:
    """The Trainer's log keys as W&B's callback names them: ``eval_x`` → ``eval/x``,
    ``test_x`` → ``test/x``, anything else ``x`` → ``train/x``."""
    renamed = {}
    for key, value in logs.items():
        for prefix, section in _PREFIXES:
            if key.startswith(prefix):
                renamed[section + key[len(prefix) :]] = value
                break
        else:
            renamed["train/" + key] = value
    return renamed


class TrackerCallback(TrainerCallback):
    """Log a transformers ``Trainer`` to a tracker run.

    Args:
        init_kwargs: what `tracker.init` takes, for the run this callback starts (default
            project: ``$WANDB_PROJECT``, else ``"huggingface"``; name: the arguments'
            ``run_name``).
    """

    def __init__(self, **init_kwargs: Any) -> None:
        self._init = init_kwargs
        self._run: Run | None = None

    def setup(self, args: Any, state: Any, model: Any = None) -> None:
        """Start (or take) the run and put the arguments and model config in its config."""
        if not state.is_world_process_zero or self._run is not None:
            return
        run = tracker.run
        if run is None:
            kwargs = {
                "project": os.environ.get("WANDB_PROJECT") or "huggingface",
                "name": getattr(args, "run_name", None),
                **self._init,
            }
            run = tracker.init(**kwargs)
        self._run = run
        config = dict(args.to_dict())
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            config = {**model_config.to_dict(), **config}
        run.config.update(loggable_config(config), allow_val_change=True)
        run.define_metric(STEP_KEY)
        run.define_metric("*", step_metric=STEP_KEY, step_sync=True)

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        """Set up the run as training starts."""
        self.setup(args, state, model)

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Log the Trainer's logs as one row (totals of the training to the summary)."""
        if not state.is_world_process_zero:
            return
        self.setup(args, state, model)
        if self._run is None:
            return
        logs = dict(logs or {})
        for key in _SUMMARY_ONLY & logs.keys():
            self._run.summary[key] = logs.pop(key)
        if logs:
            self._run.log({**rewrite_logs(logs), STEP_KEY: state.global_step})
