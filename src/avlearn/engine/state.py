"""What a run is at a given step besides its tensors: counters, data position, best score, RNG states.

All of it is plain data and goes into the checkpoint's JSON (the tensors go into safetensors), so a checkpoint
can be read by anything and loading it never runs code. RNG states are captured per rank: Python's and NumPy's
as lists, torch's CPU and CUDA generators as base64 bytes.
"""

from __future__ import annotations

import base64
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class TrainState:
    """Counters of a run.

    Attributes:
        epoch: Completed epochs.
        step: Completed optimizer steps (over all epochs).
        batch: Global batches already done in the current epoch: the data position a resumed run starts from.
        best: The best validation score of the primary metric so far, negated for a task whose metric is lower is
            better (``-inf`` before the first evaluation).
        best_epoch: The epoch of ``best`` (1-based; 0 = none yet).
        epoch_loss: Sum of the sample losses of the current epoch so far (a resumed epoch reports the whole mean).
        epoch_samples: Samples of the current epoch so far.
        stale: Validations since the last improvement of ``best`` (early stopping: ``train.patience``).
        stopped: Early stopping ended the run (a resumed run does not go on).
        skipped: fp16 steps whose gradients held inf/nan and were not applied.
        history: One record per completed epoch (losses, validation scores, seconds).
    """

    epoch: int = 0
    step: int = 0
    batch: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    epoch_loss: float = 0.0
    epoch_samples: int = 0
    stale: int = 0
    stopped: bool = False
    skipped: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (``-inf`` becomes ``None``)."""
        out = asdict(self)
        out["best"] = None if math.isinf(self.best) else self.best
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        data = dict(data)
        data["best"] = -math.inf if data.get("best") is None else float(data["best"])
        return cls(**data)


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _unb64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch and CUDA generator states as JSON-safe data."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(words), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])
