"""``init(magic=True)``: capture the results of argparse into the run's config.

`capture_argparse` wraps ``ArgumentParser.parse_known_args`` (``parse_args`` goes
through it) and ``parse_known_intermixed_args`` (which on Python 3.13+ no longer
calls ``parse_known_args``). Only the outermost parse of a thread reports, so a
subparser's partial namespace or the inner passes of an intermixed parse are not
seen on their own; the complete namespace is.
"""

from __future__ import annotations

import argparse
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, Final

__all__ = ["capture_argparse"]

logger = logging.getLogger(__name__)

Callback = Callable[[argparse.Namespace], None]
_Parse = Callable[..., tuple[argparse.Namespace, list[str]]]

_PATCHED: Final = ("parse_known_args", "parse_known_intermixed_args")

_lock = threading.Lock()
_callbacks: list[tuple[object, Callback]] = []  # (token, callback), in install order
_originals: dict[str, _Parse] = {}  # method name -> what our wrapper replaced
_wrappers: dict[str, _Parse] = {}  # method name -> our wrapper, while installed
_depth = threading.local()  # nesting of patched parses on this thread


def capture_argparse(callback: Callback) -> Callable[[], None]:
    """Call ``callback(namespace)`` after every successful argparse parse, until uninstalled.

    Returns ``uninstall()``, which stops this capture and, when no capture is left,
    restores argparse (unless someone patched it after us). Calling it twice is safe.
    An exception raised by ``callback`` is logged as a warning, never raised.
    """
    token = object()
    with _lock:
        if not _callbacks:
            _install()
        _callbacks.append((token, callback))

    def uninstall() -> None:
        """Stop this capture; restore argparse when it was the last one."""
        with _lock:
            for index, (entry_token, _) in enumerate(_callbacks):
                if entry_token is token:
                    del _callbacks[index]
                    break
            else:
                return  # already uninstalled
            if not _callbacks:
                _uninstall()

    return uninstall


def _install() -> None:
    for name in _PATCHED:
        original: _Parse = getattr(argparse.ArgumentParser, name)
        wrapper = _wrap(original)
        _originals[name] = original
        _wrappers[name] = wrapper
        setattr(argparse.ArgumentParser, name, wrapper)


def _uninstall() -> None:
    for name in _PATCHED:
        wrapper = _wrappers.pop(name)
        original = _originals.pop(name)
        # Someone patched it after us: taking our wrapper out would drop their patch.
        # Left in place with no callbacks, it only passes calls through.
        if argparse.ArgumentParser.__dict__.get(name) is wrapper:
            setattr(argparse.ArgumentParser, name, original)


def _wrap(original: _Parse) -> _Parse:
    @functools.wraps(original)
    def parse(
        self: argparse.ArgumentParser, *args: Any, **kwargs: Any
    ) -> tuple[argparse.Namespace, list[str]]:
        depth: int = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        try:
            result = original(self, *args, **kwargs)
        finally:
            _depth.value = depth
        if depth == 0:
            _report(result[0])
        return result

    return parse


def _report(namespace: argparse.Namespace) -> None:
    with _lock:
        callbacks = [callback for _, callback in _callbacks]
    for callback in callbacks:
        try:
            callback(namespace)
        except Exception:
            logger.warning(
                "magic=True could not copy argparse arguments into the config "
                "(callback %r failed); your arguments were parsed normally",
                callback,
                exc_info=True,
            )
