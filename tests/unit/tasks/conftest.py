"""Shared pieces of the prompt and text-space task tests (few-shot, pre-training, zero-shot): a small random
baseline method and a batch of clips for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from avlearn.methods.baseline import Baseline, BaselineConfig
from avlearn.registry import BACKBONES


@pytest.fixture(scope="session")
def tiny_method() -> Callable[[], Baseline]:
    """Builds a fresh baseline (tiny CNNs, 32 px frames, 32-bin log-mels) from torch seed 0 at each call."""

    def build() -> Baseline:
        torch.manual_seed(0)
        visual, audio = BACKBONES.build("cnn_visual_tiny", size=32), BACKBONES.build("cnn_audio_tiny")
        return Baseline(BaselineConfig(dim=16), visual, audio)

    return build


@pytest.fixture(scope="session")
def clip_batch() -> Callable[..., dict[str, torch.Tensor]]:
    """``make(labels, **extra)``: random ``frames (B, 10, 32, 32, 3)`` and ``audio (B, 10, 32, 50)`` for the B
    ``labels`` rows (same seed each call) as ``label`` (B,) class indices or ``labels`` (B, K) multi-hot, plus any
    ``extra`` entries."""

    def make(labels: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        b = len(labels)
        frames = torch.randint(0, 256, (b, 10, 32, 32, 3), dtype=torch.uint8, generator=g)
        key = "labels" if labels.dim() == 2 else "label"
        return {"frames": frames, "audio": torch.randn(b, 10, 32, 50, generator=g), key: labels, **extra}

    return make
