"""Clip classification data: clips with one class each -> ten one-second segments of frames and log-mels.

Reads the VGGSound layout (``vggsound.csv``, ``avlearn.data.datasets.vggsound``; AVSynth writes it for its event
clips, the class being the clip's event class). Each clip is decoded by ``avlearn.data.segments.decode_segments``
(the frame nearest each segment's centre, the log-mel of the clip cut into ten pieces); the targets are
``labels`` (), the class index.

VGGSound publishes train and test only: the validation split is every ninth training clip (in file order, the first
included), left out of training, so that model selection never reads the test split.

This pipeline is deliberately small: the generic clip pipeline keyed by ``data.benchmark`` (VGGSound, AudioSet,
ESC-50 ...) replaces it; the task reads only ``frames``, ``audio`` and ``labels`` from its items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig

from avlearn.data.pipelines import Splits, dataset_root
from avlearn.data.schema import DatasetInfo
from avlearn.errors import ConfigError, DataError
from avlearn.registry import DATASETS

SEGMENTS = 10
VAL_EVERY = 9  # every ninth training clip validates


@dataclass(frozen=True)
class ClipInfo(DatasetInfo):
    """``DatasetInfo`` plus the decoded training split, which kNN evaluation uses as its memory bank."""

    memory: Any = field(default=None, compare=False, repr=False)


def _decode(cfg: DictConfig, audio_pre: Any, reader: Any, keep: list[int], split: str) -> Any:
    from avlearn.data.segments import decode_segments

    if not keep:
        raise DataError(f"{reader.root}: no VGGSound clip left for the {split} split")
    items = [(reader.records[i].id, reader.media.path(reader.records[i]),
              np.asarray(reader.records[i].targets["label"])) for i in keep]  # fmt: skip
    return decode_segments(items, cfg.data.frame_size, audio_pre, SEGMENTS, cfg.data.workers, f"decoding {split}")


def clip_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """VGGSound-layout clips: ``frames (S, H, W, 3)``, ``audio (S, F, T)``, ``labels`` () per item."""
    if cfg.task.get("multilabel", False):
        raise ConfigError("task.multilabel=true: the VGGSound layout has one class per clip; expected false")
    root, reader = dataset_root(cfg), DATASETS.get("vggsound")
    train, test = reader(root, "train"), reader(root, "test")
    every = range(len(train))
    parts = {
        "train": _decode(cfg, audio_pre, train, [i for i in every if i % VAL_EVERY], "train"),
        "val": _decode(cfg, audio_pre, train, [i for i in every if i % VAL_EVERY == 0], "val"),
        "test": _decode(cfg, audio_pre, test, list(range(len(test))), "test"),
    }
    info = ClipInfo(train.info.class_names, SEGMENTS, memory=parts["train"])
    return Splits(parts["train"], parts["val"], parts["test"], info, root)
