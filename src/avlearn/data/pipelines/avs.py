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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.data.datasets.media import Decode
from avlearn.data.pipelines import Splits, dataset_root, load_media
from avlearn.data.schema import DatasetInfo
from avlearn.data.segments import segment_log_mel
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
        frames, masks = self.frames[i], self.masks[i]
        if self.flip and bool(torch.rand(()) < 0.5):
            frames = frames.flip(-2)  # (T, H, W, 3): mirror W
            masks = masks.unflatten(-1, frames.shape[1:3]).flip(-1).flatten(1)  # (T, H*W) -> (T, H, W) -> (T, H*W)
        return {"frames": frames, "audio": self.audio[i], "masks": masks, "mask_valid": self.mask_valid[i],
                "id": self.ids[i]}  # fmt: skip


def decode_avs(dataset, audio: AudioPreprocess, workers: int = 1) -> AVSTensors:  # noqa: ANN001 (an AVSBench reader)
    """Decode every clip of an AVSBench reader (its ``decode`` sets the frame size and sample rate)."""
    loaded = load_media(dataset.media, dataset.records, dataset.decode, workers, f"decoding {dataset.split}")
    frames = torch.from_numpy(np.stack([x["frames"] for x in loaded]))  # (N, T, H, W, 3)
    masks = torch.from_numpy(np.stack([x["masks"] for x in loaded])).flatten(2)  # (N, T, H, W) -> (N, T, H*W)
    waves = torch.from_numpy(np.stack([x["wave"] for x in loaded]))  # (N, samples)
    mels = torch.cat([segment_log_mel(chunk, FRAMES, audio) for chunk in waves.split(64)])  # (N, T, F, Ta)
    valid = torch.from_numpy(np.stack([np.asarray(r.targets["mask_valid"]) for r in dataset.records]))  # (N, T)
    return AVSTensors([r.id for r in dataset.records], frames, mels, masks, valid)


def avs_splits(
    root: str | Path, flavour: str, frame_size: int, audio: AudioPreprocess, workers: int = 1, flip: bool = False
) -> dict[str, AVSTensors]:
    """The train/val/test ``AVSTensors`` of AVSBench ``flavour`` (``"s4"`` or ``"ms3"``) under ``root``; ``flip``
    turns on the left-right mirroring of the training split."""
    reader = DATASETS.get(FLAVOURS[flavour])
    decode = Decode(frames=FRAMES, seconds=float(FRAMES), size=frame_size, sample_rate=audio.sample_rate)
    splits = {s: decode_avs(reader(root, s, decode=decode), audio, workers) for s in ("train", "val", "test")}
    splits["train"].flip = flip
    return splits


def avs_pipeline(cfg: DictConfig, audio_pre: AudioPreprocess) -> Splits:
    """AVSBench S4 / MS3 (``task=avs_s4`` / ``avs_ms3``): 5 frames with masks per clip."""
    root = dataset_root(cfg)
    flavour = cfg.task.name.removeprefix("avs_")
    s = avs_splits(root, flavour, cfg.data.frame_size, audio_pre, cfg.data.workers, flip=cfg.data.flip)
    return Splits(s["train"], s["val"], s["test"], DatasetInfo((), segments=FRAMES), root)
