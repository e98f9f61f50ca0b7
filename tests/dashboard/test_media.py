"""A run's media on its dashboard page, in headless Chromium: images with a step slider,
histograms over steps, tables as tables, videos, audio and HTML."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import tracker
from tests.dashboard.test_browser import wait_for
from tracker._run import Run
from tracker._server._runner import EmbeddedServer

pytestmark = pytest.mark.dashboard

StartRun = Callable[..., Run]

# what an <img> of a media panel shows: its natural size once loaded (0 until then)
_IMAGE = """key => {
  const image = document.querySelector(`figure.media[data-key="${key}"] img`);
  return image && image.complete && image.naturalWidth
    ? [image.naturalWidth, image.naturalHeight, image.src.slice(0, 5)] : null;
}"""


def _media_run(start_run: StartRun, server: EmbeddedServer) -> Run:
    run = start_run(server, project="proj", name="with-media")
    rng = np.random.default_rng(0)
    for step in range(3):
        run.log(
            {
                "loss": 1 / (step + 1),
                "sample": tracker.Image(np.full((4 + step, 6, 3), 60 * step, np.uint8)),
                "weights": tracker.Histogram(rng.normal(step, 1, 200)),
            }
        )
    table = tracker.Table(columns=["input", "label"], data=[["a", 1], ["b", 2]])
    run.log(
        {
            "predictions": table,
            "rollout": tracker.Video(rng.integers(0, 255, (3, 3, 8, 8), dtype=np.uint8)),
            "tone": tracker.Audio(np.sin(np.arange(800) / 5), sample_rate=8000),
            "report": tracker.Html("<h1 id='inside'>Report</h1>"),
        }
    )
    run.finish(quiet=True)
    return run


def test_a_run_page_draws_each_kind_of_media(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """The Media section has a panel per media key: the image at the last step (from a
    blob: URL), a slider that moves through its steps, a histogram row per step, the
    table's rows, a GIF video, an audio player and the HTML in a sandboxed frame; the
    summary names each media value in a few words."""
    run = _media_run(start_run, server)
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    page.get_by_role("heading", name="Media", exact=True).wait_for()
    panels = page.locator("figure.media")
    wait_for(lambda: panels.count() == 6, what="six media panels")
    assert page.locator("figure.media figcaption").all_inner_texts() == [
        "predictions",
        "report",
        "rollout",
        "sample",
        "tone",
        "weights",
    ]
    assert wait_for(lambda: page.evaluate(_IMAGE, "sample"), what="the image") == [6, 6, "blob:"]
    sample = page.locator('figure.media[data-key="sample"]')
    assert sample.locator("output").inner_text() == "step 2"
    sample.get_by_role("slider", name="Step of sample").fill("0")
    wait_for(lambda: page.evaluate(_IMAGE, "sample") == [6, 4, "blob:"], what="step 0's image")
    assert sample.locator("output").inner_text() == "step 0"
    histogram = page.locator('figure.media[data-key="weights"] canvas')
    assert histogram.get_attribute("data-steps") == "3"
    assert "3 histograms from step 0 to 2" in (histogram.get_attribute("aria-label") or "")
    table = page.locator('figure.media[data-key="predictions"] table')
    table.wait_for()
    assert table.locator("th").all_inner_texts() == ["input", "label"]
    assert table.locator("tbody tr").all_inner_texts() == ["a\t1", "b\t2"]
    assert wait_for(lambda: page.evaluate(_IMAGE, "rollout"), what="the GIF") == [8, 8, "blob:"]
    audio = page.locator('figure.media[data-key="tone"] audio')
    audio.wait_for(state="attached")
    assert (audio.get_attribute("src") or "").startswith("blob:")
    frame = page.locator('figure.media[data-key="report"] iframe')
    frame.wait_for(state="attached")
    assert frame.get_attribute("sandbox") == ""  # no allow-scripts: no script of it runs
    heading = page.frame_locator('figure.media[data-key="report"] iframe').locator("#inside")
    assert heading.inner_text() == "Report"
    summary = page.locator("section[aria-labelledby=summary-heading]").inner_text()
    assert "image 6\u00d76" in summary  # a multiplication sign
    assert "histogram (64 bins)" in summary


def test_a_run_without_media_shows_no_media_section(
    page: Any, server: EmbeddedServer, start_run: StartRun
) -> None:
    """A run that logged only numbers has no Media section."""
    run = start_run(server, project="proj", name="plain")
    run.log({"loss": 1.0})
    run.finish(quiet=True)
    page.goto(f"{server.url}/local/proj/runs/{run.id}")
    page.get_by_role("heading", name="Files").wait_for()
    page.wait_for_timeout(300)
    assert page.locator("section[aria-labelledby=media-heading]").is_hidden()


def test_media_load_with_an_api_key(
    page: Any, keyed_server: EmbeddedServer, alice_key: str, start_run: StartRun
) -> None:
    """On a server that needs keys, the media files are fetched with the tab's key."""
    run = start_run(keyed_server, api_key=alice_key, project="proj")
    run.log({"sample": tracker.Image(np.zeros((3, 5), np.uint8))})
    run.finish(quiet=True)
    page.goto(f"{keyed_server.url}/alice/proj/runs/{run.id}?key={alice_key}")
    assert wait_for(lambda: page.evaluate(_IMAGE, "sample"), what="the image") == [5, 3, "blob:"]
