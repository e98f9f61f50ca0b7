"""tracker.Api as W&B's export scripts use it: runs iterated with config, summary
(``_json_dict``), history as a DataFrame, scan_history; read_run answers alike."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracker
from tracker._server._runner import EmbeddedServer


def _runs(server: EmbeddedServer, tmp_path: Path) -> list[tracker.Run]:
    settings = {"silent": True, "base_url": server.url}
    runs = []
    for lr in (0.1, 0.2):
        run = tracker.init(project="export", dir=tmp_path, config={"lr": lr}, settings=settings)
        run.define_metric("loss", summary="min")
        for step in range(5):
            run.log({"loss": lr * (5 - step), "acc": step / 5})
        run.finish()
        runs.append(run)
    return runs


def test_wandbs_export_recipe_runs_unchanged(server: EmbeddedServer, tmp_path: Path) -> None:
    """The recipe of W&B's docs (summary._json_dict, config items, name, into a DataFrame)
    works on Api().runs(), and summary behaves as a dict."""
    pandas = pytest.importorskip("pandas")
    _runs(server, tmp_path)
    runs = tracker.Api(server.url).runs("local/export")
    summary_list, config_list, name_list = [], [], []
    for run in runs:
        summary_list.append(run.summary._json_dict)
        config_list.append({k: v for k, v in run.config.items() if not k.startswith("_")})
        name_list.append(run.name)
    frame = pandas.DataFrame({"summary": summary_list, "config": config_list, "name": name_list})
    assert sorted(config["lr"] for config in frame["config"]) == [0.1, 0.2]
    assert sorted(summary["loss"]["min"] for summary in frame["summary"]) == [
        pytest.approx(0.1),
        pytest.approx(0.2),
    ]
    first = runs[0]
    assert first.summary["acc"] == 0.8
    assert first.summary.get("missing") is None
    assert set(first.summary.keys()) == {"loss", "acc"}


def test_history_as_a_dataframe_and_scan_history_of_every_row(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    """history(pandas=True) is a DataFrame of the rows; scan_history yields every row (with
    keys and a step range) alike from the server and from read_run."""
    pytest.importorskip("pandas")
    local = _runs(server, tmp_path)[0]
    remote = tracker.Api(server.url).run(local.path)
    frame = remote.history(pandas=True)
    assert list(frame["loss"]) == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1])
    scanned = list(remote.scan_history(keys=["acc"], min_step=1, max_step=3))
    assert scanned == [{"_step": 1, "acc": 0.2}, {"_step": 2, "acc": 0.4}, {"_step": 3, "acc": 0.6}]
    stored = tracker.read_run(local.dir)
    assert list(stored.scan_history()) == list(remote.scan_history()) == remote.history()
    assert stored.summary == remote.summary._json_dict
