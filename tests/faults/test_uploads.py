"""Large files through a real `tracker server` and real `tracker sync` processes: uploads
and downloads stream (neither side holds a file in memory), and one size limit
(`MAX_FILE_BYTES`) is kept by both, refusing before anything is stored."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

import tracker
from tracker._wire.limits import MAX_FILE_BYTES
from tracker._wire.protocol import CLIENT_HEADERS

from .conftest import FAST_RETRIES, Figures, ServerProcess, child_env

pytestmark = pytest.mark.faults

UPLOADS = 4
UPLOAD_MB = 200
SERVER_GROWTH_BOUND_MB = 150.0
"""Less than one of the files: the server held them whole before (3.3 GB for 4 x 500 MB)."""
CLIENT_PEAK_BOUND_MB = float(UPLOAD_MB)
"""Less than the file: a sync peaks at ~67 MB; it held the file twice before (440 MB)."""
_SYNC_REPORTING_PEAK = (
    "import sys\n"
    "from tracker._cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "finally:\n"
    "    status = open('/proc/self/status').read()\n"
    "    print('VmHWM ' + status.split('VmHWM:')[1].split()[0])\n"
    "sys.exit(code)\n"
)
"""`tracker sync` printing its own peak RSS in kB as it exits: the rusage a parent reads
(``ru_maxrss``) counts the address space before exec too, the parent's own (vfork), so it
reported pytest's 334 MB for a sync of 67."""
FILE = "weights.bin"
RUN = "/api/v1/runs/local/uploads"


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _offline_run(tmp_path: Path, run_id: str, write: int | None) -> tuple[Path, str]:
    """An offline run of 10 rows with ``weights.bin`` in its ``run.dir``: ``write`` random
    MiB (None: a sparse file one byte over the limit); its directory and the file's SHA-256."""
    run = tracker.init(
        project="uploads",
        id=run_id,
        mode="offline",
        dir=tmp_path / "runs",
        settings={"silent": True},
    )
    digest = hashlib.sha256()
    with (Path(run.dir) / FILE).open("wb") as file:
        if write is None:
            file.truncate(MAX_FILE_BYTES + 1)
        for _ in range(write or 0):
            block = os.urandom(2**20)
            digest.update(block)
            file.write(block)
    for step in range(10):
        run.log({"x": step})
    run.finish()
    return Path(run.dir).parent, digest.hexdigest()


def _sync(run_dir: Path, server: ServerProcess, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SYNC_REPORTING_PEAK,
            "sync",
            *(str(run_dir), "--base-url", server.url),
        ],
        env=child_env(tmp_path, **FAST_RETRIES),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finished(process: subprocess.Popen[str]) -> tuple[str, float]:
    """Wait for a sync process (it must exit 0): its output and its peak RSS in MB."""
    assert process.stdout is not None
    with process.stdout:
        output = process.stdout.read()
    assert process.wait() == 0, output
    (peak_kb,) = re.findall(r"^VmHWM (\d+)$", output, re.MULTILINE)
    return output, int(peak_kb) / 1024


async def _download(url: str) -> tuple[str, int]:
    """GET a file, streaming: its SHA-256 and the size of the largest piece read."""
    digest, largest = hashlib.sha256(), 0
    async with (
        aiohttp.ClientSession(headers=CLIENT_HEADERS) as session,
        session.get(url) as response,
    ):
        assert response.status == 200, await response.text()
        async for piece in response.content.iter_chunked(2**20):
            digest.update(piece)
            largest = max(largest, len(piece))
    return digest.hexdigest(), largest


