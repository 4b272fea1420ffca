"""Clip classification (VGGSound, AudioSet, ESC-50 ...): one class per clip (top-1 / top-5 accuracy) or several
(mAP, AUC), from the pooled features of any method, by a linear probe, fine-tuning or kNN.

The evaluation protocols of DeepAVFusion (Mo and Morgado, CVPR 2024: linear probe, fine-tuning, kNN), with MAE's
linear-probe head (He et al., CVPR 2022: BatchNorm without affine, then a linear layer, on a frozen encoder) and the
weighted kNN of Wu et al. (CVPR 2018) as DINO runs it (Caron et al., ICCV 2021, ``eval_knn.py``):

* ``task.features``: the clip feature the head reads, the mean over segments of ``audio`` (``audio_pooled``),
  ``visual`` (``visual_pooled``), ``concat`` (both, concatenated) or ``fused`` (``AVFeatures.fused``, also averaged
  over its tokens: methods that fuse early). A method that does not produce the field is refused at build time.
* ``task.mode``:
  - ``linear``: the method frozen (no gradient) and kept in eval mode (its batch norms and dropout too), a
    ``BatchNorm1d(affine=False)`` then a linear layer trained on its features;
  - ``finetune``: the method trains with the head (LayerNorm, dropout, linear);
  - ``knn``: no training (``train.epochs=0``). A clip's L2-normalised feature is compared by cosine similarity with
    the memory bank, the training split's features (computed at the first prediction); its ``knn_k`` nearest
    training clips vote for their class(es) with weight ``exp(similarity / knn_temperature)``; the normalised votes
    are the class scores.
* Views: a clip of S segments is seen through crops of ``view_segments`` consecutive segments (0: the whole clip).
  Training reads one random crop per batch (an augmentation); evaluation averages the class probabilities (kNN: the
  L2-normalised features) of ``views`` crops spread evenly over the clip, as multi-clip video evaluation averages
  clips of one video. ``view_average=logits`` averages the head's logits instead and scores their softmax (sigmoid:
  multi-label), as DeepAVFusion's dense evaluation does (``eval_finetune.py``: 10 clips spread evenly over the
  video, their predictions averaged before the accuracy or mAP).
* Regularisers of training (off by default; DeepAVFusion's fine-tuning, ``eval_finetune.py``, uses both):
  ``label_smoothing`` eps turns the targets into ``(1 - eps) y + eps / K`` (multi-label: per class), and ``mixup``
  alpha draws one ``lam ~ Beta(alpha, alpha)`` per clip and mixes every segment input (frames, log-mels,
  precomputed features) and the (smoothed) targets with those of the batch flipped: ``lam x_b + (1 - lam)
  x_{B-1-b}`` (Zhang et al., ICLR 2018; the seed's ``AVMixup``: the same lam for both modalities, targets smoothed
  before mixing). Frames are mixed as float pixel values; mixing before the backbone's normalisation equals mixing
  after it, as the weights sum to 1.
* Targets: ``labels`` () class indices (cross-entropy; top-1 and top-5 accuracy, ``top1`` selects), or with
  ``task.multilabel`` ``labels (K,)`` multi-hot (binary cross-entropy per class; ``map`` selects, ``auc`` too), scored
  by ``avlearn.metrics.classification``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from avlearn.data.pipelines import Splits
from avlearn.data.pipelines.clips import benchmark_part, clip_splits
from avlearn.errors import ConfigError
from avlearn.layers.knn import FEATURES, clip_feature, knn_votes, labelled_features, normalised_mean
from avlearn.methods.base import AVFeatures, check_pairing
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, MethodLayerIds, add_method_losses
from avlearn.viz.classification import CLASSIFY

MODES = ("linear", "finetune", "knn")
VIEW_AVERAGES = ("probs", "logits")
SEGMENT_INPUTS = ("frames", "audio", "visual_features", "audio_features")  # batch entries laid out (B, S, ...)


@dataclass
class ClassifyConfig:
    """Schema of ``task/classify.yaml``."""

    name: str = "classify"
    mode: str = "finetune"  # linear | finetune | knn
    features: str = "concat"  # audio | visual | concat | fused
    multilabel: bool = False  # labels (K,) multi-hot: BCE, mAP / AUC
    dropout: float = 0.0  # finetune head
    views: int = 1  # evaluation: crops averaged per clip
    view_segments: int = 0  # segments per crop (0: the whole clip)
    view_average: str = "probs"  # probs | logits: what evaluation averages over the views
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_batch: int = 64  # clips per forward while the memory bank is built
    mixup: float = 0.0  # Beta(alpha, alpha) of the per-clip mixing weight; 0: off
    label_smoothing: float = 0.0  # eps of the smoothed targets; 0: off


def _check(cfg: ClassifyConfig, segments: int) -> None:
    """One-line ConfigErrors for invalid keys."""
    if cfg.mode not in MODES:
        raise ConfigError(f"task.mode={cfg.mode!r}: expected one of {', '.join(MODES)}")
    if cfg.features not in FEATURES:
        raise ConfigError(f"task.features={cfg.features!r}: expected one of {', '.join(FEATURES)}")
    if cfg.views < 1 or not 0 <= cfg.view_segments <= segments:
        raise ConfigError(f"task.views={cfg.views}, task.view_segments={cfg.view_segments}: expected views >= 1 and "
                          f"0 <= view_segments <= {segments} (the clip's segments)")  # fmt: skip
    if cfg.views > 1 and cfg.view_segments in (0, segments):
        raise ConfigError(f"task.views={cfg.views} averages crops: set task.view_segments < {segments}")
    if cfg.view_average not in VIEW_AVERAGES:
        raise ConfigError(f"task.view_average={cfg.view_average!r}: expected one of {', '.join(VIEW_AVERAGES)}")
    if cfg.mode == "knn" and cfg.view_average == "logits":
        raise ConfigError("task.view_average=logits averages a head's logits: task.mode=knn has no head (it averages "
                          "the views' features); set task.view_average=probs")  # fmt: skip
    if cfg.mixup < 0 or not 0 <= cfg.label_smoothing < 1:
        raise ConfigError(f"task.mixup={cfg.mixup}, task.label_smoothing={cfg.label_smoothing}: expected mixup >= 0 "
                          "(0: off) and label_smoothing in [0, 1)")  # fmt: skip
    if cfg.mode == "knn" and (cfg.mixup or cfg.label_smoothing):
        raise ConfigError("task.mixup / task.label_smoothing regularise training: task.mode=knn does not train")
    if cfg.mode == "knn" and (cfg.knn_k < 1 or cfg.knn_temperature <= 0 or cfg.knn_batch < 1):
        raise ConfigError(f"task.knn_k={cfg.knn_k}, task.knn_temperature={cfg.knn_temperature}, task.knn_batch="
                          f"{cfg.knn_batch}: expected k >= 1, a temperature > 0 and a batch >= 1")  # fmt: skip


def crop(batch: dict, start: int, length: int) -> dict:
    """``batch`` with its segment inputs (``SEGMENT_INPUTS``, (B, S, ...)) cut to segments ``[start, start+length)``."""
    return {k: v[:, start : start + length] if k in SEGMENT_INPUTS else v for k, v in batch.items()}


def soft_targets(target: torch.Tensor, num_classes: int, smoothing: float, multilabel: bool) -> torch.Tensor:
    """(B,) class indices or (B, K) multi-hot -> (B, K) float targets smoothed to ``(1 - eps) y + eps / K``."""
    onehot = target.float() if multilabel else F.one_hot(target, num_classes).float()  # (B, K)
    return onehot * (1 - smoothing) + smoothing / num_classes


def mixup(batch: dict, lam: torch.Tensor) -> dict:
    """``batch`` with its segment inputs (``SEGMENT_INPUTS``, (B, S, ...); uint8 frames become float) mixed with
    the batch flipped, ``lam (B,)`` the weight of each clip's own input."""
    return {k: mix(v.float(), lam) if k in SEGMENT_INPUTS else v for k, v in batch.items()}


