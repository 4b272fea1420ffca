"""DeepAVFusion's simple segmentation decoder (``task.head=avsegm_seed`` of the AVS task) and its up-sampling block
(``UpBlock``: the seed's ``Up``, also a block of its separation U-Net).

Mo & Morgado, "Unveiling the Power of Audio-Visual Early Fusion Transformers with Dense Interactions through Masked
Modeling", CVPR 2024; seed ``stoneMo/DeepAVFusion`` ``models/avsegm.py`` (``AVSegmSimple``) with the ``Up`` /
``DoubleConv`` blocks of ``models/avsrcsep.py``. An FPN-like convolutional decoder over the image tokens of several
encoder layers, every branch conditioned on the mean of the last layer's audio tokens:

* branch ``d`` (``d = 0 .. L-1``) reads the image tokens of layer ``layers[d]`` (the seed: ``linspace(0, depth - 1,
  4)`` = layers 0, 3, 7, 11 of a ViT-B), LayerNorm'd and laid on the patch grid; **the first (shallowest) layer feeds
  the coarsest branch and the deepest the finest** (the seed's order, spec section 2.8);
* its audio vector: the last layer's audio tokens, a linear map to the branch width ``c_d = max(min_channels, C /
  2^d)`` (the seed: 768, 384, 192, 128), a LayerNorm, the mean over tokens;
* branch 0: the double convolution (3x3 conv, batch norm, ReLU, twice) of the grid map concatenated with the tiled
  audio vector, to ``c_0`` channels (= C);
* branch d > 0: the grid map upsampled by a 2^d x 2^d transposed convolution (C -> C / 2^d) and a double convolution
  to ``c_d`` (the lateral map), then the running map upsampled by a 2x2 transposed convolution (``c_{d-1}`` ->
  ``c_{d-1} / 2``), concatenated with the lateral map and the tiled audio vector, and a double convolution to ``c_d``;
* the predictor: a 3x3 convolution to ``min_channels``, a x2 bilinear upsampling, a 3x3 convolution to one logit
  (no non-linearity between the two, as the seed), so the logits are 2^L times the patch grid (a 224 px ViT-B/16:
  14 -> 224).

Initialisation as the seed: xavier-uniform linear weights, Kaiming-normal (fan out) convolutions, zero biases, unit
norms. What differs from the seed: ``min_channels`` (the seed's 128, also the predictor's width) and ``layers`` are
options, for a shallow test-size encoder; the first double convolution maps ``C + c_0`` channels to ``c_0`` (the seed
builds it ``2C -> C``, the same whenever ``C >= min_channels``; below, the seed's decoder does not run).
"""

from __future__ import annotations

import torch
from torch import nn

from avlearn.layers.unet import _double_conv


class UpBlock(nn.Module):
    """``c_in -> c_out`` at ``factor`` times the resolution: a ``factor x factor`` transposed convolution to
    ``c_in / factor`` channels, then (with a ``skip`` map of ``skip`` channels concatenated after it) the double
    convolution."""

    def __init__(self, c_in: int, c_out: int, skip: int = 0, factor: int = 2) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_in // factor, factor, stride=factor)
        self.conv = _double_conv(c_in // factor + skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)  # (B, c_in / f, f H, f W)
        return self.conv(x if skip is None else torch.cat([x, skip], dim=1))


class AVSegmSeedDecoder(nn.Module):
    """Per-layer image tokens + last-layer audio tokens -> one mask logit per pixel (the seed's ``AVSegmSimple``
    after its encoder).

    Args:
        visual_dim: C, the width of the image tokens (every selected layer).
        audio_dim: the width of the audio tokens.
        levels: L, the number of branches (the selected layers; the seed: 4).
        min_channels: the floor of the branch widths and the predictor's width (the seed: 128).
    """

    def __init__(self, visual_dim: int, audio_dim: int, levels: int = 4, min_channels: int = 128) -> None:
        super().__init__()
        widths = [max(min_channels, visual_dim // 2**d) for d in range(levels)]  # c_d
        self.visual_norms = nn.ModuleList(nn.LayerNorm(visual_dim) for _ in widths)
        self.audio_proj = nn.ModuleList(nn.Linear(audio_dim, c) for c in widths)
        self.audio_norms = nn.ModuleList(nn.LayerNorm(c) for c in widths)
        self.top = _double_conv(visual_dim + widths[0], widths[0])
        self.lateral = nn.ModuleList(UpBlock(visual_dim, widths[d], factor=2**d) for d in range(1, levels))
        self.up = nn.ModuleList(UpBlock(widths[d - 1], widths[d], skip=2 * widths[d]) for d in range(1, levels))
        self.predictor = nn.Sequential(
            nn.Conv2d(widths[-1], min_channels, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(min_channels, 1, 3, padding=1),
        )
        self.apply(_init_weights)

    def audio_vectors(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """Last-layer audio tokens (K, Na, Ca) -> per branch (K, c_d): projected, normalised, token mean."""
        return [norm(proj(audio)).mean(dim=1) for proj, norm in zip(self.audio_proj, self.audio_norms, strict=True)]

    def forward(self, visual: list[torch.Tensor], audio: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``visual``: per branch (K, N, C) image tokens on the ``grid`` (N = gh * gw), shallowest layer first;
        ``audio`` (K, Na, Ca) -> logits (K, 2^L gh, 2^L gw)."""
        maps = [
            norm(tokens).unflatten(1, grid).permute(0, 3, 1, 2)  # (K, N, C) -> (K, C, gh, gw)
            for norm, tokens in zip(self.visual_norms, visual, strict=True)
        ]
        vectors = self.audio_vectors(audio)
        x = self.top(torch.cat([maps[0], tiled(vectors[0], grid)], dim=1))  # (K, c_0, gh, gw)
        for lateral, up, level, vector in zip(self.lateral, self.up, maps[1:], vectors[1:], strict=True):
            side = lateral(level)  # (K, c_d, 2^d gh, 2^d gw)
            x = up(x, torch.cat([side, tiled(vector, side.shape[-2:])], dim=1))  # (K, c_d, 2^d gh, 2^d gw)
        return self.predictor(x)[:, 0]  # (K, 1, 2^L gh, 2^L gw) -> (K, 2^L gh, 2^L gw)


def tiled(vector: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(K, C) -> (K, C, H, W), the vector at every position (also the separation decoder's conditioning)."""
    return vector[:, :, None, None].expand(-1, -1, *size)


def _init_weights(module: nn.Module) -> None:
    """The seed's decoder initialisation (``AVSegmSimple._init_weights``)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def seed_layers(depth: int, levels: int = 4) -> list[int]:
    """The seed's layer choice: ``linspace(0, depth - 1, levels)`` truncated to integers ([0, 3, 7, 11] at 12)."""
    return [i * (depth - 1) // max(1, levels - 1) for i in range(levels)]
