"""Checkpoints: tensors in safetensors, everything else (config, step, metrics) in JSON; both written atomically.

Loading never unpickles: safetensors holds only tensors, and JSON only data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avlearn.engine.files import atomic_write_bytes, atomic_write_text
from avlearn.errors import AvlearnError

WEIGHTS, META = "model.safetensors", "checkpoint.json"


def save_checkpoint(folder: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model``'s state dict and ``meta`` into ``folder`` (weights first, so the JSON marks completion)."""
    from safetensors.torch import save

    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS, save(state))
    atomic_write_text(folder / META, json.dumps(meta, indent=1, default=str))
    return folder


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` from a folder written by ``save_checkpoint``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
        raise AvlearnError(
            f"{folder}: not a checkpoint (expected {WEIGHTS} and {META}); pass a run's checkpoint folder"
        )
    try:
        state = load_file(folder / WEIGHTS)
    except (SafetensorError, OSError) as err:
        raise AvlearnError(
            f"{folder / WEIGHTS}: unreadable checkpoint ({err}); it may be truncated or tampered"
        ) from None
    return state, json.loads((folder / META).read_text())
