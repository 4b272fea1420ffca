"""Audio-visual event localisation (AVE; Tian et al., ECCV 2018): a label for every one-second segment.

Labels are the K event classes plus background (index K; 28 + 1 on the real benchmark), where background means
"no event that is both seen and heard". The official metric is segment accuracy over all K + 1 classes.

Three heads, chosen by ``task.head``; all consume ``AVFeatures`` pooled per segment, so they run on any method:

* ``fusion`` (avlearn's own, the default, the demo's): the pooled audio and visual features of each segment are fused
  (concatenation with their product), mixed across segments by a temporal convolution and classified.
* ``cmbs``: the head DG-SCT uses, exactly (CMBS, Xia and Zhao, "Cross-Modal Background Suppression for Audio-Visual
  Event Localization", CVPR 2022; as in haoyi-duan/DG-SCT ``AVE/nets/net_trans.py``, parity in
  ``tests/reference/test_dgsct_heads.py``; ``avlearn convert dgsct_ave`` loads its checkpoints): a gated cross-modal
  temporal encoder (BiLSTMs with hidden d_model / 2 for audio and d_model for video, self-attention encoders,
  cross-modal decoders, audio and visual gates), then a per-segment "is event" score and one clip class; a segment
  is its clip's class where the event score passes 0.5, else background. Loss (the seed's): BCE-with-logits on the
  event score and on the gate probability (a second sigmoid, as the seed), cross-entropy of the clip logits and of
  the top-k segment class scores against ``max_t`` of each segment's foreground class index (0 for a background
  segment; a clip without events trains towards class 0).
* ``gated_events`` (avlearn's variant of it, an option): the same module with BiLSTMs half the projection widths
  (64 for audio at the defaults) and three loss corrections: the gate ``g_a * g_v`` is already a probability, so its
  loss is a plain BCE; the clip class is the class of the clip's event segments, and a clip with no event segment is
  left out of the class losses instead of being given class 0; top-k is ``min(topk, S)``. Predictions as ``cmbs``.

``ave_cls`` (AVE classification, as in DG-SCT's few-shot code): one class per clip, the class of its first event
segment; the CMBS clip logits are trained with cross-entropy and scored by accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.data.pipelines.ave import ave_splits
from avlearn.errors import ConfigError
from avlearn.layers.temporal import GatedTemporalEncoder
from avlearn.methods.base import AVFeatures
from avlearn.metrics.ave import clip_class
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses, paired_segments, pooled_widths
from avlearn.viz.reports import AVE, AVE_CLS

HEADS = ("fusion", "cmbs", "gated_events")


@dataclass
class AVEConfig:
    """Schema of ``task/ave*.yaml``: the head and its sizes (the CMBS sizes are the seed's)."""

    name: str = "ave"
    head: str = "fusion"  # fusion | cmbs (the seed's) | gated_events
    hidden: int = 128  # fusion head width
    label_smoothing: float = 0.0
    dropout: float = 0.1
    audio_dim: int = 128  # cmbs / gated_events: audio projection (a_fc)
    visual_dim: int = 512  # cmbs / gated_events: visual projection (v_fc)
    d_model: int = 256  # cmbs / gated_events: encoder/decoder width
    ffn: int = 1024
    heads: int = 4
    encoder_layers: int = 2
    gate_gamma: float = 0.1  # weight of the other modality's gate on the decoder outputs
    topk: int = 4  # segments averaged into the clip-level class scores
    av_score_weight: float = 0.3  # weight of those scores added to the clip logits


class FusionHead(nn.Module):
    """(B, S, Ca) audio and (B, S, C) visual -> (B, S, K + 1) logits."""

    def __init__(self, audio_dim: int, dim: int, hidden: int, num_outputs: int, dropout: float) -> None:
        super().__init__()
        self.align = nn.Linear(audio_dim, dim) if audio_dim != dim else nn.Identity()
        self.fuse = nn.Sequential(nn.Linear(3 * dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.temporal = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.classify = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, num_outputs))

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        audio = self.align(audio)  # (B, S, C)
        h = self.fuse(torch.cat([audio, visual, audio * visual], dim=-1))  # (B, S, hidden)
        h = h + F.gelu(self.temporal(h.transpose(1, 2))).transpose(1, 2)  # (B, S, hidden)
        return self.classify(h)  # (B, S, K + 1)


class CMBSHead(nn.Module):
    """The CMBS localisation head: (B, S, Ca) audio, (B, S, Cv) visual -> a dict of

    ``is_event`` (B, S) logits, ``event`` (B, K) clip logits, ``av_score`` (B, K) top-k segment class scores and
    ``gate`` (B, S) the encoder's audio-visual gate (a probability).
    """

    def __init__(self, audio_in: int, visual_in: int, num_classes: int, cfg: AVEConfig, seed: bool = False) -> None:
        super().__init__()
        hidden = {"audio_hidden": cfg.d_model // 2, "visual_hidden": cfg.d_model} if seed else {}  # the seed's BiLSTMs
        self.temporal = GatedTemporalEncoder(
            audio_in, visual_in, cfg.audio_dim, cfg.visual_dim, cfg.d_model, cfg.heads, cfg.ffn,
            cfg.encoder_layers, cfg.gate_gamma, decoders=True, dropout=cfg.dropout, **hidden,
        )  # fmt: skip
        self.audio_cas, self.visual_cas = nn.Linear(cfg.d_model, num_classes), nn.Linear(cfg.d_model, num_classes)
        self.is_event, self.event = nn.Linear(cfg.d_model, 1), nn.Linear(cfg.d_model, num_classes)
        self.topk, self.av_score_weight = cfg.topk, cfg.av_score_weight

    def _top_mean(self, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.topk, scores.shape[1])
        return scores.topk(k, dim=1).values.mean(dim=1)  # (B, S, K) -> (B, K)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        visual, audio, gate = self.temporal(audio, visual)  # (B, S, d), (B, S, d), (B, S, 1)
        av_score = (self._top_mean(self.visual_cas(visual)) + self._top_mean(self.audio_cas(audio))) / 2  # (B, K)
        fused = (visual + audio) / 2  # (B, S, d)
        event = self.event(fused.max(dim=1).values) + self.av_score_weight * av_score  # (B, K)
        return {"is_event": self.is_event(fused).squeeze(-1), "event": event, "av_score": av_score,
                "gate": gate.squeeze(-1)}  # fmt: skip


def gated_events_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, background: int) -> dict[str, torch.Tensor]:
    """The ``gated_events`` loss terms for (B, S) segment labels (background = ``background``)."""
    foreground = (labels != background).float()  # (B, S)
    target = clip_class(labels, background)  # (B,)
    has_event = bool((target >= 0).any())
    zero = out["event"].sum() * 0.0  # keeps the graph when no clip in the batch has an event
    losses = {
        "loss_is_event": F.binary_cross_entropy_with_logits(out["is_event"], foreground),
        "loss_gate": F.binary_cross_entropy(out["gate"].clamp(1e-6, 1 - 1e-6), foreground),
        "loss_event": F.cross_entropy(out["event"], target) if has_event else zero,
        "loss_av_score": F.cross_entropy(out["av_score"], target) if has_event else zero,
    }
    return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}


