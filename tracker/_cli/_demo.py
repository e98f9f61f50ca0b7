"""`tracker demo`: a short simulated training of a few runs, then where to find them."""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
from typing import Any

import tracker

__all__ = ["add_parser"]

_LEARNING_RATES = (0.1, 0.03, 0.01)


def add_parser(commands: Any) -> None:
    """Register the ``demo`` command."""
    parser = commands.add_parser(
        "demo",
        help="run a short simulated training and show the result",
        description="Log a short simulated training of a few runs and print a summary.",
    )
    parser.add_argument("--dir", help="where run directories go (default: a new temp dir)")
    parser.add_argument("--steps", type=int, default=2000, help="steps per run (default 2000)")
    parser.set_defaults(handler=run_demo)


def run_demo(arguments: argparse.Namespace) -> int:
    """Simulate the training, print one summary line per run."""
    if arguments.steps < 1:
        raise tracker.UsageError(f"--steps {arguments.steps}: give a number of steps >= 1")
    root = arguments.dir or tempfile.mkdtemp(prefix="tracker-demo-")
    print(f"tracker demo: {len(_LEARNING_RATES)} runs x {arguments.steps} steps into {root}")
    results = []
    for index, lr in enumerate(_LEARNING_RATES):
        run = tracker.init(
            project="demo",
            dir=root,
            mode="offline",
            config={"lr": lr, "batch_size": 64, "optimizer": "adam"},
            tags=["demo"],
            group="lr-sweep",
            job_type="train",
            settings={"silent": True},
        )
        run.define_metric("val/loss", summary="min")
        _train(run, lr, arguments.steps, seed=index)
        run.finish(quiet=True)
        results.append(run)
    print()
    print(f"{'run':<24} {'lr':>6} {'loss':>8} {'acc':>6} {'best val':>9} {'rows':>7} {'state':>9}")
    for run in results:
        stored = tracker.read_run(run.dir)
        summary = stored.summary
        rows = len(stored.history())
        print(
            f"{run.name:<24} {stored.config['lr']:>6} {summary['train/loss']:>8.4f} "
            f"{summary['train/acc']:>6.3f} {summary['val/loss']['min']:>9.4f} {rows:>7} "
            f"{stored.state:>9}"
        )
    print()
    print(f"Run directories: {root}")
    print("Read one back in Python:  tracker.read_run(PATH).history()")
    sys.stdout.flush()
    return 0


def _train(run: tracker.Run, lr: float, steps: int, seed: int) -> None:
    noise = random.Random(seed)
    for step in range(steps):
        progress = 1 - math.exp(-lr * step / 20)
        loss = 2.3 * (1 - progress) + 0.05 + noise.gauss(0, 0.02)
        run.log({"train/loss": loss, "train/acc": min(1.0, 0.1 + 0.85 * progress), "lr": lr})
        if step % 100 == 99:
            run.log({"val/loss": loss + 0.05 + noise.gauss(0, 0.01), "epoch": step // 100})
