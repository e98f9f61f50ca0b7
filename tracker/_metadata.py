"""Run metadata: where a run ran, the command that started it, the code's git state and the
installed packages, as W&B records them without being asked.

`process_fields` costs microseconds and goes into the run's first ``run`` record, on the
caller's thread. The rest costs tens of milliseconds (`os_name` reads the
interpreter's binary, git runs several subprocesses, `importlib.metadata` reads every
installed distribution's metadata, NVML loads a driver library), so `MetadataCollection`
gathers it on a "tracker-metadata" thread and hands a `Collected` to the run: a second
``run`` record (readers merge ``run`` records) and the files ``diff.patch`` and
``requirements.txt``. git gets `GIT_SECONDS` in all, so a huge repository or a hung git
cannot hold up a run; NVML gets as long, beside it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import __main__
from tracker._redact import redact_argv

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "DIFF_CUT_MARKER",
    "DIFF_FILE",
    "GIT_SECONDS",
    "MAX_DIFF_BYTES",
    "REQUIREMENTS_FILE",
    "Collected",
    "MetadataCollection",
    "collect",
    "installed_requirements",
    "os_name",
    "process_fields",
    "reset_after_fork",
    "strip_credentials",
    "wait_for_collections",
]

logger = logging.getLogger(__name__)

DIFF_FILE: Final = "diff.patch"
REQUIREMENTS_FILE: Final = "requirements.txt"
GIT_SECONDS: Final = 5.0
"""How long all of git's commands may take together before the git fields are left out."""
MAX_DIFF_BYTES: Final = 10 * 2**20
"""The most of ``git diff HEAD`` that ``diff.patch`` keeps; a longer diff is cut there."""
DIFF_CUT_MARKER: Final = (
    "\n# tracker: the diff was cut here: `git diff HEAD` is longer than {limit} bytes\n"
)
_GIT_OPTIONS: Final = ("--no-pager", "-c", "color.ui=false", "-c", "core.quotepath=off")
_EMPTY_TREE: Final = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""The empty tree's id: what a repository without a commit is diffed against."""
_NOT_A_WORK_TREE: Final = ("not a git repository", "must be run in a work tree")
_MAX_GIT_OUTPUT: Final = 2**16
"""Enough for any answer of git's but the diff's."""


def process_fields() -> dict[str, Any]:
    """The fields of the run's first ``run`` record that say where it ran (microseconds)."""
    import shlex

    return {
        "pid": os.getpid(),
        "host": os.uname().nodename,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "program": getattr(__main__, "__file__", None),
        "args": redact_argv(sys.argv[1:]),  # a key on the command line must not be stored
        "command": shlex.join(redact_argv(sys.orig_argv)),
        "cwd": os.getcwd(),
    }


def os_name() -> str:
    """What ``platform.platform()`` says, e.g. ``Linux-6.1.0-x86_64-with-glibc2.36``, without
    the ``uname -p`` child process it starts on Linux for the processor's name: a child
    forked as the run's process dies holds the run's lock a moment, and the run would read
    as running instead of crashed."""
    import platform

    system, release, machine = platform.system(), platform.release(), platform.machine()
    if system != "Linux":
        return platform.platform()
    libc, version = platform.libc_ver()
    with_libc = f"with-{libc}{version}" if libc else ""
    return "-".join(filter(None, (system, release, machine, with_libc)))


