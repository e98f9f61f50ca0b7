"""`tracker bench ...`: import results, compare commits, gate CI, A/B runs, change points.

docs/benchmark-suites.md describes each subcommand; `pytest --tracker` (the plugin)
stores results as they are measured.
"""

from __future__ import annotations

import argparse
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker._bench._compare import DEFAULT_ALPHA, REGRESSION, compare
from tracker._bench._detect import DEFAULT_THRESHOLD
from tracker._bench._report import Section, markdown, table
from tracker._errors import UsageError
from tracker._settings import Settings

if TYPE_CHECKING:
    from tracker._bench._sources import Measured, ServerResults

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Register the ``bench`` command and its subcommands."""
    parser = commands.add_parser(
        "bench",
        help="benchmark suites: import, compare, check, A/B, change points",
        description=(
            "Benchmark results stored by `pytest --tracker` or imported: compare two commits, "
            "gate a pull request on regressions, measure base and head alternately on this "
            "machine, and list the change points of a branch's history."
        ),
    )
    subcommands = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)

    imported = subcommands.add_parser(
        "import",
        help="store pytest-benchmark or asv result files as benchmark runs",
        description=(
            "Store result files as benchmark runs, one per file: pytest-benchmark JSON "
            "(--benchmark-json, .benchmarks/) and asv results (results/). Run it in a git "
            "checkout of the measured repository. Importing a file twice stores it once."
        ),
    )
    imported.add_argument("paths", nargs="+", metavar="PATH", help="result files or folders")
    _server_options(imported)
    imported.add_argument("--dir", help="where runs are stored offline (default ./tracker)")
    imported.set_defaults(handler=run_import)

    compared = subcommands.add_parser(
        "compare",
        help="compare the benchmarks of two commits (or result files)",
        description=(
            "Compare every benchmark of HEAD with BASE on each machine both were measured on, "
            "as `asv compare` does, with a rank test on the raw samples. BASE and HEAD are "
            "commits (refs of this checkout, or shas) or result files."
        ),
    )
    compared.add_argument("base", metavar="BASE")
    compared.add_argument("head", metavar="HEAD")
    _server_options(compared)
    _verdict_options(compared)
    compared.set_defaults(handler=run_compare)

    checked = subcommands.add_parser(
        "check",
        help="exit 1 when HEAD regressed against its base (CI gating)",
        description=(
            "Compare HEAD with its base commit on this job's machines and exit with status 1 "
            "on a regression: a rank test below --alpha and a change of at least --threshold "
            "in the worse direction."
        ),
    )
    checked.add_argument("--head", default="HEAD", help="the commit to check (default HEAD)")
    checked.add_argument(
        "--base", help="the commit to compare with (default: the base its results recorded)"
    )
    _server_options(checked)
    _verdict_options(checked)
    checked.set_defaults(handler=run_check)

    ab = subcommands.add_parser(
        "ab",
        help="measure base and head alternately on this machine and compare them in pairs",
        description=(
            "Check out --base next to this working tree (or --head) and run pytest-benchmark "
            "in each, alternating, for --rounds pairs; judge each benchmark on its pairs. "
            "Exit status 1 on a regression. Arguments after -- go to pytest: "
            "tracker bench ab --base main -- benchmarks/ -k parse"
        ),
    )
    ab.add_argument("--base", required=True, help="the base commit or ref")
    ab.add_argument("--head", help="the head commit or ref (default: the working tree)")
    ab.add_argument("--rounds", type=int, default=3, help="pairs to measure (default 3)")
    ab.add_argument(
        "--counter",
        choices=["instructions"],
        help="count instructions (Linux perf_event) instead of timing",
    )
    _verdict_options(ab)
    ab.add_argument("pytest_arguments", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS")
    ab.set_defaults(handler=run_ab)

    changes = subcommands.add_parser(
        "history",
        help="list the change points of each benchmark's history on a branch",
        description=(
            "Fit each benchmark's history on a branch (per machine, in commit order) and list "
            "the steps found, with their commits."
        ),
    )
    changes.add_argument("--benchmark", default="*", help="a name or glob (default: all)")
    changes.add_argument("--branch", help="default: the branch with the most runs")
    changes.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"the smallest relative step reported (default {DEFAULT_THRESHOLD})",
    )
    _server_options(changes)
    changes.set_defaults(handler=run_history)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="default: TRACKER_PROJECT, else the git folder's name")
    parser.add_argument("--base-url", help="the server (default: settings / TRACKER_BASE_URL)")
    parser.add_argument("--api-key", help="the API key (default: settings / TRACKER_API_KEY)")


def _verdict_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"the rank test's significance level (default {DEFAULT_ALPHA})",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"the smallest relative change that counts (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="also write a Markdown summary for a pull-request comment to PATH (- for stdout, "
        "instead of the table)",
    )


def _settings(arguments: argparse.Namespace) -> Settings:
    from tracker._bench._upload import bench_settings

    return bench_settings(
        arguments.project, getattr(arguments, "dir", None), arguments.base_url, arguments.api_key
    )


def _root() -> Path | None:
    """The git checkout around the working directory, if any."""
    from tracker._bench._git import repo_root

    try:
        return repo_root(Path.cwd())
    except UsageError:
        return None


def run_import(arguments: argparse.Namespace) -> int:
    """Store each result file as a run; one line per file."""
    from tracker._bench._git import repo_identity, repo_root
    from tracker._bench._importers import find_result_files, read_result_file
    from tracker._bench._upload import upload

    settings = _settings(arguments)
    root = repo_root(Path.cwd())
    repo = repo_identity(root)
    for path in [found for name in arguments.paths for found in find_result_files(Path(name))]:
        imported = read_result_file(path, repo, root)
        if imported.results is None:
            print(f"{path}: skipped, {imported.skipped}")
            continue
        done = upload(imported.results, settings)
        count = len(imported.results.benchmarks)
        state = "stored" if done.stored else "already stored"
        print(f"{path}: {state}, {count} benchmarks, run {done.run_id}  {done.where}")
    return 0


def _server(arguments: argparse.Namespace, *refs: str) -> ServerResults | None:
    """Where commits' results are read from; None when every ref is a result file."""
    from tracker._bench._sources import ServerResults

    if all(Path(ref).is_file() for ref in refs):
        return None
    return ServerResults(_settings(arguments))


