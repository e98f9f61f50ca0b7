"""Tests for Run.log through the public API: W&B step rules, summary, config, metadata,
bad input, volume, threads, the bounded queue and disabled mode."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tracker
from tracker._runlog import read_records

META = ("_step", "_timestamp", "_runtime")


def start(tmp_path: Path, **kwargs: Any) -> tracker.Run:
    """A silent offline run in tmp_path; ``settings`` entries are added to silent=True."""
    settings = {"silent": True, **kwargs.pop("settings", {})}
    kwargs.setdefault("project", "tests")
    return tracker.init(dir=tmp_path, settings=settings, **kwargs)


def history(run: tracker.Run) -> list[dict[str, Any]]:
    """The stored history of ``run``, read back from its run directory."""
    return tracker.read_run(run.dir).history()


def rows(run: tracker.Run) -> list[tuple[int, dict[str, Any]]]:
    """The stored history as (step, data without the _step/_timestamp/_runtime keys)."""
    return [
        (row["_step"], {key: value for key, value in row.items() if key not in META})
        for row in history(run)
    ]


# -- W&B step rules -----------------------------------------------------------------


def test_plain_log_commits_and_advances(tmp_path: Path) -> None:
    """log(d) commits a row at the current step and moves to the next one."""
    run = start(tmp_path)
    run.log({"a": 1})
    assert run.step == 1
    run.log({"a": 2, "b": "x"})
    assert run.step == 2
    run.finish()
    assert rows(run) == [(0, {"a": 1}), (1, {"a": 2, "b": "x"})]


def test_commit_false_merges_until_the_next_plain_log(tmp_path: Path) -> None:
    """commit=False merges into the pending row; the next plain log commits the merged row."""
    run = start(tmp_path)
    run.log({"a": 1}, commit=False)
    run.log({"b": 2}, commit=False)
    run.log({"a": 3, "c": 4}, commit=False)
    assert run.step == 0
    run.log({"d": 5})
    assert run.step == 1
    run.log({"e": 6})
    run.finish()
    assert rows(run) == [(0, {"a": 3, "b": 2, "c": 4, "d": 5}), (1, {"e": 6})]


@pytest.mark.parametrize("committed_by", ["later_log", "commit_true", "higher_step", "finish"])
def test_higher_step_commits_pending_and_makes_data_pending(
    tmp_path: Path, committed_by: str
) -> None:
    """log(d, step=s) above the current step commits the pending row and makes d pending
    at s, until a later call, commit=True, a yet higher step, or finish commits it."""
    run = start(tmp_path)
    run.log({"a": 1}, commit=False)
    run.log({"b": 2}, step=5)
    assert run.step == 5
    expected = [(0, {"a": 1})]
    if committed_by == "later_log":
        run.log({"c": 3})
        expected += [(5, {"b": 2, "c": 3})]
        assert run.step == 6
    elif committed_by == "commit_true":
        run.log({"c": 3}, commit=True)
        expected += [(5, {"b": 2, "c": 3})]
        assert run.step == 6
    elif committed_by == "higher_step":
        run.log({"c": 3}, step=9)
        expected += [(5, {"b": 2}), (9, {"c": 3})]
        assert run.step == 9
    run.finish()
    if committed_by == "finish":
        expected += [(5, {"b": 2})]
    assert rows(run) == expected


def test_higher_step_with_nothing_pending_commits_nothing(tmp_path: Path) -> None:
    """Jumping to a higher step with no pending row stores no empty row for the old step."""
    run = start(tmp_path)
    run.log({"a": 1})
    run.log({"b": 2}, step=4)
    run.finish()
    assert rows(run) == [(0, {"a": 1}), (4, {"b": 2})]


def test_equal_step_merges(tmp_path: Path) -> None:
    """log(d, step=s) with s equal to the current step merges d into the pending row."""
    run = start(tmp_path)
    run.log({"a": 1})
    run.log({"b": 2}, step=1)
    run.log({"c": 3}, step=1)
    run.log({"b": 4}, step=1, commit=False)
    assert run.step == 1
    run.log({"d": 5})
    run.finish()
    assert rows(run) == [(0, {"a": 1}), (1, {"b": 4, "c": 3, "d": 5})]


def test_lower_step_is_dropped_with_a_warning_naming_both_steps(tmp_path: Path) -> None:
    """log(d, step=s) below the current step warns with both steps and stores nothing of d."""
    run = start(tmp_path)
    run.log({"a": 1})
    run.log({"a": 2})
    run.log({"p": 1}, commit=False)
    with pytest.warns(UserWarning, match=r"step=1\b.*\bstep 2\b") as caught:
        run.log({"x": 9, "p": 100}, step=1)
    assert caught[0].filename == __file__, "the warning points at the caller's line"
    assert run.step == 2
    run.log({"q": 2})
    run.finish()
    assert rows(run) == [(0, {"a": 1}), (1, {"a": 2}), (2, {"p": 1, "q": 2})]
    assert "x" not in tracker.read_run(run.dir).summary


def test_lower_step_with_commit_true_is_also_dropped(tmp_path: Path) -> None:
    """commit=True does not rescue a lower step: it is dropped with a warning."""
    run = start(tmp_path)
    run.log({"a": 1}, step=3, commit=True)
    with pytest.warns(UserWarning, match=r"step=0\b.*\bstep 4\b"):
        run.log({"x": 1}, step=0, commit=True)
    run.finish()
    assert rows(run) == [(3, {"a": 1})]


def test_run_step_reports_the_next_step(tmp_path: Path) -> None:
    """run.step is the step the next committed row gets, through every rule."""
    run = start(tmp_path)
    assert run.step == 0
    run.log({"a": 1})
    assert run.step == 1
    run.log({"a": 1}, commit=False)
    assert run.step == 1
    run.log({"a": 1}, step=10)
    assert run.step == 10
    run.log({"a": 1}, commit=True)
    assert run.step == 11
    run.finish()
    assert [step for step, _ in rows(run)] == [0, 1, 10]


def test_step_with_commit_true_commits_at_that_step(tmp_path: Path) -> None:
    """log(d, step=s, commit=True) commits at s; the next plain log goes to s+1."""
    run = start(tmp_path)
    run.log({"a": 1}, step=3, commit=True)
    assert run.step == 4
    run.log({"b": 2})
    run.finish()
    assert rows(run) == [(3, {"a": 1}), (4, {"b": 2})]


def test_finish_commits_the_pending_row(tmp_path: Path) -> None:
    """A row left pending by commit=False is committed by finish()."""
    run = start(tmp_path)
    run.log({"a": 1})
    run.log({"b": 2}, commit=False)
    run.log({"c": 3}, commit=False)
    run.finish()
    assert rows(run) == [(0, {"a": 1}), (1, {"b": 2, "c": 3})]


def test_every_row_has_step_timestamp_and_runtime(tmp_path: Path) -> None:
    """Every stored row carries _step, _timestamp (non-decreasing, in the run's time
    span) and _runtime (>= 0, non-decreasing)."""
    before = time.time()
    run = start(tmp_path)
    for index in range(200):
        run.log({"i": index})
        if index % 50 == 0:
            time.sleep(0.01)
    run.log({"late": 1}, step=300)
    run.finish()
    after = time.time()
    stored = history(run)
    assert len(stored) == 201
    for row in stored:
        assert set(META) <= row.keys()
        assert isinstance(row["_timestamp"], float)
        assert before <= row["_timestamp"] <= after
        assert row["_runtime"] >= 0
    stamps = [row["_timestamp"] for row in stored]
    runtimes = [row["_runtime"] for row in stored]
    assert stamps == sorted(stamps)
    assert runtimes == sorted(runtimes)
    assert stamps[-1] > stamps[0]
    assert runtimes[-1] == pytest.approx(stamps[-1] - run.start_time, abs=1e-3)


# -- summary --------------------------------------------------------------------------


def test_summary_holds_the_last_value_of_each_key(tmp_path: Path) -> None:
    """The summary holds the last logged value of every key, live and read back."""
    run = start(tmp_path)
    run.log({"loss": 1.0, "acc": 0.1})
    run.log({"loss": 0.5})
    run.log({"name": "x", "nested": {"a": [1, 2]}})
    expected = {"loss": 0.5, "acc": 0.1, "name": "x", "nested": {"a": [1, 2]}}
    assert dict(run.summary) == expected
    run.finish()
    assert tracker.read_run(run.dir).summary == expected


def test_explicit_summary_value_is_stored(tmp_path: Path) -> None:
    """run.summary["best"] = ... is stored and read back."""
    run = start(tmp_path)
    run.log({"acc": 0.5})
    run.summary["best"] = 0.9
    run.summary.update({"note": "ok"})
    run.finish()
    assert tracker.read_run(run.dir).summary == {"acc": 0.5, "best": 0.9, "note": "ok"}


def test_explicit_summary_value_is_overwritten_by_a_later_log(tmp_path: Path) -> None:
    """A key set explicitly takes the value of a later log of that key."""
    run = start(tmp_path)
    run.log({"acc": 0.5})
    run.summary["acc"] = 0.99
    assert run.summary["acc"] == 0.99
    run.log({"acc": 0.7})
    assert run.summary["acc"] == 0.7
    run.finish()
    assert tracker.read_run(run.dir).summary == {"acc": 0.7}


def test_define_metric_min_max_mean_are_read_back(tmp_path: Path) -> None:
    """define_metric summary="min" / "max" / "mean" shape the stored summary."""
    run = start(tmp_path)
    run.define_metric("loss", summary="min")
    run.define_metric("acc", summary="max")
    run.define_metric("lr", summary="mean")
    run.define_metric("f1", summary="min,max")
    for loss, acc, lr, f1 in [(0.9, 0.1, 1.0, 0.5), (0.2, 0.8, 2.0, 0.1), (0.4, 0.6, 6.0, 0.7)]:
        run.log({"loss": loss, "acc": acc, "lr": lr, "f1": f1, "plain": loss})
    live = dict(run.summary)
    run.finish()
    summary = tracker.read_run(run.dir).summary
    assert summary == {
        "loss": {"min": 0.2},
        "acc": {"max": 0.8},
        "lr": {"mean": 3.0},
        "f1": {"min": 0.1, "max": 0.7},
        "plain": 0.4,
    }
    assert live == summary


def test_define_metric_glob_shapes_matching_keys_only(tmp_path: Path) -> None:
    """A glob name ("val/*") shapes every matching key and leaves the others alone."""
    run = start(tmp_path)
    run.define_metric("val/*", summary="max")
    run.log({"val/acc": 0.5, "val/f1": 0.9, "train/acc": 0.5})
    run.log({"val/acc": 0.8, "val/f1": 0.3, "train/acc": 0.1})
    run.finish()
    stored = tracker.read_run(run.dir)
    assert stored.summary == {"val/acc": {"max": 0.8}, "val/f1": {"max": 0.9}, "train/acc": 0.1}
    assert [rule.name for rule in stored.metric_rules] == ["val/*"]


# -- config ---------------------------------------------------------------------------


def test_init_config_is_read_back(tmp_path: Path) -> None:
    """tracker.init(config=...) is stored, nested dicts included."""
    config = {"lr": 3e-4, "opt": {"name": "adam", "betas": [0.9, 0.999]}, "seed": 1}
    run = start(tmp_path, config=config)
    run.finish()
    assert tracker.read_run(run.dir).config == config


def test_config_update_is_read_back(tmp_path: Path) -> None:
    """run.config.update / item / attribute writes after init are stored."""
    run = start(tmp_path, config={"lr": 0.1})
    run.log({"a": 1})
    run.config.update({"batch": 32})
    run.config["epochs"] = 3
    run.config.arch = "resnet"
    run.finish()
    assert tracker.read_run(run.dir).config == {
        "lr": 0.1,
        "batch": 32,
        "epochs": 3,
        "arch": "resnet",
    }


def test_config_attribute_access(tmp_path: Path) -> None:
    """run.config.lr reads the value given at init; a missing key is an AttributeError."""
    run = start(tmp_path, config={"lr": 0.1, "opt": {"name": "adam"}})
    assert run.config.lr == 0.1
    assert run.config["opt"]["name"] == "adam"
    with pytest.raises(AttributeError, match="momentum"):
        run.config.momentum


def test_config_value_change_needs_allow_val_change(tmp_path: Path) -> None:
    """Changing a config value raises UsageError naming the key and allow_val_change;
    the stored value stays; allow_val_change=True changes it."""
    run = start(tmp_path, config={"lr": 0.1})
    with pytest.raises(tracker.UsageError, match=r"'lr'.*allow_val_change"):
        run.config.update({"lr": 0.2})
    with pytest.raises(tracker.UsageError, match="allow_val_change"):
        run.config.lr = 0.2
    run.config.update({"lr": 0.1})  # the same value is no change
    assert run.config.lr == 0.1
    run.flush()
    assert tracker.read_run(run.dir).config == {"lr": 0.1}
    run.config.update({"lr": 0.3}, allow_val_change=True)
    run.finish()
    assert tracker.read_run(run.dir).config == {"lr": 0.3}


def test_init_allow_val_change_allows_changes(tmp_path: Path) -> None:
    """init(allow_val_change=True) lets every later write change values."""
    run = start(tmp_path, config={"lr": 0.1}, allow_val_change=True)
    run.config.lr = 0.5
    run.finish()
    assert tracker.read_run(run.dir).config == {"lr": 0.5}


# -- tags, name, notes ------------------------------------------------------------------


def test_tags_name_notes_set_at_init_and_changed_later(tmp_path: Path) -> None:
    """tags, name and notes given to init are stored; later changes replace them."""
    run = start(tmp_path, tags=["baseline"], name="first-run-1", notes="first notes")
    run.flush()
    stored = tracker.read_run(run.dir)
    assert (stored.tags, stored.name, stored.notes) == (
        ("baseline",),
        "first-run-1",
        "first notes",
    )
    run.tags += ("x",)
    run.name = "second-run-2"
    run.notes = "second notes"
    assert run.tags == ("baseline", "x")
    assert run.name == "second-run-2"
    assert run.notes == "second notes"
    run.finish()
    stored = tracker.read_run(run.dir)
    assert stored.tags == ("baseline", "x")
    assert stored.name == "second-run-2"
    assert stored.notes == "second notes"


# -- bad input ------------------------------------------------------------------------

BAD_CALLS = [
    pytest.param(([1, 2],), {}, r"dict.*list", id="not-a-dict"),
    pytest.param(({1: 2.0},), {}, r"key 1\b.*str", id="int-key"),
    pytest.param(({"a": {2: 3}},), {}, r"key 2\b.*\['a'\].*str", id="nested-int-key"),
    pytest.param(({"obj": object()},), {}, r"\['obj'\].*object", id="object-value"),
    pytest.param(({"s": {1, 2}},), {}, r"\['s'\].*set", id="set-value"),
    pytest.param(({"t": "ok\ud800"},), {}, r"\['t'\].*surrogate", id="lone-surrogate"),
    pytest.param(({"\udc80": 1},), {}, r"surrogate", id="lone-surrogate-key"),
    pytest.param(({"_step": 3},), {}, r"'_step'.*reserved", id="reserved-step"),
    pytest.param(({"_runtime": 3},), {}, r"'_runtime'.*reserved", id="reserved-runtime"),
    pytest.param(({"a": 1},), {"step": -1}, r"step=-1.*>= 0", id="negative-step"),
    pytest.param(({"a": 1},), {"step": True}, r"step=True", id="bool-step"),
    pytest.param(({"a": 1},), {"step": 1.5}, r"step=1\.5", id="float-step"),
    pytest.param(({"a": 1},), {"commit": "yes"}, r"commit='yes'", id="str-commit"),
    pytest.param(({"good": 1, "bad": object()},), {}, r"\['bad'\]", id="good-and-bad-key"),
    pytest.param(({"good": 1, "bad": {"x": {1}}},), {}, r"\['bad'\]\['x'\]", id="good-and-nested"),
]


@pytest.mark.parametrize(("args", "kwargs", "message"), BAD_CALLS)
@pytest.mark.parametrize("route", ["plain", "commit_true"])
def test_bad_log_input_is_usage_error_and_logs_nothing(
    tmp_path: Path, args: tuple[Any, ...], kwargs: dict[str, Any], message: str, route: str
) -> None:
    """Bad input to log raises UsageError naming the problem; nothing of that call is
    stored, the step does not move, and the run keeps logging."""
    run = start(tmp_path)
    run.log({"before": 1})
    if route == "commit_true":
        kwargs = {"commit": True, **kwargs}
    with pytest.raises(tracker.UsageError, match=message):
        run.log(*args, **kwargs)
    assert run.step == 1
    run.log({"after": 2})
    run.finish()
    assert rows(run) == [(0, {"before": 1}), (1, {"after": 2})]
    assert tracker.read_run(run.dir).summary == {"before": 1, "after": 2}


def test_bad_log_input_keeps_the_pending_row(tmp_path: Path) -> None:
    """A rejected call leaves the pending row as it was, without any of its keys."""
    run = start(tmp_path)
    run.log({"a": 1}, commit=False)
    with pytest.raises(tracker.UsageError, match=r"\['bad'\]"):
        run.log({"a": 2, "bad": object()}, commit=False)
    with pytest.raises(tracker.UsageError, match=r"\['bad'\]"):
        run.log({"a": 3, "bad": {1}}, step=7)
    assert run.step == 0
    run.log({"b": 2})
    run.finish()
    assert rows(run) == [(0, {"a": 1, "b": 2})]


def test_log_after_finish_is_usage_error(tmp_path: Path) -> None:
    """log after finish raises UsageError saying the run is finished; nothing is stored."""
    run = start(tmp_path)
    run.log({"a": 1})
    run.finish()
    with pytest.raises(tracker.UsageError, match=rf"finish.*{run.id}.*tracker\.init"):
        run.log({"a": 2})
    with pytest.raises(tracker.UsageError, match="finish"):
        run.log({"a": 3}, step=5, commit=True)
    assert rows(run) == [(0, {"a": 1})]


# -- volume and threads ---------------------------------------------------------------


def test_many_rows_are_all_stored(tmp_path: Path) -> None:
    """50k rows logged then finish: all of them stored, values exact."""
    run = start(tmp_path)
    count = 50_000
    for index in range(count):
        run.log({"i": index, "x": index * 0.5, "tag": f"r{index}"})
    run.finish()
    stored = history(run)
    assert len(stored) == count
    for index in (0, 1, 12_345, 33_333, count - 1):
        row = stored[index]
        assert row["_step"] == index
        assert row["i"] == index
        assert row["x"] == index * 0.5
        assert row["tag"] == f"r{index}"
    assert [row["_step"] for row in stored] == list(range(count))


def test_threads_logging_to_one_run_lose_nothing(tmp_path: Path) -> None:
    """4 threads logging 5k rows each: all 20k rows stored, steps 0..19999 exactly once,
    and each thread's rows in its own order."""
    run = start(tmp_path)
    threads_count, per_thread = 4, 5_000
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def work(thread_id: int) -> None:
        try:
            barrier.wait()
            for index in range(per_thread):
                run.log({"t": thread_id, "i": index})
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not errors
    assert run.step == threads_count * per_thread
    run.finish()
    stored = history(run)
    assert sorted(row["_step"] for row in stored) == list(range(threads_count * per_thread))
    for thread_id in range(threads_count):
        mine = [row["i"] for row in stored if row["t"] == thread_id]
        assert mine == list(range(per_thread))


