"""Running code when a module is imported: at once if it already is, else right after.

`init(sync_tensorboard=True)` wraps TensorBoard writers' constructors, but a script may
import ``torch.utils.tensorboard`` only after `init()`, and importing it (and torch)
ourselves would cost seconds to scripts that never use it. A finder on ``sys.meta_path``
lets the real finders find the module and wraps its loader's ``exec_module`` on that
spec alone, so the callbacks run once the module has executed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["when_imported"]

logger = logging.getLogger(__name__)

Callback = Callable[[ModuleType], None]

_waiting: dict[str, list[Callback]] = {}
_lock = threading.Lock()


def when_imported(name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once module ``name`` is imported (now, if it is)."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _waiting.setdefault(name, []).append(callback)
            if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
                sys.meta_path.insert(0, _Finder())
            return
    _call(callback, module)


def _call(callback: Callback, module: ModuleType) -> None:
    try:
        callback(module)
    except Exception:  # a failing hook must not break the user's import
        logger.exception("tracker: a hook on importing %s failed", module.__name__)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the loading of the modules someone waits for."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _waiting:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader: Any = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            with _lock:
                callbacks = _waiting.pop(fullname, [])
            for callback in callbacks:
                _call(callback, module)

        loader.exec_module = exec_module
        return spec
