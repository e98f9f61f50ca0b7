"""Fixtures of the integration tests: real torch, TensorBoard, gymnasium, Lightning,
transformers and Keras where installed (``pip install -e ".[integrations]"``); each
test module skips, saying what to install, when its library is missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tracker
from tracker._server._runner import EmbeddedServer

SILENT = {"silent": True}


def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows without their times."""
    return [{k: v for k, v in row.items() if k not in ("_timestamp", "_runtime")} for row in rows]


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tracker.Run]:
    """Start an offline run with the test's folder as working directory."""
    monkeypatch.chdir(tmp_path)

    def start(**kwargs: Any) -> tracker.Run:
        return tracker.init(project="integrations", dir=tmp_path, settings=SILENT, **kwargs)

    return start


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A keyless server on loopback over a fresh SQLite file."""
    with EmbeddedServer(f"sqlite:///{tmp_path / 'tracker.db'}") as running:
        yield running
