"""What every task shares: the dataset facts a head needs, and the Task contract.

A task is an ``nn.Module`` that owns a method and a head: ``forward(batch)`` is the training step and returns a
dict with a scalar ``"loss"``; ``predict(batch)`` returns the task's predictions as tensors; ``score(preds,
batch_targets)`` applies the benchmark's official scorer. ``needs`` names the ``AVFeatures`` fields the head reads.
``DatasetInfo`` is defined with the data schema (``avlearn.data.schema``) and imported here, where tasks look for it.
"""

from __future__ import annotations

import torch

from avlearn.data.schema import DatasetInfo
from avlearn.errors import ConfigError

__all__ = ["DatasetInfo", "EvaluationOnly"]


class EvaluationOnly:
    """Mixin of the zero-shot tasks: nothing to train; the weights come from ``train.init_from``."""

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise ConfigError(f"task={self.cfg.name} does not train: set train.epochs=0 and train.init_from=<weights>")
