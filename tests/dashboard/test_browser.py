"""The dashboard in headless Chromium: runs streamed to a real server, pages opened and used."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tracker._run import Run
from tracker._server._runner import EmbeddedServer

pytestmark = pytest.mark.dashboard

StartRun = Callable[..., Run]

# the points each uPlot series of a metric's panel holds (x first), or null before it is drawn
_LENGTHS = """metric => {
  const plot = window.trackerCharts && window.trackerCharts.plot(metric);
  return plot ? plot.data.map(values => values.filter(v => v !== null && v !== undefined).length)
              : null;
}"""
_LAST_X = """metric => {
  const plot = window.trackerCharts && window.trackerCharts.plot(metric);
  return plot && plot.data[0].length ? plot.data[0][plot.data[0].length - 1] : null;
}"""
_LABELS = """metric => window.trackerCharts.plot(metric).series.slice(1).map(s => s.label)"""


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "it") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _train(run: Run, steps: range) -> None:
    """One row per step: train/loss and acc, and val/loss every 10th step."""
    for step in steps:
        row = {"train/loss": 1 / (step + 1), "acc": step / 100}
        if step % 10 == 9:
            row["val/loss"] = 2 / (step + 1)
        run.log(row)


def _finished(start_run: StartRun, server: EmbeddedServer, **kwargs: Any) -> Run:
    run = start_run(server, project="proj", **kwargs)
    _train(run, range(30))
    run.finish(quiet=True)
    return run


def _names(page: Any) -> list[str]:
    return page.locator("table.runs tbody td.col-name a").all_inner_texts()  # type: ignore[no-any-return]


def test_projects_page_links_each_project(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """/ lists the caller's projects with their run counts, each a link to its runs."""
    for project in ("alpha", "beta", "beta"):
        start_run(server, project=project).finish(quiet=True)
    page.goto(server.url + "/")
    page.get_by_role("link", name="beta").wait_for()
    rows = page.locator("table.projects tbody tr").all_inner_texts()
    assert [row.split("\t")[:2] for row in rows] == [["alpha", "1"], ["beta", "2"]]
    page.get_by_role("link", name="alpha").click()
    page.wait_for_url(server.url + "/local/alpha")
    page.get_by_role("heading", name="alpha").wait_for()


