"""tracker.integrations.keras.TrackerCallback with a real Keras 3 fit (torch backend)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

import tracker

os.environ.setdefault("KERAS_BACKEND", "torch")  # read when keras is first imported
pytest.importorskip("torch", reason='pip install -e ".[integrations]" (torch)')
keras = pytest.importorskip("keras", reason='pip install -e ".[integrations]" (keras)')

from tracker.integrations.keras import TrackerCallback  # noqa: E402

Start = Callable[..., tracker.Run]


def _fit(callback: TrackerCallback, epochs: int = 2) -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(
        x,
        x.sum(1),
        batch_size=4,
        epochs=epochs,
        verbose=0,
        validation_split=0.25,
        callbacks=[callback],
    )


def test_epochs_are_rows_against_epoch_epoch(offline: Start) -> None:
    """Each epoch is a row of epoch/loss, epoch/val_loss, epoch/learning_rate and
    epoch/epoch; epoch/* plots against epoch/epoch."""
    run = offline()
    _fit(TrackerCallback())
    run.finish()
    stored = tracker.read_run(run.dir)
    rows = stored.history()
    assert [row["epoch/epoch"] for row in rows] == [0, 1]
    assert {"epoch/loss", "epoch/val_loss"} <= rows[0].keys()
    assert rows[0]["epoch/learning_rate"] == pytest.approx(0.05)
    rules = {rule.name: rule.step_metric for rule in stored.metric_rules}
    assert rules == {"epoch/epoch": None, "epoch/*": "epoch/epoch"}


def test_batches_are_rows_every_log_freq_batches(offline: Start) -> None:
    """log_freq=2: every second batch is a row of batch/loss with batch/batch_step."""
    run = offline()
    _fit(TrackerCallback(log_freq=2), epochs=1)
    run.finish()
    rows = tracker.read_run(run.dir).history()
    steps = [row["batch/batch_step"] for row in rows if "batch/loss" in row]
    assert steps == [0, 2]


def test_the_callback_needs_a_run_and_a_good_log_freq(offline: Start) -> None:
    """Made before tracker.init(), or with a bad log_freq, the callback is a UsageError."""
    with pytest.raises(tracker.UsageError, match=r"tracker\.init\(\)"):
        TrackerCallback()
    offline()
    with pytest.raises(tracker.UsageError, match="log_freq"):
        TrackerCallback(log_freq=0)


def test_only_the_rank_zero_process_logs(offline: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a process whose RANK is not 0 the callback logs nothing."""
    run = offline()
    monkeypatch.setenv("RANK", "1")
    _fit(TrackerCallback(log_freq="batch"), epochs=1)
    run.finish()
    assert tracker.read_run(run.dir).history() == []
