"""Names of files stored with a run: one rule, checked at save(), and no stored name joined
onto a local folder (a download, the run's files/) ever leads outside that folder."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from server_process import ServerProcess

import tracker
from tracker._names import check_file_name
from tracker._records.codec import encode_record
from tracker._runlog import RunLogWriter

SILENT = {"silent": True}


@pytest.mark.parametrize("name", ["a.txt", "dir/sub/file.bin", "..hidden", "space in name.txt"])
def test_check_file_name_accepts_relative_paths(name: str) -> None:
    """Plain relative paths are valid file names."""
    assert check_file_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "a/../b", "..", "./a", "a//b", "a\\b", "a\x00", "x" * 513]
)
def test_check_file_name_refuses_unsafe_paths(name: str) -> None:
    """Absolute paths, dot parts, empty parts, backslashes, control characters and names
    over 512 characters are UsageErrors naming the file."""
    with pytest.raises(tracker.UsageError, match="file name"):
        check_file_name(name)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh `tracker server` process with its own SQLite file."""
    running = ServerProcess(tmp_path / "server").start()
    yield running
    running.stop()


def _online(server: ServerProcess, tmp_path: Path) -> tracker.Run:
    settings = {"silent": True, "base_url": server.url, "init_timeout": 10.0}
    return tracker.init(project="p", dir=tmp_path / "runs", settings=settings)


def test_a_name_the_server_refuses_fails_at_save_and_the_run_still_syncs(
    server: ServerProcess, tmp_path: Path
) -> None:
    """save() of a file whose stored name the server would refuse (a backslash, a control
    character, over 512 characters) is a UsageError at once that says what to do; the run's
    rows and its other files still reach the server."""
    source = tmp_path / "src"
    deep = source / ("d" * 200) / ("e" * 200) / ("f" * 200)
    deep.mkdir(parents=True)
    bad = [source / "a\\b.txt", source / "new\nline.txt", deep / "long.txt"]
    for path in [*bad, source / "good.txt"]:
        path.write_bytes(b"content of " + path.name.encode())
    run = _online(server, tmp_path)
    run.log({"x": 0})
    for path in bad:
        with pytest.raises(tracker.UsageError, match=r"save\(\).*file name.*rename"):
            run.save(str(path), base_path=str(source))
    run.save(str(source / "good.txt"), base_path=str(source))
    run.log({"x": 1})
    run.finish()
    status = run.status()
    assert status.acknowledged == status.written, status
    stored = tracker.Api(server.url).run(run.path)
    assert stored.state == "finished"
    assert [row["x"] for row in stored.history(keys=["x"])] == [0, 1]
    assert [(file.name, file.read()) for file in stored.files()] == [
        ("good.txt", b"content of good.txt")
    ]


def test_names_with_url_characters_are_stored_under_their_own_name(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Files named with '?', '#', '%' or a space upload under exactly their names."""
    names = ["a?b.txt", "c#d.txt", "e%41.txt", "f g/h.txt"]
    for name in names:
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(name.encode())
    run = _online(server, tmp_path)
    run.save(str(tmp_path / "src" / "**" / "*.txt"), base_path=str(tmp_path / "src"))
    run.finish()
    files = tracker.Api(server.url).run(run.path).files()
    assert {file.name: file.read() for file in files} == {name: name.encode() for name in names}


class _HostileServer(http.server.ThreadingHTTPServer):
    """A server speaking enough of the read API to list a run's files with any names."""

    def __init__(self, names: list[str]) -> None:
        """Listen on a free loopback port; the run local/p/r lists ``names``."""
        super().__init__(("127.0.0.1", 0), _HostileHandler)
        self.names = names
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    server: _HostileServer

    def do_GET(self) -> None:
        """The run document, its files list, or any file's bytes."""
        run = "/api/v1/runs/local/p/r"
        if self.path == run:
            body: Any = [{"id": "r", "entity": "local", "project": "p", "state": "finished"}]
        elif self.path == run + "/files":
            files = [{"name": name, "size": 4, "sha256": None} for name in self.server.names]
            body = {"files": files}
        else:
            body = "evil"
        data = orjson.dumps(body) if not isinstance(body, str) else body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_a_name_from_the_server_never_escapes_the_download_folder(tmp_path: Path) -> None:
    """RunFile.download refuses names from a hostile server that climb out ('..'), are
    absolute, hold backslashes, or lead out through a symbolic link in the target folder;
    nothing is written outside it, and a plain name downloads."""
    target, outside = tmp_path / "target", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (target / "link").symlink_to(outside)
    bad = [
        "../outside/climbed.txt",
        "a/../../outside/climbed.txt",
        str(outside / "absolute.txt"),
        "..\\outside\\backslash.txt",
        "link/through-link.txt",
    ]
    hostile = _HostileServer([*bad, "ok/fine.txt"])
    thread = threading.Thread(target=hostile.serve_forever, daemon=True)
    thread.start()
    try:
        files = {file.name: file for file in tracker.Api(hostile.url).run("local/p/r").files()}
        for name in bad:
            with pytest.raises(tracker.UsageError, match="file name"):
                files[name].download(target)
        written = files["ok/fine.txt"].download(target)
    finally:
        hostile.shutdown()
        hostile.server_close()
    assert written == target / "ok" / "fine.txt"
    assert written.read_bytes() == b"evil"
    assert list(outside.iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["outside", "target"]


def test_a_name_in_the_run_log_never_escapes_the_run_files(tmp_path: Path) -> None:
    """read_run().files() leaves out file records whose names climb out of the run's files/
    folder, are absolute, or lead out through a symbolic link, so neither reading nor
    `tracker sync` touches a file outside it; the other files are listed."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    source = tmp_path / "kept.txt"
    source.write_bytes(b"kept")
    run = tracker.init(dir=tmp_path / "runs", settings=SILENT)
    run.save(str(source))
    run.finish()
    run_dir = Path(run.dir).parent
    (run_dir / "files" / "link").symlink_to(tmp_path)
    writer = RunLogWriter(run_dir / "run.log")
    seq = tracker.read_run(run_dir).next_seq
    for offset, name in enumerate(["../../../secret.txt", str(secret), "link/secret.txt"]):
        record = {"name": name, "size": 6, "sha256": None, "policy": "now"}
        writer.append(encode_record((seq + offset, "file"), record, "file"))
    writer.close()
    stored = tracker.read_run(run_dir)
    assert len(stored.files_stored) == 4
    assert [(file.name, file.read()) for file in stored.files()] == [("kept.txt", b"kept")]
