"""Self-supervised pre-training on a method's own losses: masked autoencoding (DeepAVFusion), vector quantisation
and mutual-information terms (CMG), audio-visual-language alignment and masked captioning (VALOR).

The task adds no head and no loss of its own: the training loss is the sum of ``AVFeatures.losses`` (each term logged
as ``loss_<name>``), and validation scores their mean over the split (``loss``, lower is better; the best
validation keeps the checkpoint under ``train.select=best``, while pre-training recipes usually keep the last
state). It reads the caption benchmark ``data.benchmark`` names (``clips.CAPTION_BENCHMARKS``: VALOR-1M, VALOR-32K
and the VALOR-layout caption readers, through ``clips.clip_splits`` and ``caption_text.benchmark_caption_splits``)
or, with any other benchmark, AVE-layout clips with their captions (``caption_text.caption_splits``: AVSynth's
event clips): the media go to the method as ``frames`` / ``audio``, the caption's WordPiece ids as ``text_ids`` /
``text_mask`` (one caption drawn at random per training read). A method that declares no ``loss_terms`` (the
contract, ``avlearn.methods.base``) is refused at build time.

kNN monitoring (``task.knn_every`` N > 0; DeepAVFusion's ``train.py`` probes every 10 epochs): after the first epoch,
every N epochs after it (epochs 1, N + 1, 2N + 1, ... as the seed's ``epoch % eval_freq == 0`` counted from 0) and
the last, the current encoder is probed by the classify task's kNN rule (``avlearn.layers.knn``): the labelled clips
of ``data.benchmark`` (``avlearn.data.pipelines.clips``, read next to the AVE layout's captioned ones; a caption
benchmark has no labels to probe: a one-line ConfigError) give the memory bank
(training split) and the queries (validation split); ``knn_top1`` / ``knn_top5`` go into the epoch's record of the
run's metrics. They are not used for model selection. The features are those a downstream task sees: the method's
``downstream(batch)`` when it has one (a method whose pretraining forward masks its inputs), else its forward, in
eval mode without gradient; ``avlearn train task=classify task.mode=knn`` on the saved checkpoint gives the same
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from avlearn.data.pipelines import Splits
from avlearn.data.pipelines.caption_text import TextInfo, benchmark_caption_splits, caption_splits
from avlearn.data.pipelines.clips import CAPTION_BENCHMARKS, clip_splits
from avlearn.errors import ConfigError
from avlearn.layers.knn import FEATURES, clip_feature, knn_votes, labelled_features, normalised_mean
from avlearn.methods.base import check_pairing
from avlearn.metrics.classification import topk_accuracy
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses
from avlearn.viz.reports import Report


@dataclass
class PretrainConfig:
    """Schema of ``task/pretrain.yaml``."""

    name: str = "pretrain"
    max_words: int = 32  # WordPiece tokens per caption handed to the method, [CLS] and [SEP] included
    knn_every: int = 0  # kNN probe after epoch 1, every knn_every epochs after it and the last; 0: off
    knn_features: str = "fused"  # audio | visual | concat | fused (the classify task's task.features)
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_batch: int = 64  # clips per forward of the probe


@dataclass(frozen=True)
class PretrainInfo(TextInfo):
    """``TextInfo`` plus, with ``task.knn_every``, the labelled clips of the kNN probe (``data.benchmark``'s
    training split as the memory bank, its validation split as the queries) and their class names."""

    knn_memory: Any = field(default=None, compare=False, repr=False)
    knn_queries: Any = field(default=None, compare=False, repr=False)
    knn_classes: tuple[str, ...] = ()


def pretrain_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """The caption benchmark ``data.benchmark`` (``CAPTION_BENCHMARKS``), or the AVE layout's captioned clips
    (``caption_splits``) and, with ``task.knn_every`` > 0, the labelled clips of ``data.benchmark``
    (``clip_splits``) for the kNN probe."""
    if cfg.data.benchmark in CAPTION_BENCHMARKS:
        if cfg.task.knn_every > 0:
            raise ConfigError(
                f"task.knn_every={cfg.task.knn_every}: the probe needs labelled clips, but "
                f"data.benchmark={cfg.data.benchmark} has captions only; set task.knn_every=0"
            )
        return benchmark_caption_splits(cfg, clip_splits(cfg, audio_pre))
    splits = caption_splits(cfg, audio_pre)
    if cfg.task.knn_every <= 0:
        return splits
    labelled = clip_splits(cfg, audio_pre)
    if "label" not in labelled.train.targets:
        raise ConfigError(f"task.knn_every={cfg.task.knn_every}: the probe scores single-label top-1, but "
                          f"data.benchmark={cfg.data.benchmark} is multi-label; set task.knn_every=0")  # fmt: skip
    info = PretrainInfo(**vars(splits.info), knn_memory=labelled.train, knn_queries=labelled.val,
                        knn_classes=tuple(labelled.info.class_names))  # fmt: skip
    return replace(splits, info=info)


def _check(cfg: PretrainConfig) -> None:
    """One-line ConfigErrors for the kNN probe's keys."""
    bad = cfg.knn_k < 1 or cfg.knn_temperature <= 0 or cfg.knn_batch < 1
    if cfg.knn_every < 0 or cfg.knn_features not in FEATURES or bad:
        raise ConfigError(f"task.knn_every={cfg.knn_every}, task.knn_features={cfg.knn_features!r}, task.knn_k="
                          f"{cfg.knn_k}, task.knn_temperature={cfg.knn_temperature}, task.knn_batch={cfg.knn_batch}: "
                          f"expected knn_every >= 0 (0: off), features one of {', '.join(FEATURES)}, k >= 1, "
                          "temperature > 0, batch >= 1")  # fmt: skip


