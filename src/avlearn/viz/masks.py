"""Segmentation examples: for each frame, the input, the true mask and the predicted mask, side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avlearn.files import atomic_write_bytes


def plot_masks(
    path: str | Path,
    frames: np.ndarray,
    truth: np.ndarray,
    probs: np.ndarray,
    titles: Sequence[str],
    scores: Sequence[float] | None = None,
) -> Path:
    """Write a PNG with one row per frame: input frame, true mask, predicted probability (with its 0.5 contour).

    Args:
        path: The PNG to write.
        frames: (N, H, W, 3) uint8.
        truth: (N, H, W) bool ground-truth masks.
        probs: (N, H, W) predicted foreground probabilities.
        titles: N row labels (clip id and frame).
        scores: Optional N per-frame IoUs, shown above the prediction.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(frames)
    fig, axes = plt.subplots(n, 3, figsize=(6.3, 2.1 * n + 0.3), squeeze=False)
    for row, (frame, mask, prob, title) in enumerate(zip(frames, truth, probs, titles, strict=True)):
        ax_frame, ax_true, ax_pred = axes[row]
        ax_frame.imshow(frame)
        ax_frame.set_ylabel(title, fontsize=8)
        ax_true.imshow(mask, cmap="gray", vmin=0, vmax=1)
        ax_pred.imshow(prob, cmap="magma", vmin=0, vmax=1)
        if prob.max() > 0.5 > prob.min():
            ax_pred.contour(prob, levels=[0.5], colors="cyan", linewidths=0.8)
        if scores is not None:
            ax_pred.set_title(f"IoU {scores[row]:.2f}", fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, name in zip(axes[0], ("input frame", "true mask", "predicted"), strict=True):
        ax.set_title(name if ax is not axes[0, 2] or scores is None else f"{name}\n{ax.get_title()}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
