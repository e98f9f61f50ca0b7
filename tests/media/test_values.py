"""Media values in log(): stored as run files with W&B's references, read back by read_run."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import tracker
from tests.media.conftest import png_pixels

Start = Callable[..., tracker.Run]


def _file(stored: tracker.StoredRun, name: str) -> bytes:
    (found,) = [file for file in stored.files() if file.name == name]
    return found.read()


def test_a_numpy_image_is_a_png_run_file_referenced_as_wandb_does(offline: Start) -> None:
    """An H x W x 3 uint8 array is stored as a PNG (tracker's own encoder, no Pillow) under
    media/images/KEY_STEP_HASH.png; the row holds W&B's image-file reference."""
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    run = offline()
    run.log({"loss": 0.5})
    run.log({"sample": tracker.Image(pixels, caption="first")})
    run.finish()
    stored = tracker.read_run(run.dir)
    reference = stored.history()[1]["sample"]
    assert reference["path"].startswith("media/images/sample_1_")
    assert reference["path"].endswith(".png")
    assert {key: reference[key] for key in ("_type", "format", "width", "height", "caption")} == {
        "_type": "image-file",
        "format": "png",
        "width": 5,
        "height": 4,
        "caption": "first",
    }
    content = _file(stored, reference["path"])
    assert len(content) == reference["size"]
    assert reference["path"].split("_")[-1] == reference["sha256"][:20] + ".png"
    assert png_pixels(content) == (5, 4, 3, pixels.tobytes())
    assert stored.summary["sample"] == reference


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0.0, 0.5], [1.0, 0.25]]), [[0, 127], [255, 63]]),  # [0, 1] floats scaled
        (np.array([[-1.0, 0.0], [1.0, 0.0]]), [[0, 127], [255, 127]]),  # negatives stretched
        (np.array([[0, 300], [-5, 7]]), [[0, 255], [0, 7]]),  # ints clipped
        (np.array([[True, False]]), [[255, 0]]),
    ],
)
def test_image_values_are_scaled_to_bytes_as_wandb_scales_them(
    offline: Start, array: Any, expected: list[list[int]]
) -> None:
    """Floats in [0, 1] are multiplied by 255, negative floats stretched first, ints
    clipped, booleans 0 or 255: W&B's rule."""
    run = offline()
    run.log({"grey": tracker.Image(array)})
    run.finish()
    stored = tracker.read_run(run.dir)
    width, height, channels, pixels = png_pixels(_file(stored, stored.history()[0]["grey"]["path"]))
    assert (width, height, channels) == (len(expected[0]), len(expected), 1)
    assert list(pixels) == [value for row in expected for value in row]


def test_channels_first_arrays_torch_tensors_and_pil_images_become_pngs(offline: Start) -> None:
    """A C x H x W numpy array and a torch tensor are turned channels-last; a PIL image is
    saved by PIL; all read back with their sizes."""
    torch = pytest.importorskip("torch")
    pil = pytest.importorskip("PIL.Image")
    rgb = np.random.default_rng(1).integers(0, 256, (3, 6, 7), dtype=np.uint8)
    run = offline()
    run.log(
        {
            "numpy": tracker.Image(rgb),
            "torch": tracker.Image(torch.from_numpy(rgb)),
            "pil": tracker.Image(pil.fromarray(rgb.transpose(1, 2, 0))),
        }
    )
    run.finish()
    stored = tracker.read_run(run.dir)
    row = stored.history()[0]
    for key in ("numpy", "torch", "pil"):
        content = _file(stored, row[key]["path"])
        decoded = np.asarray(pil.open(io.BytesIO(content)).convert("RGB"))
        assert (decoded == rgb.transpose(1, 2, 0)).all(), key
        assert (row[key]["width"], row[key]["height"]) == (7, 6)


def test_an_image_file_is_stored_as_it_is(offline: Start, tmp_path: Path) -> None:
    """Image(path) stores the file's bytes unchanged, with its size read from its header."""
    source = tmp_path / "cat.png"
    source.write_bytes(_png_of(np.zeros((3, 9), np.uint8)))
    run = offline()
    run.log({"cat": tracker.Image(str(source))})
    run.finish()
    stored = tracker.read_run(run.dir)
    reference = stored.history()[0]["cat"]
    assert (reference["width"], reference["height"]) == (9, 3)
    assert _file(stored, reference["path"]) == source.read_bytes()