# -- status and the bounded queue -------------------------------------------------------


def test_status_after_flush_counts_every_record(
    tmp_path: Path, metadata_recorded: Callable[[tracker.Run], None]
) -> None:
    """After flush(), nothing is queued and written/durable count every record in the
    run log; nothing is dropped."""
    run = start(tmp_path, config={"lr": 0.1})
    metadata_recorded(run)
    for index in range(100):
        run.log({"i": index})
    run.summary["best"] = 1
    assert run.flush(timeout=10)
    status = run.status()
    on_disk = sum(1 for _ in read_records(Path(run.dir).parent / "run.log"))
    assert status.queued == 0
    assert status.dropped == 0
    assert status.written == on_disk
    assert status.durable == on_disk
    assert on_disk >= 101
    run.finish()


def test_the_flush_policy_also_syncs_in_the_background(tmp_path: Path) -> None:
    """Under fsync_policy="flush", records become durable every 8 MiB written, before any
    flush(), so that a flush finds little left to sync."""
    run = start(tmp_path)
    row = {"blob": "x" * 4000}
    for _ in range(3000):  # ~12 MB of records
        run.log(row)
    deadline = time.monotonic() + 10
    while run.status().queued and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.status().durable >= 2000  # 8 MiB of ~4 KB records, synced without a flush
    assert run.flush(timeout=10)
    assert run.status().durable == run.status().written
    run.finish()


