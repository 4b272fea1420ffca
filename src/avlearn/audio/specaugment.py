"""SpecAugment's time and frequency masking, as HTS-AT trains with it (torchlibrosa's ``SpecAugmentation``).

Paper: Park et al., "SpecAugment: A Simple Data Augmentation Method for Automatic Speech Recognition", Interspeech
2019. HTS-AT (and DG-SCT, which keeps HTS-AT's front end) zeroes, per spectrogram and in training only, 2 time
stripes of width 0-63 frames and then 2 frequency stripes of width 0-7 bins, after its input batch norm. A stripe
of width ``w`` (drawn uniformly from ``0 .. width - 1``) starts uniformly in ``0 .. total - w - 1``, as torchlibrosa
draws them; stripes may overlap.
"""

from __future__ import annotations

import torch
from torch import nn


class SpecAugment(nn.Module):
    """Zeroes random time and frequency stripes of ``(B, C, T, F)`` spectrograms in training; identity in eval.

    Args:
        time_width: Stripe widths along time are drawn from ``0 .. time_width - 1`` frames.
        time_stripes: Time stripes per spectrogram.
        freq_width: Stripe widths along frequency are drawn from ``0 .. freq_width - 1`` bins.
        freq_stripes: Frequency stripes per spectrogram.
        generator: Random source (its device must be the inputs'); ``None``: torch's global one.
    """

    def __init__(
        self,
        time_width: int = 64,
        time_stripes: int = 2,
        freq_width: int = 8,
        freq_stripes: int = 2,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.time_width, self.time_stripes = time_width, time_stripes
        self.freq_width, self.freq_stripes = freq_width, freq_stripes
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        batch, _, frames, bins = x.shape
        time = self._stripes(batch, frames, self.time_width, self.time_stripes, x.device)  # (B, T)
        freq = self._stripes(batch, bins, self.freq_width, self.freq_stripes, x.device)  # (B, F)
        keep = ~(time[:, :, None] | freq[:, None, :])  # (B, T, F)
        return x * keep[:, None].to(x.dtype)  # (B, C, T, F)

    def _stripes(self, batch: int, total: int, width: int, stripes: int, device: torch.device) -> torch.Tensor:
        """``(B, total)`` bool: True inside one of ``stripes`` random stripes of each row."""
        draw = torch.rand(2, batch, stripes, 1, generator=self.generator, device=device)
        widths = (draw[0] * width).long()  # (B, stripes, 1) in 0 .. width - 1
        starts = (draw[1] * (total - widths)).long()  # (B, stripes, 1) in 0 .. total - width - 1
        index = torch.arange(total, device=device)  # (total,)
        return ((index >= starts) & (index < starts + widths)).any(dim=1)  # (B, stripes, total) -> (B, total)
