"""Audio-visual event localisation (AVE; Tian et al., ECCV 2018): a label for every one-second segment.

Labels are the K event classes plus background (index K; 28 + 1 on the real benchmark), where background means
"no event that is both seen and heard". The official metric is segment accuracy over all K + 1 classes.

Head: the pooled audio and visual features of each segment are fused (concatenation with their product, so
agreement between the modalities is easy to express), mixed across segments by a temporal convolution and
classified. This head consumes ``AVFeatures`` only, so it runs on any method that produces pooled features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo


@dataclass
class AVEConfig:
    """Schema of ``task/ave.yaml``."""

    name: str = "ave"
    hidden: int = 128
    label_smoothing: float = 0.0
    dropout: float = 0.1


class FusionHead(nn.Module):
    """(B, S, C) audio and visual -> (B, S, K + 1) logits."""

    def __init__(self, dim: int, hidden: int, num_outputs: int, dropout: float) -> None:
        super().__init__()
        self.fuse = nn.Sequential(nn.Linear(3 * dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.temporal = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.classify = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, num_outputs))

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        h = self.fuse(torch.cat([audio, visual, audio * visual], dim=-1))  # (B, S, hidden)
        h = h + F.gelu(self.temporal(h.transpose(1, 2))).transpose(1, 2)  # (B, S, hidden)
        return self.classify(h)  # (B, S, K + 1)


@TASKS.register("ave")
class AVETask(nn.Module):
    """Supervised AVE: batch ``frames``, ``audio`` and ``labels (B, S)`` in [0, K] with K = background."""

    Config = AVEConfig
    needs = ("audio_pooled", "visual_pooled")
    primary_metric = "segment_accuracy"

    def __init__(self, cfg: AVEConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        self.head = FusionHead(method.out_dim, cfg.hidden, info.num_classes + 1, cfg.dropout)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feats = self.method(batch)
        return self.head(feats.audio_pooled, feats.visual_pooled)  # (B, S, K + 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.logits(batch)
        loss = F.cross_entropy(
            logits.flatten(0, 1), batch["labels"].flatten(), label_smoothing=self.cfg.label_smoothing
        )
        return {"loss": loss}

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``segment_labels (B, S)``: the class of each segment, K for background; ``probs (B, S, K + 1)``."""
        probs = self.logits(batch).float().softmax(dim=-1)
        return {"segment_labels": probs.argmax(dim=-1), "probs": probs}

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Segment accuracy over the K + 1 classes (background included), as the AVE benchmark scores it."""
        from avlearn.metrics.ave import ave_segment_accuracy

        return {"segment_accuracy": float(ave_segment_accuracy(preds["segment_labels"], targets["labels"]))}
