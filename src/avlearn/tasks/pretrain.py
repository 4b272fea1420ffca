"""Self-supervised pre-training on a method's own losses: masked autoencoding (DeepAVFusion), vector quantisation
and mutual-information terms (CMG), audio-visual-language alignment and masked captioning (VALOR).

The task adds no head and no loss of its own: the training loss is the sum of ``AVFeatures.losses`` (each term logged
as ``loss_<name>``), and validation scores their mean over the split (``loss``, lower is better; the best
validation keeps the checkpoint under ``train.select=best``, while pre-training recipes usually keep the last
state). It reads AVE-layout clips with their captions (``avlearn.data.pipelines.caption_text``: AVSynth's event
clips): the media go to the method as ``frames`` / ``audio``, the caption's WordPiece ids as ``text_ids`` /
``text_mask`` (one caption drawn at random per training read). A method that declares no ``loss_terms`` (the
contract, ``avlearn.methods.base``) is refused at build time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from avlearn.data.pipelines.caption_text import caption_splits
from avlearn.errors import ConfigError
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses
from avlearn.viz.reports import Report


@dataclass
class PretrainConfig:
    """Schema of ``task/pretrain.yaml``."""

    name: str = "pretrain"
    max_words: int = 32  # WordPiece tokens per caption handed to the method, [CLS] and [SEP] included


def _no_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    """A method's losses have no task-level chance level (each method documents its own baselines)."""
    return {}


PRETRAIN = Report(_no_chance)


@TASKS.register("pretrain", pipeline=caption_splits, synth_part="events", report=PRETRAIN)
class Pretrain(nn.Module):
    """Trains a method on its own loss terms; validation reports their mean (``loss``, lower is better)."""

    Config = PretrainConfig
    needs: ClassVar[tuple[str, ...]] = ()
    primary_metric = "loss"
    lower_is_better = True

    def __init__(self, cfg: PretrainConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        if not getattr(method, "loss_terms", ()):
            name = getattr(getattr(method, "cfg", None), "name", type(method).__name__)
            raise ConfigError(f"task '{cfg.name}' trains on the method's own loss terms, but method '{name}' has none "
                              "(no loss_terms); pick a self-supervised method or another task")  # fmt: skip
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