def cmbs_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, background: int) -> dict[str, torch.Tensor]:
    """The seed's CMBS loss (``DG-SCT/AVE/main_trans.py``) for (B, S) segment labels: BCE-with-logits on the event
    score and on the gate probability, cross-entropy of the clip logits and of the top-k scores against ``max_t`` of
    the segments' foreground class (0 for background segments)."""
    foreground = labels != background  # (B, S)
    target = labels.masked_fill(~foreground, 0).max(dim=1).values  # (B,)
    losses = {
        "loss_is_event": F.binary_cross_entropy_with_logits(out["is_event"], foreground.float()),
        "loss_gate": F.binary_cross_entropy_with_logits(out["gate"], foreground.float()),
        "loss_event": F.cross_entropy(out["event"], target),
        "loss_av_score": F.cross_entropy(out["av_score"], target),
    }
    return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}


def _build_head(cfg: AVEConfig, method: nn.Module, num_classes: int) -> nn.Module:
    audio_dim, visual_dim = pooled_widths(method)
    if cfg.head == "fusion":
        return FusionHead(audio_dim, visual_dim, cfg.hidden, num_classes + 1, cfg.dropout)
    if cfg.head in ("cmbs", "gated_events"):
        return CMBSHead(audio_dim, visual_dim, num_classes, cfg, seed=cfg.head == "cmbs")
    raise ConfigError(f"unknown task.head '{cfg.head}' for task '{cfg.name}'; expected one of {', '.join(HEADS)}")


