"""AVSBench S4 / MS3 clips -> the AVS task's tensors: 5 frames, 5 one-second log-mels, 5 masks.

Follows the AVSBench inputs (Zhou et al., ECCV 2022; as DG-SCT's ``avs_s4``/``avs_ms3`` loaders use them): the five
frames of a 5-second clip (one per second, published as images), the clip's audio cut into five one-second segments,
and a binary mask per frame. The S4 training split annotates the first frame only; ``mask_valid`` says which frames
carry a mask, so one loss rule (binary cross-entropy over the annotated frames) gives S4's first-frame loss and
MS3's five-frame loss.

What we changed: the audio feature of each segment is the log-mel of the model's audio backbone
(``avlearn.data.segments.segment_log_mel``, computed over the whole clip), not the seed's VGGish log-mel pickles
or its tiled 32 kHz waveforms. Training clips may be mirrored left-right (``flip``; the seed does not augment).
Masks are stored flattened, ``(T, H * W)``, so that the training loop keeps them
with the targets it hands the scorer (it keeps per-sample tensors of at most two dimensions).

Small sets are decoded once and held in memory (``AVSTensors``); ``data.preload`` (auto, on, off; see
``avlearn.data.lazy``) may leave a split to ``LazyAVS``, which reads each clip when the DataLoader asks for it. With
``data.store`` (a clip store of the clips' videos: AVSBench's ``raw_videos``, AVSynth's ``videos/``, extracted with
``avlearn extract --fps 2 --size <data.frame_size> --duration 5``) the frames and the audio come from the store, the
frame nearest each second's centre and the first 5 s of the waveform, lazily or read into memory; the masks always
come from the reader's ``gt_masks`` images. Either way an item is the same whether it is held in memory or read
lazily, and the flip draws from the reading process's torch generator in both.
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
from avlearn.data.segments import LazySegments, segment_log_mel
from avlearn.registry import DATASETS

FRAMES = 5  # AVSBench: one frame per second over 5 s
FLAVOURS = {"s4": "avsbench_s4", "ms3": "avsbench_ms3"}


@dataclass
class AVSTensors:
    """Decoded AVS clips.

    Attributes:
        ids: Clip ids.
        frames: (N, T, H, W, 3) uint8.
        audio: (N, T, F, Ta) float32 normalised log-mel per one-second segment.
        masks: (N, T, H * W) bool ground truth (all False where ``mask_valid`` is False).
        mask_valid: (N, T) bool, True where the frame has a ground-truth mask.
        flip: Mirror a clip's frames and masks left-right with probability 1/2 each time it is read (training
            augmentation; draws from torch's global generator).
    """

    ids: list[str]
    frames: torch.Tensor
    audio: torch.Tensor
    masks: torch.Tensor
    mask_valid: torch.Tensor
    flip: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return _item(self.ids[i], self.frames[i], self.audio[i], self.masks[i], self.mask_valid[i], self.flip)


def _item(vid: str, frames: torch.Tensor, audio: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor,
          flip: bool) -> dict:  # fmt: skip
    """One clip's item; ``flip``: mirrored left-right with probability 1/2 (torch's global generator)."""
    if flip and bool(torch.rand(()) < 0.5):
        frames = frames.flip(-2)  # (T, H, W, 3): mirror W
        masks = masks.unflatten(-1, frames.shape[1:3]).flip(-1).flatten(1)  # (T, H*W) -> (T, H, W) -> (T, H*W)
    return {"frames": frames, "audio": audio, "masks": masks, "mask_valid": valid, "id": vid}


class LazyAVS(Dataset):
    """``AVSTensors``' items read when asked for (in the DataLoader's workers): frames, audio and masks from the
    reader's media, or frames and audio from a clip store (``LazySegments``) and the masks from the reader.

    Args:
        dataset: An AVSBench reader (its ``decode`` sets the frame size and sample rate).
        audio: The audio backbone's one-second input.
        store: A clip store of the clips' videos, or None to read the reader's media.
    """

    def __init__(self, dataset, audio: AudioPreprocess, store: str | Path | None = None) -> None:  # noqa: ANN001
        self.dataset, self.audio, self.flip = dataset, audio, False
        items = segment_items(dataset, dataset.records, "mask_valid", bool)  # labels: (T,) mask_valid
        self.clips = LazySegments(items, dataset.decode.size, audio, FRAMES, store)
        self.mask_valid = self.clips.labels  # (N, T) bool

    @property
    def ids(self) -> list[str]:
        """The clip ids, in item order."""
        return self.clips.ids

    @property
    def store(self) -> object | None:
        """The clip store read, or None."""
        return self.clips.store

    def __len__(self) -> int:
        return len(self.clips)

    def sample_bytes(self) -> int:
        """Bytes of one item held in memory: frames and features (``LazySegments``) and (T, H*W) bool masks."""
        return self.clips.sample_bytes() + FRAMES * self.dataset.decode.size**2

    def masks(self, i: int) -> torch.Tensor:
        """(T, H*W) bool ground-truth masks of clip ``i``."""
        size = self.dataset.decode.size
        masks = self.dataset.media.masks(self.dataset.records[i], size, (size, size))  # (T, H, W)
        return torch.from_numpy(masks).flatten(1)  # (T, H, W) -> (T, H*W)

    def inputs(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clip ``i``'s frames (T, H, W, 3) uint8, log-mels (T, F, Ta) and masks (T, H*W) bool."""
        if self.store is not None:
            return (*self.clips.inputs(i), self.masks(i))
        loaded = self.dataset.media.load(self.dataset.records[i], self.dataset.decode)
        wave = torch.from_numpy(loaded["wave"])[None]  # (1, samples)
        mel = segment_log_mel(wave, FRAMES, self.audio)[0]  # (1, T, F, Ta) -> (T, F, Ta)
        return torch.from_numpy(loaded["frames"]), mel, torch.from_numpy(loaded["masks"]).flatten(1)

    def __getitem__(self, i: int) -> dict:
        frames, mel, masks = self.inputs(i)
        return _item(self.ids[i], frames, mel, masks, self.mask_valid[i], self.flip)

    def to_memory(self, workers: int = 1) -> AVSTensors:
        """Every clip in memory: read from the store (frames, audio) and the masks' images, or decoded from the
        reader's media (``decode_avs``, ``workers`` processes)."""
        if self.store is None:
            return decode_avs(self.dataset, self.audio, workers)
        clips = self.clips.to_memory(workers, f"reading {self.dataset.split}")
        masks = torch.stack([self.masks(i) for i in range(len(self))])  # (N, T, H*W)
        return AVSTensors(clips.ids, clips.frames, clips.audio, masks, self.mask_valid)