def _no_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    """A method's losses have no task-level chance level (each method documents its own baselines)."""
    return {}


PRETRAIN = Report(_no_chance)


@TASKS.register("pretrain", pipeline=pretrain_splits, synth_part="events", report=PRETRAIN)
class Pretrain(nn.Module):
    """Trains a method on its own loss terms; validation reports their mean (``loss``, lower is better)."""

    Config = PretrainConfig
    needs: ClassVar[tuple[str, ...]] = ()
    primary_metric = "loss"
    lower_is_better = True

    def __init__(self, cfg: PretrainConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        name = getattr(getattr(method, "cfg", None), "name", type(method).__name__)
        if not getattr(method, "loss_terms", ()):
            raise ConfigError(f"task '{cfg.name}' trains on the method's own loss terms, but method '{name}' has none "
                              "(no loss_terms); pick a self-supervised method or another task")  # fmt: skip
        _check(cfg)
        if cfg.knn_every:
            check_pairing(name, method.produces, f"{cfg.name} (task.knn_features)", FEATURES[cfg.knn_features])
        self.cfg, self.method, self.info = cfg, method, info

    @staticmethod
    def _inputs(batch: dict[str, Any]) -> dict[str, Any]:
        """The method's batch: the captions passed as ``text_ids`` / ``text_mask`` (B, L)."""
        return {**batch, "text_ids": batch["caption_ids"], "text_mask": batch["caption_mask"]}

    def _losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The method's loss terms on ``batch``."""
        return self.method(self._inputs(batch)).losses

    def auxiliary(self) -> Any:
        """The method's auxiliary-optimizer request (``engine.auxiliary``; CMG's CLUB estimator), its ``prepare``
        reading the method's batch; None when the method has none."""
        hook = getattr(self.method, "auxiliary", None)
        spec = hook() if callable(hook) else None
        if spec is not None:
            prepare = spec.prepare or (lambda inputs: inputs)
            spec.prepare = lambda batch: prepare(self._inputs(batch))
        return spec

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return add_method_losses({"loss": 0.0}, self._losses(batch))  # no loss of its own: the method's terms

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Each loss term and their sum, the batch's value repeated per clip (B,), so the split mean weights batches
        by their size."""
        losses = self._losses(batch)
        rows = batch["caption_ids"].shape[0]
        out = {f"loss_{k}": v.detach().float().expand(rows) for k, v in losses.items()}
        return {"loss": sum(out.values()), **out}

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, Any]) -> dict[str, float]:
        """The mean of each loss term and of their sum over the split."""
        return {name: float(values.float().mean()) for name, values in preds.items()}

    # ---- kNN monitoring (task.knn_every) --------------------------------------------------------------------
    def monitor(self, epoch: int, last: bool) -> dict[str, float]:
        """After epoch ``epoch`` (from 1; ``last``: the run's final one): ``knn_top1`` / ``knn_top5`` of the kNN
        probe when due (epoch 1, every ``knn_every`` epochs after it, the last), else nothing. Leaves the task in
        eval mode (the engine sets training mode at each epoch's start)."""
        every = self.cfg.knn_every
        if every <= 0 or not (last or (epoch - 1) % every == 0):
            return {}
        return {f"knn_{k}": v for k, v in self.knn_scores().items()}

    def knn_scores(self) -> dict[str, float]:
        """Top-1 (and top-5 with five classes or more) of the kNN probe on the labelled validation clips."""
        probs, labels = self.knn_probs()
        return topk_accuracy(probs, labels, (1, 5) if probs.shape[1] >= 5 else (1,))

    @torch.no_grad()
    def knn_probs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K) the kNN votes for the N labelled validation clips (the training clips as the memory bank) and
        (N,) their classes, on the CPU; the task is left in eval mode."""
        info = self.info
        if getattr(info, "knn_memory", None) is None:
            raise ConfigError("task.knn_every needs the labelled clips of data.benchmark: run it through the pretrain "
                              "task's pipeline (avlearn train)")  # fmt: skip
        self.eval()
        device, k = next(self.method.parameters()).device, len(info.knn_classes)
        bank = labelled_features(self.embed, info.knn_memory, self.cfg.knn_batch, "label", k, device)
        queries, onehot = labelled_features(self.embed, info.knn_queries, self.cfg.knn_batch, "label", k, device)
        probs = knn_votes(queries, *bank, self.cfg.knn_k, self.cfg.knn_temperature)  # (N, K)
        return probs.cpu(), onehot.argmax(dim=-1).cpu()

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, C) the L2-normalised clip feature of ``task.knn_features``, from the method's downstream features."""
        encode = getattr(self.method, "downstream", self.method)
        return normalised_mean([clip_feature(encode(batch), self.cfg.knn_features)])