def _sections(
    base_ref: str,
    base: list[Measured],
    head_ref: str,
    head: list[Measured],
    alpha: float,
    threshold: float,
) -> list[Section]:
    """The comparisons of HEAD with BASE on each machine both were measured on.

    Raises:
        UsageError: they share no machine.
    """
    befores = {measured.key: measured for measured in base}
    common = [after for after in head if after.key in befores]
    if not common:
        raise UsageError(
            f"{base_ref} and {head_ref} were measured on different machines, and results of "
            f"different machines are never compared: {base_ref} on "
            f"{'; '.join(m.label for m in base)}, {head_ref} on "
            f"{'; '.join(m.label for m in head)}. Measure both on one machine: "
            f"`tracker bench ab --base {base_ref}`"
        )
    return [
        Section(
            f"{befores[after.key].commit[:10]}..{after.commit[:10]}",
            after.label,
            compare(befores[after.key].benchmarks, after.benchmarks, alpha, threshold),
        )
        for after in common
    ]


def _print(sections: list[Section], heading: str, arguments: argparse.Namespace) -> None:
    """The table on stdout, and the Markdown summary where --markdown says."""
    summary = markdown(heading, sections, arguments.alpha, arguments.threshold)
    if arguments.markdown == "-":
        sys.stdout.write(summary)
        return
    print(table(sections, arguments.alpha, arguments.threshold))
    if arguments.markdown:
        Path(arguments.markdown).write_text(summary, encoding="utf-8")


