"""Event timelines: for each clip, the true and the predicted class of every segment, as coloured bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avlearn.files import atomic_write_bytes


def plot_timelines(
    path: str | Path,
    clip_ids: Sequence[str],
    truth: np.ndarray,
    pred: np.ndarray,
    class_names: Sequence[str],
) -> Path:
    """Write a PNG with two rows per clip (true, predicted); ``truth``/``pred`` are (B, S), K = background."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    k = len(class_names)
    colours = plt.get_cmap("tab20" if k > 10 else "tab10")
    colour_of = lambda c: (0.88, 0.88, 0.88, 1.0) if c == k else colours(c % colours.N)  # noqa: E731
    fig, axes = plt.subplots(len(clip_ids), 1, figsize=(9, 0.9 * len(clip_ids) + 0.9), squeeze=False)
    for ax, vid, t_row, p_row in zip(axes[:, 0], clip_ids, truth, pred, strict=True):
        for y, row in ((1, t_row), (0, p_row)):
            for s, c in enumerate(row):
                ax.barh(y, 1, left=s, color=colour_of(int(c)), edgecolor="white", height=0.8)
        ax.set_yticks([0, 1], ["pred", "true"])
        ax.set_xlim(0, truth.shape[1])
        ax.set_ylabel(vid, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelbottom=False)
    axes[-1, 0].tick_params(axis="x", labelbottom=True)
    axes[-1, 0].set_xlabel("segment (seconds)")
    used = sorted({int(c) for c in np.concatenate([truth.ravel(), pred.ravel()])})
    handles = [Patch(color=colour_of(c), label="background" if c == k else class_names[c]) for c in used]
    fig.legend(handles=handles, loc="upper center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
