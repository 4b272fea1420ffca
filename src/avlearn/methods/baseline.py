"""The plain audio-visual baseline: per-segment encoders, a projection and a temporal mixer per modality.

Not from a paper: the simplest model that can localise audio-visual events, used by ``avlearn demo`` and as the
reference every method is compared with. Each one-second segment's frame and log-mel go through the configured
backbones; pooled features are projected to ``dim`` and mixed across segments by a depthwise temporal
convolution (events last several seconds). Fusion of the two modalities is the task head's job, so this method
works with any task that consumes pooled or token features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avlearn.methods.base import AVFeatures
from avlearn.registry import METHODS


@dataclass
class BaselineConfig:
    """Schema of ``method/baseline.yaml``."""

    name: str = "baseline"
    dim: int = 128
    temporal_kernel: int = 3
    dropout: float = 0.1


class _Temporal(nn.Module):
    """Project (B, S, C_in) -> (B, S, dim), then add a depthwise temporal convolution over S."""

    def __init__(self, c_in: int, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(c_in, dim), nn.LayerNorm(dim), nn.Dropout(dropout))
        self.mix = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, S, dim)
        return x + self.mix(x.transpose(1, 2)).transpose(1, 2)  # (B, S, dim)


@METHODS.register("baseline")
class Baseline(nn.Module):
    """Encoders + temporal mixers. Input ``frames (B, S, 3, H, W)``, ``audio (B, S, F, T)``; output AVFeatures."""

    Config = BaselineConfig
    produces = ("audio", "audio_pooled", "visual", "visual_pooled", "visual_pyramid")

    def __init__(self, cfg: BaselineConfig, visual: nn.Module, audio: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual_backbone, self.audio_backbone = visual, audio
        self.visual_time = _Temporal(visual.num_features, cfg.dim, cfg.temporal_kernel, cfg.dropout)
        self.audio_time = _Temporal(audio.num_features, cfg.dim, cfg.temporal_kernel, cfg.dropout)
        self.out_dim = cfg.dim

    def forward(self, batch: dict[str, torch.Tensor]) -> AVFeatures:
        frames, mel = batch["frames"], batch["audio"]
        b, s = frames.shape[:2]
        pixels = self.visual_backbone.preprocess(frames.flatten(0, 1))  # (B*S, H, W, 3) uint8 -> (B*S, 3, h, w)
        v_tokens, grid, pyramid = _encode(self.visual_backbone, pixel_values=pixels)  # (B*S, Nv, Cv)
        a_tokens, _, _ = _encode(self.audio_backbone, input_features=mel.flatten(0, 1))  # (B*S, Na, Ca)
        v_tokens = v_tokens.unflatten(0, (b, s))  # (B, S, Nv, Cv)
        a_tokens = a_tokens.unflatten(0, (b, s))  # (B, S, Na, Ca)
        return AVFeatures(
            audio=a_tokens,
            audio_pooled=self.audio_time(a_tokens.mean(dim=2)),  # (B, S, dim)
            visual=v_tokens,
            visual_pooled=self.visual_time(v_tokens.mean(dim=2)),  # (B, S, dim)
            visual_grid=grid,
            visual_pyramid=tuple(level.unflatten(0, (b, s)) for level in pyramid),  # (B, S, C_i, H_i, W_i)
        )


def _encode(backbone: nn.Module, **inputs: torch.Tensor) -> tuple[torch.Tensor, tuple | None, list[torch.Tensor]]:
    """Through the backbone's stage loop: final tokens (B, N, C), their grid (if any), and the output of every
    stage as a (B, C_i, H_i, W_i) map (empty for backbones without a grid)."""
    hidden, pyramid = backbone.embed(**inputs), []
    for i in range(backbone.num_stages):
        hidden = backbone.run_stage(i, hidden)
        if hidden.grid is not None:
            b, _, c = hidden.tokens.shape
            pyramid.append(hidden.tokens.transpose(1, 2).reshape(b, c, *hidden.grid))  # (B, N, C) -> (B, C, H, W)
    return backbone.head(hidden), hidden.grid, pyramid
