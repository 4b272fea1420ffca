"""Weighted k-nearest-neighbour classification of clip features (Wu et al., CVPR 2018, as DINO's ``eval_knn.py``
runs it): the rule of the classify task's ``task.mode=knn`` and of the pretraining task's kNN monitor.

A clip's feature is the mean over segments of a method's pooled output (``FEATURES``), L2-normalised; its ``k``
nearest training clips by cosine similarity vote for their class(es) with weight ``exp(similarity / temperature)``,
and the normalised votes are the class scores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

# task.features -> the AVFeatures fields a clip feature is made of
FEATURES = {"audio": ("audio_pooled",), "visual": ("visual_pooled",), "concat": ("audio_pooled", "visual_pooled"),
            "fused": ("fused",)}  # fmt: skip


def clip_feature(feats: Any, features: str) -> torch.Tensor:
    """(B, C) the clip feature of ``features`` from ``AVFeatures``: the segment mean (and the token mean for
    ``fused``)."""
    if features == "fused":
        return feats.fused.mean(dim=(1, 2))  # (B, S, N, C) -> (B, C)
    return torch.cat([getattr(feats, f).mean(dim=1) for f in FEATURES[features]], dim=-1)  # (B, S, C_i) -> (B, C)


def normalised_mean(views: list[torch.Tensor]) -> torch.Tensor:
    """(B, C) the L2-normalised mean of the L2-normalised (B, C) features of a clip's views."""
    return F.normalize(torch.stack([F.normalize(v.float(), dim=-1) for v in views]).mean(dim=0), dim=-1)


def knn_votes(queries: torch.Tensor, bank: torch.Tensor, votes: torch.Tensor, k: int, temperature: float
              ) -> torch.Tensor:  # fmt: skip
    """(B, C) normalised queries, (M, C) normalised bank, (M, K) the bank's label votes -> (B, K) votes of the ``k``
    nearest, weighted by ``exp(similarity / temperature)``, summing to 1 per row."""
    similarity = queries @ bank.T  # (B, M) cosine
    top, index = similarity.topk(min(k, len(bank)), dim=1)  # (B, k)
    weight = (top / temperature).exp()  # (B, k)
    scores = (weight.unsqueeze(-1) * votes[index]).sum(dim=1)  # (B, k, K) -> (B, K)
    return scores / scores.sum(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def labelled_features(embed: Callable[[dict], torch.Tensor], clips: Dataset, batch_size: int, key: str,
                      num_classes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(M, C) ``embed`` features and (M, K) one-hot (``key="label"``) or multi-hot (``"labels"``) labels of the
    labelled ``clips`` in order (a memory bank and its votes). The loader draws nothing from the global random
    state."""
    feats, labels = [], []
    for batch in DataLoader(clips, batch_size=batch_size, generator=torch.Generator()):
        feats.append(embed({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}))
        labels.append(batch[key])
    target = torch.cat(labels).to(device)
    onehot = F.one_hot(target, num_classes).float() if key == "label" else target.float()
    return torch.cat(feats), onehot
