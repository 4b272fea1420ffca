"""What every task shares: the dataset facts a head needs, and the Task contract.

A task is an ``nn.Module`` that owns a method and a head: ``forward(batch)`` is the training step and returns a
dict with a scalar ``"loss"``; ``predict(batch)`` returns the task's predictions as tensors; ``score(preds,
batch_targets)`` applies the benchmark's official scorer. ``needs`` names the ``AVFeatures`` fields the head reads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about the data a head is built for: class names (without background) and segments per clip."""

    class_names: tuple[str, ...]
    segments: int = 10

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