def _png_of(array: Any) -> bytes:
    from tracker._media._png import encode_png

    return encode_png(array.tobytes(), array.shape[1], array.shape[0], 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (lambda: tracker.Image(np.zeros((2, 2, 5))), "not an image"),
        (lambda: tracker.Image(object()), "pass a numpy array"),
        (lambda: tracker.Image("missing.png"), "no such file"),
        (tracker.Histogram, "one of them"),
        (lambda: tracker.Histogram(np_histogram=([1, 2], [0, 1])), "need 3 edges"),
        (lambda: tracker.Histogram([1.0], num_bins=1000), "1 to 512"),
        (lambda: tracker.Table(columns=["a"], data=[[1, 2]]), "one value per column"),
        (lambda: tracker.Video(np.zeros((2, 5, 4, 4))), "T x C x H x W"),
        (lambda: tracker.Video(np.zeros((2, 3, 4, 4)), format="mp4"), "'gif'"),
        (lambda: tracker.Audio(np.zeros(10)), "sample_rate"),
        (lambda: tracker.Html(3), "HTML text"),
    ],
)
def test_bad_media_values_are_usage_errors_saying_what_to_pass(
    value: Callable[[], Any], message: str
) -> None:
    """A media value made of the wrong thing raises UsageError at once, saying what to pass."""
    with pytest.raises(tracker.UsageError, match=message):
        value()


def test_histograms_are_inline_as_wandb_stores_them(offline: Start) -> None:
    """Histogram(values) holds numpy's counts and edges; np_histogram= is kept as given;
    the row holds {"_type": "histogram", "values", "bins"} and no file."""
    values = np.random.default_rng(2).normal(size=500)
    counts, edges = np.histogram(values, bins=64)
    run = offline()
    run.log({"h": tracker.Histogram(np.append(values, np.nan))})
    run.log({"given": tracker.Histogram(np_histogram=([1, 2, 3], [0.0, 1.0, 2.0, 3.0]))})
    run.finish()
    stored = tracker.read_run(run.dir)
    first, second = stored.history()
    assert first["h"] == {"_type": "histogram", "values": counts.tolist(), "bins": edges.tolist()}
    assert second["given"] == {"_type": "histogram", "values": [1, 2, 3], "bins": [0, 1, 2, 3]}
    assert not [file for file in stored.files() if file.name.startswith("media/")]


def test_a_histogram_of_a_list_bins_without_numpy_as_numpy_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without numpy, a list is cut into the same bins numpy.histogram makes."""
    import builtins

    from tracker._media import _histogram

    values = [0.5, 1.0, 1.0, 2.5, 4.0, 4.0, 7.25]
    expected_counts, expected_edges = np.histogram(values, bins=4)
    real_import = builtins.__import__

    def no_numpy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "numpy":
            raise ImportError("no numpy here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_numpy)
    counts, edges = _histogram._histogram(values, 4)
    monkeypatch.undo()
    assert counts == expected_counts.tolist()
    assert edges == pytest.approx(expected_edges.tolist())


def test_a_table_is_a_json_run_file_with_its_columns_and_rows(offline: Start) -> None:
    """Table(columns, data) with add_data and add_column is stored as W&B's table JSON;
    the row holds a table-file reference with ncols and nrows; an image cell becomes its
    own file, referenced from the cell."""
    table = tracker.Table(columns=["x", "label"], data=[[1, "one"]])
    table.add_data(2, "two")
    table.add_column("picture", [tracker.Image(np.zeros((2, 2), np.uint8)), None])
    run = offline()
    run.log({"preds": table})
    table.add_data(3, "three", None)  # after logging: not in the logged table
    run.finish()
    stored = tracker.read_run(run.dir)
    reference = stored.history()[0]["preds"]
    assert reference["_type"] == "table-file"
    assert reference["path"].startswith("media/table/preds_0_")
    assert reference["path"].endswith(".table.json")
    assert (reference["ncols"], reference["nrows"]) == (3, 2)
    content = orjson.loads(_file(stored, reference["path"]))
    assert content["columns"] == ["x", "label", "picture"]
    assert [row[:2] for row in content["data"]] == [[1, "one"], [2, "two"]]
    picture = content["data"][0][2]
    assert picture["_type"] == "image-file"
    assert png_pixels(_file(stored, picture["path"]))[:3] == (2, 2, 1)
    assert content["data"][1][2] is None


def test_a_table_from_a_dataframe_keeps_its_columns_and_rows(offline: Start) -> None:
    """Table(dataframe=df) takes the DataFrame's columns and rows; get_dataframe gives it back."""
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    table = tracker.Table(dataframe=frame)
    assert table.columns == ["a", "b"]
    assert table.data == [[1, "x"], [2, "y"]]
    assert table.get_column("b") == ["x", "y"]
    assert table.get_dataframe().equals(frame)


