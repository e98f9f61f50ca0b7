"""Console capture (`settings.console`): what a program prints becomes its run's console log.

Scripts run as real subprocesses for what the process does (file descriptors, child
processes, fork, exit); the rest runs in this process, under pytest's own capture.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from server_process import child_env
from server_process import run_script as run_child

import tracker
from tracker._console import MAX_BUFFER_CHARS, MAX_LINE_CHARS, ConsoleBuffer
from tracker._errors import UsageError
from tracker._io._thread import io_thread
from tracker._records.console import ConsoleLine, check_tail, console_lines
from tracker._server._runner import EmbeddedServer
from tracker._sync import sync_run_dir

TIMEOUT = 60
DROPPED = re.compile(r"\[tracker: (\d+) bytes of console output dropped\]")


def run_script(
    tmp_path: Path, script: str, console: str | None
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in ``tmp_path`` with ``TRACKER_CONSOLE=console`` (None: the default)."""
    env = child_env(tmp_path)
    if console is not None:
        env["TRACKER_CONSOLE"] = console
    return run_child(tmp_path, script, env)


def texts(lines: list[ConsoleLine], stream: str) -> list[str]:
    """The text of the lines of one stream."""
    return [line.text for line in lines if line.stream == stream]


PRINTING_SCRIPT = """
import os, subprocess, sys, threading, time, tracker

run = tracker.init(project="console", mode="offline")
print("hello from python")
print("a warning", file=sys.stderr)
for percent in range(0, 101, 25):
    sys.stdout.write(f"\\rtraining {percent:3d}%|{'#' * (percent // 10):10s}|")
    sys.stdout.flush()
sys.stdout.write("\\n")
worker = threading.Thread(target=print, args=("from a thread",))
worker.start()
worker.join()
os.write(1, b"from C level\\n")
subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
sys.stdout.write("no newline at the end")
run.finish()
print("after finish")
"""


def test_auto_captures_what_python_prints_and_passes_it_through(tmp_path: Path) -> None:
    """By default a script's prints (stdout, stderr, a thread's, a progress bar collapsed)
    are its run's console log, and still reach the real stdout and stderr; writes below
    Python (a file descriptor, a child process) pass untouched and uncaptured."""
    done = run_script(tmp_path, PRINTING_SCRIPT, None)
    assert "hello from python\n" in done.stdout
    assert "from C level\n" in done.stdout
    assert "from a child process\n" in done.stdout
    assert "a warning\n" in done.stderr
    lines = tracker.read_run(tmp_path / "tracker-runs" / "latest-run").console()
    assert texts(lines, "stdout") == [
        "hello from python",
        "training 100%|##########|",
        "from a thread",
        "no newline at the end",
    ]
    assert texts(lines, "stderr") == ["a warning"]
    assert all(isinstance(line.time, float) and line.time > 1e9 for line in lines)


def test_redirect_captures_c_level_writes_and_child_processes(tmp_path: Path) -> None:
    """``console="redirect"`` captures file descriptors 1 and 2: ``os.write`` and a child
    process's output too, every byte still passed through to the original descriptors."""
    done = run_script(tmp_path, PRINTING_SCRIPT, "redirect")
    for text in ("hello from python\n", "from C level\n", "from a child process\n"):
        assert text in done.stdout
    assert "after finish" in done.stdout
    lines = tracker.read_run(tmp_path / "tracker-runs" / "latest-run").console()
    assert texts(lines, "stdout") == [
        "hello from python",
        "training 100%|##########|",
        "from a thread",
        "from C level",
        "from a child process",
        "no newline at the end",
    ]
    assert texts(lines, "stderr") == ["a warning"]


def test_off_captures_nothing(tmp_path: Path) -> None:
    """``console="off"`` leaves the console alone: the run has no console log."""
    done = run_script(tmp_path, PRINTING_SCRIPT, "off")
    assert "hello from python\n" in done.stdout
    assert tracker.read_run(tmp_path / "tracker-runs" / "latest-run").console() == []


