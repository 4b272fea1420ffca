"""Small convolutional encoders for frames and log-mel segments, trained from scratch on a CPU.

Not from a paper: this is avlearn's own light family for the demo baseline and for tests, where transformer
backbones at useful sizes are too slow without a GPU. It follows the zoo contract (``base.py``): the feature
map is carried as tokens ``(B, N, C)`` with its grid ``(H, W)``, so the stage loop, freezing and adapters between
stages work exactly as for the transformer families.

Layout: a stride-2 stem, then stages of [stride-2 conv, conv] with batch norm and GELU, a final LayerNorm over
channels; pooling is the mean over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avlearn.backbones.base import Backbone, Hidden
from avlearn.backbones.preprocess import HALF, AudioPreprocess, ImagePreprocess, Preprocess
from avlearn.registry import BACKBONES


@dataclass(frozen=True)
class CNNConfig:
    """Widths of the stem and of each stage (each stage halves the grid)."""

    in_channels: int = 3
    stem_width: int = 16
    widths: tuple[int, ...] = (32, 64, 96)


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.GELU())


def _to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    b, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, *grid)  # (B, N, C) -> (B, C, H, W)


def _to_tokens(feature_map: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    grid = (feature_map.shape[-2], feature_map.shape[-1])
    return feature_map.flatten(2).transpose(1, 2), grid  # (B, C, H, W) -> (B, H*W, C)


class CNNBackbone(Backbone):
    """Conv stem + stages; input ``pixel_values (B, 3, H, W)`` or ``input_features (B, F, T)`` (a log-mel)."""

    def __init__(self, cfg: CNNConfig, modality: str, preprocess: Preprocess) -> None:
        stages, width = [], cfg.stem_width
        for out in cfg.widths:
            stages.append(nn.Sequential(_conv(width, out, 2), _conv(out, out, 1)))
            width = out
        model = nn.ModuleDict(
            {
                "stem": _conv(cfg.in_channels, cfg.stem_width, 2),
                "stages": nn.ModuleList(stages),
                "norm": nn.LayerNorm(width),
            }
        )
        super().__init__(model, modality, width, preprocess)
        self.cfg = cfg
        self._input_name = "pixel_values" if modality == "visual" else "input_features"

    def _image(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = inputs[self._input_name]
        return x.unsqueeze(1) if self.modality == "audio" else x  # audio (B, F, T) -> (B, 1, F, T)

    def embed(self, **inputs: torch.Tensor) -> Hidden:
        tokens, grid = _to_tokens(self.model["stem"](self._image(inputs)))
        return Hidden(tokens, grid)

    def _layers(self) -> nn.ModuleList:
        return self.model["stages"]

    def run_block(self, i: int, j: int, hidden: Hidden) -> Hidden:
        tokens, grid = _to_tokens(self.stage_blocks(i)[j](_to_map(hidden.tokens, hidden.grid)))
        return Hidden(tokens, grid, hidden.attention_mask, hidden.extra)

    def head(self, hidden: Hidden) -> torch.Tensor:
        return self.model["norm"](hidden.tokens)

    def head_modules(self) -> list[nn.Module]:
        return [self.model["norm"]]

    def forward_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(**inputs)

    def pool(self, tokens: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1)  # (B, N, C) -> (B, C)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        p = self.preprocess
        shape = (3, *p.size) if self.modality == "visual" else (p.num_mel_bins, p.num_frames)
        return {self._input_name: torch.randn(batch_size, *shape, device=self._device())}


def image_input(size: int) -> ImagePreprocess:
    """Frames resized to ``size`` x ``size`` and scaled to [-1, 1]."""
    return ImagePreprocess(size=(size, size), mean=HALF, std=HALF, resize="exact", interpolation="bilinear")


def log_mel_input(sample_rate: int = 16000, n_mels: int = 64, hop_ms: int = 20) -> AudioPreprocess:
    """One-second log-mel segments: windows of two hops, ``hop_ms`` hop, dB mapped to about zero mean, unit scale."""
    hop = sample_rate * hop_ms // 1000
    return AudioPreprocess(
        sample_rate=sample_rate,
        features="log_mel",
        num_mel_bins=n_mels,
        num_frames=1000 // hop_ms,
        n_fft=2 * hop,
        hop_length=hop,
        win_length=2 * hop,
        norm_shift=-25.0,
        norm_scale=10.0,
    )


@BACKBONES.register("cnn_visual_small")
def cnn_visual_small(size: int = 64) -> CNNBackbone:
    """Frame encoder for the demo baseline: 4 stride-2 stages, 96 channels (0.21 M parameters)."""
    return CNNBackbone(CNNConfig(3, 16, (32, 64, 96)), "visual", image_input(size))


@BACKBONES.register("cnn_audio_small")
def cnn_audio_small(sample_rate: int = 16000, n_mels: int = 64, hop_ms: int = 20) -> CNNBackbone:
    """Log-mel segment encoder for the demo baseline: 4 stride-2 stages, 96 channels."""
    return CNNBackbone(CNNConfig(1, 16, (32, 64, 96)), "audio", log_mel_input(sample_rate, n_mels, hop_ms))


@BACKBONES.register("cnn_visual_tiny")
def cnn_visual_tiny(size: int = 32) -> CNNBackbone:
    """Test-size frame encoder."""
    return CNNBackbone(CNNConfig(3, 8, (16, 16)), "visual", image_input(size))


@BACKBONES.register("cnn_audio_tiny")
def cnn_audio_tiny(sample_rate: int = 16000, n_mels: int = 32, hop_ms: int = 20) -> CNNBackbone:
    """Test-size log-mel encoder."""
    return CNNBackbone(CNNConfig(1, 8, (16, 16)), "audio", log_mel_input(sample_rate, n_mels, hop_ms))
