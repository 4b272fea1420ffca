"""Few-shot subsetting of the training split (``shots=K``) uses the shared deterministic sampler."""

from __future__ import annotations

from collections import Counter

import numpy as np

from avlearn.data.pipelines.ave import _few_shot

BACKGROUND = 10


def _items(n: int) -> list:
    return [(f"v{i}", None, np.array([BACKGROUND] * 3 + [i % 4] * 4 + [BACKGROUND] * 3)) for i in range(n)]


def test_shots_per_class_and_seeded():
    kept = _few_shot(_items(20), shots=2, seed=0, background=BACKGROUND)
    assert Counter(int(labels[3]) for _, _, labels in kept) == {0: 2, 1: 2, 2: 2, 3: 2}
    ids = [vid for vid, _, _ in kept]
    assert ids == [vid for vid, _, _ in _few_shot(_items(20), shots=2, seed=0, background=BACKGROUND)]
    assert ids != [vid for vid, _, _ in _few_shot(_items(20), shots=2, seed=1, background=BACKGROUND)]
