"""What the integrations share: values a config can hold, and which process logs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tracker._errors import UsageError
from tracker._records.codec import encode_value

__all__ = ["loggable_config", "rank_zero"]


def loggable_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """A framework's hyperparameters as a config: keys with ``.`` nested by W&B's rule
    made str keys without dots, values a config cannot hold (a model, a class, a
    function) stored as their ``str``, as W&B's integrations do."""
    config: dict[str, Any] = {}
    for key, value in params.items():
        name = str(key).replace(".", "/")
        if not name:
            continue
        try:
            encode_value(value, "config value")
            config[name] = value
        except UsageError:
            config[name] = str(value)
    return config


def rank_zero() -> bool:
    """Whether this process is the first of a distributed job (or not distributed): the
    ranks launchers set (torchrun, SLURM, MPI)."""
    for name in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value) == 0
    return True
