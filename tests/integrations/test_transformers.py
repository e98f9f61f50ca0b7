"""tracker.integrations.transformers.TrackerCallback with a real transformers Trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tracker

torch = pytest.importorskip("torch", reason='pip install -e ".[integrations]" (torch)')
transformers = pytest.importorskip(
    "transformers", reason='pip install -e ".[integrations]" (transformers)'
)

from tracker.integrations.transformers import TrackerCallback, rewrite_logs  # noqa: E402


class Pairs(torch.utils.data.Dataset):  # type: ignore[misc]
    """Eight two-token sequences with a label each."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "input_ids": torch.tensor([index % 5 + 1, 2]),
            "attention_mask": torch.ones(2, dtype=torch.long),
            "labels": torch.tensor(index % 2),
        }


def _trainer(tmp_path: Path, callback: TrackerCallback) -> Any:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=8,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        max_position_embeddings=4,
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=4,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        run_name="tiny-bert",
        disable_tqdm=True,
    )
    return transformers.Trainer(
        model=transformers.BertForSequenceClassification(config),
        args=args,
        train_dataset=Pairs(),
        eval_dataset=Pairs(),
        callbacks=[callback],
    )


def test_a_trainer_logs_with_wandbs_keys_config_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The callback starts a run named after run_name, puts the training arguments and the
    model config in its config, logs train/* and eval/* rows with train/global_step (the
    x-axis of every key), and the end-of-training totals go to the summary only."""
    monkeypatch.chdir(tmp_path)
    callback = TrackerCallback(dir=tmp_path, settings={"silent": True})
    _trainer(tmp_path, callback).train()
    run = tracker.run
    assert run is not None
    assert (run.name, run.project) == ("tiny-bert", "huggingface")
    run.finish()
    stored = tracker.read_run(run.dir)
    assert stored.config["max_steps"] == 4
    assert stored.config["hidden_size"] == 8
    rows = stored.history()
    train = [row for row in rows if "train/loss" in row]
    assert [row["train/global_step"] for row in train] == [1, 2, 3, 4]
    evals = [row for row in rows if "eval/loss" in row]
    assert [row["train/global_step"] for row in evals] == [2, 4]
    assert "train_runtime" in stored.summary
    assert not any("train/train_runtime" in row for row in rows)
    rules = {rule.name: rule.step_metric for rule in stored.metric_rules}
    assert rules == {"train/global_step": None, "*": "train/global_step"}


def test_rewrite_logs_names_keys_as_wandb_does() -> None:
    """eval_x -> eval/x, test_x -> test/x, anything else -> train/x."""
    assert rewrite_logs({"eval_loss": 1, "test_acc": 2, "loss": 3, "learning_rate": 4}) == {
        "eval/loss": 1,
        "test/acc": 2,
        "train/loss": 3,
        "train/learning_rate": 4,
    }
