"""`tracker demo`: an embedded server, a short simulated training of a few runs streamed to
it, a summary read back from the server, and the URL to look at."""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import tracker

__all__ = ["add_parser"]

_LEARNING_RATES = (0.1, 0.03, 0.01)


def add_parser(commands: Any) -> None:
    """Register the ``demo`` command."""
    parser = commands.add_parser(
        "demo",
        help="start a server, stream a short simulated training to it, show the result",
        description=(
            "Start an embedded tracker server (SQLite), stream a short simulated training of "
            "a few runs to it over a websocket, print a summary and the URL, and keep serving "
            "until Ctrl-C (when run in a terminal)."
        ),
    )
    parser.add_argument("--dir", help="where run directories and the database go (default: temp)")
    parser.add_argument("--steps", type=int, default=2000, help="steps per run (default 2000)")
    parser.add_argument("--port", type=int, default=0, help="the server's port (default: any free)")
    parser.add_argument(
        "--no-serve", action="store_true", help="exit after the summary instead of serving"
    )
    parser.set_defaults(handler=run_demo)


def run_demo(arguments: argparse.Namespace) -> int:
    """Serve, train, summarise; then serve until Ctrl-C unless told not to."""
    from tracker._server._runner import EmbeddedServer

    if arguments.steps < 1:
        raise tracker.UsageError(f"--steps {arguments.steps}: give a number of steps >= 1")
    root = Path(arguments.dir or tempfile.mkdtemp(prefix="tracker-demo-"))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise tracker.UsageError(
            f"--dir {root}: cannot create it ({exc}); pass a writable folder"
        ) from None
    server = EmbeddedServer(f"sqlite:///{root / 'tracker.db'}", port=arguments.port).start()
    try:
        print(f"tracker demo: dashboard at {server.url}/ (database {root / 'tracker.db'})")
        print(f"tracker demo: {len(_LEARNING_RATES)} runs x {arguments.steps} steps, streaming")
        runs = [
            _train(server.url, root, lr, arguments.steps, seed)
            for seed, lr in enumerate(_LEARNING_RATES)
        ]
        _print_summary(server.url, runs)
        print(f"\nOpen {server.url}/ to see the runs.")
        if arguments.no_serve or not sys.stdout.isatty():
            return 0
        print("A live run keeps training so you can watch its curves move; Ctrl-C stops.")
        sys.stdout.flush()
        _train_live(server.url, root)
    except KeyboardInterrupt:
        print()
    finally:
        server.stop()
    return 0


def _train_live(url: str, root: Path) -> None:
    """A run that logs 20 steps a second until Ctrl-C, which finishes it as killed."""
    with _start(url, root, 0.02, "live") as run:
        noise = random.Random(7)
        step = 0
        while True:
            _log_step(run, 0.02, step, noise)
            step += 1
            threading.Event().wait(0.05)


def _train(url: str, root: Path, lr: float, steps: int, seed: int) -> tracker.Run:
    run = _start(url, root, lr, "lr-sweep")
    noise = random.Random(seed)
    for step in range(steps):
        _log_step(run, lr, step, noise)
    run.finish(quiet=True)
    return run


def _start(url: str, root: Path, lr: float, group: str) -> tracker.Run:
    run = tracker.init(
        project="demo",
        dir=root / "runs",
        config={"lr": lr, "batch_size": 64, "optimizer": "adam"},
        tags=["demo"],
        group=group,
        job_type="train",
        reinit="finish_previous",
        settings={"silent": True, "base_url": url},
    )
    run.define_metric("val/loss", summary="min")
    return run


def _log_step(run: tracker.Run, lr: float, step: int, noise: random.Random) -> None:
    """One step of a simulated training: loss falls and accuracy rises at a rate set by lr."""
    progress = 1 - math.exp(-lr * step / 20)
    loss = 2.3 * (1 - progress) + 0.05 + noise.gauss(0, 0.02)
    run.log({"train/loss": loss, "train/acc": min(1.0, 0.1 + 0.85 * progress), "lr": lr})
    if step % 100 == 99:
        run.log({"val/loss": loss + 0.05 + noise.gauss(0, 0.01), "epoch": step // 100})


def _print_summary(url: str, runs: list[tracker.Run]) -> None:
    api = tracker.Api(url)
    print()
    print(f"{'run':<24} {'lr':>6} {'loss':>8} {'acc':>6} {'best val':>9} {'rows':>7} {'state':>9}")
    for run in runs:
        stored = api.run(run.path)
        summary = stored.summary
        rows = len(stored.history(keys=["train/loss"]))
        best = summary.get("val/loss", {"min": math.nan})  # first logged at step 99
        best_value = best["min"] if isinstance(best, dict) else best
        print(
            f"{stored.name:<24} {stored.config['lr']:>6} {summary['train/loss']:>8.4f} "
            f"{summary['train/acc']:>6.3f} {best_value:>9.4f} {rows:>7} {stored.state:>9}"
        )
    print("\nEach run's page:")
    for run in runs:
        print(f"  {run.url}")
