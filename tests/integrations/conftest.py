"""Helpers of the integration tests: real torch, TensorBoard, gymnasium, Lightning,
transformers and Keras where installed (``pip install -e ".[integrations]"``); each
test module skips, saying what to install, when its library is missing. The `offline`
and `server` fixtures are the suite's (tests/conftest.py)."""

from __future__ import annotations

from typing import Any


def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows without their times."""
    return [{k: v for k, v in row.items() if k not in ("_timestamp", "_runtime")} for row in rows]