@pytest.mark.timeout(300)
def test_four_large_uploads_at_once_keep_both_sides_memory_bounded(
    tmp_path: Path, figures: Figures
) -> None:
    """Four `tracker sync` processes upload a 200 MB file each at once: the server's peak RSS
    grows far less than one file (bodies are spooled to disk and stored in 1 MiB chunks),
    each client's stays far below it (files are read from disk as they are sent), and four
    concurrent downloads give every byte back (SHA-256) without the server growing either."""
    server = ServerProcess(tmp_path / "server").start()
    try:
        made = [_offline_run(tmp_path, f"big{index}", UPLOAD_MB) for index in range(UPLOADS)]
        assert server.process is not None
        before = _peak_rss_mb(server.process.pid)
        began = time.monotonic()
        results = [_finished(p) for p in [_sync(d, server, tmp_path) for d, _ in made]]
        upload_seconds = time.monotonic() - began
        after_uploads = _peak_rss_mb(server.process.pid)
        for index, (_, digest) in enumerate(made):
            (listed,) = orjson.loads(_get(server, f"{RUN}/big{index}/files"))["files"]
            assert (listed["name"], listed["size"]) == (FILE, UPLOAD_MB * 2**20)
            assert listed["sha256"] == digest

        async def downloads() -> list[tuple[str, int]]:
            urls = [f"{server.url}{RUN}/big{index}/files/{FILE}" for index in range(UPLOADS)]
            return await asyncio.gather(*(_download(url) for url in urls))

        began = time.monotonic()
        downloaded = asyncio.run(downloads())
        download_seconds = time.monotonic() - began
        growth = _peak_rss_mb(server.process.pid) - before
        client_peak = max(peak for _, peak in results)
        figures.rss_growth_mb = growth
        figures.extra.update(
            uploaded_mb=UPLOADS * UPLOAD_MB,
            upload_seconds=round(upload_seconds, 1),
            download_seconds=round(download_seconds, 1),
            server_growth_after_uploads_mb=round(after_uploads - before, 1),
            client_peak_rss_mb=round(client_peak, 1),
        )
        assert [digest for digest, _ in downloaded] == [digest for _, digest in made]
        assert all(", 1 files" in output for output, _ in results), results
        assert growth < SERVER_GROWTH_BOUND_MB, f"the server's peak RSS grew {growth:.0f} MB"
        assert client_peak < CLIENT_PEAK_BOUND_MB, f"a sync peaked at {client_peak:.0f} MB"
        history = tracker.Api(server.url).run("local/uploads/big0").history(keys=["x"])
        assert [row["x"] for row in history] == list(range(10))
    finally:
        server.stop()


def _get(server: ServerProcess, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path, headers=CLIENT_HEADERS)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        return response.read()
    finally:
        connection.close()


@pytest.mark.timeout(120)
def test_a_file_over_the_limit_is_refused_by_both_sides_and_nothing_is_stored(
    tmp_path: Path, figures: Figures
) -> None:
    """A file one byte over MAX_FILE_BYTES: `tracker sync` says so and leaves it in the run
    directory, uploading the run's rows; the server refuses such a body with 413 naming the
    limit, at once when its length is announced, and as soon as a streamed body passes the
    limit, storing nothing of it and keeping no spool behind."""
    server = ServerProcess(tmp_path / "server").start()
    try:
        run_dir, _ = _offline_run(tmp_path, "huge", None)
        output, _ = _finished(_sync(run_dir, server, tmp_path))
        assert f"file '{FILE}' is {MAX_FILE_BYTES + 1} bytes, over the limit" in output, output
        assert "stays at" in output
        assert (run_dir / "files" / FILE).stat().st_size > MAX_FILE_BYTES
        history = tracker.Api(server.url).run("local/uploads/huge").history(keys=["x"])
        assert [row["x"] for row in history] == list(range(10))

        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        began = time.monotonic()
        connection.putrequest("PUT", f"{RUN}/huge/files/announced.bin")
        for name, value in {**CLIENT_HEADERS, "Content-Length": str(MAX_FILE_BYTES + 1)}.items():
            connection.putheader(name, value)
        connection.endheaders()
        announced = connection.getresponse()
        refused_in = time.monotonic() - began
        error = orjson.loads(announced.read())["error"]
        connection.close()
        assert (announced.status, error["code"]) == (413, "too_large")
        assert f"over the limit of {MAX_FILE_BYTES}" in error["message"]

        async def streamed() -> tuple[int, str]:
            async def body() -> AsyncIterator[bytes]:
                zeros = bytes(2**20)
                for _ in range(MAX_FILE_BYTES // 2**20 + 1):
                    yield zeros

            async with aiohttp.ClientSession(headers=CLIENT_HEADERS) as session:
                url = f"{server.url}{RUN}/huge/files/streamed.bin"
                try:
                    async with session.put(url, data=body()) as response:
                        return response.status, (await response.json())["error"]["message"]
                except aiohttp.ClientError as exc:  # the server closed before the rest was sent
                    return 0, repr(exc)

        began = time.monotonic()
        status, message = asyncio.run(streamed())
        streamed_in = time.monotonic() - began
        figures.extra.update(
            announced_refused_s=round(refused_in, 2), streamed_refused_s=round(streamed_in, 1)
        )
        assert status == 413, message
        assert "keep it in the run directory" in message
        assert orjson.loads(_get(server, f"{RUN}/huge/files"))["files"] == []
        assert not [p for p in server.db.parent.iterdir() if p.name.startswith(".tracker-upload")]
    finally:
        server.stop()
