"""Segment items read from an ``avlearn extract --features`` store instead of decoded media.

A run whose towers are ``features`` (``backbone.visual=features`` / ``backbone.audio=features``, with
``backbone.store``) trains on the cached per-second features: each ``(id, video path, labels)`` item of a segment
pipeline is looked up in the store by the video's file name (``extract`` keys a clip by its path relative to the
folder it was given, or its stem), and the sample carries ``visual_features`` / ``audio_features`` (S, C) or
(S, N, C) as the store holds them, where a decoded sample carries ``frames`` / ``audio``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from avlearn.data.store import ClipStore
from avlearn.errors import DataError

MODALITIES = ("visual", "audio")


def uses_cached_features(cfg: DictConfig) -> bool:
    """Whether either tower of the run config reads a feature store."""
    return "features" in (cfg.backbone.visual, cfg.backbone.audio)


class CachedSegments:
    """Segment samples from a feature store: ``{"<modality>_features", "labels", "id"}`` per clip."""

    def __init__(self, ids: list[str], features: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        self.ids, self.features, self.labels = ids, features, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {
            **{f"{m}_features": f[i] for m, f in self.features.items()},
            "labels": self.labels[i],
            "id": self.ids[i],
        }


def _keys_by_name(store: ClipStore) -> dict[str, str]:
    """The store's keys by their last path component (the video's stem), the way items name their videos."""
    return {key.rsplit("/", 1)[-1]: key for key in store.keys()}


def cached_segments(
    items: Sequence[tuple[str, Path, np.ndarray]], root: str, modalities: Sequence[str]
) -> CachedSegments:
    """The ``modalities`` features of every ``(id, video path, labels)`` item, read from the store at ``root``."""
    store = ClipStore(root, kind="features")
    keys = _keys_by_name(store)
    stacked: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    for _, path, _ in items:
        key = keys.get(Path(path).stem)
        if key is None:
            raise DataError(f"{root}: no cached features for {path}; run `avlearn extract --features` over this "
                            "dataset's videos into backbone.store")  # fmt: skip
        sample = store[key]
        for m in modalities:
            stacked[m].append(sample[m])
    features = {m: torch.from_numpy(np.stack(arrays)) for m, arrays in stacked.items()}  # (N, S, C) or (N, S, N', C)
    labels = torch.from_numpy(np.stack([lab for _, _, lab in items]))  # (N, S)
    return CachedSegments([vid for vid, _, _ in items], features, labels)