def test_full_queue_block_policy_loses_nothing(tmp_path: Path) -> None:
    """A tiny queue under the "block" policy stores all 2000 rows and drops none, and
    the writer does not linger while callers wait for room."""
    run = start(tmp_path, settings={"queue_max_events": 10, "batch_linger_seconds": 0.05})
    began = time.monotonic()
    for index in range(2000):
        run.log({"i": index})
    elapsed = time.monotonic() - began
    run.finish()
    assert run.status().dropped == 0
    assert [value for _, value in rows(run)] == [{"i": index} for index in range(2000)]
    # 200 batches of 10: lingering 50 ms before each would take 10 s.
    assert elapsed < 3.0, f"logging 2000 rows through a full queue took {elapsed:.1f}s"


def test_full_queue_drop_policy_counts_drops(tmp_path: Path) -> None:
    """A tiny queue under the "drop" policy drops rows and counts them: stored + dropped
    == logged, and the step still advances for every row."""
    run = start(
        tmp_path,
        settings={
            "queue_max_events": 10,
            "queue_full_policy": "drop",
            "batch_linger_seconds": 0.2,
        },
    )
    for index in range(5000):
        run.log({"i": index})
    assert run.step == 5000
    run.finish()
    status = run.status()
    stored = rows(run)
    assert status.dropped > 0
    assert len(stored) + status.dropped == 5000
    for step, data in stored:
        assert data == {"i": step}