@dataclass(frozen=True)
class Collected:
    """What the metadata thread found: ``run`` record fields, files to store (name and
    content) and notices for the user (why something is missing)."""

    fields: dict[str, Any]
    files: list[tuple[str, bytes]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def collect(cwd: str, *, git: bool, requirements: bool) -> Collected:
    """Gather the slow metadata of a run started in ``cwd`` (see the module docstring);
    ``git`` and ``requirements`` say whether to ask git and to list the packages."""
    deadline = time.monotonic() + GIT_SECONDS
    gpus = _GpuNames()  # beside git, with as long
    fields: dict[str, Any] = {"os": os_name()}
    files: list[tuple[str, bytes]] = []
    notices: list[str] = []
    if git:
        try:
            state = _git_state(cwd, deadline)
        except _GitUnusable as exc:
            notices.append(f"tracker: the run records no git state: {exc}")
        else:
            if state is not None:
                fields["git"], patch = state
                if patch:
                    files.append((DIFF_FILE, patch))
    if requirements:
        files.append((REQUIREMENTS_FILE, installed_requirements().encode()))
    fields["gpus"] = gpus.result(deadline - time.monotonic())
    return Collected(fields, files, notices)


class MetadataCollection:
    """`collect` on a daemon thread of its own, from `start` on, handing the result to
    ``deliver`` there."""

    def __init__(
        self, cwd: str, *, git: bool, requirements: bool, deliver: Callable[[Collected], None]
    ) -> None:
        """Prepare the collection; nothing runs until `start`."""
        self._cwd = cwd
        self._git = git
        self._requirements = requirements
        self._deliver = deliver
        self._done = threading.Event()

    def start(self) -> None:
        """Start collecting on a new thread (at interpreter shutdown, when no thread can
        start, on this one)."""
        with _collections_lock:
            _collections.add(self._done)
        thread = threading.Thread(target=self._run, name="tracker-metadata", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self._run()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until the result was delivered; whether it was."""
        return self._done.wait(timeout)

    def _run(self) -> None:
        try:
            self._deliver(collect(self._cwd, git=self._git, requirements=self._requirements))
        except Exception:  # the run goes on without this metadata
            logger.exception("tracker: collecting the run's metadata failed")
        finally:
            self._done.set()
            with _collections_lock:
                _collections.discard(self._done)


_collections: set[threading.Event] = set()
_collections_lock = threading.Lock()


def wait_for_collections(timeout: float) -> None:
    """Wait up to ``timeout`` seconds until no collection runs: one imports modules (a
    child forked meanwhile would inherit their import locks, held for good)."""
    deadline = time.monotonic() + timeout
    with _collections_lock:
        running = list(_collections)
    for done in running:
        done.wait(max(0.0, deadline - time.monotonic()))


def reset_after_fork() -> None:
    """In a forked child: the parent's collections do not run here."""
    global _collections_lock
    _collections_lock = threading.Lock()
    _collections.clear()


def strip_credentials(url: str) -> str:
    """``url`` without the credentials it may carry: the user and password of an http(s)
    URL (``git+https`` too; a token is often given as either), the password of any other
    URL. An scp-like ``git@host:path`` names no secret and is kept."""
    match = re.match(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^/@]*)@", url)
    if match is None:
        return url
    scheme, userinfo = match["scheme"], match["userinfo"]
    if re.search(r"(^|\+)https?$", scheme.lower()):
        kept = ""
    else:
        user = userinfo.partition(":")[0]
        kept = f"{user}@" if user else ""
    return f"{scheme}://{kept}{url[match.end() :]}"


def installed_requirements() -> str:
    """The installed distributions as ``name==version`` lines, sorted by name; a name found
    twice on ``sys.path`` keeps the one found first (the one imported)."""
    from importlib import metadata

    found: dict[str, str] = {}
    for distribution in metadata.distributions():
        try:
            text = distribution.read_text("METADATA") or distribution.read_text("PKG-INFO")
        except (OSError, UnicodeDecodeError):  # a broken install left behind
            continue
        name, version = _name_and_version(text or "")
        if name and version:
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{name}=={version}")
    return "".join(f"{found[key]}\n" for key in sorted(found))


def _name_and_version(text: str) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from a distribution's metadata headers (the lines before the
    first empty one): 8x cheaper than `importlib.metadata`'s email parser, which reads the
    whole long description too (6 ms against 44 ms for 125 distributions)."""
    name = version = None
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "name":
            name = value.strip()
        elif key == "version":
            version = value.strip()
        if name and version:
            break
    return name, version


class _GitUnusable(Exception):
    """git is there but did not answer: the message says why."""


def _git_state(cwd: str, deadline: float) -> tuple[dict[str, Any], bytes] | None:
    """The git field and the diff against HEAD of the work tree holding ``cwd``; None when
    there is no git or ``cwd`` is in no work tree.

    Raises:
        _GitUnusable: git failed otherwise, or took longer than the deadline.
    """
    if not _may_be_in_a_repository(cwd):
        return None
    try:
        found = _git(cwd, deadline, "rev-parse", "--show-toplevel")
    except FileNotFoundError:  # no git, or the working directory is gone
        return None
    except OSError as exc:
        raise _GitUnusable(f"cannot run git: {exc}") from None
    if found.returncode != 0:
        if any(phrase in found.error for phrase in _NOT_A_WORK_TREE):
            return None
        raise _GitUnusable(f"`git rev-parse` failed in {cwd}: {found.error or found.returncode}")
    head = _git(cwd, deadline, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    commit = head.text or None
    branch = _git(cwd, deadline, "symbolic-ref", "-q", "HEAD").text
    remotes = _git(cwd, deadline, "config", "--get-regexp", r"^remote\..*\.url$").text
    diff = _git(
        cwd,
        deadline,
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        commit or _EMPTY_TREE,
        limit=MAX_DIFF_BYTES,
    )
    if diff.returncode != 0 and not diff.cut:
        raise _GitUnusable(f"`git diff HEAD` failed in {cwd}: {diff.error or diff.returncode}")
    patch = diff.output
    if diff.cut:
        patch += DIFF_CUT_MARKER.format(limit=MAX_DIFF_BYTES).encode()
    state = {
        "remote": _remote(remotes),
        "commit": commit,
        "branch": branch.removeprefix("refs/heads/") if branch else None,
        "dirty": bool(diff.output),
    }
    return state, patch


def _may_be_in_a_repository(cwd: str) -> bool:
    """Whether git could find a repository for ``cwd``: a ``.git`` in it or above, or one
    named by ``GIT_DIR``. Elsewhere git is not started: a process started while the run's
    own process dies holds its lock until it execs, and a crash would look alive."""
    if os.environ.get("GIT_DIR"):
        return True
    folder = os.path.abspath(cwd)
    while True:
        if os.path.exists(os.path.join(folder, ".git")):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


def _remote(config_lines: str) -> str | None:
    """The ``origin`` remote's URL (else the first remote's), credentials stripped, from
    ``git config --get-regexp`` lines ``remote.NAME.url URL``."""
    urls: dict[str, str] = {}
    for line in config_lines.splitlines():
        key, _, value = line.partition(" ")
        urls.setdefault(key.removeprefix("remote.").removesuffix(".url"), value)
    url = urls.get("origin") or next(iter(urls.values()), None)
    return strip_credentials(url) if url else None


@dataclass(frozen=True)
class _GitAnswer:
    returncode: int
    output: bytes
    error: str
    cut: bool

    @property
    def text(self) -> str:
        """The output as text, stripped; empty when git failed."""
        return self.output.decode(errors="replace").strip() if self.returncode == 0 else ""


def _git(cwd: str, deadline: float, *arguments: str, limit: int = _MAX_GIT_OUTPUT) -> _GitAnswer:
    """Run ``git arguments`` in ``cwd``, keeping at most ``limit`` bytes of its output (git
    is killed past that: ``cut``).

    Raises:
        FileNotFoundError: there is no git.
        _GitUnusable: the deadline passed first (git is killed).
    """
    import subprocess  # ~3 ms: on the metadata thread, not in `import tracker`

    environment = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}
    with subprocess.Popen(
        ["git", *_GIT_OPTIONS, *arguments],
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            output, error, cut = _read_until(process, deadline, limit)
            if cut:
                process.kill()
            returncode = process.wait(max(0.0, deadline - time.monotonic()))
        except (TimeoutError, subprocess.TimeoutExpired):
            process.kill()
            raise _GitUnusable(
                f"git took longer than {GIT_SECONDS:g} s in all (at `git {' '.join(arguments)}`)"
                "; a huge repository or a hung git? Set settings.disable_git=True "
                "(TRACKER_DISABLE_GIT=1) to skip it"
            ) from None
    text = error.decode(errors="replace").strip()
    return _GitAnswer(returncode, bytes(output), text.splitlines()[0] if text else "", cut)


def _read_until(
    process: subprocess.Popen[bytes], deadline: float, limit: int
) -> tuple[bytearray, bytearray, bool]:
    """``process``'s output and errors, read until both end or ``limit`` bytes of output
    came (True: cut there); its errors beyond `_MAX_GIT_OUTPUT` bytes are dropped.

    Raises:
        TimeoutError: the deadline passed first.
    """
    import selectors

    assert process.stdout is not None
    assert process.stderr is not None
    output, error = bytearray(), bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 2**16)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.fileobj is process.stderr:
                    error += chunk[: max(0, _MAX_GIT_OUTPUT - len(error))]
                elif len(output) + len(chunk) > limit:
                    output += chunk[: limit - len(output)]
                    return output, error, True
                else:
                    output += chunk
    return output, error, False


class _GpuNames:
    """The NVIDIA GPUs' names through pynvml (nvidia-ml-py), asked on a thread of their
    own: loading the driver takes seconds on some machines, and may hang."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._thread: threading.Thread | None = None
        import importlib.util

        if importlib.util.find_spec("pynvml") is None:
            return
        self._thread = threading.Thread(target=self._ask, name="tracker-gpus", daemon=True)
        try:
            self._thread.start()
        except RuntimeError:  # the interpreter is shutting down: no new thread
            self._thread = None

    def _ask(self) -> None:
        try:
            import pynvml  # type: ignore[import-not-found, unused-ignore]
        except Exception:  # an install that does not import
            return
        from tracker._system._gpu import gpu_names

        self._names = gpu_names(pynvml)

    def result(self, timeout: float) -> list[str]:
        """The names, once asked (waiting up to ``timeout`` seconds); [] when unknown."""
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
            if self._thread.is_alive():
                return []
        return list(self._names)
