"""tracker.integrations.lightning.TrackerLogger with a real Lightning Trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tracker

torch = pytest.importorskip("torch", reason='pip install -e ".[integrations]" (torch)')
lightning = pytest.importorskip("lightning", reason='pip install -e ".[integrations]" (lightning)')

from tracker.integrations.lightning import TrackerLogger  # noqa: E402

Start = Callable[..., tracker.Run]

pytestmark = [
    # Lightning 2.6 on torch 2.13 (their warnings, not tracker's)
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
]


class Tiny(lightning.LightningModule):  # type: ignore[misc]
    """A linear regression: four batches an epoch, a validation loss each epoch."""

    def __init__(self, lr: float = 0.1, layers: dict[str, int] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, index: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: Any, index: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _data() -> Any:
    torch.manual_seed(0)
    x = torch.randn(16, 2)
    dataset = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    return torch.utils.data.DataLoader(dataset, batch_size=4)


def _fit(logger: TrackerLogger, tmp_path: Path, **trainer: Any) -> None:
    options = {
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": str(tmp_path),
        **trainer,
    }
    lightning.Trainer(logger=logger, **options).fit(Tiny(layers={"hidden": 4}), _data(), _data())


def test_a_trainer_logs_hyperparameters_and_metrics_against_the_trainer_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logger starts the run (project, name, dir), puts save_hyperparameters() in its
    config, and logs each metric with trainer/global_step, the x-axis of every key."""
    monkeypatch.chdir(tmp_path)
    logger = TrackerLogger(project="lit", name="tiny", save_dir=tmp_path, settings={"silent": True})
    _fit(logger, tmp_path)
    run = logger.experiment
    assert (run.project, run.name, logger.version) == ("lit", "tiny", run.id)
    tracker.finish()
    stored = tracker.read_run(run.dir)
    assert stored.config == {"lr": 0.1, "layers/hidden": 4}
    rows = stored.history()
    train = [row for row in rows if "train_loss" in row]
    assert [row["trainer/global_step"] for row in train] == list(range(8))
    val = [row for row in rows if "val_loss" in row]
    assert [row["trainer/global_step"] for row in val] == [3, 7]
    assert all("epoch" in row for row in val)
    rules = {rule.name: rule.step_metric for rule in stored.metric_rules}
    assert rules == {"trainer/global_step": None, "*": "trainer/global_step"}


def test_the_current_run_is_used_and_checkpoints_are_stored(offline: Start, tmp_path: Path) -> None:
    """With a run already started, the logger logs to it; log_model=True stores the
    checkpoints of the ModelCheckpoint callback as run files at the end."""
    run = offline()
    logger = TrackerLogger(log_model=True, prefix="fit")
    _fit(logger, tmp_path, enable_checkpointing=True, max_epochs=1)
    assert logger.experiment is run
    run.finish()
    stored = tracker.read_run(run.dir)
    assert any("fit-train_loss" in row for row in stored.history())
    assert [f.name for f in stored.files() if f.name.startswith("checkpoints/")] == [
        "checkpoints/epoch=0-step=4.ckpt"
    ]


def test_a_bad_log_model_is_a_usage_error() -> None:
    """log_model takes True, False or 'all'."""
    with pytest.raises(tracker.UsageError, match="log_model"):
        TrackerLogger(log_model="best")