# -- disabled mode --------------------------------------------------------------------


def test_disabled_mode_is_a_no_op_that_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mode="disabled": log/alog/finish/save/define_metric are no-ops, no directory is
    created, and config still works in memory."""
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "saved.txt"
    source.write_text("x")
    run = tracker.init(mode="disabled", config={"lr": 0.1}, settings={"silent": True})
    assert run.mode == "disabled"
    assert run.dir == ""
    run.log({"a": 1})
    run.log({"a": 2}, step=10, commit=True)
    asyncio.run(run.alog({"a": 3}))
    run.define_metric("a", summary="max")
    assert run.save(str(source)) == []
    run.config.update({"batch": 32})
    run.config.epochs = 3
    assert run.config.lr == 0.1
    assert dict(run.config) == {"lr": 0.1, "batch": 32, "epochs": 3}
    with pytest.raises(tracker.UsageError, match="allow_val_change"):
        run.config.lr = 0.2
    run.finish()
    run.finish()
    assert list(tmp_path.iterdir()) == [source]


def test_disabled_mode_with_dir_creates_nothing(tmp_path: Path) -> None:
    """mode="disabled" with dir= creates nothing there either."""
    run = start(tmp_path / "runs", mode="disabled")
    run.log({"a": 1})
    run.finish()
    assert list(tmp_path.iterdir()) == []


def test_nan_and_inf_values_read_back(tmp_path: Path) -> None:
    """NaN and ±inf logged through the public API read back as NaN and ±inf."""
    run = start(tmp_path)
    run.log({"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "list": [math.nan, 1.0]})
    run.finish()
    [(step, data)] = rows(run)
    assert step == 0
    assert math.isnan(data["nan"])
    assert data["inf"] == math.inf
    assert data["ninf"] == -math.inf
    assert math.isnan(data["list"][0])
    assert data["list"][1] == 1.0


def test_warning_message_names_define_metric(tmp_path: Path) -> None:
    """The lower-step warning tells the user what to do instead (define_metric)."""
    run = start(tmp_path)
    run.log({"a": 1}, step=5, commit=True)
    with pytest.warns(UserWarning, match=r"step=2\b.*step_metric"):
        run.log({"a": 1}, step=2)
    run.finish()


def test_a_row_of_too_many_keys_is_refused_and_nothing_of_it_logged(tmp_path: Path) -> None:
    """A row with more keys than a server keeps series for is a UsageError naming the
    limit and what to do instead; the rows around it are logged."""
    from tracker._wire.limits import MAX_ROW_KEYS

    run = tracker.init(dir=tmp_path, settings={"silent": True})
    run.log({"x": 0})
    with pytest.raises(tracker.UsageError, match=f"at most {MAX_ROW_KEYS}.*as one value"):
        run.log({f"k{index}": index for index in range(MAX_ROW_KEYS + 1)})
    run.log({f"k{index}": index for index in range(MAX_ROW_KEYS)})
    run.log({"x": 2})
    run.finish()
    rows = tracker.read_run(run.dir).history()
    assert [row.get("x") for row in rows] == [0, None, 2]