def test_a_forked_child_is_not_captured(tmp_path: Path) -> None:
    """After a fork the child writes to the console as before, not into its parent's run;
    under "redirect" too (the child's descriptors are restored)."""
    script = """
    import os, sys, tracker
    run = tracker.init(project="console", mode="offline")
    print("parent before")
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        print("child says", type(sys.stdout).__name__)
        sys.stdout.flush()
        os.write(1, b"child C level\\n")
        os._exit(0)
    os.waitpid(pid, 0)
    print("parent after")
    run.finish()
    """
    for mode in ("auto", "redirect"):
        done = run_script(tmp_path, script, mode)
        assert "child C level" in done.stdout
        assert "child says" in done.stdout
        assert "_Tee" not in done.stdout
        lines = tracker.read_run(tmp_path / "tracker-runs" / "latest-run").console()
        assert texts(lines, "stdout") == ["parent before", "parent after"], mode


def test_an_uncaught_exception_is_in_the_console_log(tmp_path: Path) -> None:
    """The traceback of an error that ends the script is captured before the run ends."""
    script = """
    import tracker
    tracker.init(project="console", mode="offline")
    raise RuntimeError("the training diverged")
    """
    env = child_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env=env,
        timeout=TIMEOUT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    stored = tracker.read_run(tmp_path / "tracker-runs" / "latest-run")
    assert stored.state == "failed"
    assert "RuntimeError: the training diverged" in texts(stored.console(), "stderr")


# --- in this process -------------------------------------------------------------------


@pytest.fixture
def capturing(tmp_path: Path) -> Callable[..., tracker.Run]:
    """Start an offline run that captures the console: ``capturing(mode="auto")`` (a run of
    its own each time, even when one is live)."""

    def start(mode: str = "auto") -> tracker.Run:
        settings = {"silent": True, "console": mode}
        return tracker.init(
            project="tests", dir=tmp_path, mode="offline", settings=settings, reinit="create_new"
        )

    return start


def console_of(run: tracker.Run) -> list[ConsoleLine]:
    """The console log of a finished run, read back from its directory."""
    return tracker.read_run(run.dir).console()


def test_capsys_still_sees_what_a_capturing_run_captures(
    capturing: Callable[..., tracker.Run], capsys: pytest.CaptureFixture[str]
) -> None:
    """Under pytest's capsys, "auto" captures and capsys still reads every print; finish()
    puts capsys's stream back."""
    before = sys.stdout
    run = capturing()
    print("seen by both")
    run.finish()
    assert sys.stdout is before
    assert capsys.readouterr().out == "seen by both\n"
    assert texts(console_of(run), "stdout") == ["seen by both"]


def test_capfd_still_sees_what_a_redirecting_run_captures(
    capturing: Callable[..., tracker.Run], capfd: pytest.CaptureFixture[str]
) -> None:
    """Under pytest's capfd, "redirect" captures descriptor writes and capfd still reads
    them; finish() puts capfd's descriptor back."""
    before = os.fstat(1).st_ino
    run = capturing("redirect")
    os.write(1, b"written to fd 1\n")
    os.write(2, b"written to fd 2\n")
    run.finish()
    assert os.fstat(1).st_ino == before
    seen = capfd.readouterr()
    assert "written to fd 1\n" in seen.out
    assert "written to fd 2\n" in seen.err
    lines = console_of(run)
    assert texts(lines, "stdout") == ["written to fd 1"]
    assert texts(lines, "stderr") == ["written to fd 2"]


