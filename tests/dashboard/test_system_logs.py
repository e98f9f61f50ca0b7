"""The System charts, the Logs tab and the Environment panel in headless Chromium, against a
real server fed by real runs."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tracker._metadata
from tests.dashboard.test_browser import wait_for
from tests.test_metadata import git, make_repo
from tracker._run import Run
from tracker._server._runner import EmbeddedServer
from tracker._server._streams import CONSOLE_TAIL_LINES

pytestmark = pytest.mark.dashboard

StartRun = Callable[..., Run]
Sample = Callable[..., None]
SAMPLED = {"disable_stats": False, "stats_interval_seconds": 0.2}
"""The settings of a run that takes system samples every 0.2 s."""

# the points each uPlot series of a system metric's panel holds (x first), or null
_LENGTHS = """metric => {
  const plot = window.trackerSystem && window.trackerSystem.plot(metric);
  return plot ? plot.data.map(values => values.filter(v => v !== null && v !== undefined).length)
              : null;
}"""
_LABELS = """metric => window.trackerSystem.plot(metric).series.slice(1).map(s => s.label)"""
_AT_BOTTOM = """() => {
  const box = document.querySelector(".console");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 8;
}"""


def _samples(sample: Sample, run: Run, count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        sample(
            run,
            **{
                "proc.cpu_percent": 150.0 + index,
                "proc.rss_mb": 200.0 + index,
                "cpu.percent": 10.0 + index,
                "memory.percent": 40.0,
                "disk.read_mb": float(index),
                "network.recv_mb": 0.5 * index,
                "gpu.0.utilization": 90.0,
                "gpu.1.utilization": 5.0,
            },
        )


def _lines(page: Any) -> list[str]:
    return page.locator(".console .line .text").all_inner_texts()  # type: ignore[no-any-return]


def test_a_sampled_run_shows_its_system_metrics_live(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """A run taking system samples every 0.2 s shows them in System, grouped, and new
    samples join the charts while the page stays open."""
    run = start_run(server, project="proj", settings=SAMPLED)
    run.log({"loss": 1.0})
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    page.get_by_role("heading", name="System").scroll_into_view_if_needed()

    def drawn() -> Any:
        lengths = page.evaluate(_LENGTHS, "proc.rss_mb")
        return lengths if lengths and lengths[0] == lengths[1] >= 1 else None

    first = wait_for(drawn, what="the RSS chart, a time for each sample")
    groups = page.locator(".system-group h3").all_inner_texts()
    assert groups[:5] == ["Process", "CPU", "Memory", "Disk", "Network"]
    wait_for(
        lambda: page.evaluate(_LENGTHS, "proc.rss_mb")[1] >= first[1] + 3,
        what="samples taken after the page opened",
    )
    assert page.evaluate("() => window.trackerSystem.plot('proc.rss_mb').data[1].at(-1)") > 1


def test_run_page_charts_each_system_metric_in_its_group(
    page: Any, server: EmbeddedServer, start_run: StartRun, system_sample: Sample
) -> None:
    """System samples (GPUs' too: appended as the sampler appends them) draw one panel per
    metric, grouped (process, CPU, memory, disk, network, each GPU) in that order, on the
    time since the run was created or the wall time; later samples join without a reload."""
    run = start_run(server, project="proj", name="sampled")
    run.log({"loss": 1.0})
    _samples(system_sample, run, 3)
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    page.locator('[data-metric="gpu.1.utilization"]').scroll_into_view_if_needed()
    wait_for(lambda: page.evaluate(_LENGTHS, "cpu.percent") == [3, 3], what="the CPU chart")
    groups = page.locator(".system-group h3").all_inner_texts()
    assert groups == ["Process", "CPU", "Memory", "Disk", "Network", "GPU 0", "GPU 1"]
    captions = page.locator(".system-group").first.locator("figcaption").all_inner_texts()
    assert captions == ["proc.cpu_percent", "proc.rss_mb"]
    assert page.locator(".charts-system .panel").count() == 8
    assert "_timestamp" not in page.locator(".charts-system").inner_text()
    # x is the time since the run was created, in seconds
    last_x = "() => window.trackerSystem.plot('cpu.percent')?.data[0].at(-1)"
    assert 0 <= page.evaluate(last_x) < 60
    _samples(system_sample, run, 2, start=3)
    wait_for(lambda: page.evaluate(_LENGTHS, "cpu.percent") == [5, 5], what="live samples")
    values = "() => window.trackerSystem.plot('cpu.percent').data[1]"
    assert page.evaluate(values) == [10.0, 11.0, 12.0, 13.0, 14.0]
    page.get_by_label("Time axis").select_option("timestamp")
    wait_for(lambda: (page.evaluate(last_x) or 0) > 1e9, what="wall time")


def test_a_run_without_system_metrics_says_so(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """The System section of a run that recorded none says so instead of loading forever."""
    run = start_run(server, project="proj")
    run.log({"loss": 1.0})
    run.finish(quiet=True)
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    page.locator(".charts-system").get_by_text("No system metrics recorded.").wait_for()


def test_comparing_runs_overlays_their_system_metrics(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """Selected runs' system metrics are overlaid on the project page, one series per run."""
    for name in ("one", "two", "three"):
        run = start_run(server, project="proj", name=name, settings=SAMPLED)
        run.log({"loss": 1.0})
        time.sleep(0.5)  # a few samples each
        run.finish(quiet=True)
    page.goto(f"{server.url}/local/proj")
    page.get_by_label("Select run one").check()
    page.get_by_label("Select run three").check()
    page.locator('[data-metric="memory.used_mb"]').scroll_into_view_if_needed()
    lengths = wait_for(lambda: page.evaluate(_LENGTHS, "memory.used_mb"), what="the memory chart")
    assert len(lengths) == 3
    assert min(lengths[1:]) >= 1
    assert page.evaluate(_LABELS, "memory.used_mb") == ["one", "three"]
    page.locator('[data-metric="proc.rss_mb"]').scroll_into_view_if_needed()
    wait_for(lambda: page.evaluate(_LENGTHS, "proc.rss_mb"), what="the RSS chart")
    assert page.evaluate(_LABELS, "proc.rss_mb") == ["one", "three"]


def test_logs_tab_shows_the_console_live_collapsed_and_as_text(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """The Logs tab shows what the run printed, stdout and stderr told apart, progress
    lines collapsed, markup as text, with times; new lines appear while it runs, and the
    view follows them unless the reader scrolled up."""
    run = start_run(server, project="proj", name="printer", settings={"console": "auto"})
    print("epoch 1 starts")
    print("batch 1/3\rbatch 2/3\rbatch 3/3")
    print("<script>window.pwned = 1</script><b>bold?</b>")
    print("warning: low memory", file=sys.stderr)
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    page.get_by_role("tab", name="Logs").click()
    assert page.url.endswith("#logs")
    wait_for(lambda: len(_lines(page)) == 4, what="four lines")
    assert _lines(page) == [
        "epoch 1 starts",
        "batch 3/3",
        "<script>window.pwned = 1</script><b>bold?</b>",
        "warning: low memory",
    ]
    assert page.locator(".console script, .console b").count() == 0
    assert page.evaluate("() => window.pwned") is None
    assert page.locator(".console .line.stderr .text").all_inner_texts() == ["warning: low memory"]
    assert page.locator(".console .line").first.locator("time").inner_text().count(":") == 2
    for index in range(200):
        print(f"step {index}")
    wait_for(lambda: _lines(page)[-1:] == ["step 199"], what="live lines")
    assert page.evaluate(_AT_BOTTOM), "the view did not follow new lines"
    page.locator(".console").evaluate("box => { box.scrollTop = 0; }")
    print("after scrolling up")
    wait_for(lambda: _lines(page)[-1:] == ["after scrolling up"], what="one more line")
    assert page.locator(".console").evaluate("box => box.scrollTop") == 0
    page.get_by_role("tab", name="Overview").click()
    page.get_by_role("heading", name="Charts").wait_for()
    assert page.locator("#panel-logs").is_hidden()


def test_logs_of_a_long_console_show_its_end_and_download_it_whole(
    page: Any, server: EmbeddedServer, start_run: StartRun, tmp_path: Path
) -> None:
    """A console longer than the view holds shows its last lines, says so, and links to
    the whole text; opening the page at #logs opens the tab."""
    run = start_run(server, project="proj", settings={"console": "auto"})
    total = CONSOLE_TAIL_LINES + 250
    for index in range(total):
        print(f"line {index}")
    run.finish(quiet=True)
    page.goto(f"{server.url}/local/proj/runs/{run.id}#logs")
    shown = "async () => (await import('/static/logs.js')).MAX_LINES"
    assert page.evaluate(shown) == CONSOLE_TAIL_LINES  # the page holds what the server sends
    wait_for(lambda: _lines(page)[-1:] == [f"line {total - 1}"], what="the last line")
    assert len(_lines(page)) == CONSOLE_TAIL_LINES
    assert _lines(page)[0] == f"line {total - CONSOLE_TAIL_LINES}"
    assert f"last {CONSOLE_TAIL_LINES:,} lines" in page.locator(".console-cut").inner_text()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the full text").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines() == [f"line {index}" for index in range(total)]


def test_environment_panel_shows_a_runs_git_state_and_links_its_files(
    page: Any,
    server: EmbeddedServer,
    start_run: StartRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    metadata_recorded: Callable[[Run], None],
) -> None:
    """A run started in a dirty git repository shows its commit, branch and remote (no
    credentials) and links the diff and the requirements it stored."""
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("lr = 0.2\n")
    monkeypatch.chdir(repo)
    run = start_run(
        server, project="proj", settings={"disable_git": False, "save_requirements": True}
    )
    metadata_recorded(run)
    run.finish(quiet=True)
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    environment = page.locator(".environment")
    environment.get_by_role("link", name="requirements.txt", exact=True).wait_for()
    rows = dict(row.split("\t", 1) for row in page.locator(".environment tr").all_inner_texts())
    assert rows["Git commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert rows["Git branch"] == "main"
    assert rows["Git remote"] == "https://git.example.com/team/project.git"
    assert rows["Uncommitted changes"] == "yes"
    assert rows["OS"] == platform.platform()
    assert rows["CPUs"] == str(os.cpu_count())
    assert rows["Working directory"] == str(repo)
    with page.expect_download() as download:
        environment.get_by_role("link", name="diff.patch", exact=True).click()
    assert "+lr = 0.2" in Path(download.value.path()).read_text()


def test_environment_panel_of_a_page_opened_at_once_fills_in_as_the_run_collects_it(
    page: Any,
    server: EmbeddedServer,
    start_run: StartRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page opened before the run's metadata thread delivered (git, OS, the two files;
    live events carry no metadata) shows them once they arrive, without a reload."""
    release = threading.Event()
    collect = tracker._metadata.collect

    def held(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return collect(*args, **kwargs)

    monkeypatch.setattr(tracker._metadata, "collect", held)
    run = start_run(server, project="proj", settings={"save_requirements": True})
    run.log({"loss": 1.0})
    run.flush()
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    environment = page.locator(".environment")
    environment.get_by_text("Python executable").wait_for()
    assert "OS" not in environment.inner_text()
    release.set()
    environment.get_by_role("link", name="requirements.txt", exact=True).wait_for()
    rows = dict(row.split("\t", 1) for row in page.locator(".environment tr").all_inner_texts())
    assert rows["OS"] == platform.platform()
    run.finish(quiet=True)


def test_environment_panel_shows_metadata_as_text_and_leaves_out_the_absent(
    page: Any,
    server: EmbeddedServer,
    start_run: StartRun,
    tmp_path: Path,
    metadata_recorded: Callable[[Run], None],
) -> None:
    """The Environment panel lists host, OS, Python, command, CPUs, GPUs and git (a
    detached HEAD said so), links the run's diff.patch and requirements.txt, leaves out
    what is absent, and shows text as text."""
    run = start_run(server, project="proj", name="env")
    metadata_recorded(run)  # the run's own os and gpus first, then these over them
    run._record_metadata(
        {
            "python_executable": None,
            "os": "Linux-6.1-x86_64 <b>x</b>",
            "command": "python train.py --lr 0.1 --api-key=***",
            "cpu_count": 8,
            "gpus": ["NVIDIA A100", "NVIDIA A100"],
            "git": {
                "remote": "https://example.com/team/repo.git",
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "branch": None,
                "dirty": True,
            },
        }
    )
    for name, text in (("diff.patch", "--- a\n+++ b\n"), ("requirements.txt", "numpy==2.0\n")):
        (tmp_path / name).write_text(text)
        run.save(str(tmp_path / name), base_path=str(tmp_path), policy="now")
    run.finish(quiet=True)
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    page.locator(".environment").get_by_role("link", name="requirements.txt", exact=True).wait_for()
    rows = dict(row.split("\t", 1) for row in page.locator(".environment tr").all_inner_texts())
    assert rows["Git commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert rows["Git branch"] == "none (detached HEAD)"
    assert rows["Uncommitted changes"] == "yes"
    assert rows["Git remote"] == "https://example.com/team/repo.git"
    assert rows["OS"] == "Linux-6.1-x86_64 <b>x</b>"
    assert rows["Command"] == "python train.py --lr 0.1 --api-key=***"
    assert rows["CPUs"] == "8"
    assert rows["GPUs"] == "NVIDIA A100, NVIDIA A100"
    assert rows["Host"] == os.uname().nodename
    assert rows["Python"] == sys.version.split()[0]
    assert rows["Working directory"] == os.getcwd()
    assert "Python executable" not in rows  # null in the metadata: no row
    assert page.locator(".environment b").count() == 0
    with page.expect_download() as download:
        page.locator(".environment").get_by_role("link", name="diff.patch", exact=True).click()
    assert Path(download.value.path()).read_text() == "--- a\n+++ b\n"