def decode_avs(dataset, audio: AudioPreprocess, workers: int = 1) -> AVSTensors:  # noqa: ANN001 (an AVSBench reader)
    """Decode every clip of an AVSBench reader (its ``decode`` sets the frame size and sample rate)."""
    loaded = load_media(dataset.media, dataset.records, dataset.decode, workers, f"decoding {dataset.split}")
    frames = torch.from_numpy(np.stack([x["frames"] for x in loaded]))  # (N, T, H, W, 3)
    masks = torch.from_numpy(np.stack([x["masks"] for x in loaded])).flatten(2)  # (N, T, H, W) -> (N, T, H*W)
    waves = torch.from_numpy(np.stack([x["wave"] for x in loaded]))  # (N, samples)
    mels = torch.cat([segment_log_mel(chunk, FRAMES, audio) for chunk in waves.split(64)])  # (N, T, F, Ta)
    valid = torch.from_numpy(np.stack([np.asarray(r.targets["mask_valid"]) for r in dataset.records]))  # (N, T)
    return AVSTensors([r.id for r in dataset.records], frames, mels, masks, valid)


def avs_split(dataset, audio: AudioPreprocess, data: DictConfig) -> AVSTensors | LazyAVS:  # noqa: ANN001
    """One AVSBench split as the run's ``data`` config asks: read from ``data.store`` or the reader's media, held in
    memory (``data.workers`` processes decode it) or lazy (``data.preload``, ``data.preload_gb``)."""
    from avlearn.data.lazy import wants_preload

    lazy = LazyAVS(dataset, audio, data.get("store") or None)
    return lazy.to_memory(data.workers) if wants_preload(data, len(lazy), lazy.sample_bytes()) else lazy


def avs_splits(
    root: str | Path,
    flavour: str,
    frame_size: int,
    audio: AudioPreprocess,
    workers: int = 1,
    flip: bool = False,
    data: DictConfig | None = None,
) -> dict[str, AVSTensors | LazyAVS]:
    """The train/val/test splits of AVSBench ``flavour`` (``"s4"`` or ``"ms3"``) under ``root``: decoded into memory
    with ``workers`` processes, or as the run's ``data`` config asks (``avs_split``); ``flip`` turns on the
    left-right mirroring of the training split."""
    reader = DATASETS.get(FLAVOURS[flavour])
    decode = Decode(frames=FRAMES, seconds=float(FRAMES), size=frame_size, sample_rate=audio.sample_rate)
    readers = {s: reader(root, s, decode=decode) for s in ("train", "val", "test")}
    if data is None:
        splits = {s: decode_avs(r, audio, workers) for s, r in readers.items()}
    else:
        splits = {s: avs_split(r, audio, data) for s, r in readers.items()}
    splits["train"].flip = flip
    return splits


def avs_pipeline(cfg: DictConfig, audio_pre: AudioPreprocess) -> Splits:
    """AVSBench S4 / MS3 (``task=avs_s4`` / ``avs_ms3``): 5 frames with masks per clip."""
    root = dataset_root(cfg)
    flavour = cfg.task.name.removeprefix("avs_")
    s = avs_splits(root, flavour, cfg.data.frame_size, audio_pre, cfg.data.workers, cfg.data.flip, cfg.data)
    return Splits(s["train"], s["val"], s["test"], DatasetInfo((), segments=FRAMES), root)
