"""What a backbone expects as input: image size and normalisation, audio feature settings, text length.

Each backbone carries one of these dataclasses as ``backbone.preprocess``. Image and video preprocessing is applied
here, in torch (no torchvision, no PIL): resize with antialiasing, optional centre crop, scale to [0, 1], normalise.
Audio features are *declared* here and computed by ``avlearn.audio`` (Kaldi fbank for AST, log-mel for HTS-AT/CLAP),
so the feature code exists once. Text is tokenised by the backbone's own tokenizer; only the length is declared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

# Normalisation statistics published with the weights each family is trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ImagePreprocess:
    """Image (or video frame) input of a visual backbone; calling it turns uint8 frames into model input.

    Args:
        size: Model input ``(H, W)``.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by after subtracting the mean.
        resize: ``"shorter_then_crop"`` scales the shorter side to the target and centre-crops (CLIP, ViT);
            ``"exact"`` scales both sides to ``size`` (DG-SCT's Swin-V2 frames).
        interpolation: ``"bicubic"`` or ``"bilinear"``, with antialiasing when downscaling (as PIL does).
        num_frames: Frames per clip for video backbones, ``None`` for image backbones.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: Literal["shorter_then_crop", "exact"] = "shorter_then_crop"
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    num_frames: int | None = None

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``(..., H, W, 3)`` (or float ones on the same 0-255 scale: mixed frames, ``task.mixup``)
        -> normalised float32 ``(..., 3, h, w)`` (leading dims kept)."""
        valid = frames.dtype == torch.uint8 or frames.is_floating_point()
        if not valid or frames.ndim < 3 or frames.shape[-1] != 3:
            raise ValueError(
                f"expected uint8 (or 0-255 float) frames (..., H, W, 3), got {tuple(frames.shape)} {frames.dtype}"
            )
        lead = frames.shape[:-3]
        x = frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
        x = self._resize(x).clamp_(0.0, 1.0)  # bicubic overshoots; PIL clamps to the uint8 range too
        mean = x.new_tensor(self.mean).view(1, 3, 1, 1)
        std = x.new_tensor(self.std).view(1, 3, 1, 1)
        x = (x - mean) / std
        return x.reshape(*lead, 3, *self.size)  # (..., 3, h, w)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        target_h, target_w = self.size
        if self.resize == "exact":
            return _interpolate(x, (target_h, target_w), self.interpolation)
        scale = max(target_h / height, target_w / width)
        scaled = (max(target_h, round(height * scale)), max(target_w, round(width * scale)))
        x = _interpolate(x, scaled, self.interpolation)
        top, left = (scaled[0] - target_h) // 2, (scaled[1] - target_w) // 2
        return x[..., top : top + target_h, left : left + target_w]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for configs and checkpoints."""
        return {"kind": "image", **asdict(self)}


def _interpolate(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)


@dataclass(frozen=True)
class AudioPreprocess:
    """Audio feature settings of an audio backbone; ``avlearn.audio`` computes the features from them.

    Args:
        sample_rate: Waveform rate the features assume, in Hz.
        features: ``"kaldi_fbank"`` (AST: Kaldi-compatible fbank, Hanning window, 10 ms shift), ``"log_mel"``
            (HTS-AT / CLAP: STFT power -> Slaney mel -> dB) or ``"waveform"`` (the samples themselves, one
            ``(1, num_frames)`` row per segment, for a model with its own front end: DG-SCT's ``audio_frontend: seed``).
        num_mel_bins: Mel bands ``F``.
        num_frames: Frames ``T`` the backbone takes (features are cropped or padded to it).
        n_fft: FFT size in samples.
        hop_length: Hop in samples.
        win_length: Window in samples.
        f_min: Lowest mel edge in Hz.
        f_max: Highest mel edge in Hz (``None``: Nyquist).
        norm_shift: Features are normalised as ``(x - norm_shift) / norm_scale``.
        norm_scale: See ``norm_shift``.
    """

    sample_rate: int
    features: Literal["kaldi_fbank", "log_mel", "waveform"]
    num_mel_bins: int
    num_frames: int
    n_fft: int
    hop_length: int
    win_length: int
    f_min: float = 0.0
    f_max: float | None = None
    norm_shift: float = 0.0
    norm_scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for configs and checkpoints."""
        return {"kind": "audio", **asdict(self)}


@dataclass(frozen=True)
class TextPreprocess:
    """Text input of a text backbone: token ids from its own tokenizer, cut to ``max_length``."""

    max_length: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for configs and checkpoints."""
        return {"kind": "text", **asdict(self)}


Preprocess = ImagePreprocess | AudioPreprocess | TextPreprocess