def test_a_video_of_frames_is_an_animated_gif(offline: Start) -> None:
    """Video(T x C x H x W array) is stored as a looping GIF of those frames (tracker's own
    encoder); two videos of N x T x C x H x W are tiled side by side."""
    pil = pytest.importorskip("PIL.Image")
    grey = np.random.default_rng(3).integers(0, 256, (3, 1, 8, 10), dtype=np.uint8)
    run = offline()
    run.log({"clip": tracker.Video(grey, fps=5), "pair": tracker.Video(np.stack([grey, grey]))})
    run.finish()
    stored = tracker.read_run(run.dir)
    row = stored.history()[0]
    assert row["clip"]["_type"] == "video-file"
    assert row["clip"]["path"].endswith(".gif")
    assert (row["clip"]["width"], row["clip"]["height"]) == (10, 8)
    gif = pil.open(io.BytesIO(_file(stored, row["clip"]["path"])))
    frames = []
    for index in range(3):
        gif.seek(index)
        frames.append(np.asarray(gif.convert("L")))
    assert (np.stack(frames) == grey[:, 0]).all()
    assert gif.info["duration"] == 200
    assert (row["pair"]["width"], row["pair"]["height"]) == (20, 8)


def test_audio_samples_become_a_wav_file(offline: Start) -> None:
    """Audio(samples, sample_rate) is stored as 16-bit PCM WAV, referenced with its rate."""
    samples = np.sin(np.linspace(0, 20, 800))
    run = offline()
    run.log({"tone": tracker.Audio(samples, sample_rate=8000, caption="a tone")})
    run.finish()
    stored = tracker.read_run(run.dir)
    reference = stored.history()[0]["tone"]
    assert reference["_type"] == "audio-file"
    assert (reference["sample_rate"], reference["caption"]) == (8000, "a tone")
    with wave.open(io.BytesIO(_file(stored, reference["path"]))) as read:
        assert (read.getframerate(), read.getnchannels(), read.getnframes()) == (8000, 1, 800)
        frames = np.frombuffer(read.readframes(800), "<i2")
    assert np.abs(frames / 32767 - samples).max() < 1e-4


def test_html_is_stored_as_an_html_file(offline: Start, tmp_path: Path) -> None:
    """Html(text) and Html(path) are stored as html-file references."""
    page = tmp_path / "report.html"
    page.write_text("<p>from a file</p>")
    run = offline()
    run.log({"text": tracker.Html("<h1>Done</h1>"), "file": tracker.Html(str(page))})
    run.finish()
    stored = tracker.read_run(run.dir)
    row = stored.history()[0]
    assert row["text"]["_type"] == "html-file"
    assert _file(stored, row["text"]["path"]) == b"<h1>Done</h1>"
    assert _file(stored, row["file"]["path"]) == b"<p>from a file</p>"


def test_a_list_of_images_is_wandbs_images_separated(offline: Start) -> None:
    """A list of Images is one images/separated reference naming a file per image."""
    images = [
        tracker.Image(np.full((2, 3), value, np.uint8), caption=f"#{value}") for value in (1, 2)
    ]
    run = offline()
    run.log({"examples": images})
    run.finish()
    stored = tracker.read_run(run.dir)
    reference = stored.history()[0]["examples"]
    assert {key: reference[key] for key in ("_type", "width", "height", "count", "captions")} == {
        "_type": "images/separated",
        "width": 3,
        "height": 2,
        "count": 2,
        "captions": ["#1", "#2"],
    }
    assert [png_pixels(_file(stored, name))[3] for name in reference["filenames"]] == [
        bytes([1] * 6),
        bytes([2] * 6),
    ]


def test_media_follow_the_step_rules_and_nested_keys(offline: Start) -> None:
    """Media logged with step= or commit=False are named for the step of their row and
    join it; a media value in a nested dict gets a folder per level."""
    run = offline()
    run.log({"loss": 1.0})
    run.log({"early": tracker.Image(np.zeros((1, 1)))}, step=5)
    run.log({"late": tracker.Image(np.ones((1, 1)))}, commit=False)
    run.log({"val": {"picture": tracker.Image(np.ones((2, 1)))}})
    run.finish()
    rows = tracker.read_run(run.dir).history()
    assert [row["_step"] for row in rows] == [0, 5]
    assert rows[1]["early"]["path"].startswith("media/images/early_5_")
    assert rows[1]["late"]["path"].startswith("media/images/late_5_")
    assert rows[1]["val"]["picture"]["path"].startswith("media/images/val/picture_5_")


def test_a_row_with_media_and_a_bad_value_logs_nothing(offline: Start) -> None:
    """log() of an image next to a value that cannot be logged raises UsageError naming the
    key, and stores neither the row nor the image's file."""
    run = offline()
    image = tracker.Image(np.zeros((2, 2)))
    for call in (
        lambda: run.log({"img": image, "bad": object()}),
        lambda: run.log({"img": image, "bad": object()}, step=3),
    ):
        with pytest.raises(tracker.UsageError, match="'bad'"):
            call()
    run.finish()
    stored = tracker.read_run(run.dir)
    assert stored.history() == []
    assert not (Path(run.dir) / "media").exists()


def test_media_in_a_disabled_run_do_nothing() -> None:
    """A disabled run takes media values like any other and writes nothing."""
    run = tracker.init(mode="disabled")
    run.log({"img": tracker.Image(np.zeros((2, 2)))})
    run.finish()
    assert run.dir == ""
