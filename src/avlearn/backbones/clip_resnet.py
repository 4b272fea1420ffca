"""CLIP's modified ResNet image encoder (RN50 and its family) and a converter from OpenAI's checkpoint layout.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021 (CLIP): the image
tower of its ResNet models, the one Cross-Modal Adaptation (Lin et al., CVPR 2023) uses as RN50. ``transformers`` has
no class for it, so it is written here:

* stem: three 3x3 convolutions (the first with stride 2; widths w/2, w/2, w), each with batch norm and ReLU, then a
  2x2 average pool;
* four stages of bottleneck blocks (1x1 reduce, 3x3, a 2x2 average pool where the block strides, 1x1 expand to 4x
  the width, batch norm after each convolution); a block that changes the shape has a shortcut of an average pool,
  a 1x1 convolution and batch norm. Striding is always an average pool ("anti-aliased"): no strided convolution
  after the stem;
* attention pooling: the final grid's mean is prepended as an extra token, learned positional embeddings are added,
  and one multi-head attention with that token as the only query, projected, is the embedding.

``ResNetConfig.rn50()`` is RN50's geometry (224 px, 1024-d output); ``convert_clip_resnet_state_dict`` maps OpenAI's
``visual.*`` names (``conv1``, ``layer1.0.downsample.0``, ``attnpool.q_proj`` ...) to this module's, and
``config_from_state_dict`` reads the geometry off a checkpoint. Inputs are normalised images (B, 3, H, W) at the
configured resolution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.backbones.renames import rename_tower
from avlearn.errors import DataError

EXPANSION = 4  # a bottleneck block's output is 4x its width


@dataclass(frozen=True)
class ResNetConfig:
    """Blocks per stage, stem width w (stage i's blocks are w * 2^i wide, their output 4x that), attention heads,
    output width and input resolution (a multiple of 32: the final grid is resolution / 32 a side)."""

    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    width: int = 64
    heads: int = 32
    output_dim: int = 1024
    resolution: int = 224

    @classmethod
    def rn50(cls) -> ResNetConfig:
        """CLIP RN50."""
        return cls()

    @property
    def embed_dim(self) -> int:
        """The width of the final grid: the last stage's output."""
        return self.width * 8 * EXPANSION


class ConvNorm(nn.Module):
    """A bias-free convolution followed by batch norm (ReLU is the caller's)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, average pool (when striding), 1x1 expand; the shortcut pools and projects when the shape
    changes."""

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.reduce = ConvNorm(c_in, width, 1)
        self.spatial = ConvNorm(width, width, 3)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.expand = ConvNorm(width, width * EXPANSION, 1)
        needs_shortcut = stride > 1 or c_in != width * EXPANSION
        self.shortcut = Shortcut(c_in, width * EXPANSION, stride) if needs_shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(F.relu(self.spatial(F.relu(self.reduce(x)))))  # (B, width, H / stride, W / stride)
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.expand(out) + identity)