def test_runs_table_shows_runs_with_state_tags_group_and_config(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """The table has a row per run with its state (live marked), tags, group and config."""
    for lr in (0.1, 0.2):
        _finished(start_run, server, name=f"lr-{lr}", config={"lr": lr}, tags=["sweep"], group="g1")
    live = start_run(server, project="proj", name="live-one", config={"lr": 0.3}, group="g2")
    live.log({"train/loss": 1.0})
    page.goto(f"{server.url}/local/proj")
    wait_for(lambda: len(_names(page)) == 3, what="three rows")
    assert _names(page) == ["live-one", "lr-0.2", "lr-0.1"]  # newest first
    row = page.locator("tr", has_text="live-one")
    assert "running (live)" in row.locator(".col-state").inner_text()
    assert row.locator(".col-group").inner_text() == "g2"
    assert row.locator(".col-config_lr").inner_text() == "0.3"
    finished = page.locator("tr", has_text="lr-0.1")
    assert finished.locator(".col-state").inner_text() == "finished"
    assert finished.locator(".col-tags").inner_text() == "sweep"
    assert "1\u20133 of 3 runs" in page.locator(".table-tools").inner_text()  # an en dash


def test_charts_draw_one_panel_per_metric_with_data(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """Each numeric metric gets a uPlot panel whose series hold the run's points."""
    _finished(start_run, server, name="a")
    _finished(start_run, server, name="b")
    page.goto(f"{server.url}/local/proj")
    lengths = wait_for(lambda: page.evaluate(_LENGTHS, "train/loss"), what="the loss chart")
    assert lengths == [30, 30, 30]  # x, then one series per run
    val = wait_for(lambda: page.evaluate(_LENGTHS, "val/loss"), what="the val/loss chart")
    assert val == [3, 3, 3]
    captions = page.locator(".panel figcaption").all_inner_texts()
    assert captions == ["acc", "train/loss", "val/loss"]
    assert page.locator(".panel canvas").count() == 3


def test_a_live_point_reaches_the_chart_within_a_second(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """While the page is open, rows a running run logs appear in its chart quickly."""
    run = start_run(server, project="proj", name="streaming")
    _train(run, range(10))
    page.goto(f"{server.url}/local/proj")
    wait_for(lambda: page.evaluate(_LAST_X, "train/loss") == 9, what="the first 10 steps")
    logged = time.monotonic()
    _train(run, range(10, 15))
    wait_for(lambda: page.evaluate(_LAST_X, "train/loss") == 14, timeout=5, what="live steps")
    waited = time.monotonic() - logged
    assert waited < 1.5, f"the live point took {waited:.2f} s"
    assert page.evaluate(_LENGTHS, "train/loss") == [15, 15]


def test_filters_narrow_the_table(page: Any, server: EmbeddedServer, start_run: StartRun) -> None:
    """Search text, state, tag and group filters each narrow the rows; clearing restores them."""
    # The search matches ids too: ids that hold "ap" only where the name does (random
    # ids would now and then hold it and match).
    _finished(start_run, server, id="apple-1", name="apple", tags=["fruit"], group="trees")
    _finished(start_run, server, id="banana-2", name="banana", tags=["fruit"], group="plants")
    _finished(start_run, server, id="carrot-3", name="carrot", tags=["root"], group="plants")
    live = start_run(server, project="proj", id="apricot-4", name="apricot", group="trees")
    live.log({"train/loss": 1.0})
    page.goto(f"{server.url}/local/proj")
    wait_for(lambda: len(_names(page)) == 4, what="four rows")

    def rows_become(expected: list[str]) -> None:
        wait_for(lambda: sorted(_names(page)) == expected, what=f"rows {expected}")

    page.get_by_label("Search").fill("ap")
    rows_become(["apple", "apricot"])
    page.get_by_label("Search").fill("")
    page.get_by_label("State").select_option("running")
    rows_become(["apricot"])
    page.get_by_label("State").select_option("")
    page.get_by_label("Tag").fill("fruit")
    rows_become(["apple", "banana"])
    page.get_by_label("Group").fill("plants")
    rows_become(["banana"])
    page.get_by_label("Tag").fill("")
    page.get_by_label("Group").fill("")
    rows_become(["apple", "apricot", "banana", "carrot"])


def test_selecting_two_runs_overlays_their_series(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """Selecting two runs charts exactly those two, one series each, labelled by name."""
    for name in ("one", "two", "three"):
        _finished(start_run, server, name=name)
    page.goto(f"{server.url}/local/proj")
    wait_for(lambda: page.evaluate(_LENGTHS, "train/loss") == [30] * 4, what="three series")
    page.get_by_label("Select run one").check()
    page.get_by_label("Select run three").focus()
    page.keyboard.press("Space")  # the keyboard selects too, and keeps its place
    wait_for(lambda: "2 selected" in page.locator(".table-tools").inner_text(), what="2 selected")
    focused = "() => document.activeElement.getAttribute('aria-label')"
    assert page.evaluate(focused) == "Select run three"
    wait_for(lambda: page.evaluate(_LENGTHS, "train/loss") == [30] * 3, what="two series")
    assert page.evaluate(_LABELS, "train/loss") == ["one", "three"]
    assert "2 selected" in page.locator(".table-tools").inner_text()
    page.get_by_role("button", name="Clear selection").click()
    wait_for(lambda: page.evaluate(_LENGTHS, "train/loss") == [30] * 4, what="all again")


def test_sorting_by_a_summary_column_with_the_keyboard(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """A header's sort button works from the keyboard, server-side, both directions."""
    for name, score in (("low", 1.0), ("high", 3.0), ("mid", 2.0)):
        run = start_run(server, project="proj", name=name)
        run.log({"score": score})
        run.finish(quiet=True)
    page.goto(f"{server.url}/local/proj")
    sort = page.get_by_role("button", name="summary.score")
    sort.focus()
    page.keyboard.press("Enter")
    wait_for(lambda: _names(page) == ["high", "mid", "low"], what="descending scores")
    page.get_by_role("button", name="summary.score").focus()
    page.keyboard.press("Enter")
    wait_for(lambda: _names(page) == ["low", "mid", "high"], what="ascending scores")
    header = page.locator("th", has=page.get_by_role("button", name="summary.score"))
    assert header.get_attribute("aria-sort") == "ascending"


def test_x_axis_smoothing_and_log_scale_redraw_the_charts(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """Relative and wall time change the x values; smoothing and log scale keep the points."""
    _finished(start_run, server, name="a")
    page.goto(f"{server.url}/local/proj")
    wait_for(lambda: page.evaluate(_LAST_X, "train/loss") == 29, what="steps on x")
    page.get_by_label("X axis").select_option("timestamp")
    wait_for(lambda: (page.evaluate(_LAST_X, "train/loss") or 0) > 1e9, what="wall time")
    page.get_by_label("X axis").select_option("runtime")
    wait_for(lambda: (page.evaluate(_LAST_X, "train/loss") or 1e9) < 600, what="relative time")
    page.get_by_label("Log scale").check()
    page.get_by_label("Smoothing").fill("0.9")
    wait_for(lambda: page.evaluate(_LENGTHS, "train/loss") == [30, 30], what="a redraw")
    assert page.evaluate("() => window.trackerCharts.plot('train/loss').scales.y.distr") == 3


def test_run_page_shows_the_run_and_edits_tags_and_notes(
    page: Any, server: EmbeddedServer, start_run: StartRun, tmp_path: Path
) -> None:
    """The run page shows config, summary, timing and files, and saves tags and notes."""
    run = start_run(
        server, project="proj", name="detailed", config={"lr": 0.5, "opt": {"name": "adam"}}
    )
    _train(run, range(20))
    checkpoint = tmp_path / "model.txt"
    checkpoint.write_text("weights")
    run.save(str(checkpoint), policy="now")
    run.finish(quiet=True)
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    page.get_by_role("heading", name="detailed").wait_for()
    assert "opt.name" in page.locator("#config-heading + div").inner_text()
    assert "adam" in page.locator("#config-heading + div").inner_text()
    assert "train/loss" in page.locator("#summary-heading + div").inner_text()
    facts = page.locator(".facts").inner_text()
    assert "finished" in facts
    assert "19" in facts  # the last step
    page.get_by_role("link", name="Download model.txt").wait_for()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download model.txt").click()
    assert Path(download.value.path()).read_text() == "weights"

    page.get_by_label("Add a tag").fill("best")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Remove tag best").wait_for()
    page.get_by_role("textbox", name="Notes").fill("a good one")
    page.get_by_role("button", name="Save notes").click()
    page.get_by_text("Notes saved.").wait_for()
    page.reload()
    page.get_by_role("button", name="Remove tag best").wait_for()
    assert page.get_by_role("textbox", name="Notes").input_value() == "a good one"
    page.get_by_role("button", name="Remove tag best").click()
    page.get_by_text("No tags.").wait_for()
    wait_for(lambda: page.evaluate(_LENGTHS, "train/loss") == [20, 20], what="the run's chart")


def test_a_fork_links_its_parent(page: Any, server: EmbeddedServer, start_run: StartRun) -> None:
    """A forked run's page names its parent and the step, linking to the parent's page."""
    parent = _finished(start_run, server, name="parent")
    child = start_run(server, project="proj", name="child", fork_from=f"{parent.id}?_step=9")
    child.finish(quiet=True)
    page.goto(f"{server.url}/local/proj/runs/{child.id}")
    page.get_by_text("Forked from").wait_for()
    assert "at step 9" in page.locator(".facts").inner_text()
    page.get_by_role("link", name=parent.id).click()
    page.get_by_role("heading", name="parent").wait_for()


def test_missing_run_page_says_so(page: Any, server: EmbeddedServer) -> None:
    """A run page of a run that does not exist says so and links to the project."""
    page.goto(f"{server.url}/local/proj/runs/nothing")
    page.get_by_role("heading", name="No such run").wait_for()
    assert page.get_by_role("link", name="All runs of proj").count() == 1


def test_keyed_server_takes_the_key_once_from_the_url(
    page: Any, keyed_server: EmbeddedServer, start_run: StartRun, alice_key: str
) -> None:
    """?key= is kept for the tab and dropped from the URL; live charts work with it too."""
    run = start_run(keyed_server, api_key=alice_key, project="proj", name="keyed")
    _train(run, range(5))
    page.goto(f"{keyed_server.url}/alice/proj?key={alice_key}")
    wait_for(lambda: page.evaluate(_LAST_X, "train/loss") == 4, what="the chart")
    assert "key=" not in page.url
    _train(run, range(5, 8))
    wait_for(lambda: page.evaluate(_LAST_X, "train/loss") == 7, what="a live point")
    page.goto(f"{keyed_server.url}/")  # same tab: the key is remembered
    page.get_by_role("link", name="proj", exact=True).wait_for()


def test_keyed_server_without_a_key_asks_for_one(
    browser: Any, keyed_server: EmbeddedServer, alice_key: str
) -> None:
    """Without a key the dashboard explains the need and takes the key in a form."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(keyed_server.url + "/")
        page.get_by_role("heading", name="This server needs an API key").wait_for()
        page.get_by_label("API key").fill(alice_key)
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Projects of alice").wait_for()
    finally:
        context.close()


def test_names_and_values_are_shown_as_text_never_as_markup(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """A run name, tag or config value holding HTML is shown literally and runs no script."""
    name = '<img src=x onerror="window.pwned=1">'
    run = start_run(
        server,
        project="proj",
        name=name,
        tags=["<b>tag</b>"],
        config={"html": "<script>window.pwned=2</script>"},
    )
    run.log({"<i>metric</i>": 1.0})
    run.finish(quiet=True)
    page.goto(f"{server.url}/local/proj")
    wait_for(lambda: _names(page) == [name], what="the row")
    assert page.locator(".col-tags").inner_text() == "<b>tag</b>"
    assert "<script>window.pwned=2</script>" in page.locator("table.runs").inner_text()
    page.get_by_role("link", name=name).click()
    page.get_by_text("<script>window.pwned=2</script>").wait_for()
    wait_for(lambda: page.evaluate(_LENGTHS, "<i>metric</i>") == [1, 1], what="the chart")
    assert page.evaluate("() => window.pwned") is None
