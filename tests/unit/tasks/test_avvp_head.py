"""AVVP heads: the smooth-maximum pooling and the direct per-segment MIL path (our addition to MGN), MA's exchange, and
the mgn read-out."""

from __future__ import annotations

import torch
from torch import nn

from avlearn.methods.base import AVFeatures
from avlearn.tasks.avvp import AVVPConfig, AVVPTask, _pool, disjoint_partner, exchange_audio
from avlearn.tasks.base import DatasetInfo

INFO = DatasetInfo(("a", "b", "c"))
SMALL = {
    "head": "class_grouping",
    "dim": 16,
    "temporal_dim": 8,
    "heads": 2,
    "depth_audio": 1,
    "depth_visual": 1,
    "depth_av": 1,
}


class _Features(nn.Module):
    """Trainable stand-in method: pooled features (B, S, 8) audio and (B, S, 12) visual."""

    dims = {"audio_pooled": 8, "visual_pooled": 12}  # the widths heads size themselves from

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


def test_disjoint_partner_is_the_next_video_sharing_no_label():
    y = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
    assert disjoint_partner(y).tolist() == [2, 2, 3, 0]
    assert disjoint_partner(torch.tensor([[1.0, 0], [1, 1]])).tolist() == [-1, -1]  # every pair shares class 0
    assert disjoint_partner(torch.tensor([[1.0, 0]])).tolist() == [-1]


def _presence_task(refine_after: int) -> AVVPTask:
    """A task whose probabilities are read off the batch: ``audio`` (B, K) and ``frames`` (B, K) say which classes
    each track carries, so the exchange test's outcome is known."""
    task = AVVPTask(AVVPConfig(**SMALL, refine_after=refine_after), _Features(), INFO)
    task.outputs = lambda batch: {"audio": batch["audio"], "visual": batch["frames"]}
    return task


def test_exchange_refinement_drops_a_class_from_the_modality_that_does_not_carry_it():
    # video 0: class 0 seen and heard, class 1 only seen; video 1: class 2 seen and heard (the partner of 0 and 2);
    # video 2: labelled 0 but the model finds class 0 in neither track
    y = torch.tensor([[1.0, 1, 0], [0, 0, 1], [1, 0, 0]])
    batch = {"labels": y, "audio": torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 0, 0]]),
             "frames": torch.tensor([[1.0, 1, 0], [0, 0, 1], [0, 0, 0]])}  # fmt: skip
    task = _presence_task(refine_after=1)
    assert all(torch.equal(t, y) for t in task.modality_targets(batch, y))  # before refine_after: the labels
    task.steps.fill_(1)
    audio, visual = task.modality_targets(batch, y)
    assert audio.tolist() == [[1, 0, 0], [0, 0, 1], [1, 0, 0]]  # class 1 of video 0 is not heard
    assert visual.tolist() == [[1, 1, 0], [0, 0, 1], [1, 0, 0]]  # video 2: found nowhere, so kept in both


def test_refine_after_counts_training_steps_only():
    task = AVVPTask(AVVPConfig(**SMALL, refine_after=2), _Features(), INFO)
    task(_batch())
    task.eval()
    task(_batch())
    assert int(task.steps) == 1


def test_exchange_audio_gives_the_partner_audio_and_audio_targets_keeping_the_visual_side():
    y = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]])
    batch = {"audio": torch.arange(3.0), "frames": torch.arange(3.0), "labels": y}
    partner = torch.tensor([1, 2, -1])
    mixed, y_audio = exchange_audio(batch, y, partner, share=1.0)
    assert mixed["audio"].tolist() == [1, 2, 2] and mixed["frames"].tolist() == [0, 1, 2]  # no partner: own track
    assert torch.equal(y_audio, y[[1, 2, 2]])
    same, y_same = exchange_audio(batch, y, partner, share=0.0)
    assert same is batch and y_same is y


def test_exchanged_video_targets_its_audio_with_the_partner_labels_and_its_video_with_both():
    task = AVVPTask(AVVPConfig(**SMALL, exchange=1.0), _Features(), INFO)
    task.outputs = _uniform
    losses = task({"labels": torch.tensor([[1.0, 0, 0], [0, 1, 0]]), "audio": torch.zeros(2), "frames": torch.zeros(2)})
    half = torch.full((2, 3), 0.5)
    bce = nn.functional.binary_cross_entropy
    assert torch.isclose(losses["loss_video"], bce(half, torch.tensor([[1.0, 1, 0], [1, 1, 0]])))
    assert torch.isclose(losses["loss_audio"], bce(half, torch.tensor([[0.0, 1, 0], [1, 0, 0]])))


def _uniform(batch: dict) -> dict:
    """Probabilities 0.5 everywhere, in the shapes ``AVVPTask.forward`` reads (B = 2, K = 3, S = 4)."""
    half = torch.full((2, 3), 0.5)
    return {"video": half, "audio": half, "visual": half, "audio_direct": half, "visual_direct": half,
            "audio_tokens": torch.zeros(3, 3), "visual_tokens": torch.zeros(3, 3), "method_losses": {}}  # fmt: skip


def _set_probability(layer: nn.Linear, p: float) -> None:
    """Make ``layer`` (a head's probability layer, sigmoid after it) output logit(p) for every input."""
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.fill_(torch.logit(torch.tensor(p)).item())


def test_mgn_visual_read_out_is_the_visual_probability_times_a_map_of_at_least_one():
    """The seed's rule (issue #18 diagnosis): visual segment probability = visual probability x ``1 + softmax`` (in
    [1, 2]) gated by the video probability, so a visual probability of 0.5 predicts the class in every segment, one
    of 0.2 in none (<= 0.4), whatever the audio probability; a video probability below 0.5 predicts nothing."""
    cfg = AVVPConfig(**{**SMALL, "head": "mgn"}, seed_ffn=32)
    task = AVVPTask(cfg, _Features(), INFO).eval()
    head = task.head
    for visual, audio, video, expected in ((0.5, 0.2, 0.9, True), (0.2, 0.9, 0.9, False), (0.9, 0.9, 0.4, False)):
        _set_probability(head.visual_prob, visual)
        _set_probability(head.audio_prob, audio)
        _set_probability(head.video_prob, video)
        preds = task.predict(_batch())
        assert preds["visual"].shape == (2, 3, 10)
        assert bool(preds["visual"].all()) if expected else not preds["visual"].any(), (visual, audio, video)
        assert bool(preds["audio"].all()) == (audio >= 0.5 and video >= 0.5)
