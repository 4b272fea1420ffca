"""Temporal grounding: how much each question attends to each segment of its video, as a heat map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avlearn.files import atomic_write_bytes


def plot_temporal_grounding(
    path: str | Path,
    questions: Sequence[str],
    weights: dict[str, np.ndarray],
    answers: Sequence[str] | None = None,
) -> Path:
    """Write a PNG with one heat map per modality: rows are questions, columns the S segments.

    Args:
        path: The PNG to write.
        questions: Q question texts (row labels).
        weights: Modality name -> (Q, S) attention weights over the segments (each row sums to 1).
        answers: Optional Q strings appended to the row labels (e.g. "pred / true").
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [q if answers is None else f"{q}  [{a}]" for q, a in zip(questions, answers or questions, strict=True)]
    q, s = next(iter(weights.values())).shape
    fig, axes = plt.subplots(1, len(weights), figsize=(3.2 * len(weights) + 4.5, 0.42 * q + 1.4), squeeze=False)
    for k, (ax, (name, w)) in enumerate(zip(axes[0], weights.items(), strict=True)):
        image = ax.imshow(np.asarray(w), aspect="auto", cmap="viridis", vmin=0)
        ax.set_title(f"{name} attention", fontsize=9)
        ax.set_xticks(range(s), [str(i) for i in range(s)], fontsize=7)
        ax.set_xlabel("segment (second)", fontsize=8)
        ax.set_yticks(range(q), labels if k == 0 else [""] * q, fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
