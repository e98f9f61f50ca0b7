"""Run metadata: the machine, the command line, the git state with its diff and the
installed packages, recorded by a run started in a git repository the test makes."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tracker
from tracker._metadata import (
    DIFF_CUT_MARKER,
    MAX_DIFF_BYTES,
    installed_requirements,
    strip_credentials,
)
from tracker._rundir import LOG_NAME
from tracker._runlog import RunLogReader
from tracker._server._runner import EmbeddedServer

ROOT = Path(tracker.__file__).resolve().parent.parent
NOTICE = "tracker: the run records no git state"
REMOTE = "https://alice:s3cr3t-t0ken@git.example.com/team/project.git"
START = """
import sys, time, tracker
began = time.perf_counter()
run = tracker.init(mode="offline", project="p", id="r1", dir=sys.argv[1])
print(f"init {time.perf_counter() - began:.3f}")
run.log({"x": 1})
run.finish()
"""
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *arguments: str) -> str:
    """Run git in ``repo`` with a fixed identity and no user configuration; its output."""
    done = subprocess.run(
        ["git", *arguments],
        cwd=repo,
        env={**os.environ, **_GIT_IDENTITY},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def make_repo(path: Path) -> Path:
    """A repository with one commit on ``main`` and a remote whose URL holds credentials."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text("lr = 0.1\n")
    (path / "data.txt").write_text("one\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    git(path, "remote", "add", "origin", REMOTE)
    return path


def child_env(**variables: str) -> dict[str, str]:
    """This checkout's environment for a child, without the tests' TRACKER_* variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRACKER_")}
    env.update(_GIT_IDENTITY)
    env["PYTHONPATH"] = str(ROOT)
    env.update(variables)
    return env


def start_run(
    cwd: Path, runs: Path, *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a script in ``cwd`` that starts an offline run under ``runs``, logs and finishes."""
    script = runs.parent / "start.py"
    script.write_text(START)
    done = subprocess.run(
        [sys.executable, str(script), str(runs), *arguments],
        cwd=cwd,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def files_of(run: Any) -> dict[str, bytes]:
    """A run's stored files, name to content."""
    return {file.name: file.read() for file in run.files()}


def test_a_run_in_a_dirty_repo_records_the_git_state_the_diff_and_the_packages(
    tmp_path: Path,
) -> None:
    """A run started in a repository with staged and unstaged changes records the commit,
    branch, dirty flag and the remote without its credentials; ``diff.patch`` is `git diff
    HEAD` (untracked files are not in it); ``requirements.txt`` lists the installed
    packages; the command line keeps its arguments with the key redacted."""
    repo = make_repo(tmp_path / "repo")
    sha = git(repo, "rev-parse", "HEAD").strip()
    (repo / "train.py").write_text("lr = 0.2\n")
    (repo / "extra.py").write_text("staged = True\n")
    git(repo, "add", "extra.py")
    (repo / "notes.txt").write_text("untracked\n")
    runs = tmp_path / "runs"
    start_run(repo, runs, "--api-key", "SECRET-VALUE", "--lr", "0.2")
    stored = tracker.read_run(runs)
    metadata = stored.metadata
    assert metadata["git"] == {
        "remote": "https://git.example.com/team/project.git",
        "commit": sha,
        "branch": "main",
        "dirty": True,
    }
    files = files_of(stored)
    assert files["diff.patch"] == git(repo, "diff", "HEAD").encode()
    assert b"+lr = 0.2" in files["diff.patch"]
    assert b"+staged = True" in files["diff.patch"]
    assert b"untracked" not in files["diff.patch"]
    requirements = files["requirements.txt"].decode().splitlines()
    assert f"orjson=={importlib.metadata.version('orjson')}" in requirements
    names = [re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in requirements]
    assert names == sorted(set(names))  # sorted by name, each once
    assert "SECRET" not in metadata["command"]
    assert metadata["command"].endswith("--api-key '<redacted>' --lr 0.2")
    assert metadata["command"].startswith(sys.executable)
    assert metadata["os"] == platform.platform()
    assert metadata["python_executable"] == sys.executable
    assert metadata["cpu_count"] == os.cpu_count()
    assert isinstance(metadata["gpus"], list)
    assert all(isinstance(name, str) for name in metadata["gpus"])


def test_the_metadata_and_its_files_are_written_before_the_exit_record(tmp_path: Path) -> None:
    """finish() waits for the metadata thread: its run record and the two file records come
    before the exit record, and the first run record already has the command line."""
    repo = make_repo(tmp_path / "repo")
    (repo / "data.txt").write_text("two\n")
    runs = tmp_path / "runs"
    start_run(repo, runs)
    records = [
        record
        for frame in RunLogReader(tracker.read_run(runs).dir / LOG_NAME).frame_records()
        for record in frame
    ]
    kinds = [record[1] for record in records]
    assert kinds[-1] == "exit"
    assert "command" in records[0][2]
    (git_record,) = [r for r in records if r[1] == "run" and "git" in r[2]]
    named = {r[2]["name"]: r[0] for r in records if r[1] == "file"}
    assert set(named) == {"diff.patch", "requirements.txt"}
    assert git_record[0] < records[-1][0]
    assert max(named.values()) < records[-1][0]
    assert "start_time" not in git_record[2]  # it opens no session


def test_a_run_the_program_never_finishes_still_gets_its_metadata(tmp_path: Path) -> None:
    """A program that ends right after init() (the run finished at exit, while the I/O
    thread may still be starting) still records its git state and files."""
    repo = make_repo(tmp_path / "repo")
    (repo / "data.txt").write_text("two\n")
    runs = tmp_path / "runs"
    script = f"import tracker\ntracker.init(mode='offline', project='p', dir={str(runs)!r})\n"
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=repo,
        env=child_env(TRACKER_SILENT="1"),
        timeout=60,
        check=True,
    )
    stored = tracker.read_run(runs)
    assert stored.state == "finished"
    assert stored.metadata["git"]["dirty"] is True
    assert sorted(files_of(stored)) == ["diff.patch", "requirements.txt"]


def test_a_clean_repo_on_a_detached_head_records_no_branch_and_no_diff(tmp_path: Path) -> None:
    """A clean work tree is not dirty and stores no ``diff.patch``; a detached HEAD has no
    branch."""
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "--detach")
    runs = tmp_path / "runs"
    start_run(repo, runs)
    stored = tracker.read_run(runs)
    assert stored.metadata["git"]["dirty"] is False
    assert stored.metadata["git"]["branch"] is None
    assert stored.metadata["git"]["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert sorted(files_of(stored)) == ["requirements.txt"]


def test_a_run_outside_a_repo_has_no_git_field_and_says_nothing(tmp_path: Path) -> None:
    """Outside a git work tree the run has no ``git`` field, no ``diff.patch`` and no
    notice; its packages are still stored."""
    folder = tmp_path / "plain"
    folder.mkdir()
    runs = tmp_path / "runs"
    done = start_run(folder, runs)
    stored = tracker.read_run(runs)
    assert "git" not in stored.metadata
    assert "os" in stored.metadata
    assert sorted(files_of(stored)) == ["requirements.txt"]
    assert NOTICE not in done.stderr


def test_without_a_git_binary_the_run_has_no_git_field_and_says_nothing(tmp_path: Path) -> None:
    """With no git on PATH, a run in a repository records no git state, silently."""
    repo = make_repo(tmp_path / "repo")
    empty = tmp_path / "no-tools"
    empty.mkdir()
    runs = tmp_path / "runs"
    done = start_run(repo, runs, env=child_env(PATH=str(empty)))
    assert "git" not in tracker.read_run(runs).metadata
    assert NOTICE not in done.stderr


def test_disable_git_and_save_requirements_false_store_neither(tmp_path: Path) -> None:
    """TRACKER_DISABLE_GIT=1 leaves out the git state and diff; TRACKER_SAVE_REQUIREMENTS=0
    the requirements; the rest of the metadata is still recorded."""
    repo = make_repo(tmp_path / "repo")
    (repo / "data.txt").write_text("changed\n")
    runs = tmp_path / "runs"
    env = child_env(TRACKER_DISABLE_GIT="true", TRACKER_SAVE_REQUIREMENTS="0")
    start_run(repo, runs, env=env)
    stored = tracker.read_run(runs)
    assert "git" not in stored.metadata
    assert stored.metadata["os"] == platform.platform()
    assert files_of(stored) == {}


def test_a_hung_git_gets_five_seconds_and_a_notice_says_so(tmp_path: Path) -> None:
    """A git that never answers does not slow init(); after five seconds the git fields are
    left out, a notice says why, and the requirements are stored as usual."""
    repo = make_repo(tmp_path / "repo")
    tools = tmp_path / "hung-tools"
    tools.mkdir()
    (tools / "git").write_text("#!/bin/sh\nexec sleep 60\n")
    (tools / "git").chmod(0o755)
    runs = tmp_path / "runs"
    began = time.monotonic()
    done = start_run(repo, runs, env=child_env(PATH=f"{tools}:{os.environ['PATH']}"))
    took = time.monotonic() - began
    init_seconds = float(done.stdout.split()[-1])
    assert init_seconds < 0.5
    assert 5.0 <= took < 20.0
    assert f"{NOTICE}: git took longer than 5 s" in done.stderr
    assert "TRACKER_DISABLE_GIT=1" in done.stderr
    stored = tracker.read_run(runs)
    assert "git" not in stored.metadata
    assert sorted(files_of(stored)) == ["requirements.txt"]


def test_a_diff_over_the_bound_is_cut_with_a_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``git diff HEAD`` longer than 10 MiB is stored cut at 10 MiB, with a marker line
    saying so; the run is dirty."""
    repo = make_repo(tmp_path / "repo")
    line = "x" * 99 + "\n"
    (repo / "data.txt").write_text(line * (MAX_DIFF_BYTES // len(line) + 1000))
    monkeypatch.chdir(repo)
    run = tracker.init(
        mode="offline",
        project="p",
        dir=tmp_path / "runs",
        settings={"silent": True, "disable_git": False},
    )
    run.finish()
    stored = tracker.read_run(run.dir)
    patch = files_of(stored)["diff.patch"]
    marker = DIFF_CUT_MARKER.format(limit=MAX_DIFF_BYTES).encode()
    assert len(patch) == MAX_DIFF_BYTES + len(marker)
    assert patch.endswith(marker)
    assert patch.startswith(b"diff --git a/data.txt b/data.txt\n")
    assert stored.metadata["git"]["dirty"] is True


def test_an_online_run_uploads_its_metadata_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: EmbeddedServer
) -> None:
    """An online run's git state reaches the server's run document, and ``diff.patch`` and
    ``requirements.txt`` are uploaded: Api reads what the run directory holds."""
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("lr = 0.3\n")
    monkeypatch.chdir(repo)
    run = tracker.init(
        project="p",
        dir=tmp_path / "runs",
        settings={
            "base_url": server.url,
            "silent": True,
            "disable_git": False,
            "save_requirements": True,
        },
    )
    run.log({"x": 1})
    run.finish()
    local = tracker.read_run(run.dir)
    remote = tracker.Api(server.url).run(run.path)
    assert remote.metadata["git"] == local.metadata["git"]
    assert remote.metadata["git"]["remote"] == "https://git.example.com/team/project.git"
    assert remote.metadata["command"] == local.metadata["command"]
    assert remote.metadata["os"] == platform.platform()
    assert files_of(remote) == files_of(local)
    assert sorted(files_of(remote)) == ["diff.patch", "requirements.txt"]


def test_tracker_sync_uploads_an_offline_runs_metadata_and_files(
    tmp_path: Path, server: EmbeddedServer
) -> None:
    """`tracker sync` of an offline run started in a dirty repository uploads its metadata
    and both files."""
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("lr = 0.4\n")
    runs = tmp_path / "runs"
    start_run(repo, runs, "--token", "hunter2")
    stored = tracker.read_run(runs)
    subprocess.run(
        [sys.executable, "-m", "tracker", "sync", str(stored.dir), "--base-url", server.url],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    remote = tracker.Api(server.url).run(stored.path)
    assert remote.metadata["git"] == stored.metadata["git"]
    assert "hunter2" not in remote.metadata["command"]
    assert files_of(remote) == files_of(stored)
    assert sorted(files_of(remote)) == ["diff.patch", "requirements.txt"]


def test_a_fork_right_after_init_leaves_the_child_able_to_import(tmp_path: Path) -> None:
    """A fork just after init waits for the metadata thread, which imports modules as it
    reads git's answers and the installed packages: the child can import them too."""
    script = f"""
import os, tracker
run = tracker.init(mode="offline", project="p", dir={str(tmp_path)!r})
pid = os.fork()
if pid == 0:
    import importlib.metadata, selectors, subprocess
    os._exit(0)
_, status = os.waitpid(pid, 0)
run.finish()
print(os.waitstatus_to_exitcode(status))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=child_env(TRACKER_SILENT="1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (REMOTE, "https://git.example.com/team/project.git"),
        ("https://ghp_abcdefghijklmnop@github.com/o/r.git", "https://github.com/o/r.git"),
        ("http://user@host:8080/r", "http://host:8080/r"),
        ("git+https://tok3n@host/r.git", "git+https://host/r.git"),
        ("HTTPS://u:p@Host/r", "HTTPS://Host/r"),
        ("ssh://git:pw@host/r.git", "ssh://git@host/r.git"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("https://github.com/o/r.git", "https://github.com/o/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ],
)
def test_remote_urls_lose_their_credentials(url: str, expected: str) -> None:
    """An http(s) remote loses its user and password, another URL its password; scp-like
    and local remotes stay as they are."""
    assert strip_credentials(url) == expected


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"disable_git": "no"}, "settings\\['disable_git'\\]='no' is not a bool"),
        ({"save_requirements": 0}, "settings\\['save_requirements'\\]=0 is not a bool"),
    ],
)
def test_bad_metadata_settings_are_refused(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    """init() refuses a non-bool disable_git or save_requirements, naming it."""
    with pytest.raises(tracker.UsageError, match=message):
        tracker.init(mode="offline", dir=tmp_path, settings=settings)


def test_bad_metadata_environment_values_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init() refuses a TRACKER_SAVE_REQUIREMENTS that is not a boolean word, naming it."""
    monkeypatch.setenv("TRACKER_SAVE_REQUIREMENTS", "sometimes")
    with pytest.raises(tracker.UsageError, match="TRACKER_SAVE_REQUIREMENTS='sometimes'"):
        tracker.init(mode="offline", dir=tmp_path)


def test_requirements_name_every_distribution_as_importlib_metadata_does() -> None:
    """The requirements read from the metadata headers name each installed distribution
    with the name and version importlib.metadata's full parser gives, sorted by name."""
    expected: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        key = re.sub(r"[-_.]+", "-", name).lower()
        expected.setdefault(key, f"{name}=={distribution.version}")
    assert installed_requirements() == "".join(f"{expected[key]}\n" for key in sorted(expected))
