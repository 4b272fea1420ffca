"""AVE (fusion and CMBS heads, classification variant) and AVVP (MGN-style head): shapes, losses, prediction rules,
and that they run on the demo baseline's features as well as on DG-SCT's widths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avlearn.errors import ConfigError, DataError
from avlearn.methods.base import AVFeatures
from avlearn.metrics.ave import clip_class
from avlearn.tasks.ave import AVEClassificationTask, AVEConfig, AVETask, _cmbs_probs
from avlearn.tasks.avvp import AssignAttention, AVVPConfig, AVVPTask
from avlearn.tasks.base import DatasetInfo

INFO = DatasetInfo(("a", "b", "c"))
CMBS = {"head": "gated_events", "audio_dim": 16, "visual_dim": 16, "d_model": 16, "ffn": 32, "heads": 2}


class _Features(nn.Module):
    """A stand-in method: fixed random pooled features of DG-SCT-like unequal widths (audio 8, visual 12)."""

    dims = {"audio_pooled": 8, "visual_pooled": 12}  # the widths heads size themselves from

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, batch: dict) -> AVFeatures:
        b, s = batch["labels"].shape[0], 10
        g = torch.Generator().manual_seed(0)
        audio, visual = torch.randn(b, s, 8, generator=g), torch.randn(b, s, 12, generator=g)
        return AVFeatures(audio_pooled=self.scale * audio, visual_pooled=self.scale * visual)


def _ave_batch() -> dict:
    labels = torch.tensor([[3, 3, 0, 0, 0, 3, 3, 3, 3, 3], [3] * 10])  # K = 3: background is 3
    return {"labels": labels}


@pytest.mark.parametrize("head", ["fusion", "cmbs", "gated_events"])
def test_ave_heads_train_and_predict(head):
    cfg = AVEConfig(head=head) if head == "fusion" else AVEConfig(**{**CMBS, "head": head})
    task = AVETask(cfg, _Features(), INFO)
    out = task(_ave_batch())
    out["loss"].backward()
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert task.method.scale.grad is not None
    pred = task.predict(_ave_batch())
    assert pred["segment_labels"].shape == (2, 10) and pred["probs"].shape == (2, 10, 4)
    assert 0.0 <= task.score(pred, _ave_batch())["segment_accuracy"] <= 100.0


def test_gated_events_outputs_and_loss_terms():
    task = AVETask(AVEConfig(**CMBS), _Features(), INFO)
    out = task.outputs(_ave_batch())
    assert out["is_event"].shape == (2, 10) and out["gate"].shape == (2, 10)
    assert out["event"].shape == (2, 3) and out["av_score"].shape == (2, 3)
    assert ((out["gate"] > 0) & (out["gate"] < 1)).all()  # a probability, trained with plain BCE
    losses = task(_ave_batch())
    assert {"loss_is_event", "loss_gate", "loss_event", "loss_av_score"} <= set(losses)


def test_cmbs_has_the_seed_bilstm_sizes_and_loss():
    task = AVETask(AVEConfig(**{**CMBS, "head": "cmbs"}), _Features(), INFO)
    temporal = task.head.temporal
    assert (temporal.audio_rnn.hidden_size, temporal.visual_rnn.hidden_size) == (8, 16)  # d_model / 2, d_model
    assert temporal.audio_key[0].in_features == 16 and temporal.audio_query.in_features == 16
    assert AVETask(AVEConfig(**CMBS), _Features(), INFO).head.temporal.audio_rnn.hidden_size == 8  # audio_dim / 2
    task.eval()  # no dropout: outputs and loss see the same values
    out, labels = task.outputs(_ave_batch()), _ave_batch()["labels"]
    fg = (labels != 3).float()
    bce = lambda x, y: (-(y * x.sigmoid().log() + (1 - y) * (1 - x.sigmoid()).log())).mean()  # noqa: E731
    target = torch.tensor([0, 0])  # clip 1: class 0; clip 2 (all background): the seed's index 0
    expected = {"loss_is_event": bce(out["is_event"], fg), "loss_gate": bce(out["gate"], fg),  # the gate: 2 sigmoids
                "loss_event": nn.functional.cross_entropy(out["event"], target),
                "loss_av_score": nn.functional.cross_entropy(out["av_score"], target)}  # fmt: skip
    losses = task(_ave_batch())
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value.detach())
    torch.testing.assert_close(losses["loss"], sum(expected.values()))


def test_cmbs_prediction_rule():
    out = {"is_event": torch.tensor([[3.0, -3.0, 0.1]]), "event": torch.tensor([[0.0, 2.0, 1.0]])}
    labels = _cmbs_probs(out).argmax(-1)
    assert labels.tolist() == [[1, 3, 1]]  # clip class where sigmoid(is_event) > 0.5, else background (K = 3)


def test_clip_class_is_the_first_event_and_ignores_all_background():
    assert clip_class(torch.tensor([[3, 1, 1, 2], [3, 3, 3, 3]]), background=3).tolist() == [1, -100]


def test_ave_classification_variant():
    task = AVEClassificationTask(AVEConfig(**CMBS), _Features(), INFO)
    out = task(_ave_batch())
    out["loss"].backward()
    pred = task.predict(_ave_batch())
    assert pred["clip_labels"].shape == (2,) and pred["probs"].shape == (2, 3)
    assert set(task.score(pred, _ave_batch())) == {"accuracy"}
    with pytest.raises(ConfigError, match="head=cmbs"):
        AVEClassificationTask(AVEConfig(head="fusion"), _Features(), INFO)


def test_unknown_head_is_a_config_error():
    with pytest.raises(ConfigError, match="task.head 'cmbs_seed'.*fusion, cmbs, gated_events"):  # no alias
        AVETask(AVEConfig(head="cmbs_seed"), _Features(), INFO)


def _avvp_batch() -> dict:
    gt = torch.zeros(2, 3, 10, dtype=torch.bool)
    gt[0, 0, 2:5] = True
    return {"labels": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), "gt_audio": gt, "gt_visual": gt.clone()}


def test_avvp_class_grouping_head_shapes_loss_and_prediction():
    cfg = AVVPConfig(head="class_grouping", dim=16, temporal_dim=8, heads=2, depth_audio=1, depth_visual=1, depth_av=1)
    task = AVVPTask(cfg, _Features(), INFO)
    out = task.outputs(_avvp_batch())
    assert out["video"].shape == (2, 3) and out["audio"].shape == (2, 3) and out["visual"].shape == (2, 3)
    assert out["audio_segments"].shape == (2, 3, 10) and out["visual_segments"].shape == (2, 3, 10)
    assert out["audio_tokens"].shape == (3, 3)
    losses = task(_avvp_batch())
    losses["loss"].backward()
    assert {"loss_video", "loss_audio", "loss_visual", "loss_tokens"} <= set(losses)
    pred = task.predict(_avvp_batch())
    assert pred["audio"].dtype == torch.bool and pred["audio"].shape == (2, 3, 10)
    # A class absent at the video level is never predicted in a segment.
    absent = (pred["video_probs"] < 0.5)[..., None].expand(-1, -1, 10)
    assert not (pred["audio"] & absent).any() and not (pred["visual"] & absent).any()
    scores = task.score(pred, _avvp_batch())
    assert {"segment_audio", "segment_visual", "segment_type_at_av", "event_type_at_av"} <= set(scores)


MGN = {"head": "mgn", "dim": 16, "temporal_dim": 8, "seed_ffn": 32, "heads": 2, "depth_audio": 1,
            "depth_visual": 1, "depth_av": 1}  # fmt: skip


def test_avvp_mgn_head_outputs_and_the_seed_loss():
    task = AVVPTask(AVVPConfig(**MGN), _Features(), INFO).eval()  # eval: no drop-path, no Gumbel noise
    out, y = task.outputs(_avvp_batch()), _avvp_batch()["labels"]
    assert out["video"].shape == (2, 3) and out["audio_segments"].shape == (2, 3, 10)
    assert out["audio_tokens"].shape == (3, 3) and "audio_direct" not in out
    # Segment probability = modality probability x (1 + a softmax over segments): between p and 2p, summing to 11p.
    for m in ("audio", "visual"):
        p, seg = out[m][..., None], out[f"{m}_segments"]
        assert (seg >= p).all() and (seg <= 2 * p).all()
        torch.testing.assert_close(seg.sum(-1), 11 * out[m])
    bce = nn.functional.binary_cross_entropy
    own = torch.arange(3)
    expected = (bce(out["video"], y) + bce(out["audio"], y) + bce(out["visual"], 0.9 * y + 0.05)
                + nn.functional.cross_entropy(out["audio_tokens"], own)
                + nn.functional.cross_entropy(out["visual_tokens"], own))  # fmt: skip
    losses = task(_avvp_batch())
    assert "loss_direct" not in losses
    torch.testing.assert_close(losses["loss"], expected)
    task.train()
    task(_avvp_batch())["loss"].backward()
    assert task.method.scale.grad is not None and task.head.audio.han_encoder.assign.q_proj.weight.grad is not None
    pred = task.predict(_avvp_batch())
    absent = (pred["video_probs"] < 0.5)[..., None].expand(-1, -1, 10)
    assert pred["visual"].shape == (2, 3, 10) and not (pred["visual"] & absent).any()


def test_avvp_head_errors():
    with pytest.raises(ConfigError, match="task.head 'mgn_seed'.*mgn, class_grouping"):  # no alias
        AVVPTask(AVVPConfig(head="mgn_seed"), _Features(), INFO)
    task = AVVPTask(AVVPConfig(**MGN, segments=8), _Features(), INFO)  # the features have 10 segments
    with pytest.raises(DataError, match="task.segments=8"):
        task.outputs(_avvp_batch())


def test_hard_assignment_is_one_hot_with_a_soft_gradient():
    torch.manual_seed(0)
    assign = AssignAttention(8, hard=True, gumbel=True).eval()
    groups, x = torch.randn(2, 4, 8, requires_grad=True), torch.randn(2, 6, 8)
    logits = assign.q_proj(groups) @ assign.k_proj(x).transpose(1, 2) * 8**-0.5  # (B, N, S)
    chosen = assign._assign(logits)
    assert torch.equal(chosen.detach(), nn.functional.one_hot(logits.argmax(1), 4).transpose(1, 2).float())
    chosen.mul(torch.randn_like(chosen)).sum().backward()
    assert groups.grad.abs().sum() > 0  # straight through: the softmax's gradient


def test_heads_run_on_the_demo_baseline():
    import avlearn.backbones  # noqa: F401
    from avlearn.methods.baseline import Baseline, BaselineConfig
    from avlearn.registry import BACKBONES

    method = Baseline(BaselineConfig(dim=16), BACKBONES.build("cnn_visual_small"), BACKBONES.build("cnn_audio_small"))
    batch = {"frames": torch.randint(0, 256, (2, 10, 32, 32, 3), dtype=torch.uint8),
             "audio": torch.randn(2, 10, 64, 50), **_avvp_batch()}  # fmt: skip
    avvp = AVVPTask(
        AVVPConfig(dim=16, temporal_dim=8, heads=2, depth_audio=1, depth_visual=1, depth_av=1), method, INFO
    )
    assert torch.isfinite(avvp(batch)["loss"])
    ave = AVETask(AVEConfig(**CMBS), method, INFO)
    assert ave.predict({**batch, **_ave_batch()})["segment_labels"].shape == (2, 10)