def mix(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam_b x_b + (1 - lam_b) x_{B-1-b}`` for ``x (B, ...)``, ``lam (B,)``."""
    lam = lam.to(x.dtype).view(-1, *(1,) * (x.ndim - 1))  # (B, 1, ...)
    return lam * x + (1 - lam) * x.flip(0)


def view_starts(segments: int, length: int, views: int) -> list[int]:
    """First segments of ``views`` crops of ``length`` segments spread evenly over ``segments``."""
    return torch.linspace(0, segments - length, views).round().long().tolist()


def classify_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """The clips of ``data.benchmark`` (``avlearn.data.pipelines.clips``), with the training split kept in the
    dataset facts as kNN's memory bank."""
    splits = clip_splits(cfg, audio_pre)
    _check_targets(cfg, splits.train)
    info = ClipInfo(splits.info.class_names, splits.info.segments, memory=splits.train)
    return replace(splits, info=info)


def _check_targets(cfg: DictConfig, train: Any) -> None:
    """A one-line error, not a ``KeyError`` at the first batch, when ``task.multilabel`` misfits the targets."""
    targets, key = getattr(train, "targets", None), target_key(cfg.task)
    if targets is not None and key not in targets:
        other = "false" if cfg.task.multilabel else "true"
        raise ConfigError(
            f"task.multilabel={str(cfg.task.multilabel).lower()}: data.benchmark={cfg.data.benchmark} "
            f"has no '{key}' targets (it has {', '.join(sorted(targets))}); set task.multilabel={other}"
        )


@dataclass(frozen=True)
class ClipInfo(DatasetInfo):
    """``DatasetInfo`` plus the decoded training split, which kNN evaluation uses as its memory bank."""

    memory: Any = field(default=None, compare=False, repr=False)


def target_key(cfg: ClassifyConfig) -> str:
    """The batch key of the targets: ``labels`` (K,) multi-hot, or ``label`` () a class index."""
    return "labels" if cfg.multilabel else "label"


@TASKS.register("classify", pipeline=classify_splits, synth_part=benchmark_part, report=CLASSIFY)
class ClassifyTask(MethodLayerIds, nn.Module):
    """Clip classification by a linear probe, fine-tuning or kNN: batch ``frames``, ``audio``, ``labels`` () or (K,)."""

    Config = ClassifyConfig
    needs = ()  # depends on task.features: checked in __init__ (still at build time)
    primary_metric = "top1"

    def __init__(self, cfg: ClassifyConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        _check(cfg, info.segments)
        self.needs = FEATURES[cfg.features]
        check_pairing(getattr(method.Config, "name", type(method).__name__), method.produces, cfg.name, self.needs)
        self.cfg, self.info, self.method = cfg, info, method
        self.primary_metric = "map" if cfg.multilabel else "top1"
        self.length = cfg.view_segments or info.segments
        width = sum(method.dims[f] for f in self.needs)
        k = info.num_classes
        if cfg.mode == "linear":
            method.requires_grad_(False)
            self.head = nn.Sequential(nn.BatchNorm1d(width, affine=False), nn.Linear(width, k))
        elif cfg.mode == "finetune":
            self.head = nn.Sequential(nn.LayerNorm(width), nn.Dropout(cfg.dropout), nn.Linear(width, k))
        self._bank: tuple[torch.Tensor, torch.Tensor] | None = None  # kNN: (M, C) features, (M, K) label votes

    def train(self, mode: bool = True) -> ClassifyTask:
        """As ``nn.Module.train``, but a linear probe's method stays in eval mode."""
        super().train(mode)
        if self.cfg.mode == "linear":
            self.method.eval()
        return self

    def pooled(self, feats: AVFeatures) -> torch.Tensor:
        """(B, C) the clip feature of ``task.features``: the segment mean (and token mean for ``fused``)."""
        return clip_feature(feats, self.cfg.features)

    def features(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, C) clip features and the method's own loss terms; the method runs without gradient when frozen."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.mode == "finetune"):
            feats = self.method(batch)
            return self.pooled(feats), feats.losses

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.cfg.mode == "knn":
            raise ConfigError("task.mode=knn does not train: set train.epochs=0 train.checkpoint=false (and "
                              "train.init_from=<weights of the method>)")  # fmt: skip
        start = int(torch.randint(self.info.segments - self.length + 1, ()))  # one random crop per batch
        batch, target = self.regularised(crop(batch, start, self.length))
        pooled, losses = self.features(batch)
        logits = self.head(pooled)  # (B, K)
        if self.cfg.multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
        else:
            loss = F.cross_entropy(logits, target.to(logits.dtype) if target.is_floating_point() else target)
        return add_method_losses({"loss": loss}, losses if self.cfg.mode == "finetune" else {})

    def regularised(self, batch: dict) -> tuple[dict, torch.Tensor]:
        """The training batch and its targets after ``task.label_smoothing`` and ``task.mixup``: (B,) class indices
        or (B, K) multi-hot when both are off, else (B, K) soft targets."""
        target = batch[target_key(self.cfg)]
        if not (self.cfg.mixup or self.cfg.label_smoothing):
            return batch, target
        target = soft_targets(target, self.info.num_classes, self.cfg.label_smoothing, self.cfg.multilabel)
        if not self.cfg.mixup:
            return batch, target
        lam = torch.distributions.Beta(self.cfg.mixup, self.cfg.mixup).sample(target.shape[:1]).to(target.device)
        return mixup(batch, lam), mix(target, lam)

    def embed(self, batch: dict) -> torch.Tensor:
        """(B, C) L2-normalised clip features, averaged over the evaluation views and normalised again."""
        starts = view_starts(self.info.segments, self.length, self.cfg.views)
        return normalised_mean([self.features(crop(batch, s, self.length))[0] for s in starts])

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid() if self.cfg.multilabel else logits.float().softmax(dim=-1)

    def average_views(self, logits: torch.Tensor) -> torch.Tensor:
        """(V, B, K) logits of the views -> (B, K) probabilities: the mean of the views' probabilities, or with
        ``view_average=logits`` the probabilities of their mean logits."""
        if self.cfg.view_average == "logits":
            return self._probs(logits.mean(dim=0))
        return self._probs(logits).mean(dim=0)

    @torch.no_grad()
    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """``probs (B, K)``: class probabilities averaged over the views (``view_average=logits``: the probabilities of
        the averaged logits; kNN: normalised votes); ``clip_labels (B,)`` their argmax."""
        if self.cfg.mode == "knn":
            probs = self.knn_votes(self.embed(batch))
        else:
            views = view_starts(self.info.segments, self.length, self.cfg.views)
            logits = torch.stack([self.head(self.features(crop(batch, s, self.length))[0]) for s in views])  # (V,B,K)
            probs = self.average_views(logits)
        return {"clip_labels": probs.argmax(dim=-1), "probs": probs}

    def knn_votes(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, C) normalised features -> (B, K) temperature-weighted votes of the k nearest training clips, summing
        to 1 per row (multi-label: each neighbour votes for each of its classes)."""
        return knn_votes(queries, *self.memory_bank(), self.cfg.knn_k, self.cfg.knn_temperature)

    @torch.no_grad()
    def memory_bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, C) features and (M, K) one- or multi-hot labels of the training split, computed once (the method is
        frozen in kNN mode)."""
        if self._bank is None:
            memory = getattr(self.info, "memory", None)
            if memory is None:
                raise ConfigError("task.mode=knn needs the training split as its memory bank: evaluate with the "
                                  "task's data pipeline (avlearn train / avlearn eval), not a lone clip")  # fmt: skip
            device = next(self.method.parameters()).device
            self._bank = labelled_features(self.embed, memory, self.cfg.knn_batch, target_key(self.cfg),
                                           self.info.num_classes, device)  # fmt: skip
        return self._bank

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Top-1 / top-5 accuracy, or (multi-label) mAP and AUC, in percent (``avlearn.metrics.classification``)."""
        from avlearn.metrics.classification import multilabel_scores, topk_accuracy

        if self.cfg.multilabel:
            return {
                k: v
                for k, v in multilabel_scores(preds["probs"], targets[target_key(self.cfg)]).items()
                if v is not None
            }
        ks = (1, 5) if self.info.num_classes >= 5 else (1,)
        return topk_accuracy(preds["probs"], targets[target_key(self.cfg)], ks)
