"""The text <-> clip retrieval report (``task=retrieve``) and pages of ranked clips.

Chance levels of text -> clip R@1 on the test split: ``uniform`` (a random ranking: 100 / N) and ``ceiling``, the
best any model can reach when query captions repeat: g clips whose queries are the same text are ranked alike for
all g queries, so only one of them comes first (``caption_ceiling``). The plot (``retrieval.png``) shows a few test
queries (their first caption: a benchmark's references, or the AVE layout's ``captions/txt_mapper.json``; the clip
id when it has none) with the middle frame of their top-5 clips (green: the query's own clip).
``write_ranking_html`` writes the same as a small HTML page (frames inline), for ``avlearn predict``-style text
queries over a folder of clips.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avlearn.files import atomic_write_bytes, atomic_write_text
from avlearn.viz.reports import SHOWN, Report

TOP = 5  # clips shown per query


def caption_ceiling(queries: torch.Tensor | Sequence[str]) -> float:
    """Best text -> clip R@1 (percent) when clip i's query is ``queries[i]`` (strings, or (N, C) embeddings that are
    equal for equal texts): the share of distinct queries."""
    if torch.is_tensor(queries):
        distinct = len(torch.unique(queries.float().mul(1e4).round(), dim=0))
        return 100.0 * distinct / max(1, len(queries))
    return 100.0 * len(set(queries)) / max(1, len(queries))


def retrieve_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    """``uniform`` and ``ceiling`` of text -> clip R@1 on the test split (see the module docstring)."""
    queries = splits.test.texts[:, 0]  # (N, Ct): each clip's query caption (its first)
    return {"uniform": 100.0 / len(queries), "ceiling": caption_ceiling(queries)}


def _captions(splits: Any) -> dict[str, list[str]]:
    """Every test clip's captions by id: the benchmark's references (``data.benchmark``: its ``ClipSet``), else
    ``captions/txt_mapper.json`` of the dataset, or nothing."""
    from avlearn.data.datasets.valor32k import read_txt_mapper

    references = getattr(splits.test.clips, "references", None)
    if references:
        return references
    path = Path(splits.root) / "captions" / "txt_mapper.json"
    return read_txt_mapper(path) if path.is_file() else {}


def _middle(frames: torch.Tensor) -> np.ndarray:
    """(S, H, W, 3) -> the middle segment's frame."""
    return frames[len(frames) // 2].numpy()


def plot_ranking(path: str | Path, queries: Sequence[str], ranked: Sequence[Sequence[tuple[str, np.ndarray, bool]]]
                 ) -> Path:  # fmt: skip
    """A PNG with one row per query: its text, then its top clips' frames (id, frame, is the query's own clip)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(r) for r in ranked)
    fig, axes = plt.subplots(len(queries), cols, figsize=(1.6 * cols, 1.9 * len(queries)), squeeze=False)
    for row, (query, clips) in enumerate(zip(queries, ranked, strict=True)):
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(clips):
                clip_id, frame, hit = clips[col]
                ax.imshow(frame)
                ax.add_patch(matplotlib.patches.Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False,
                                                          lw=3, color="tab:green" if hit else "lightgrey"))  # fmt: skip
                ax.set_title(f"{col + 1}. {clip_id}", fontsize=6)
        axes[row, 0].text(0, -0.35, query[:110], transform=axes[row, 0].transAxes, fontsize=7, va="top")
    fig.tight_layout(h_pad=2.0)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _retrieve_plot(splits: Any, out: dict, path: Path) -> Path:
    test, preds = splits.test, out["preds"]
    if preds["text"].dim() != 2:  # task.similarity=method: token features only the method can score; no figure
        return path
    n = min(SHOWN, len(test))
    similarity = preds["text"][:n] @ preds["clip"].T  # (n, V)
    order = similarity.argsort(dim=1, descending=True)[:, :TOP]  # (n, TOP)
    ids, captions = test.clips.ids, _captions(splits)
    queries = [(captions.get(ids[i]) or [ids[i]])[0] for i in range(n)]
    ranked = [[(ids[j], _middle(test.clips[j]["frames"]), j == i) for j in order[i].tolist()] for i in range(n)]
    return plot_ranking(path, queries, ranked)


def _png(frame: np.ndarray) -> str:
    """A frame as a base64 PNG data URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_ranking_html(path: str | Path, queries: Sequence[str],
                       ranked: Sequence[Sequence[tuple[str, float, np.ndarray]]]) -> Path:  # fmt: skip
    """A small HTML page: per query, its ranked clips (name, score, frames (F, H, W, 3) shown inline)."""
    style = "body{font-family:sans-serif} img{image-rendering:pixelated;width:96px;margin:1px}"
    parts = ["<!doctype html><meta charset='utf-8'><title>avlearn retrieval</title>", f"<style>{style}</style>"]
    for query, clips in zip(queries, ranked, strict=True):
        parts.append(f"<h3>{html.escape(query)}</h3><ol>")
        for name, score, frames in clips:
            images = "".join(f"<img src='{_png(f)}'>" for f in frames)
            parts.append(f"<li>{html.escape(name)} <small>({score:.3f})</small><br>{images}</li>")
        parts.append("</ol>")
    return atomic_write_text(path, "\n".join(parts) + "\n")


RETRIEVE = Report(retrieve_chance, _retrieve_plot, "retrieval.png")
