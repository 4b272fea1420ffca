"""Stochastic depth ("drop path", Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016), as timm's
``DropPath``: a residual branch dropped per sample in training, the kept samples scaled by ``1 / (1 - rate)``.

Used by the Video Swin tower, the AVVP transformer head and DeepAVFusion's fine-tuning (``method.drop_path``).
"""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: each sample's residual branch ``x`` (B, ...) is dropped with probability ``rate`` in
    training, the kept ones scaled by 1 / (1 - rate)."""
    if not training or rate == 0.0:
        return x
    keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= rate  # (B, 1, ...)
    return x * keep.to(x.dtype) / (1 - rate)


class DropPath(nn.Module):
    """:func:`drop_path` as a module (identity in eval mode)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
