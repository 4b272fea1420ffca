"""A conditioned 2-D U-Net (Ronneberger et al., MICCAI 2015) for spectrogram masks, as in Sound of Pixels (Zhao et
al., ECCV 2018) and DeepAVFusion's separation decoder (Mo and Morgado, CVPR 2024).

Encoder: per level two 3x3 convolutions with batch norm and ReLU, then 2x2 max pooling; decoder: a 2x2 transposed
convolution up, concatenation with the encoder map of that level (skip), two 3x3 convolutions; a 1x1 convolution to
one output map. A conditioning vector (e.g. the pooled visual features of the target source) enters once (``fusion``):
at the bottleneck by FiLM (Perez et al., AAAI 2018: a per-channel scale and shift predicted from the vector,
``x * (1 + gamma) + beta``) or by concatenation (the vector projected, tiled over the bottleneck map, concatenated
to its channels and mixed back by a 1x1 convolution); or at the output, as Sound of Pixels' synthesizer: each output
map is a weighted sum of the last decoder level's ``channels[0]`` maps plus a bias, weights and bias predicted from
the vector by one linear layer (the U-Net itself then sees no condition). The condition is one vector per sample
``(B, Cc)``, or one per input column ``(B, Cc, W)`` (e.g. per spectrogram frame, so that the features of the frame
seen at that time steer that time's mask; a column's vector is averaged over the ``2 ** (levels - 1)`` columns that
one bottleneck column covers). Inputs of any size are zero-padded to a multiple of ``2 ** (levels - 1)`` (a
per-column condition repeats its last column) and the output cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FUSIONS = ("film", "concat", "output")
BOTTLENECK = ("film", "concat")


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )  # fmt: skip


class BottleneckCondition(nn.Module):
    """Inject a vector ``(B, Cc)`` into a feature map ``(B, C, H, W)``: FiLM or tiled concatenation."""

    def __init__(self, channels: int, cond_dim: int, fusion: str) -> None:
        super().__init__()
        if fusion not in BOTTLENECK:
            raise ValueError(f"fusion={fusion!r}: expected one of {', '.join(BOTTLENECK)}")
        self.fusion = fusion
        if fusion == "film":
            self.film = nn.Linear(cond_dim, 2 * channels)
            nn.init.zeros_(self.film.weight)  # starts as the identity: gamma = beta = 0
            nn.init.zeros_(self.film.bias)
        else:
            self.proj = nn.Linear(cond_dim, channels)
            self.mix = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``cond (B, Cc, Wc)``, ``Wc`` 1 or the map's width ``W``."""
        columns = cond.transpose(1, 2)  # (B, Wc, Cc)
        if self.fusion == "film":
            gamma, beta = self.film(columns).transpose(1, 2)[:, :, None].chunk(2, dim=1)  # each (B, C, 1, Wc)
            return x * (1 + gamma) + beta
        tiled = self.proj(columns).transpose(1, 2)[:, :, None].expand_as(x)  # (B, Wc, C) -> (B, C, H, W)
        return self.mix(torch.cat([x, tiled], dim=1))  # (B, 2C, H, W) -> (B, C, H, W)


class OutputCondition(nn.Module):
    """Sound of Pixels' synthesizer: ``(B, K, H, W)`` maps -> ``(B, C_out, H, W)``, each output map the sum of the K
    maps weighted per sample by ``(B, C_out, K)`` weights plus a ``(B, C_out)`` bias, both a linear map of the
    vector ``(B, Cc)``."""

    def __init__(self, channels: int, cond_dim: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels, self.channels = out_channels, channels
        self.proj = nn.Linear(cond_dim, out_channels * (channels + 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``cond (B, Cc, Wc)``, ``Wc`` 1 or the maps' width ``W``."""
        weights = self.proj(cond.transpose(1, 2)).unflatten(-1, (self.out_channels, self.channels + 1))
        weights = weights.expand(-1, x.shape[-1], -1, -1)  # (B, Wc, C_out, K + 1) -> (B, W, C_out, K + 1)
        mixed = torch.einsum("bkhw,bwok->bohw", x, weights[..., :-1])  # (B, C_out, H, W)
        return mixed + weights[..., -1].permute(0, 2, 1)[:, :, None]  # + (B, C_out, 1, W)


class ConditionedUNet(nn.Module):
    """U-Net ``(B, C_in, H, W) -> (B, C_out, H, W)`` conditioned on ``(B, cond_dim)`` or ``(B, cond_dim, W)`` at its
    bottleneck or output.

    Args:
        channels: Widths of the levels, finest first; ``len(channels) - 1`` poolings.
        cond_dim: Width of the conditioning vector.
        fusion: ``"film"`` or ``"concat"`` at the bottleneck, or ``"output"`` (see the module docstring).
        in_channels: Input maps (1: a log-magnitude spectrogram).
        out_channels: Output maps (1: mask logits).
    """

    def __init__(self, channels: tuple[int, ...], cond_dim: int, fusion: str = "film", in_channels: int = 1,
                 out_channels: int = 1) -> None:  # fmt: skip
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"a U-Net needs at least 2 levels, got channels={channels}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion={fusion!r}: expected one of {', '.join(FUSIONS)}")
        widths = (in_channels, *channels)
        self.down = nn.ModuleList(_double_conv(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.at_output = fusion == "output"
        if self.at_output:
            self.condition: nn.Module = OutputCondition(channels[0], cond_dim, out_channels)
        else:
            self.condition = BottleneckCondition(channels[-1], cond_dim, fusion)
        pairs = list(zip(channels[:0:-1], channels[-2::-1], strict=True))  # (coarse, fine) widths, deepest first
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, f, 2, stride=2) for c, f in pairs)
        self.merge = nn.ModuleList(_double_conv(2 * f, f) for _, f in pairs)
        self.head = None if self.at_output else nn.Conv2d(channels[0], out_channels, 1)
        self.multiple = 2 ** (len(channels) - 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % self.multiple, 0, -h % self.multiple))  # (B, C_in, H', W'), multiples of 2^(L-1)
        if cond.dim() == 2:
            cond = cond[:, :, None]  # (B, Cc) -> (B, Cc, 1): one vector for every column
        elif cond.shape[-1] != w:
            raise ValueError(f"a per-column condition {tuple(cond.shape)} needs the input's width {w}")
        else:
            cond = F.pad(cond, (0, -w % self.multiple), mode="replicate")  # (B, Cc, W')
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))  # (B, C_i, H' / 2^i, W' / 2^i)
            skips.append(x)
        x = skips.pop()  # the bottleneck (B, C_last, H' / 2^(L-1), W' / 2^(L-1))
        if not self.at_output:
            coarse = F.avg_pool1d(cond, self.multiple) if cond.shape[-1] > 1 else cond  # (B, Cc, W' / 2^(L-1))
            x = self.condition(x, coarse)
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))  # (B, 2 C_i, ...) -> (B, C_i, ...) one level finer
        x = self.condition(x, cond) if self.at_output else self.head(x)  # (B, C_0, H', W') -> (B, C_out, H', W')
        return x[..., :h, :w]  # (B, C_out, H, W)
