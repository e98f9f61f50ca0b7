"""run.watch(model): histograms of a real torch model's gradients and parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import tracker

torch = pytest.importorskip("torch", reason='pip install -e ".[integrations]" (torch)')

Start = Callable[..., tracker.Run]


def _train(model: Any, run: tracker.Run, steps: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(8, 3), torch.randn(8, 1)
    for step in range(steps):
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.log({"loss": loss.item(), "step": step})


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))


def test_watch_logs_gradient_and_parameter_histograms_every_log_freq_steps(
    offline: Start,
) -> None:
    """log="all", log_freq=2: every second step's row holds a 64-bin histogram of each
    parameter and of its gradient, next to the loss the loop logged."""
    run = offline()
    model = _model()
    tracker.watch(model, log="all", log_freq=2)
    _train(model, run, 4)
    run.finish()
    rows = tracker.read_run(run.dir).history()
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    for row in rows:
        histograms = {key for key in row if key.startswith(("gradients/", "parameters/"))}
        if row["step"] % 2 == 1:
            assert histograms == {
                f"{kind}/{name}" for kind in ("gradients", "parameters") for name in names
            }
        else:
            assert histograms == set()
    weight = rows[1]["parameters/0.weight"]
    assert weight["_type"] == "histogram"
    assert len(weight["values"]) == 64
    assert sum(weight["values"]) == 12  # a 4 x 3 weight
    assert len(weight["bins"]) == 65
    assert sum(rows[1]["gradients/2.bias"]["values"]) == 1


def test_unwatch_and_finish_remove_the_hooks(offline: Start) -> None:
    """After unwatch() (and after finish) training logs no histograms and raises nothing."""
    run = offline()
    model = _model()
    run.watch(model, log="gradients", log_freq=1)
    _train(model, run, 1)
    run.unwatch(model)
    _train(model, run, 1)
    run.watch(model, log="parameters", log_freq=1)
    run.finish()
    model(torch.randn(2, 3)).sum().backward()  # hooks gone: nothing logs to the finished run
    rows = tracker.read_run(run.dir).history()
    assert any(key.startswith("gradients/") for key in rows[0])
    assert not any(key.startswith(("gradients/", "parameters/")) for key in rows[1])


def test_watch_refuses_what_is_not_a_module_and_bad_arguments(offline: Start) -> None:
    """watch() of a non-module, a bad log or log_freq are UsageErrors; log_graph=True warns."""
    run = offline()
    with pytest.raises(tracker.UsageError, match=r"torch\.nn\.Module"):
        run.watch(object())
    with pytest.raises(tracker.UsageError, match="'gradients', 'parameters', 'all'"):
        run.watch(_model(), log="weights")
    with pytest.raises(tracker.UsageError, match="log_freq"):
        run.watch(_model(), log_freq=0)
    with pytest.warns(UserWarning, match="graphs are not drawn"):
        run.watch(_model(), log_graph=True)