@TASKS.register("ave", pipeline=ave_splits, report=AVE, stores=("clips", "features"))
class AVETask(nn.Module):
    """Supervised AVE: batch ``frames``, ``audio`` and ``labels (B, S)`` in [0, K] with K = background."""

    Config = AVEConfig
    needs = ("audio_pooled", "visual_pooled")
    primary_metric = "segment_accuracy"

    def __init__(self, cfg: AVEConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        self.head = _build_head(cfg, method, info.num_classes)

    def outputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        """The head's raw outputs: ``fusion`` (B, S, K + 1) logits, ``cmbs`` / ``gated_events`` the CMBS dict."""
        return self._head(self.method(batch))

    def _head(self, feats: AVFeatures) -> torch.Tensor | dict[str, torch.Tensor]:
        """The head on the method's pooled features (audio and visual segments paired one to one)."""
        feats = paired_segments(feats, self.cfg.name)
        return self.head(feats.audio_pooled, feats.visual_pooled)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats, labels = self.method(batch), batch["labels"]
        out = self._head(feats)
        if self.cfg.head != "fusion":
            loss = cmbs_loss if self.cfg.head == "cmbs" else gated_events_loss
            return add_method_losses(loss(out, labels, self.info.num_classes), feats.losses)
        loss = F.cross_entropy(out.flatten(0, 1), labels.flatten(), label_smoothing=self.cfg.label_smoothing)
        return add_method_losses({"loss": loss}, feats.losses)

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``segment_labels (B, S)``: the class of each segment, K for background; ``probs (B, S, K + 1)``."""
        out = self.outputs(batch)
        probs = out.float().softmax(dim=-1) if self.cfg.head == "fusion" else _cmbs_probs(out)
        return {"segment_labels": probs.argmax(dim=-1), "probs": probs}

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Segment accuracy over the K + 1 classes (background included), as the AVE benchmark scores it."""
        from avlearn.metrics.ave import ave_segment_accuracy

        return {"segment_accuracy": float(ave_segment_accuracy(preds["segment_labels"], targets["labels"]))}


def _cmbs_probs(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, S, K + 1): P(event) times the clip's class distribution, and 1 - P(event) for background.

    Its argmax is the seed's rule: the clip's class where ``sigmoid(is_event) > 0.5``, else background.
    """
    on = out["is_event"].float().sigmoid()[..., None]  # (B, S, 1)
    classes = out["event"].float().softmax(dim=-1)[:, None]  # (B, 1, K)
    one_hot = F.one_hot(classes.argmax(dim=-1), classes.shape[-1]).float()  # (B, 1, K) the clip's class
    return torch.cat([on * one_hot, 1 - on], dim=-1)  # (B, S, K + 1)


@TASKS.register("ave_cls", pipeline=ave_splits, report=AVE_CLS, stores=("clips", "features"))
class AVEClassificationTask(nn.Module):
    """AVE classification: one class per clip (its first event segment's); batch ``labels (B, S)`` as for AVE."""

    Config = AVEConfig
    needs = ("audio_pooled", "visual_pooled")
    primary_metric = "accuracy"

    def __init__(self, cfg: AVEConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        if cfg.head not in ("cmbs", "gated_events"):
            raise ConfigError(
                f"task 'ave_cls' uses the CMBS head; set task.head=cmbs or gated_events (got '{cfg.head}')"
            )
        self.cfg, self.info, self.method = cfg, info, method
        self.head = _build_head(cfg, method, info.num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = paired_segments(self.method(batch), self.cfg.name)
        out = self.head(feats.audio_pooled, feats.visual_pooled)
        target = clip_class(batch["labels"], self.info.num_classes)
        loss_event = F.cross_entropy(out["event"], target, label_smoothing=self.cfg.label_smoothing)
        loss_av_score = F.cross_entropy(out["av_score"], target, label_smoothing=self.cfg.label_smoothing)
        return add_method_losses({"loss": loss_event + loss_av_score, "loss_event": loss_event.detach()}, feats.losses)

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``clip_labels (B,)`` and ``probs (B, K)``."""
        feats = paired_segments(self.method(batch), self.cfg.name)
        probs = self.head(feats.audio_pooled, feats.visual_pooled)["event"].float().softmax(dim=-1)
        return {"clip_labels": probs.argmax(dim=-1), "probs": probs}

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Clip accuracy (percent) over the clips that have an event."""
        from avlearn.metrics.ave import ave_video_accuracy

        target = clip_class(targets["labels"], self.info.num_classes)
        keep = target >= 0
        return {"accuracy": float(ave_video_accuracy(preds["clip_labels"][keep], target[keep]))}
