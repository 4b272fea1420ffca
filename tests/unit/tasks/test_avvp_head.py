"""AVVP MGN-style head: the smooth-maximum pooling and the direct per-segment MIL path (our addition to MGN)."""

from __future__ import annotations

import torch
from torch import nn

from avlearn.methods.base import AVFeatures
from avlearn.tasks.avvp import AVVPConfig, AVVPTask, _pool
from avlearn.tasks.base import DatasetInfo

INFO = DatasetInfo(("a", "b", "c"))
SMALL = {"dim": 16, "temporal_dim": 8, "heads": 2, "depth_audio": 1, "depth_visual": 1, "depth_av": 1}


class _Features(nn.Module):
    """Trainable stand-in method: pooled features (B, S, 8) audio and (B, S, 12) visual."""

    out_dim, audio_dim = 12, 8

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.audio, self.visual = nn.Parameter(torch.randn(2, 10, 8, generator=g)), nn.Parameter(torch.randn(2, 10, 12))

    def forward(self, batch: dict) -> AVFeatures:
        return AVFeatures(audio_pooled=self.audio, visual_pooled=self.visual)


def _batch() -> dict:
    return {"labels": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])}


def test_pool_is_a_smooth_maximum_between_mean_and_max():
    scores = torch.tensor([[[0.0, 0.0, 0.0, 8.0]]])  # (B, K, S)
    pooled = _pool(scores)
    assert scores.mean() < pooled.item() <= scores.max()
    assert pooled.item() > 7.0  # one strong segment dominates, as multiple-instance pooling needs


def test_direct_mil_loss_is_per_modality_bce_of_the_pooled_segment_classifiers():
    method = _Features()
    task = AVVPTask(AVVPConfig(**SMALL, direct_weight=0.5), method, INFO)
    y = _batch()["labels"]
    head, bce = task.head, nn.functional.binary_cross_entropy
    audio = _pool(head.audio_direct(method.audio).transpose(1, 2)).sigmoid()  # (B, S, K) -> (B, K, S) -> (B, K)
    visual = _pool(head.visual_direct(method.visual).transpose(1, 2)).sigmoid()
    expected = 0.5 * (bce(audio, y) + bce(visual, 0.9 * y + 0.05))
    losses = task(_batch())
    assert torch.isclose(losses["loss_direct"], expected.detach())
    losses["loss"].backward()
    assert head.visual_direct.weight.grad.abs().sum() > 0 and method.visual.grad.abs().sum() > 0


def test_direct_weight_zero_drops_the_direct_loss_from_the_total():
    task = AVVPTask(AVVPConfig(**SMALL, direct_weight=0.0), _Features(), INFO)
    losses = task(_batch())
    parts = sum(v for k, v in losses.items() if k.startswith("loss_") and k != "loss_direct")
    assert losses["loss_direct"] == 0
    assert torch.isclose(losses["loss"].detach(), parts)
