"""What git and the CI system say about the code being measured.

A benchmark result belongs to a commit: its sha, its position in the first-parent
history (the x axis of the dashboard: commit order, not time), its time and subject.
The CI context adds the branch, the pull request and its base commit, and the attempt
number of the job, read from the environment of GitHub Actions and GitLab CI (every
field can be overridden on the command line).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from tracker._errors import UsageError

__all__ = [
    "CiContext",
    "Commit",
    "ci_context",
    "commit_info",
    "git",
    "is_dirty",
    "repo_identity",
    "repo_root",
]

_GIT_SECONDS: Final = 30
_SHA: Final = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Commit:
    """A commit: sha, first-parent position (None when git does not know it), time, subject."""

    sha: str
    position: int | None
    time: float | None
    message: str


@dataclass(frozen=True)
class CiContext:
    """Where in the review flow a result was measured."""

    branch: str | None
    pr: str | None
    base: str | None
    """The sha of the pull request's base commit."""
    attempt: str


def git(root: Path, *arguments: str) -> str:
    """The output of ``git arguments`` in ``root``, stripped.

    Raises:
        UsageError: git is missing or the command fails (its message included).
    """
    try:
        done = subprocess.run(
            ["git", *arguments],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=_GIT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run git in {root}: {exc}; install git") from None
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(arguments)} failed in {root}: {done.stderr.strip()}")
    return done.stdout.strip()


def repo_root(path: Path) -> Path:
    """The top folder of the git work tree holding ``path``.

    Raises:
        UsageError: ``path`` is not inside a git work tree.
    """
    try:
        return Path(git(path, "rev-parse", "--show-toplevel"))
    except UsageError:
        raise UsageError(
            f"{path} is not inside a git repository: benchmark results belong to a commit; "
            "run from a git checkout"
        ) from None


def repo_identity(root: Path) -> str:
    """The repository's name that holds across clones: its ``origin`` URL without scheme,
    user and ``.git`` (``github.com/org/name``), else the folder's name."""
    try:
        url = git(root, "remote", "get-url", "origin")
    except UsageError:
        return root.name
    url = re.sub(r"^[a-z+]+://", "", url)  # https://, ssh://
    url = re.sub(r"^[^@/]+@", "", url)  # user@ or user:token@
    url = re.sub(r"^([^/:]+):(?!\d+/)", r"\1/", url)  # scp-like host:path
    return re.sub(r"(\.git)?/*$", "", url) or root.name


def commit_info(root: Path, ref: str) -> Commit:
    """The commit ``ref`` names in the repository at ``root``.

    Raises:
        UsageError: git does not know ``ref`` there.
    """
    try:
        sha = git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except UsageError:
        raise UsageError(
            f"git does not know the commit {ref!r} in {root}; fetch it (in CI: "
            "`git fetch --depth=1 origin SHA`, or check out with fetch-depth: 0)"
        ) from None
    time_text, _, subject = git(root, "show", "-s", "--format=%ct %s", sha).partition(" ")
    # in a shallow clone the count stops at the graft: a position, but not comparable
    shallow = git(root, "rev-parse", "--is-shallow-repository") == "true"
    position = None if shallow else int(git(root, "rev-list", "--count", "--first-parent", sha))
    return Commit(sha=sha, position=position, time=float(time_text), message=subject)


def is_dirty(root: Path) -> bool:
    """Whether tracked files differ from the checked-out commit (untracked files do not count)."""
    return bool(git(root, "status", "--porcelain", "--untracked-files=no"))


def ci_context(root: Path, environ: Mapping[str, str]) -> CiContext:
    """Branch, pull request, base commit and attempt from the CI system's environment
    (GitHub Actions, GitLab CI), else from git: the checked-out branch, attempt ``"1"``."""
    if environ.get("GITHUB_ACTIONS") == "true":
        pr = base = None
        if environ.get("GITHUB_EVENT_NAME", "").startswith("pull_request"):
            match = re.match(r"refs/pull/(\d+)/", environ.get("GITHUB_REF", ""))
            pr = match[1] if match else None
            base = _github_base(environ.get("GITHUB_EVENT_PATH"))
        branch = environ.get("GITHUB_HEAD_REF") or environ.get("GITHUB_REF_NAME")
        return CiContext(branch or None, pr, base, environ.get("GITHUB_RUN_ATTEMPT") or "1")
    if environ.get("GITLAB_CI") == "true":
        branch = environ.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or environ.get(
            "CI_COMMIT_BRANCH"
        )
        return CiContext(
            branch or None,
            environ.get("CI_MERGE_REQUEST_IID") or None,
            environ.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or None,
            "1",
        )
    try:
        branch = git(root, "symbolic-ref", "--short", "-q", "HEAD")
    except UsageError:  # a detached HEAD
        branch = ""
    return CiContext(branch or None, None, None, "1")


def _github_base(event_path: str | None) -> str | None:
    """``pull_request.base.sha`` of the GitHub event that started the job."""
    if not event_path:
        return None
    try:
        event = orjson.loads(Path(event_path).read_bytes())
        sha = event["pull_request"]["base"]["sha"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return sha if isinstance(sha, str) and _SHA.match(sha) else None
