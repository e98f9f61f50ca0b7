"""Tests for a run log damaged in the middle (a flipped bit, a bad sector): read past,
reported, and never cut off by a resume."""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any

import pytest

import tracker

HEADER_SIZE = 16
FRAME = struct.Struct("<II")
SILENT: dict[str, Any] = {"silent": True}


def frame_spans(log: Path) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each frame of an intact run log (docs/run-log.md)."""
    data = log.read_bytes()
    spans, offset = [], HEADER_SIZE
    while offset < len(data):
        length, _ = FRAME.unpack_from(data, offset)
        spans.append((offset, offset + FRAME.size + length))
        offset += FRAME.size + length
    return spans


def run_of_batches(tmp_path: Path, batches: int = 5, rows: int = 100) -> tuple[tracker.Run, Path]:
    """A finished offline run whose rows were flushed in ``batches`` frames of ``rows``."""
    run = tracker.init(dir=tmp_path, project="tests", id="damaged", settings=SILENT)
    for batch in range(batches):
        for index in range(rows):
            run.log({"step": batch * rows + index, "x": index / 7})
        assert run.flush(timeout=10)
    run.finish()
    return run, Path(run.dir).parent / "run.log"


def flip_byte(log: Path, offset: int) -> None:
    """Flip every bit of the byte at ``offset``."""
    data = bytearray(log.read_bytes())
    data[offset] ^= 0xFF
    log.write_bytes(bytes(data))


def row_frames(log: Path) -> list[tuple[int, int]]:
    """The spans of the frames that hold rows (not the run record, not the exit)."""
    data = log.read_bytes()
    return [span for span in frame_spans(log) if b'"row"' in data[span[0] : span[1]]]


@pytest.mark.parametrize("where", ["payload", "length", "crc"])
def test_a_damaged_frame_in_the_middle_loses_only_its_own_rows(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """read_run reads every intact frame after a damaged one, and says where the damage is
    and how many records it held."""
    run, log = run_of_batches(tmp_path)
    start, end = row_frames(log)[2]
    flip_byte(log, {"payload": (start + end) // 2, "length": start + 1, "crc": start + 5}[where])
    with caplog.at_level(logging.WARNING, logger="tracker"):
        stored = tracker.read_run(run.dir)
    steps = [row["_step"] for row in stored.history()]
    assert steps == [*range(200), *range(300, 500)]
    assert stored.state == "finished"
    assert not stored.torn
    (damage,) = stored.damage
    assert (damage.offset, damage.length, damage.records_lost) == (start, end - start, 100)
    assert f"damaged at byte {start}" in caplog.text


def test_resume_after_damage_keeps_the_frames_after_it(tmp_path: Path) -> None:
    """A resumed run appends after the last intact frame: the frames after the damage stay,
    and numbering goes on after them."""
    run, log = run_of_batches(tmp_path, batches=4)
    start, _ = row_frames(log)[1]
    flip_byte(log, start + 20)
    before = log.read_bytes()
    resumed = tracker.init(
        dir=tmp_path, project="tests", id="damaged", resume="allow", settings=SILENT
    )
    assert resumed.step == 400
    resumed.log({"new": 1})
    resumed.finish()
    assert log.read_bytes()[: len(before)] == before  # nothing cut, nothing rewritten
    stored = tracker.read_run(run.dir)
    steps = [row["_step"] for row in stored.history()]
    assert steps == [*range(100), *range(200, 401)]
    assert len(stored.damage) == 1


def test_resume_moves_a_torn_tail_aside_instead_of_destroying_it(tmp_path: Path) -> None:
    """The bytes of a torn tail are kept in run.log.torn-<offset> when a resume cuts them."""
    run, log = run_of_batches(tmp_path, batches=2)
    last_start, last_end = frame_spans(log)[-1]
    tail = log.read_bytes()[last_start : last_end - 3]
    with log.open("r+b") as handle:
        handle.truncate(last_end - 3)
    tracker.init(
        dir=tmp_path, project="tests", id="damaged", resume="allow", settings=SILENT
    ).finish()
    kept = log.with_name(f"run.log.torn-{last_start}")
    assert kept.read_bytes() == tail
    assert tracker.read_run(run.dir).state == "finished"


def test_sync_uploads_past_damage_says_what_was_lost_and_exits_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tracker sync sends every intact record after a damaged frame, tells the server which
    records are lost (its run document counts them), says so and exits 1; a second sync
    sends nothing again."""
    from tracker._cli import main
    from tracker._server._runner import EmbeddedServer

    run, log = run_of_batches(tmp_path)
    start, end = row_frames(log)[2]
    flip_byte(log, (start + end) // 2)
    with EmbeddedServer(f"sqlite:///{tmp_path / 'server.db'}") as server:
        arguments = ["sync", run.dir, "--base-url", server.url]
        assert main(arguments) == 1
        first = capsys.readouterr()
        assert f"damaged at byte {start}" in first.err
        assert "100 records after seq" in first.err
        stored = tracker.Api(server.url).run(f"local/tests/{run.id}")
        steps = [row["_step"] for row in stored.history(keys=["step"])]
        assert steps == [*range(200), *range(300, 500)]
        assert stored.state == "finished"
        assert tracker.Api(server.url).run(stored.path)._document["metadata"]["records_lost"] == 100
        assert main(arguments) == 1
        assert " 0 records sent" in capsys.readouterr().out


def test_two_copies_of_a_run_resumed_apart_never_lose_rows_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run directory copied and resumed in two places: the first copy synced is the run;
    the second's sync is refused naming the conflict and --run-id, and with --run-id it is
    stored whole as a run of its own."""
    import shutil

    from tracker._cli import main
    from tracker._server._runner import EmbeddedServer

    run_of_batches(tmp_path / "a", batches=1)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for root, value in (("a", 1.0), ("b", 2.0)):
        resumed = tracker.init(
            dir=tmp_path / root, project="tests", id="damaged", resume="allow", settings=SILENT
        )
        for index in range(50):
            resumed.log({"step": 100 + index, "copy": value})
        resumed.finish()
    with EmbeddedServer(f"sqlite:///{tmp_path / 'server.db'}") as server:
        url = ["--base-url", server.url]
        assert main(["sync", str(tmp_path / "a"), *url]) == 0
        capsys.readouterr()
        assert main(["sync", str(tmp_path / "b"), *url]) == 2
        error = capsys.readouterr().err
        assert "resumed in two places" in error
        assert "--run-id" in error
        api = tracker.Api(server.url)
        copies = {row["copy"] for row in api.run("local/tests/damaged").history(keys=["copy"])}
        assert copies == {1.0}
        assert main(["sync", str(tmp_path / "b"), *url, "--run-id", "damaged-b"]) == 0
        other = api.run("local/tests/damaged-b").history(keys=["step", "copy"])
        assert len(other) == 150
        assert {row.get("copy") for row in other[100:]} == {2.0}
