"""Batch augmentation in torch: random resized crop, flip, time/frequency masking, audio-visual mixup.

Each function takes a batch's tensors in the batch layout (frames ``(B, ..., H, W, 3)`` channels-last, uint8 or
float; log-mels ``(B, ..., F, T)``) and an optional ``torch.Generator``, and runs on the batch's device, so a task
augments in its ``forward`` (training only) after the loader has delivered the batch. All frames of one clip get
the same crop and flip (the motion stays coherent); each clip gets its own.

- ``random_resized_crop``: an area fraction in ``scale`` and an aspect ratio in ``ratio`` (log-uniform), as
  Inception / torchvision's ``RandomResizedCrop`` draw them (10 tries, then the centre crop), resized back to
  ``H x W`` (bilinear).
- ``random_flip``: mirrors each clip left-right with probability ``p``.
- ``spec_mask``: SpecAugment's time and frequency stripes (``avlearn.audio.specaugment``) on every spectrogram.
- ``mixup``: one ``lam ~ Beta(alpha, alpha)`` per batch and one permutation; frames, audio and the labels (one-hot
  or multi-hot, given as ``(B, K)`` or class indices) are mixed with the same weights (Zhang et al., ICLR 2018), so
  the mixed labels of a sample sum to 1 for single-label targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from avlearn.audio.specaugment import SpecAugment


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def crop_box(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop covering a ``scale`` fraction of the image at a ``ratio`` aspect."""
    area = height * width
    for _ in range(10):
        target = area * _uniform(*scale, generator)
        aspect = math.exp(_uniform(math.log(ratio[0]), math.log(ratio[1]), generator))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    side = min(height, width)  # no draw fitted: the centre square
    return (height - side) // 2, (width - side) // 2, side, side


def random_resized_crop(
    frames: torch.Tensor,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(B, ..., H, W, 3)`` frames -> the same shape and dtype: one random crop per clip, resized to ``H x W``."""
    height, width = frames.shape[-3:-1]
    out = torch.empty_like(frames)
    for b in range(frames.shape[0]):
        top, left, h, w = crop_box(height, width, scale, ratio, generator)
        crop = frames[b, ..., top : top + h, left : left + w, :]  # (..., h, w, 3)
        flat = crop.reshape(-1, h, w, crop.shape[-1]).permute(0, 3, 1, 2).float()  # (N, 3, h, w)
        resized = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)  # (N, 3, H, W)
        resized = resized.permute(0, 2, 3, 1).reshape(out[b].shape)  # (N, 3, H, W) -> (..., H, W, 3)
        out[b] = resized.round().clamp(0, 255).to(frames.dtype) if not frames.is_floating_point() else resized
    return out


def random_flip(frames: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B, ..., H, W, 3)`` frames with each clip mirrored left-right with probability ``p``."""
    flip = torch.rand(frames.shape[0], generator=generator) < p  # (B,)
    out = frames.clone()
    out[flip.to(frames.device)] = frames[flip.to(frames.device)].flip(-2)  # W is the second-last axis
    return out


def spec_mask(
    spec: torch.Tensor,
    time_width: int = 64,
    freq_width: int = 8,
    stripes: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(B, ..., F, T)`` spectrograms with ``stripes`` time stripes (< ``time_width`` frames) and frequency stripes
    (< ``freq_width`` bins) zeroed in each, as SpecAugment draws them."""
    augment = SpecAugment(time_width, stripes, freq_width, stripes, generator).train()
    bins, frames = spec.shape[-2:]
    flat = spec.reshape(-1, 1, bins, frames).transpose(-1, -2)  # (B*..., 1, T, F)
    return augment(flat).transpose(-1, -2).reshape(spec.shape)  # (B*..., 1, T, F) -> (B, ..., F, T)


def mixup(
    batch: dict[str, torch.Tensor],
    labels: torch.Tensor,
    alpha: float = 0.2,
    num_classes: int | None = None,
    keys: tuple[str, ...] = ("frames", "audio"),
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, float]:
    """Audio-visual mixup: ``(mixed batch, mixed labels (B, K), lam)``.

    Args:
        batch: the batch; the tensors under ``keys`` are mixed (uint8 frames become float), the rest is kept.
        labels: ``(B, K)`` one-hot / multi-hot rows, or ``(B,)`` class indices (then ``num_classes`` is needed).
        alpha: the Beta distribution's parameter (> 0).
        keys: the batch entries mixed with the same weight and permutation (both modalities).
    """
    if labels.dim() == 1:
        if num_classes is None:
            raise ValueError("mixup: class indices need num_classes")
        labels = F.one_hot(labels, num_classes)
    if not alpha > 0:
        raise ValueError(f"mixup: alpha must be > 0, got {alpha}")
    lam = _beta(alpha, generator)
    perm = torch.randperm(labels.shape[0], generator=generator).to(labels.device)  # (B,)
    mixed = dict(batch)
    for key in keys:
        x = batch[key].float()
        mixed[key] = lam * x + (1 - lam) * x[perm]
    return mixed, lam * labels.float() + (1 - lam) * labels.float()[perm], lam


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    """A Beta(alpha, alpha) draw from two Gamma draws made with ``generator`` (reproducible)."""
    gammas = torch._standard_gamma(torch.full((2,), float(alpha)), generator=generator)  # (2,) Gamma(alpha, 1)
    total = float(gammas.sum())
    return float(gammas[0]) / total if total > 0 else 0.5  # both draws underflow only for a tiny alpha
