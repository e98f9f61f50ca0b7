"""Tests for magic=True: argparse results reach a callback without disturbing parsing."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator

import pytest

from tracker._magic import capture_argparse

ORIGINAL_PARSE_KNOWN_ARGS = argparse.ArgumentParser.parse_known_args
ORIGINAL_PARSE_KNOWN_INTERMIXED_ARGS = argparse.ArgumentParser.parse_known_intermixed_args


@pytest.fixture(autouse=True)
def _argparse_is_restored() -> Iterator[None]:
    """Every test must leave argparse as it found it."""
    yield
    assert argparse.ArgumentParser.parse_known_args is ORIGINAL_PARSE_KNOWN_ARGS
    assert (
        argparse.ArgumentParser.parse_known_intermixed_args is ORIGINAL_PARSE_KNOWN_INTERMIXED_ARGS
    )


def make_parser() -> argparse.ArgumentParser:
    """A small parser like a training script's."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    return parser


def test_parse_args_reaches_the_callback() -> None:
    """parse_args() hands the parsed namespace to the callback, and still returns it."""
    seen: list[argparse.Namespace] = []
    uninstall = capture_argparse(seen.append)
    try:
        args = make_parser().parse_args(["--lr", "0.5"])
    finally:
        uninstall()
    assert seen == [argparse.Namespace(lr=0.5, epochs=3)]
    assert seen[0] is args


def test_parse_known_args_reaches_the_callback() -> None:
    """parse_known_args() reports the namespace; the extras still reach the caller."""
    seen: list[argparse.Namespace] = []
    uninstall = capture_argparse(seen.append)
    try:
        _, extras = make_parser().parse_known_args(["--epochs", "5", "--other"])
    finally:
        uninstall()
    assert extras == ["--other"]
    assert seen == [argparse.Namespace(lr=0.1, epochs=5)]


def test_intermixed_parse_reports_once() -> None:
    """parse_intermixed_args() reports the complete namespace once."""
    seen: list[argparse.Namespace] = []
    parser = make_parser()
    parser.add_argument("files", nargs="*")
    uninstall = capture_argparse(seen.append)
    try:
        parser.parse_intermixed_args(["a", "--lr", "0.2", "b"])
    finally:
        uninstall()
    assert seen == [argparse.Namespace(lr=0.2, epochs=3, files=["a", "b"])]


def test_subparser_reports_only_the_complete_namespace() -> None:
    """A subcommand's own parse is not reported alone; the whole result is, once."""
    seen: list[argparse.Namespace] = []
    parser = make_parser()
    sub = parser.add_subparsers(dest="command").add_parser("train")
    sub.add_argument("--seed", type=int, default=0)
    uninstall = capture_argparse(seen.append)
    try:
        parser.parse_args(["--lr", "0.3", "train", "--seed", "7"])
    finally:
        uninstall()
    assert seen == [argparse.Namespace(lr=0.3, epochs=3, command="train", seed=7)]


def test_failed_parse_does_not_reach_the_callback(capsys: pytest.CaptureFixture[str]) -> None:
    """A parse that exits with a usage error reports nothing."""
    seen: list[argparse.Namespace] = []
    uninstall = capture_argparse(seen.append)
    try:
        with pytest.raises(SystemExit):
            make_parser().parse_args(["--lr", "not-a-number"])
    finally:
        uninstall()
    assert seen == []
    assert "--lr" in capsys.readouterr().err


def test_uninstall_restores_argparse_and_stops_reporting() -> None:
    """After uninstall() argparse is the original and the callback hears nothing more."""
    seen: list[argparse.Namespace] = []
    uninstall = capture_argparse(seen.append)
    assert argparse.ArgumentParser.parse_known_args is not ORIGINAL_PARSE_KNOWN_ARGS
    uninstall()
    assert argparse.ArgumentParser.parse_known_args is ORIGINAL_PARSE_KNOWN_ARGS
    make_parser().parse_args([])
    assert seen == []


def test_uninstall_twice_is_safe() -> None:
    """Calling uninstall() a second time does nothing, even with another capture active."""
    first: list[argparse.Namespace] = []
    second: list[argparse.Namespace] = []
    uninstall_first = capture_argparse(first.append)
    uninstall_first()
    uninstall_second = capture_argparse(second.append)
    try:
        uninstall_first()
        make_parser().parse_args([])
    finally:
        uninstall_second()
    assert first == []
    assert len(second) == 1


def test_nested_captures_unwind_in_order() -> None:
    """Two captures both report; removing the inner one keeps the outer one working."""
    outer: list[argparse.Namespace] = []
    inner: list[argparse.Namespace] = []
    uninstall_outer = capture_argparse(outer.append)
    try:
        uninstall_inner = capture_argparse(inner.append)
        make_parser().parse_args([])
        uninstall_inner()
        make_parser().parse_args([])
        assert argparse.ArgumentParser.parse_known_args is not ORIGINAL_PARSE_KNOWN_ARGS
    finally:
        uninstall_outer()
    assert (len(outer), len(inner)) == (2, 1)


def test_captures_removed_out_of_order_restore_argparse() -> None:
    """Removing the first capture before the second still ends with the original argparse."""
    seen: list[argparse.Namespace] = []
    uninstall_first = capture_argparse(seen.append)
    uninstall_second = capture_argparse(seen.append)
    uninstall_first()
    make_parser().parse_args([])
    uninstall_second()
    assert len(seen) == 1


def test_callback_error_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A failing callback is logged as a warning and the parse still returns its result."""

    def broken(namespace: argparse.Namespace) -> None:
        raise RuntimeError("boom")

    uninstall = capture_argparse(broken)
    try:
        with caplog.at_level(logging.WARNING, logger="tracker._magic"):
            args = make_parser().parse_args(["--epochs", "9"])
    finally:
        uninstall()
    assert args.epochs == 9
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.name == "tracker._magic"
    assert "argparse" in record.getMessage()
    assert record.exc_info is not None
    assert "boom" in str(record.exc_info[1])


def test_one_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """A callback after a failing one still receives the namespace."""
    seen: list[argparse.Namespace] = []

    def broken(namespace: argparse.Namespace) -> None:
        raise ValueError("bad")

    uninstall_broken = capture_argparse(broken)
    uninstall_seen = capture_argparse(seen.append)
    try:
        with caplog.at_level(logging.WARNING, logger="tracker._magic"):
            make_parser().parse_args([])
    finally:
        uninstall_seen()
        uninstall_broken()
    assert len(seen) == 1
    assert len(caplog.records) == 1


def test_patch_made_after_ours_survives_uninstall() -> None:
    """If another library wrapped argparse after us, uninstall() leaves its wrapper alone."""
    seen: list[argparse.Namespace] = []
    uninstall = capture_argparse(seen.append)
    ours = argparse.ArgumentParser.parse_known_args
    calls: list[int] = []

    def theirs(
        self: argparse.ArgumentParser, *args: object, **kwargs: object
    ) -> tuple[argparse.Namespace, list[str]]:
        calls.append(1)
        return ours(self, *args, **kwargs)  # type: ignore[arg-type]

    argparse.ArgumentParser.parse_known_args = theirs  # type: ignore[method-assign,assignment]
    try:
        uninstall()
        assert argparse.ArgumentParser.parse_known_args is theirs
        make_parser().parse_args([])
    finally:
        argparse.ArgumentParser.parse_known_args = ORIGINAL_PARSE_KNOWN_ARGS  # type: ignore[method-assign]
    assert calls == [1]
    assert seen == []
