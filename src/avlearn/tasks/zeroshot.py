"""Pre-training (on captions, or on class prompts as DG-SCT) and zero-shot AVE / LLP classification from prompts.

Follows DG-SCT's pre-training and zero-shot settings (haoyi-duan/DG-SCT ``pretrain/``, ``zero-shot/zero_shot.py``,
``few-shot/nets/net_trans.py``): the segment's visual and audio features are mapped into a text space, compared by
cosine similarity with the prompts of classes never trained on, and the two similarities are combined; the auxiliary
audio-visual InfoNCE over clip-mean embeddings is kept as an option (``av_weight``).

What we changed, and why (see docs/tasks/zeroshot.md):

* Pre-training aligns with captions, not class labels: a symmetric InfoNCE between the clip's pooled features
  (mean over its event segments) and its caption's embedding by a frozen text tower (default ``minilm_l6``), plus a
  per-segment cross-entropy of event segments over the batch's captions, plus a binary background-or-event loss on
  every segment scored against a ``background`` text, so background lives in the same text space as the classes.
* Background in zero-shot: the ``background`` text, decided on its own (binary: background when the weighted cosine
  to it exceeds a threshold learned in pre-training), not by competing with the class prompts: unseen classes match
  their prompts less than seen ones match theirs, so an argmax with background would call them background (measured:
  segment accuracy 49.9 -> 83.9 on held-out AVSynth classes). The seed has no background class in zero-shot, so its
  background segments can never be right.
* Video classification averages the segments' class logits weighted by p(event) (the seed: all segments equally).
* The combination is fixed: ``visual_weight * cos_v + audio_weight * cos_a`` (default 1 and 1, as training), times
  ``exp(log_scale)``; the seed's element-wise ``w1 = logits_v / (logits_v + logits_a)`` is unstable near 0 and its
  CLAP ``logit_scale_a`` is used un-exponentiated.
* The pre-trained projections and scale are kept (``train.init_from``): the zero-shot task has the same parameters as
  the pre-training task and class prompts as non-persistent buffers; the seed builds a fresh prompt learner instead.
* Clips of a batch with identical captions (AVSynth repeats "the chime is heard while the red circle is visible")
  are positives of each other (a soft target), which matters in the audio-visual InfoNCE: the seed's diagonal
  target makes same-class clips negatives.

DG-SCT's own pre-training and prompt zero-shot tasks (``pretrain_segments``, ``zeroshot_ave``, ``zeroshot_ave_cls``,
``zeroshot_llp_cls``) are prompt classifiers: ``avlearn.tasks.fewshot``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.data.pipelines.captions import captions_splits, zeroshot_splits
from avlearn.layers.prompts import embed_prompts
from avlearn.losses.contrastive import symmetric_nce
from avlearn.metrics.ave import clip_class
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, EvaluationOnly, add_method_losses, paired_segments, pooled_widths
from avlearn.viz.reports import AVE, AVE_CLS

MAX_SCALE = 100.0  # CLIP's clamp of the learnable logit scale


@dataclass
class TextSpaceConfig:
    """What the caption-pretraining and zero-shot tasks share: the text tower, the prompts and the combination."""

    name: str = ""
    text: str = "minilm_l6"  # frozen text tower (the same for pre-training and zero-shot)
    text_pretrained: str = ""  # its weights folder ("" = the tower's default; CLIP / CLAP towers need one)
    prompt: str = "the {name} is heard while the {description} is visible"  # one prompt per class, both modalities
    background: str = "background"  # the background class's text ("" = no background class, as the seed)
    visual_weight: float = 1.0  # logits = exp(log_scale) * (visual_weight * cos_v + audio_weight * cos_a)
    audio_weight: float = 1.0
    init_scale: float = 10.0


@dataclass
class PretrainCaptionsConfig(TextSpaceConfig):
    """Schema of ``task/pretrain_captions.yaml``."""

    name: str = "pretrain_captions"
    holdout: list[str] = field(default_factory=list)  # classes left out of pre-training (read by the pipeline)
    clip_weight: float = 1.0  # clip <-> caption symmetric InfoNCE, per modality
    segment_weight: float = 1.0  # segment -> {batch captions, background} cross-entropy
    av_weight: float = 0.0  # the seed's audio-visual InfoNCE over clip means


@dataclass
class ZeroShotConfig(TextSpaceConfig):
    """Schema of ``task/zeroshot.yaml``."""

    name: str = "zeroshot"
    classes: list[str] = field(default_factory=list)  # evaluated classes (read by the pipeline); empty = all


@dataclass
class ZeroShotClsConfig(ZeroShotConfig):
    """Schema of ``task/zeroshot_cls.yaml``."""

    name: str = "zeroshot_cls"


def class_texts(template: str, info: DatasetInfo) -> list[str]:
    """``template`` filled per class with ``{name}`` and ``{description}`` (the name when there is none)."""
    descriptions = getattr(info, "descriptions", ()) or info.class_names
    return [template.format(name=n, description=d) for n, d in zip(info.class_names, descriptions, strict=True)]


def masked_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, S, C) -> (B, C) L2-normalised mean over the segments ``keep`` (B, S); over all of them if none is kept."""
    weight = torch.where(keep.any(dim=1, keepdim=True), keep, torch.ones_like(keep)).to(x.dtype)  # (B, S)
    return F.normalize((x * weight.unsqueeze(-1)).sum(dim=1) / weight.sum(dim=1, keepdim=True), dim=-1)


