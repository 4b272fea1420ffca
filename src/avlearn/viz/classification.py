"""The clip-classification report (``task=classify``): chance levels of its metric and a confusion-matrix plot.

Chance levels: single-label top-1 accuracy of a uniform guess (100 / K) and of always the most frequent training
class; multi-label mAP of scores that ignore the clip, which equals each class's share of positive test clips,
averaged over the classes (``prevalence``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avlearn.files import atomic_write_bytes
from avlearn.viz.reports import Report


def clip_targets(targets: dict) -> torch.Tensor:
    """A clip split's targets: ``label`` (N,) class indices, or ``labels`` (N, K) multi-hot."""
    return targets["label"] if "label" in targets else targets["labels"]


def classify_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    """Chance levels of the task's primary metric on the test split (see the module docstring)."""
    test = clip_targets(out["targets"])
    if test.dim() == 2:  # (N, K) multi-hot
        seen = test.bool().any(dim=0)
        return {"prevalence": 100.0 * float(test.float().mean(dim=0)[seen].mean())}
    majority = int(torch.bincount(clip_targets(splits.train.targets).flatten()).argmax())
    return {"uniform": 100.0 / splits.info.num_classes, "majority": 100.0 * float((test == majority).float().mean())}


def plot_confusion(path: str | Path, truth: np.ndarray, pred: np.ndarray, class_names: Sequence[str]) -> Path:
    """Write a PNG of the confusion matrix (rows: true class, columns: predicted class, counts in the cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (truth, pred), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * k, 1.0 + 0.45 * k))
    ax.imshow(counts, cmap="Blues")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="white" if n > counts.max() / 2 else "k")
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = 100.0 * float(np.trace(counts)) / max(1, counts.sum())
    ax.set_title(f"top-1 {accuracy:.1f}% on {counts.sum()} clips", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _classify_plot(splits: Any, out: dict, path: Path) -> Path:
    labels = clip_targets(out["targets"])
    truth = labels.argmax(dim=-1) if labels.dim() == 2 else labels  # multi-label: the first class in class order
    return plot_confusion(path, truth.numpy(), out["preds"]["clip_labels"].numpy(), splits.info.class_names)


CLASSIFY = Report(classify_chance, _classify_plot, "confusion.png")
