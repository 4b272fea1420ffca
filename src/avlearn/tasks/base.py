"""What every task shares: the Task contract, the dataset facts a head needs, and the helpers that apply the
method contract (``avlearn.methods.base``) the same way in every task.

A task is an ``nn.Module`` that owns a method and a head (protocol ``Task`` below). Its head is sized at
construction from ``method.dims`` (the widths of the ``AVFeatures`` fields it ``needs``), never from a tower's
attributes. ``DatasetInfo`` is defined with the data schema (``avlearn.data.schema``) and imported here, where tasks
look for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from avlearn.data.schema import DatasetInfo
from avlearn.errors import ConfigError, DataError
from avlearn.methods.base import AVFeatures

__all__ = [
    "DatasetInfo",
    "EvaluationOnly",
    "MethodLayerIds",
    "Task",
    "add_method_losses",
    "paired_segments",
    "pooled_widths",
]


@runtime_checkable
class Task(Protocol):
    """What every registered task defines (an ``nn.Module``; ``avlearn.build.build_task`` builds it).

    Attributes:
        Config: the dataclass schema of its ``task/<name>.yaml``.
        needs: the ``AVFeatures`` fields its head reads; a method that does not produce one of them is refused at
            build time (``avlearn.methods.base.check_pairing``).
        primary_metric: the key of ``score``'s output that selects the best checkpoint and heads the summary.
        lower_is_better: optional, False when absent; True for a primary metric to minimise (a loss).

    Methods:
        __init__(cfg, method, info): the head sized from ``method.dims`` and ``info`` (``DatasetInfo``).
        forward(batch) -> dict: the training step: a scalar ``"loss"`` plus detached terms to log (``"loss_*"``),
            the method's own loss terms included (``add_method_losses``). Evaluation-only tasks (zero-shot) raise a
            ConfigError saying how to run them.
        predict(batch) -> dict: predictions per batch row (tensors, or lists of strings or other objects).
        score(preds, targets) -> dict[str, float]: the benchmark's official scorer on whole-split predictions.
    """

    Config: ClassVar[type]
    needs: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]: ...

    def predict(self, batch: dict[str, Any]) -> dict[str, Any]: ...

    def score(self, preds: dict[str, Any], targets: dict[str, Any]) -> dict[str, float]: ...


class MethodLayerIds:
    """For a task with a ``method``: the method's layer ids passed on for layer-wise lr decay (``train.layer_decay``,
    which reads the model's ``layer_id(name)`` and ``num_layers()``), the task's own parameters (its head) last."""

    method: nn.Module

    def num_layers(self) -> int:
        """The method's ``num_layers()``; a ConfigError for a method without layer ids."""
        if not all(callable(getattr(self.method, attr, None)) for attr in ("layer_id", "num_layers")):
            raise ConfigError(f"train.layer_decay needs a method with layer_id(name) and num_layers(); "
                              f"{type(self.method).__name__} has none (set train.layer_decay=1.0)")  # fmt: skip
        return self.method.num_layers()

    def layer_id(self, name: str) -> int:
        """The method's layer of its own parameters (``method.<name>``); the head is last (``num_layers() + 1``)."""
        if name.startswith("method."):
            return self.method.layer_id(name.removeprefix("method."))
        return self.num_layers() + 1


def pooled_widths(method: nn.Module) -> tuple[int, int]:
    """Widths ``(Ca, Cv)`` of the method's ``audio_pooled`` and ``visual_pooled`` features (from ``method.dims``)."""
    return method.dims["audio_pooled"], method.dims["visual_pooled"]


def paired_segments(feats: AVFeatures, task: str) -> AVFeatures:
    """``feats``, checked for a head that pairs audio and visual segment by segment: ``S_a == S_v``."""
    audio = feats.audio_pooled if feats.audio_pooled is not None else feats.audio
    visual = feats.visual_pooled if feats.visual_pooled is not None else feats.visual
    if audio is not None and visual is not None and audio.shape[1] != visual.shape[1]:
        raise DataError(f"task '{task}' pairs audio and visual segments one to one, but the batch has "
                        f"S_a={audio.shape[1]} audio and S_v={visual.shape[1]} visual segments")  # fmt: skip
    return feats


def add_method_losses(out: dict[str, torch.Tensor], losses: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A task's training output with the method's own loss terms (``AVFeatures.losses``): their sum is added to
    ``out["loss"]`` and each is reported, detached, as ``"loss_<name>"`` for the engine to log."""
    if not losses:
        return out
    clash = [name for name in losses if f"loss_{name}" in out]
    if clash:
        raise ValueError(f"method loss terms {', '.join(clash)} clash with the task's own loss_* outputs")
    terms = {f"loss_{name}": value.detach() for name, value in losses.items()}
    return {**out, "loss": out["loss"] + sum(losses.values()), **terms}


class EvaluationOnly:
    """Mixin of the zero-shot tasks: nothing to train; the weights come from ``train.init_from``."""

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise ConfigError(f"task={self.cfg.name} does not train: set train.epochs=0 and train.init_from=<weights>")