class TextSpaceTask(nn.Module):
    """Pooled features -> text space; class prompts (+ background) scored by a fixed combination of cosines."""

    Config = TextSpaceConfig
    needs = ("audio_pooled", "visual_pooled")
    primary_metric = "segment_accuracy"

    def __init__(self, cfg: TextSpaceConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        texts = [*class_texts(cfg.prompt, info), *([cfg.background] if cfg.background else [])]
        prompts = embed_prompts(cfg.text, texts, cfg.text_pretrained or None)  # (K [+ 1], Ct)
        self.register_buffer("prompts", prompts, persistent=False)
        audio_dim, visual_dim = pooled_widths(method)
        self.visual_proj = nn.Linear(visual_dim, self.prompts.shape[1])
        self.audio_proj = nn.Linear(audio_dim, self.prompts.shape[1])
        self.log_scale = nn.Parameter(torch.tensor(float(cfg.init_scale)).log())
        # Background when the weighted cosine to the background text exceeds this (learned; unused without one).
        self.background_threshold = nn.Parameter(torch.tensor(0.5))

    @property
    def has_background(self) -> bool:
        return len(self.prompts) > self.info.num_classes

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)

    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """L2-normalised visual and audio segment embeddings in the text space, each (B, S, Ct), and the method's
        own loss terms."""
        feats = paired_segments(self.method(batch), self.cfg.name)
        visual = F.normalize(self.visual_proj(feats.visual_pooled), dim=-1)  # (B, S, Ct)
        audio = F.normalize(self.audio_proj(feats.audio_pooled), dim=-1)  # (B, S, Ct)
        return visual, audio, feats.losses

    def similarity(self, visual: torch.Tensor, audio: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """(B, S, Ct) x2, (P, Ct) -> (B, S, P) scaled, fixed-weight sum of the two cosine similarities."""
        cos = self.cfg.visual_weight * visual @ texts.T + self.cfg.audio_weight * audio @ texts.T
        return self.scale() * cos

    def background_logit(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) logit of "background": the scaled background similarity minus the learned threshold."""
        similarity = self.similarity(visual, audio, self.prompts[self.info.num_classes :]).squeeze(-1)  # (B, S)
        return similarity - self.scale() * self.background_threshold

    def logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits (B, S, K) over the class prompts, and the background logit (B, S) if there is a background."""
        visual, audio, _ = self.embed(batch)
        classes = self.similarity(visual, audio, self.prompts[: self.info.num_classes])  # (B, S, K)
        return classes, self.background_logit(visual, audio) if self.has_background else None

    @staticmethod
    def segment_predictions(classes: torch.Tensor, background: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``segment_labels (B, S)`` (background = K when its probability exceeds 1/2) and ``probs (B, S, K [+ 1])``."""
        probs = classes.float().softmax(dim=-1)  # (B, S, K)
        if background is None:
            return {"segment_labels": probs.argmax(dim=-1), "probs": probs}
        p_bg = background.float().sigmoid().unsqueeze(-1)  # (B, S, 1)
        labels = torch.where(p_bg.squeeze(-1) > 0.5, probs.shape[-1], probs.argmax(dim=-1))
        return {"segment_labels": labels, "probs": torch.cat([(1 - p_bg) * probs, p_bg], dim=-1)}

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Segment predictions: the best class prompt, or background."""
        return self.segment_predictions(*self.logits(batch))

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """AVE segment accuracy (percent), background included."""
        from avlearn.metrics.ave import ave_segment_accuracy

        return {"segment_accuracy": float(ave_segment_accuracy(preds["segment_labels"], targets["labels"]))}


@TASKS.register("pretrain_captions", pipeline=captions_splits, report=AVE, stores=("clips",))
class CaptionPretrainTask(TextSpaceTask):
    """Caption pre-training: batch ``frames``, ``audio``, ``labels (B, S)`` (K = background), ``text (B, Ct)``.

    Validation scores zero-shot segment accuracy with the dataset's class prompts (the pre-training classes).
    """

    Config = PretrainCaptionsConfig

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, scale = self.cfg, self.scale()
        visual, audio, method_losses = self.embed(batch)
        texts = F.normalize(batch["text"].to(visual.dtype), dim=-1)  # (B, Ct)
        event = batch["labels"] < self.info.num_classes  # (B, S)
        same = (texts @ texts.T > 1.0 - 1e-4).to(texts.dtype)  # (B, B) identical captions are positives
        target = same / same.sum(dim=1, keepdim=True)
        v_clip, a_clip = masked_mean(visual, event), masked_mean(audio, event)  # (B, Ct)
        loss = cfg.clip_weight * (symmetric_nce(v_clip, texts, target, scale) + symmetric_nce(a_clip, texts, target,
                                                                                              scale))  # fmt: skip
        if cfg.segment_weight:
            loss = loss + cfg.segment_weight * self.segment_loss(visual, audio, texts, target, event)
        if cfg.av_weight:
            loss = loss + cfg.av_weight * symmetric_nce(v_clip, a_clip, target, scale)
        return add_method_losses({"loss": loss}, method_losses)

    def segment_loss(
        self, visual: torch.Tensor, audio: torch.Tensor, texts: torch.Tensor, target: torch.Tensor, event: torch.Tensor
    ) -> torch.Tensor:
        """Event segments: cross-entropy over the batch's captions; every segment: background or not (binary)."""
        logits = self.similarity(visual, audio, texts)  # (B, S, B)
        goal = target.unsqueeze(1).expand_as(logits)  # (B, S, B): each segment's clip caption(s)
        loss = F.cross_entropy(logits[event], goal[event]) if event.any() else logits.sum() * 0
        if self.has_background:
            loss = loss + F.binary_cross_entropy_with_logits(self.background_logit(visual, audio), (~event).float())
        return loss


@TASKS.register("zeroshot", pipeline=zeroshot_splits, report=AVE, stores=("clips",))
class ZeroShotTask(EvaluationOnly, TextSpaceTask):
    """Zero-shot AVE segment classification (background included): no training; weights from ``train.init_from``."""

    Config = ZeroShotConfig


@TASKS.register("zeroshot_cls", pipeline=zeroshot_splits, report=AVE_CLS, stores=("clips",))
class ZeroShotClassifyTask(ZeroShotTask):
    """Zero-shot video classification: the argmax of the class logits averaged over segments, weighted by p(event)."""

    Config = ZeroShotClsConfig
    primary_metric = "accuracy"

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``clip_labels (B,)`` plus the segment predictions (``segment_labels``, ``probs``)."""
        classes, background = self.logits(batch)  # (B, S, K), (B, S) or None
        p_event = torch.ones_like(classes[..., 0]) if background is None else 1 - background.sigmoid()  # (B, S)
        weight = p_event.clamp_min(1e-6)
        clip = (classes * weight.unsqueeze(-1)).sum(dim=1).argmax(dim=-1)  # (B,) (the normalising sum cancels)
        return {**self.segment_predictions(classes, background), "clip_labels": clip}

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Clip accuracy (percent) against each clip's first event segment's class, over clips with an event."""
        from avlearn.metrics.ave import ave_video_accuracy

        target = clip_class(targets["labels"], self.info.num_classes)
        keep = target >= 0
        return {"accuracy": float(ave_video_accuracy(preds["clip_labels"][keep], target[keep]))}