class Shortcut(nn.Module):
    """Average pool (when striding), then a 1x1 convolution and batch norm."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.proj = ConvNorm(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class AttentionPool(nn.Module):
    """The grid's mean as the one query of a multi-head attention over [mean, grid] with positional embeddings."""

    def __init__(self, side: int, dim: int, heads: int, output_dim: int) -> None:
        super().__init__()
        if dim % heads:
            raise DataError(f"clip resnet: width {dim} is not divisible by heads={heads}")
        self.side, self.heads = side, heads
        self.positions = nn.Parameter(torch.randn(side * side + 1, dim) / dim**0.5)  # (1 + N, C)
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, output_dim)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, output_dim)."""
        b, c, h, w = grid.shape
        if (h, w) != (self.side, self.side):
            raise DataError(f"clip resnet: a {h}x{w} final grid; expected {self.side}x{self.side} (the input "
                            f"resolution {32 * self.side})")  # fmt: skip
        tokens = grid.flatten(2).transpose(1, 2)  # (B, C, N) -> (B, N, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1) + self.positions  # (B, 1 + N, C)

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, x.shape[1], self.heads, c // self.heads).transpose(1, 2)  # (B, heads, L, C / heads)

        q, k, v = split(self.query(tokens[:, :1])), split(self.key(tokens)), split(self.value(tokens))
        pooled = F.scaled_dot_product_attention(q, k, v)  # (B, heads, 1, C / heads)
        return self.out(pooled.transpose(1, 2).reshape(b, c))  # (B, heads, 1, C/heads) -> (B, C) -> (B, output_dim)


class CLIPResNet(nn.Module):
    """CLIP's modified ResNet image tower (module docstring): ``forward`` (B, 3, H, W) -> (B, output_dim);
    ``features`` gives the final grid (B, embed_dim, H / 32, W / 32) before the attention pooling."""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        if cfg.resolution % 32:
            raise DataError(f"clip resnet: resolution={cfg.resolution}; expected a multiple of 32")
        self.cfg, w = cfg, cfg.width
        self.stem = nn.ModuleList(
            [ConvNorm(3, w // 2, 3, stride=2), ConvNorm(w // 2, w // 2, 3), ConvNorm(w // 2, w, 3)]
        )
        self.stem_pool = nn.AvgPool2d(2)
        stages, c_in = [], w
        for i, blocks in enumerate(cfg.layers):
            width = w * 2**i
            stage = [Bottleneck(c_in, width, stride=1 if i == 0 else 2)]
            stage += [Bottleneck(width * EXPANSION, width) for _ in range(blocks - 1)]
            stages.append(nn.ModuleList(stage))
            c_in = width * EXPANSION
        self.stages = nn.ModuleList(stages)
        self.pool = AttentionPool(cfg.resolution // 32, cfg.embed_dim, cfg.heads, cfg.output_dim)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the final grid (B, embed_dim, H / 32, W / 32)."""
        x = images.to(self.stem[0].conv.weight.dtype)
        for layer in self.stem:
            x = F.relu(layer(x))
        x = self.stem_pool(x)  # (B, w, H / 4, W / 4)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(images))  # (B, output_dim)


# OpenAI's names (below ``visual.``) -> ours; ``{}`` carries the stage / block indices.
_RENAMES = [
    (re.compile(r"^conv([123])\.(.+)$"), lambda m: f"stem.{int(m[1]) - 1}.conv.{m[2]}"),
    (re.compile(r"^bn([123])\.(.+)$"), lambda m: f"stem.{int(m[1]) - 1}.norm.{m[2]}"),
    (re.compile(r"^layer(\d)\.(\d+)\.(conv|bn)([123])\.(.+)$"),
     lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.{('reduce', 'spatial', 'expand')[int(m[4]) - 1]}."
               f"{'conv' if m[3] == 'conv' else 'norm'}.{m[5]}"),
    (re.compile(r"^layer(\d)\.(\d+)\.downsample\.([01])\.(.+)$"),
     lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.proj.{('conv', 'norm')[int(m[3])]}.{m[4]}"),
    (re.compile(r"^attnpool\.positional_embedding$"), lambda m: "pool.positions"),
    (re.compile(r"^attnpool\.([qkvc])_proj\.(.+)$"),
     lambda m: f"pool.{dict(q='query', k='key', v='value', c='out')[m[1]]}.{m[2]}"),
]  # fmt: skip


def convert_clip_resnet_state_dict(state: dict[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """A CLIP ResNet checkpoint's image tower (OpenAI's layout: the keys under ``prefix``; the text tower and
    anything else are left out) in ``CLIPResNet``'s names. A key under ``prefix`` that is not part of the tower is a
    one-line ``DataError``."""
    return rename_tower(state, prefix, _RENAMES, "CLIP's modified ResNet")


def config_from_state_dict(state: dict[str, torch.Tensor], prefix: str = "visual.") -> ResNetConfig:
    """The geometry of a CLIP ResNet checkpoint (OpenAI's layout): blocks per stage, width, output width and
    resolution read off the tensors; heads = width * 32 / 64, as CLIP builds them."""
    layers = tuple(len({k.split(".")[2] for k in state if k.startswith(f"{prefix}layer{i}.")}) for i in range(1, 5))
    if 0 in layers:
        raise DataError(f"clip resnet checkpoint: blocks per stage {layers}; expected four stages under {prefix!r}")
    width = state[f"{prefix}conv3.weight"].shape[0]
    positions = state[f"{prefix}attnpool.positional_embedding"].shape[0]  # 1 + side^2
    side = round((positions - 1) ** 0.5)
    output_dim = state[f"{prefix}attnpool.c_proj.weight"].shape[0]
    return ResNetConfig(layers, width, width * 32 // 64, output_dim, side * 32)  # type: ignore[arg-type]
