"""Contrastive (InfoNCE) losses between two sets of embeddings of the same B items.

``info_nce`` is CLIP's symmetric loss (Radford et al., ICML 2021; Oord et al., 2018): pairs on the diagonal are the
positives. ``symmetric_nce`` takes a soft (B, B) target instead, so that items that are the same (identical captions)
are positives of each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(audio: torch.Tensor, visual: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of L2-normalised clip embeddings ``audio``, ``visual`` (B, C); pairs on the diagonal."""
    logits = scale * audio @ visual.T  # (B, B)
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def symmetric_nce(x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """InfoNCE both ways between (B, C) ``x`` and ``y`` with a symmetric (B, B) soft ``target``."""
    logits = scale * x @ y.T  # (B, B)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
