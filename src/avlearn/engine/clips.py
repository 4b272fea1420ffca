"""A trained clip classifier or retrieval model on real files (``avlearn predict --top`` / ``--query``).

* ``top_classes``: the k most probable classes of one video (``task=classify``; any task whose ``predict`` gives
  ``probs (B, K)``), its window decoded as in training (``avlearn.engine.infer.video_batch``).
* ``rank_clips``: text queries ranked over a folder of clips (``task=retrieve``): every clip embedded once, every
  query embedded by the task's frozen text tower as captions are in training, each query's clips sorted by cosine
  similarity; ``avlearn.viz.retrieval.write_ranking_html`` draws the result with the clips' frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from avlearn.engine.infer import video_batch
from avlearn.errors import ConfigError, DataError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def _device_batch(task: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    device = next(task.parameters()).device
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def top_classes(task: nn.Module, cfg: DictConfig, path: str | Path, start: float = 0.0, k: int = 5) -> dict[str, Any]:
    """``{"video", "classes": [{"class", "label", "probability"}, ...]}``: the ``k`` most probable classes."""
    out = task.predict(_device_batch(task, video_batch(path, cfg, task.info.segments, start)))
    if "probs" not in out or out["probs"].dim() != 2:
        raise ConfigError(f"predict --top lists clip classes; task '{cfg.task.name}' predicts {', '.join(out)}")
    probs = out["probs"][0].float()  # (K,)
    values, index = probs.topk(min(k, len(probs)))
    names = task.info.class_names
    classes = [{"class": int(i), "label": names[int(i)], "probability": float(p)}
               for p, i in zip(values.tolist(), index.tolist(), strict=True)]  # fmt: skip
    return {"video": str(path), "classes": classes}


def clip_files(folder: str | Path) -> list[Path]:
    """The video files of ``folder`` (not recursive), sorted by name; none is a one-line DataError."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise DataError(f"{folder}: expected a folder of video clips ({', '.join(VIDEO_SUFFIXES)})")
    return files


@torch.no_grad()
def rank_clips(task: nn.Module, cfg: DictConfig, folder: str | Path, queries: list[str], k: int = 5) -> dict[str, Any]:
    """``{"queries": [{"query", "clips": [{"file", "score"}, ...]}], "frames": {file: (S, H, W, 3) uint8}}``: each
    query's ``k`` best clips of ``folder`` by cosine similarity (all of them when there are fewer)."""
    if not hasattr(task, "clip_embedding"):
        raise ConfigError(f"predict --query ranks clips by text; task '{cfg.task.name}' is not a retrieval task")
    batches = {f.name: video_batch(f, cfg, task.info.segments) for f in clip_files(folder)}
    clips = torch.cat([task.clip_embedding(_device_batch(task, b))[0] for b in batches.values()])  # (V, D)
    scores = task.query_embedding(queries) @ clips.T  # (Q, V)
    values, index = scores.topk(min(k, scores.shape[1]), dim=1)  # (Q, k)
    names = list(batches)
    ranked = [{"query": q, "clips": [{"file": names[i], "score": float(s)} for s, i in zip(v, ix, strict=True)]}
              for q, v, ix in zip(queries, values.tolist(), index.tolist(), strict=True)]  # fmt: skip
    return {"queries": ranked, "frames": {name: b["frames"][0].numpy() for name, b in batches.items()}}
