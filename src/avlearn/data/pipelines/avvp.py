"""LLP (AVVP) videos -> the AVVP task's tensors: 10 frames, 10 one-second log-mels, weak and per-modality labels.

Follows the LLP inputs of the AVVP code (Tian et al., ECCV 2020; as DG-SCT ``AVVP`` reads them): ten one-second
segments per video; training sees only the video-level (weak) labels, the union of the audio and the visual events;
the validation and test videos also carry the per-second events of each modality (``AVVP_eval_audio.csv`` /
``AVVP_eval_visual.csv``), which the official scorer (``avlearn.metrics.avvp``) compares the predictions with.

What we changed: frames and log-mels are decoded from the videos (the frame at each segment's centre, the log-mel
of the whole clip cut into ten pieces by ``avlearn.data.segments.segment_log_mel``), not read from the seed's
precomputed ResNet / R(2+1)D / VGGish features; with ``data.store`` (a clip store of the videos) or lazy samples
(``data.preload``) they are read as the AVE pipeline reads them (``avlearn.data.segments``). The per-modality
labels come from the LLP reader (``avlearn.data.datasets.llp``); the training split gets all-False ones (it has
none, and the scorer never reads them there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.data.datasets.media import Decode
from avlearn.data.pipelines import Splits, dataset_root, load_media, segment_items
from avlearn.data.schema import DatasetInfo
from avlearn.data.segments import LazySegments, segment_log_mel, segment_split
from avlearn.registry import DATASETS

SEGMENTS = 10  # LLP: ten one-second segments per video


@dataclass
class AVVPTensors:
    """Decoded LLP videos.

    Attributes:
        ids: Video ids (LLP filenames).
        frames: (N, S, H, W, 3) uint8.
        audio: (N, S, F, T) float32 normalised log-mel per one-second segment.
        labels: (N, K) float32 multi-hot video-level (weak) labels.
        gt_audio: (N, K, S) bool, True where class k is audible in segment s (all False for the training split).
        gt_visual: (N, K, S) bool, the same for the visible events.
    """

    ids: list[str]
    frames: torch.Tensor
    audio: torch.Tensor
    labels: torch.Tensor
    gt_audio: torch.Tensor
    gt_visual: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "audio": self.audio[i], "labels": self.labels[i],
                "gt_audio": self.gt_audio[i], "gt_visual": self.gt_visual[i], "id": self.ids[i]}  # fmt: skip


class LazyAVVP(Dataset):
    """``AVVPTensors``' items, their frames and log-mels read when asked for (``LazySegments``: from a clip store or
    from the videos, in the DataLoader's workers); the labels are held in memory.

    Attributes:
        clips: The videos' ``LazySegments``, whose labels are the weak ``(K,)`` labels.
        gt_audio: (N, K, S) bool, as ``AVVPTensors.gt_audio``.
        gt_visual: (N, K, S) bool.
    """

    def __init__(self, clips: LazySegments, gt_audio: torch.Tensor, gt_visual: torch.Tensor) -> None:
        self.clips, self.gt_audio, self.gt_visual = clips, gt_audio, gt_visual

    @property
    def ids(self) -> list[str]:
        """The video ids, in item order."""
        return self.clips.ids

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        return {**self.clips[i], "gt_audio": self.gt_audio[i], "gt_visual": self.gt_visual[i]}


def _segment_labels(dataset, modality: str) -> torch.Tensor:  # noqa: ANN001 (an LLP reader)
    """(N, K, S) bool per-modality labels of every record (all False where the split has none)."""
    empty = np.zeros((SEGMENTS, len(dataset.classes)), dtype=np.float32)
    tables = [np.asarray(r.targets.get(f"{modality}_segments", empty)) for r in dataset.records]
    return torch.from_numpy(np.stack(tables)).transpose(1, 2) > 0  # (N, S, K) -> (N, K, S)


def decode_avvp(dataset, audio: AudioPreprocess, workers: int = 1) -> AVVPTensors:  # noqa: ANN001 (an LLP reader)
    """Decode every video of an LLP reader (its ``decode`` sets the frame size and sample rate), with its labels."""
    records = dataset.records
    loaded = load_media(dataset.media, records, dataset.decode, workers, f"decoding {dataset.split}")
    frames = torch.from_numpy(np.stack([x["frames"] for x in loaded]))  # (N, S, H, W, 3)
    waves = torch.from_numpy(np.stack([x["wave"] for x in loaded]))  # (N, samples)
    mels = torch.cat([segment_log_mel(chunk, SEGMENTS, audio) for chunk in waves.split(64)])  # (N, S, F, T)
    labels = torch.from_numpy(np.stack([np.asarray(r.targets["labels"], np.float32) for r in records]))  # (N, K)
    return AVVPTensors([r.id for r in records], frames, mels, labels, _segment_labels(dataset, "audio"),
                       _segment_labels(dataset, "visual"))  # fmt: skip


def avvp_split(dataset, audio: AudioPreprocess, data: DictConfig) -> AVVPTensors | LazyAVVP:  # noqa: ANN001
    """One LLP split: read from ``data.store`` or lazily where the data config asks (``segment_split``), else
    decoded into memory from the reader's media (``decode_avvp``)."""
    items = segment_items(dataset, dataset.records, "labels", np.float32)
    clips = segment_split(items, data, audio, SEGMENTS, f"reading {dataset.split}", own_decoding=True)
    if clips is None:
        return decode_avvp(dataset, audio, data.workers)
    gt = _segment_labels(dataset, "audio"), _segment_labels(dataset, "visual")
    if isinstance(clips, LazySegments):
        return LazyAVVP(clips, *gt)
    return AVVPTensors(clips.ids, clips.frames, clips.audio, clips.labels, *gt)


def avvp_splits(
    root: str | Path, frame_size: int, audio: AudioPreprocess, workers: int = 1, data: DictConfig | None = None
) -> dict:
    """The train/val/test splits of LLP under ``root``, and ``"classes"``: the class names. Decoded into memory
    (``decode_avvp``, ``workers`` processes), or as the run's ``data`` config asks (``avvp_split``)."""
    reader = DATASETS.get("llp")
    decode = Decode(frames=SEGMENTS, seconds=float(SEGMENTS), size=frame_size, sample_rate=audio.sample_rate)
    readers = {s: reader(root, s, decode=decode) for s in ("train", "val", "test")}
    if data is None:
        decoded = {s: decode_avvp(r, audio, workers) for s, r in readers.items()}
    else:
        decoded = {s: avvp_split(r, audio, data) for s, r in readers.items()}
    return {**decoded, "classes": readers["train"].classes}


def avvp_pipeline(cfg: DictConfig, audio_pre: AudioPreprocess) -> Splits:
    """AVVP (LLP): weak video labels for training, per-modality segment labels for validation and test."""
    root = dataset_root(cfg)
    s = avvp_splits(root, cfg.data.frame_size, audio_pre, cfg.data.workers, cfg.data)
    return Splits(s["train"], s["val"], s["test"], DatasetInfo(tuple(s["classes"])), root)
