"""init(monitor_gym=True): gymnasium's RecordVideo videos logged and stored as they close."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tracker
from tracker._server._runner import EmbeddedServer

gym = pytest.importorskip("gymnasium", reason='pip install -e ".[integrations]" (gymnasium)')
pytest.importorskip(
    "moviepy", reason="RecordVideo writes with moviepy: pip install 'gymnasium[other]'"
)

Start = Callable[..., tracker.Run]


class Dot(gym.Env):  # type: ignore[misc]
    """A five-step episode whose frames show a moving line: RecordVideo needs rgb_array."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(self) -> None:
        self.render_mode = "rgb_array"
        self.observation_space = gym.spaces.Discrete(16)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return self.t, 1.0, self.t >= 5, False, {}

    def render(self) -> Any:
        frame = np.zeros((16, 16, 3), np.uint8)
        frame[self.t, :, 0] = 255
        return frame


def _episodes(run: tracker.Run, folder: str, count: int) -> None:
    env = gym.wrappers.RecordVideo(
        Dot(), folder, episode_trigger=lambda episode: True, disable_logger=True
    )
    for episode in range(count):
        env.reset(seed=episode)
        while not env.step(0)[2]:
            pass
        run.log({"episode": episode})
    env.close()


def test_each_recorded_episode_is_a_video_of_the_run(offline: Start, tmp_path: Path) -> None:
    """Every video RecordVideo saves is logged as {"videos": video-file} (joining the next
    row) and stored as a run file with the recorder's bytes."""
    run = offline(monitor_gym=True)
    _episodes(run, "videos", 2)
    run.finish()
    stored = tracker.read_run(run.dir)
    videos = [row["videos"] for row in stored.history() if "videos" in row]
    assert len(videos) == 2
    assert all(video["_type"] == "video-file" for video in videos)
    assert all(video["path"].endswith(".mp4") for video in videos)
    files = {file.name: file.read() for file in stored.files()}
    recorded = sorted(path.read_bytes() for path in (tmp_path / "videos").glob("*.mp4"))
    assert sorted(files[video["path"]] for video in videos) == recorded


def test_videos_after_finish_and_of_other_runs_are_left_alone(
    offline: Start, server: EmbeddedServer, tmp_path: Path
) -> None:
    """A finished run logs no more videos; an online run's videos reach the server."""
    first = offline(monitor_gym=True)
    first.finish()
    settings = {"silent": True, "base_url": server.url}
    run = tracker.init(project="gym", dir=tmp_path, settings=settings, monitor_gym=True)
    _episodes(run, "online-videos", 1)
    run.finish()
    assert tracker.read_run(first.dir).history() == []
    remote = tracker.Api(server.url).run(run.path)
    (video,) = [row["videos"] for row in remote.history() if "videos" in row]
    assert video["path"] in [file.name for file in remote.files()]
