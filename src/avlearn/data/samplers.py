"""Deterministic few-shot sampling: K samples per class, the same for the same labels, K and seed on any machine.

Follows the few-shot protocol of CoOp as Cross-Modal Adaptation uses it (``indices/<dataset>/shot_K-seed_S.json``):
K training samples per class (all of them when a class has fewer), and min(K, 4) validation samples per class.
What differs: CoOp draws with Python's ``random.sample`` over a dict of classes; here each class draws from a NumPy
``Generator`` seeded by (seed, class), so adding a class or a sample of another class never changes a class's draw.
``avlearn.data.datasets.coop`` reads and writes the CoOp json files these indices go into.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

VAL_SHOTS_MAX = 4  # CoOp: min(K, 4) validation samples per class


def few_shot_indices(labels: Sequence[int], shots: int, seed: int) -> list[int]:
    """Positions of ``shots`` samples per class of ``labels`` (every sample of a smaller class), sorted.

    Args:
        labels: The class of each sample, in dataset order.
        shots: Samples per class (K >= 1).
        seed: The draw; (labels, shots, seed) fixes the result.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    members: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        members[int(label)].append(position)
    chosen: list[int] = []
    for label, positions in sorted(members.items()):
        rng = np.random.default_rng([seed, label])
        chosen += [positions[i] for i in rng.permutation(len(positions))[:shots]]
    return sorted(chosen)


def few_shot_split(train_labels: Sequence[int], val_labels: Sequence[int], shots: int, seed: int) -> dict:
    """CoOp's few-shot split: ``{"train": K per class, "val": min(K, 4) per class}`` as positions."""
    return {
        "train": few_shot_indices(train_labels, shots, seed),
        "val": few_shot_indices(val_labels, min(shots, VAL_SHOTS_MAX), seed) if len(val_labels) else [],
    }
