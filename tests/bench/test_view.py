"""The benchmarks view in headless Chromium, over a synthetic history on a real server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from dashboard.test_browser import wait_for

from bench.projects import MACHINES, store_history
from tracker._server._runner import EmbeddedServer

pytestmark = pytest.mark.dashboard


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server holding 12 commits of two machines; ``test_parse`` 30 % slower from 8 on."""
    folder = tmp_path_factory.mktemp("view")
    with EmbeddedServer(f"sqlite:///{folder / 'tracker.db'}") as server:
        store_history(server, folder, commits=12, step_at=8, factor=1.3)
        yield server


_PLOT = "() => window.trackerBench && window.trackerBench.plot"
_POINTS = "() => window.trackerBench.plot.data.map(s => s.filter(v => v !== null).length)"
_LABELS = "() => window.trackerBench.plot.series.slice(1).map(s => s.label)"
_SAMPLE_POINTS = (
    "() => window.trackerBench.samplesPlot.data.slice(1).map(s => s.filter(v => v !== null).length)"
)
_TICKS = "() => [0, 11].map(i => window.trackerBench.commitLabel(i))"
# where, in the page, the median of series 0 at commit 5 is drawn
_POINT_AT = """() => {
  const page = window.trackerBench, u = page.plot, s = page.answer.series[0];
  const box = u.over.getBoundingClientRect();
  const k = s.points.commit.indexOf(5);
  return [box.left + u.valToPos(5, "x"), box.top + u.valToPos(s.points.median[k], "y")];
}"""


def test_the_view_draws_a_series_per_machine_over_commit_order(
    page: Any, history: EmbeddedServer
) -> None:
    """From the project page to its benchmarks: a line per machine over the 12 commits
    (labelled by short sha), and the step listed with its commit and message per machine."""
    page.goto(f"{history.url}/local/bench")
    page.get_by_role("link", name="Benchmarks").click()
    page.wait_for_url(f"{history.url}/local/bench/benchmarks")
    wait_for(lambda: page.evaluate(_PLOT), what="the chart")
    assert page.evaluate(_POINTS) == [12, 12, 12]  # x, then one series per machine
    assert sorted(page.evaluate(_LABELS)) == sorted(m.label for m in MACHINES)
    assert page.evaluate(_TICKS) == ["00ccccc", "0bccccc"]
    assert (
        "12 commits of main, 2 machines, 2 change points" in page.get_by_role("status").inner_text()
    )
    changes = page.locator(".bench-change").all_inner_texts()
    assert len(changes) == 2
    for text in changes:
        assert text.startswith("regression 08cccccccc change 8 (after 07ccccc, on ")
        assert float(re.search(r"([+-]\d+\.\d) %", text)[1]) == pytest.approx(30, abs=3)
    page.get_by_label("Benchmark", exact=True).select_option("test_small")
    page.get_by_text("No change points on this branch.").wait_for()
    assert page.locator("figcaption").first.inner_text() == (
        "test_small (seconds, lower is better)"
    )


def test_a_change_point_opens_the_two_commits_samples(page: Any, history: EmbeddedServer) -> None:
    """ "Compare samples" shows both commits' statistics, the verdict and their sorted samples."""
    page.goto(f"{history.url}/local/bench/benchmarks")
    page.get_by_role("button", name="Compare samples").first.click()
    table = page.locator("table.bench-stats")
    table.wait_for()
    assert table.locator("thead th").all_inner_texts()[1:] == ["07cccccccc", "08cccccccc"]
    rows = {
        row.split("\t")[0]: row.split("\t")[1:] for row in table.locator("tr").all_inner_texts()
    }
    assert rows["Commit"] == ["change 7", "change 8"]
    assert rows["Samples"] == ["40", "40"]
    assert page.locator(".bench-verdict").inner_text().startswith("regression: \u00d71.")
    assert page.evaluate(_SAMPLE_POINTS) == [40, 40]


def test_clicking_a_point_compares_it_with_the_commit_before(
    page: Any, history: EmbeddedServer
) -> None:
    """A click on a machine's point at commit 5 shows commits 4 and 5 of that machine."""
    page.goto(f"{history.url}/local/bench/benchmarks")
    wait_for(lambda: page.evaluate(_PLOT), what="the chart")
    x, y = page.evaluate(_POINT_AT)
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    heading = page.locator(".bench-samples h3")
    heading.wait_for()
    label = page.evaluate("() => window.trackerBench.answer.series[0].label")
    assert heading.inner_text() == f"test_parse: 04ccccc → 05ccccc on {label}"
    assert page.locator(".bench-verdict").inner_text().startswith("unchanged")
