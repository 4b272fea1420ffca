"""AVE clips -> the AVE (and AVE classification) tasks' tensors: 10 frames, 10 one-second log-mels, segment labels.

The clips are decoded by ``avlearn.data.segments.segment_split`` (the frame nearest each segment's centre, the
log-mel of the whole clip cut into ten pieces; in memory or lazily, from the videos or from ``data.store``);
``shots > 0`` keeps K training clips a class, drawn by the shared
deterministic sampler (``avlearn.data.samplers.few_shot_indices``) for ``seed``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from avlearn.data.pipelines import Splits, dataset_root
from avlearn.errors import ConfigError
from avlearn.registry import DATASETS


def _few_shot(items: list, shots: int, seed: int, background: int) -> list:
    """``shots`` clips per class with the shared deterministic sampler; a clip's class is its first event segment."""
    from avlearn.data.samplers import few_shot_indices

    classes = [int(labels[labels != background][0]) if (labels != background).any() else background
               for _, _, labels in items]  # fmt: skip
    return [items[i] for i in few_shot_indices(classes, shots, seed)]


def ave_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """AVE (and AVE classification): clips with one label per segment; ``shots > 0`` keeps K training clips a class."""
    from avlearn.data.cached import cached_segments, uses_cached_features
    from avlearn.data.segments import segment_split

    root, reader = dataset_root(cfg), DATASETS.get("ave")
    splits = {s: reader(root, s) for s in ("train", "val", "test")}
    items = {s: d.items for s, d in splits.items()}
    if cfg.shots > 0:
        items["train"] = _few_shot(items["train"], cfg.shots, cfg.seed, splits["train"].info.num_classes)
    if uses_cached_features(cfg):  # features towers: the store holds what the backbones would compute
        cached = [m for m in ("visual", "audio") if cfg.backbone[m] == "features"]
        if len(cached) < 2:
            raise ConfigError("backbone.visual / backbone.audio: AVE reads either both modalities from the feature "
                              "store (both =features) or none")  # fmt: skip
        decoded = {s: cached_segments(items[s], cfg.backbone.store, cached) for s in ("train", "val", "test")}
    else:
        decoded = {
            s: segment_split(items[s], cfg.data, audio_pre, desc=f"decoding {s}") for s in ("train", "val", "test")
        }
    return Splits(decoded["train"], decoded["val"], decoded["test"], splits["train"].info, root)
