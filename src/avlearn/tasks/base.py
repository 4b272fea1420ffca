"""What every task shares: the dataset facts a head needs, and the Task contract.

A task is an ``nn.Module`` that owns a method and a head: ``forward(batch)`` is the training step and returns a
dict with a scalar ``"loss"``; ``predict(batch)`` returns the task's predictions as tensors; ``score(preds,
batch_targets)`` applies the benchmark's official scorer. ``needs`` names the ``AVFeatures`` fields the head reads.
``DatasetInfo`` is defined with the data schema (``avlearn.data.schema``) and imported here, where tasks look for it.
"""

from __future__ import annotations

from avlearn.data.schema import DatasetInfo

__all__ = ["DatasetInfo"]