def _regressions(sections: list[Section]) -> int:
    return sum(1 for section in sections for c in section.comparisons if c.kind == REGRESSION)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def run_compare(arguments: argparse.Namespace) -> int:
    """Print the comparison of HEAD with BASE."""
    from tracker._bench._sources import load

    server, root = _server(arguments, arguments.base, arguments.head), _root()
    sections = _sections(
        arguments.base,
        load(arguments.base, root, server),
        arguments.head,
        load(arguments.head, root, server),
        arguments.alpha,
        arguments.threshold,
    )
    _print(sections, f"Benchmarks: `{arguments.head}` against `{arguments.base}`", arguments)
    return 0


def run_check(arguments: argparse.Namespace) -> int:
    """Compare HEAD with its base; status 1 on a regression."""
    from tracker._bench._sources import load

    server, root = _server(arguments, arguments.head), _root()
    head = load(arguments.head, root, server)
    base_ref = arguments.base or next((m.base for m in head if m.base), None)
    if base_ref is None:
        raise UsageError(
            f"the results of {arguments.head} record no base commit (they were not measured "
            "for a pull request); pass --base REF"
        )
    base = load(base_ref, root, server or _server(arguments, base_ref))
    sections = _sections(base_ref, base, arguments.head, head, arguments.alpha, arguments.threshold)
    heading = f"Benchmarks: `{arguments.head}` against its base `{base_ref[:10]}`"
    _print(sections, heading, arguments)
    found = _regressions(sections)
    print(f"tracker bench check: {_plural(found, 'regression')}", file=sys.stderr)
    return 1 if found else 0


def run_ab(arguments: argparse.Namespace) -> int:
    """Measure base and head alternately; status 1 on a regression."""
    from tracker._bench._ab import run_ab as measure
    from tracker._bench._fingerprint import this_machine
    from tracker._bench._git import repo_root

    pytest_arguments = [a for a in arguments.pytest_arguments if a != "--"]
    comparisons = measure(
        repo_root(Path.cwd()),
        arguments.base,
        arguments.head,
        pytest_arguments,
        rounds=arguments.rounds,
        counter=arguments.counter == "instructions",
        alpha=arguments.alpha,
        threshold=arguments.threshold,
    )
    head = arguments.head or "the working tree"
    title = f"{arguments.base}..{head}, {arguments.rounds} interleaved pairs"
    sections = [Section(title, this_machine().label, comparisons)]
    _print(sections, f"Benchmarks (A/B): {head} against `{arguments.base}`", arguments)
    return 1 if _regressions(sections) else 0


def run_history(arguments: argparse.Namespace) -> int:
    """Print the change points of each matching benchmark's history."""
    from tracker._bench._history import benchmark_units, branches, history
    from tracker._bench._report import format_value
    from tracker._bench._sources import ServerResults

    runs = [stored for stored, _ in ServerResults(_settings(arguments)).runs()]
    branch = arguments.branch or next(iter(branches(runs)), None)
    names = [name for name in benchmark_units(runs) if fnmatchcase(name, arguments.benchmark)]
    if not names:
        known = ", ".join(list(benchmark_units(runs))[:5]) or "no benchmark runs"
        raise UsageError(
            f"no benchmark matches --benchmark {arguments.benchmark!r}; the project has {known}"
        )
    found = 0
    for name in names:
        past = history(runs, name, branch, threshold=arguments.threshold)
        for series in past.series:
            for change in series.changes:
                found += 1
                before = past.commits[change.before.commit]
                after = past.commits[change.after.commit]
                print(
                    f"{name} on {series.label}: {change.kind} at {after.sha[:10]} "
                    f"{after.message[:60]!r} (after {before.sha[:10]}): "
                    f"{format_value(change.before.median, past.unit)} -> "
                    f"{format_value(change.after.median, past.unit)}, x{change.ratio:.2f}"
                )
    summary = f"{_plural(found, 'change point')} in {_plural(len(names), 'benchmark')}"
    print(f"{summary} on branch {branch}")
    return 0
