"""The plain audio-visual baseline: per-segment encoders, a projection and a temporal mixer per modality.

Not from a paper: the simplest model that can localise audio-visual events, used by ``avlearn demo`` and as the
reference every method is compared with. Each one-second segment's frame and log-mel go through the configured
towers (or come from a feature store through ``features`` towers); pooled features are projected to ``dim`` and
mixed across segments by a depthwise temporal convolution (events last several seconds). Fusion of the two
modalities is the task head's job, so this method works with any task that consumes pooled or token features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avlearn.backbones.features import FeatureTower
from avlearn.methods.base import AVFeatures, stage_shapes, text_features
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
    """Encoders + temporal mixers: each segment's tower tokens, pooled, projected and mixed across segments.

    Input ``frames (B, S_v, H, W, 3)`` uint8 and ``audio (B, S_a, F, T)`` (or cached ``visual_features`` /
    ``audio_features`` for ``features`` towers); output AVFeatures.

    ``produces`` (class): what any towers give. An instance adds ``grid`` and ``visual_pyramid`` when its visual
    tower's tokens lie on a grid, ``layers`` (every stage's tokens of both towers, returned on request:
    ``method(batch, layers=True)``) when both towers have stages, and ``text`` / ``text_pooled`` with a text tower.
    """

    Config = BaselineConfig
    produces = ("audio", "audio_pooled", "visual", "visual_pooled")

    def __init__(self, cfg: BaselineConfig, visual: nn.Module, audio: nn.Module, text: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual_backbone, self.audio_backbone, self.text_backbone = visual, audio, text
        self.visual_time = _Temporal(visual.num_features, cfg.dim, cfg.temporal_kernel, cfg.dropout)
        self.audio_time = _Temporal(audio.num_features, cfg.dim, cfg.temporal_kernel, cfg.dropout)
        v_stages, a_stages = stage_shapes(visual), stage_shapes(audio)
        self.dims = {"audio": audio.num_features, "audio_pooled": cfg.dim, "visual": visual.num_features,
                     "visual_pooled": cfg.dim}  # fmt: skip
        if v_stages and v_stages[-1][1]:  # the final tokens lie on a grid
            self.dims["visual_pyramid"] = tuple(c for c, on_grid in v_stages if on_grid)
            self.produces = self.produces + ("grid", "visual_pyramid")
        if v_stages and a_stages:
            self.dims["layers"] = {"visual": tuple(c for c, _ in v_stages), "audio": tuple(c for c, _ in a_stages)}
            self.produces = self.produces + ("layers",)
        if text is not None:
            self.dims.update(text=text.num_features, text_pooled=text.num_features)
            self.produces = self.produces + ("text", "text_pooled")

    def forward(self, batch: dict[str, torch.Tensor], layers: bool = False) -> AVFeatures:
        """AVFeatures of ``batch``; with ``layers``, also every stage's tokens of both towers."""
        visual = _tower_tokens(self.visual_backbone, batch, "frames")
        audio = _tower_tokens(self.audio_backbone, batch, "audio")
        return AVFeatures(
            audio=audio.tokens,
            audio_pooled=self.audio_time(audio.tokens.mean(dim=2)),  # (B, S_a, dim)
            visual=visual.tokens,
            visual_pooled=self.visual_time(visual.tokens.mean(dim=2)),  # (B, S_v, dim)
            grid=visual.grid if "grid" in self.produces else None,
            visual_pyramid=visual.pyramid if "visual_pyramid" in self.produces else None,
            layers={"visual": visual.stages, "audio": audio.stages} if layers else None,
            **text_features(self.text_backbone, batch),
        )


@dataclass
class _TowerOutput:
    """One tower on a batch: final tokens (B, S, N, C), their grid (if any), the grid stages as (B, S, C_i, H_i, W_i)
    maps and every stage's tokens (B, S, N_i, C_i)."""

    tokens: torch.Tensor
    grid: tuple[int, int] | None = None
    pyramid: tuple[torch.Tensor, ...] = ()
    stages: tuple[torch.Tensor, ...] = ()


def _tower_tokens(tower: nn.Module, batch: dict[str, torch.Tensor], media: str) -> _TowerOutput:
    """Run ``tower`` on the batch's ``media`` (``frames`` (B, S, H, W, 3) uint8 or ``audio`` (B, S, F, T)); a
    ``features`` tower reads its cached features instead."""
    if isinstance(tower, FeatureTower):
        return _TowerOutput(tower.read(batch))  # (B, S, N, C)
    x = batch[media]
    b, s = x.shape[:2]
    if media == "frames":
        inputs = {"pixel_values": tower.preprocess(x.flatten(0, 1))}  # (B*S, H, W, 3) uint8 -> (B*S, 3, h, w)
    else:
        inputs = {"input_features": x.flatten(0, 1)}  # (B*S, F, T)
    hidden, pyramid, stages = tower.embed(**inputs), [], []
    for i in range(tower.num_stages):
        hidden = tower.run_stage(i, hidden)
        stages.append(hidden.tokens.unflatten(0, (b, s)))  # (B, S, N_i, C_i)
        if hidden.grid is not None and len(hidden.grid) == 2:
            c = hidden.tokens.shape[-1]
            level = hidden.tokens.transpose(1, 2)  # (B*S, N, C) -> (B*S, C, N)
            pyramid.append(level.reshape(b, s, c, *hidden.grid))  # (B, S, C, H, W)
    tokens = tower.head(hidden).unflatten(0, (b, s))  # (B*S, N, C) -> (B, S, N, C)
    return _TowerOutput(tokens, hidden.grid, tuple(pyramid), tuple(stages))