def test_nested_runs_restore_exactly_what_was_there(
    capturing: Callable[..., tracker.Run], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two capturing runs, finished in either order, leave the streams as they found them;
    text printed while both capture is in both."""
    original = sys.stdout
    for order in ("inner first", "outer first"):
        outer = capturing()
        inner = capturing()
        print(order)
        first, second = (inner, outer) if order == "inner first" else (outer, inner)
        first.finish()
        print("only the second")
        second.finish()
        assert sys.stdout is original
        assert texts(console_of(first), "stdout") == [order]
        assert texts(console_of(second), "stdout") == [order, "only the second"]


def test_a_stream_replaced_meanwhile_stays(
    capturing: Callable[..., tracker.Run], capsys: pytest.CaptureFixture[str]
) -> None:
    """When the program replaced ``sys.stdout`` after init, finish() leaves its stream in
    place; the capture's tee, if still referenced, only passes text through."""
    original = sys.stdout
    run = capturing()
    tee = sys.stdout
    mine = io.StringIO()
    sys.stdout = mine
    run.finish()
    assert sys.stdout is mine
    tee.write("through the old tee\n")
    sys.stdout = original
    assert capsys.readouterr().out == "through the old tee\n"
    assert console_of(run) == []


def test_nested_redirects_restore_the_descriptors(
    capturing: Callable[..., tracker.Run], capfd: pytest.CaptureFixture[str]
) -> None:
    """Two redirecting runs, finished in either order: descriptor 1 ends where it started,
    nothing written is lost on the way, and finished last-first each captured its part."""
    before = os.fstat(1).st_ino
    for order in ("inner first", "outer first"):
        outer = capturing("redirect")
        inner = capturing("redirect")
        os.write(1, f"{order}\n".encode())
        first, second = (inner, outer) if order == "inner first" else (outer, inner)
        first.finish()
        os.write(1, b"then the second\n")
        second.finish()
        assert os.fstat(1).st_ino == before
        assert capfd.readouterr().out == f"{order}\nthen the second\n"
        assert texts(console_of(second), "stdout") == [order, "then the second"]
        if order == "inner first":
            assert texts(console_of(first), "stdout") == [order]


def test_printing_on_the_io_thread_does_not_deadlock(
    capturing: Callable[..., tracker.Run], capsys: pytest.CaptureFixture[str]
) -> None:
    """A print made on tracker's own I/O thread (a callback there, a warning it writes)
    is captured like any other, and neither the print nor finish() hangs."""
    run = capturing()
    io_thread().loop().call_soon_threadsafe(print, "from the I/O thread")

    async def prints() -> None:
        print("from a coroutine on the I/O thread", file=sys.stderr)

    io_thread().submit(prints()).result(5)
    time.sleep(0.3)  # the I/O thread ships what it printed itself
    run.finish()
    lines = console_of(run)
    assert texts(lines, "stdout") == ["from the I/O thread"]
    assert texts(lines, "stderr") == ["from a coroutine on the I/O thread"]


def test_printing_from_a_signal_handler_does_not_deadlock(
    capturing: Callable[..., tracker.Run], capsys: pytest.CaptureFixture[str]
) -> None:
    """A signal handler printing while the main thread is in the middle of printing (in
    the capture's lock, at times) neither hangs nor loses a line."""
    run = capturing()
    handled = []

    def handler(signum: int, frame: object) -> None:
        print(f"signal {len(handled)}")
        handled.append(signum)

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        for index in range(2000):
            if index % 10 == 0:
                os.kill(os.getpid(), signal.SIGUSR1)
            print(f"line {index}")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    run.finish()
    lines = texts(console_of(run), "stdout")
    assert [line for line in lines if line.startswith("line")] == [
        f"line {index}" for index in range(2000)
    ]
    assert len([line for line in lines if line.startswith("signal")]) == len(handled) == 200


def test_printing_while_the_run_finishes(
    capturing: Callable[..., tracker.Run], capsys: pytest.CaptureFixture[str]
) -> None:
    """A thread printing all along while finish() runs: finish() returns, every line the
    run captured is whole, and the thread's later prints go to the console only."""
    run = capturing()
    stop = threading.Event()

    def chatter() -> None:
        index = 0
        while not stop.is_set():
            print(f"chatter {index}")
            index += 1

    worker = threading.Thread(target=chatter)
    worker.start()
    time.sleep(0.2)
    run.finish()
    time.sleep(0.05)
    stop.set()
    worker.join(5)
    captured = texts(console_of(run), "stdout")
    printed = capsys.readouterr().out.splitlines()
    assert captured
    assert all(re.fullmatch(r"chatter \d+", line) for line in captured)
    assert captured == printed[: len(captured)]
    assert len(printed) > len(captured)


def test_a_print_inside_a_logging_handler_is_captured(
    capturing: Callable[..., tracker.Run], capsys: pytest.CaptureFixture[str]
) -> None:
    """A logging handler writing to ``sys.stderr`` while tracker warns from inside
    ``run.log()`` (a step going back) is captured, with no deadlock."""
    import logging

    run = capturing()
    run.log({"loss": 1.0}, step=5)
    with pytest.warns(UserWarning, match="step"):
        run.log({"loss": 2.0}, step=1)
    logging.getLogger("tracker.test").addHandler(handler := logging.StreamHandler(sys.stderr))
    try:
        logging.getLogger("tracker.test").warning("a logged warning")
    finally:
        logging.getLogger("tracker.test").removeHandler(handler)
    run.finish()
    assert "a logged warning" in texts(console_of(run), "stderr")


def test_huge_output_is_bounded_and_what_is_dropped_is_counted(
    capturing: Callable[..., tracker.Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Printing far faster than the I/O thread ships: the oldest text is dropped, and the
    console log says how many bytes; kept and dropped add up to everything printed."""
    with open(os.devnull, "w") as devnull:
        monkeypatch.setattr(sys, "stdout", devnull)
        run = capturing()
        line = "x" * 999
        count = 30_000
        for _ in range(count):
            print(line)
        run.finish()
    lines = console_of(run)
    kept = sum(len(text) + 1 for text in texts(lines, "stdout"))
    dropped = sum(
        int(match[1]) for text in texts(lines, "stderr") if (match := DROPPED.match(text))
    )
    assert dropped > 0
    assert kept + dropped == count * 1000
    assert set(texts(lines, "stdout")) == {line}


def test_a_burst_larger_than_the_buffer_is_shipped_as_it_fills(
    capturing: Callable[..., tracker.Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """1.2 MB printed in less time than the I/O thread waits between ships outgrows the
    1 MiB buffer: a filling buffer is shipped at once, nothing dropped. The printing pauses
    for 2 ms every 300 kB, as a program does now and then (a tight loop may keep the I/O
    thread from the GIL), and starts once the I/O thread runs (the flush waits for it)."""
    with open(os.devnull, "w") as devnull:
        monkeypatch.setattr(sys, "stdout", devnull)
        run = capturing()
        run.flush()
        count = 20_000
        for step in range(count):
            print(f"step {step:>7} loss {1 / (step + 1):.6f} lr 0.000300 tokens/s 51234.5")
            if step % 5000 == 4999:
                time.sleep(0.002)
        run.finish()
    lines = console_of(run)
    assert not texts(lines, "stderr")
    assert [text.split()[1] for text in texts(lines, "stdout")] == [str(s) for s in range(count)]


def test_a_bad_console_setting_is_refused(capturing: Callable[..., tracker.Run]) -> None:
    """An unknown console mode is an error naming the setting and the modes there are."""
    with pytest.raises(
        UsageError,
        match=r"settings\['console'\]='wrap' is not a console capture mode; use auto, off or",
    ):
        capturing("wrap")


def test_an_online_run_and_a_synced_one_read_their_console_from_the_server(
    tmp_path: Path, server: EmbeddedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An online run's console reaches the server's console stream, and an offline run's
    does with ``tracker sync``: ``Api().run(path).console()`` reads what ``read_run`` reads,
    ``tail`` included."""
    settings = {"silent": True, "console": "auto", "base_url": server.url}
    online = tracker.init(project="console", dir=tmp_path, settings=settings)
    print("epoch 1")
    sys.stdout.write("\r 50%\r100%\n")
    print("oops", file=sys.stderr)
    online.finish()
    offline = tracker.init(project="console", dir=tmp_path, mode="offline", settings=settings)
    for index in range(3):
        print(f"offline {index}")
    offline.finish()
    assert sync_run_dir(Path(offline.dir), tracker.Settings(base_url=server.url)).records > 0
    api = tracker.Api(server.url)
    for run in (online, offline):
        stored = tracker.read_run(run.dir).console()
        remote = api.run(run.path)
        assert remote.console() == stored
        assert remote.console(tail=2) == stored[-2:]
        assert remote.console(tail=0) == []
    assert [line.text for line in api.run(online.path).console()] == ["epoch 1", "100%", "oops"]


# --- the buffer and reading ------------------------------------------------------------


def test_the_buffer_keeps_whole_lines_per_stream() -> None:
    """Text is queued in whole lines; each stream's unterminated rest waits for its
    newline, or for the final take."""
    buffer = ConsoleBuffer()
    buffer.write("stdout", "one\ntw")
    buffer.write("stderr", "e1")
    buffer.write("stdout", "o\nthr")
    assert [p["text"] for p in buffer.take(final=False)] == ["one\ntwo\n"]
    assert [(p["stream"], p["text"]) for p in buffer.take(final=True)] == [
        ("stdout", "thr"),
        ("stderr", "e1"),
    ]


def test_the_buffer_drops_its_oldest_text_past_its_bound() -> None:
    """Past its bound the buffer drops whole lines, oldest first, and the next take starts
    with a marker line counting the dropped bytes; memory never passes the bound."""
    buffer = ConsoleBuffer(max_chars=1000)
    for index in range(150):
        buffer.write("stdout", f"{index:09d}\n")
        assert buffer._size <= 1000
    marker, *kept = buffer.take(final=False)
    assert (marker["stream"], marker["text"]) == (
        "stderr",
        "[tracker: 500 bytes of console output dropped]\n",
    )
    assert "".join(p["text"] for p in kept) == "".join(f"{i:09d}\n" for i in range(50, 150))
    one = ConsoleBuffer(max_chars=100)
    one.write("stdout", "".join(f"{index:09d}\n" for index in range(50)))
    (marker, rest) = one.take(final=False)
    assert rest["text"] == "".join(f"{index:09d}\n" for index in range(40, 50))
    assert marker["text"] == "[tracker: 400 bytes of console output dropped]\n"


def test_a_long_progress_bar_line_stays_bounded() -> None:
    """A progress bar redrawn with ``\\r`` for ever without a newline keeps only its last
    redraw once it passes the line bound: what reading shows of it anyway."""
    buffer = ConsoleBuffer()
    for step in range(20_000):
        buffer.write("stderr", f"\r{step:>8d} it")
        assert buffer._partial_size["stderr"] <= MAX_LINE_CHARS
    (payload,) = buffer.take(final=True)
    assert console_lines([payload], None)[0].text == "   19999 it"
    huge = ConsoleBuffer()
    huge.write("stdout", "y" * (MAX_LINE_CHARS + 1))
    assert [len(p["text"]) for p in huge.take(final=False)] == [MAX_LINE_CHARS + 1]
    assert MAX_LINE_CHARS < MAX_BUFFER_CHARS


def test_console_lines_collapse_carriage_returns_and_take_a_tail() -> None:
    """Reading splits records into lines, keeps the text after a line's last ``\\r``
    (not one of a ``\\r\\n`` ending), and ``tail`` keeps the last lines."""
    payloads = [
        {"time": 1.0, "stream": "stdout", "text": "a\r\nb  10%\rb 100%\n"},
        {"time": 2.0, "stream": "stderr", "text": "c\n\nd"},
    ]
    assert console_lines(payloads, None) == [
        ConsoleLine(1.0, "stdout", "a"),
        ConsoleLine(1.0, "stdout", "b 100%"),
        ConsoleLine(2.0, "stderr", "c"),
        ConsoleLine(2.0, "stderr", ""),
        ConsoleLine(2.0, "stderr", "d"),
    ]
    assert [line.text for line in console_lines(payloads, 2)] == ["", "d"]
    assert console_lines(payloads, 0) == []
    assert len(console_lines(payloads, 99)) == 5


@pytest.mark.parametrize("tail", [-1, 1.5, True, "3"])
def test_a_bad_tail_is_refused(tail: object) -> None:
    """``tail`` is an int >= 0 or None; anything else says so."""
    with pytest.raises(UsageError, match=r"console\(tail=.*\): tail is the number of last lines"):
        check_tail(tail)
