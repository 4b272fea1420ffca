"""Cross-Modal Adaptation as a run (Lin et al., "Multimodality Helps Unimodality: Cross-Modal Few-Shot Learning with
Multimodal Models", CVPR 2023): few-shot heads on a frozen tri-modal encoder's cached clip embeddings.

``avlearn train task=cma`` (or ``recipe=cma_*``) is not a training run of the engine: the encoder is frozen, so the
run embeds the target dataset's clips once (visual and audio, each in the text space) and its class prompts, then runs
the few-shot protocol (``avlearn.methods.cma.protocol``: for each shots x seed the whole hyper-parameter grid trained
at once, selection on the few-shot validation samples, test accuracy; mean +- std over seeds) and writes the table
to the run folder (``avlearn.cli.cma``). This module holds the run's schema (``task/cma.yaml``), its checked settings
and the one-line refusal when the engine is asked to build it as a model.

The encoder is a ``pretrain_captions`` run (``task.encoder``: its run folder; ``avlearn.tasks.zeroshot``): its
method's pooled segment features, projected into the frozen text tower's space, averaged over the event segments of
a clip; the class prompts are the encoder's prompt template filled per class. The target clips are read by the
zero-shot pipeline (``task.classes``: the evaluated classes, empty = all).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from avlearn.config.schema import choice
from avlearn.data.pipelines.captions import zeroshot_splits
from avlearn.errors import ConfigError
from avlearn.methods.cma.grid import GRIDS, GridConfig
from avlearn.methods.cma.heads import HEADS, INITS, MODALITIES, HeadConfig
from avlearn.methods.cma.protocol import ProtocolConfig
from avlearn.methods.cma.training import ScheduleConfig
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo
from avlearn.viz.reports import AVE_CLS


@dataclass
class CMAConfig:
    """Schema of ``task/cma.yaml``: the feature source, the protocol, the head, the grid and the schedule."""

    name: str = "cma"
    encoder: str = ""  # the frozen encoder: a pretrain_captions run folder (config.yaml + checkpoint/)
    classes: list[str] = field(default_factory=list)  # the target dataset's evaluated classes (empty = all)
    # Protocol (avlearn.methods.cma.protocol).
    target: str = choice("visual", ("visual", "audio"))  # the modality classified
    extra: list[str] = field(default_factory=lambda: ["text"])  # extra training samples: text / the other modality
    extra_shots: int = 1  # clips per class of another modality in ``extra``
    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    # Head (avlearn.methods.cma.heads).
    head: str = choice("linear", HEADS)
    init: str = choice("zeroshot", INITS)
    modality: str = choice("cross_modal", MODALITIES)
    logit: float = 4.60517
    reduction: int = 4
    residual: float = 0.2
    wiseft: float = 0.5
    # Grid: the seed's grid by name; a non-empty list replaces its rates / decays / batch sizes.
    grid: str = choice("linear", tuple(GRIDS))
    lrs: list[float] = field(default_factory=list)
    wds: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    # Schedule (avlearn.methods.cma.training): steps, warm-up, validation every, early stop (0: none), seed quirks.
    iters: int = 12800
    warmup: int = 50
    eval_every: int = 100
    patience: int = 0
    faithful: bool = False


def protocol_settings(cfg: CMAConfig) -> tuple[ProtocolConfig, HeadConfig, ScheduleConfig, GridConfig]:
    """The four settings objects of ``cfg``, each checked (a bad value is a one-line ``ConfigError``)."""
    named = GRIDS[cfg.grid]
    grid = GridConfig(tuple(cfg.lrs) or named.lrs, tuple(cfg.wds) or named.wds,
                      tuple(cfg.batch_sizes) or named.batch_sizes)  # fmt: skip
    head = HeadConfig(cfg.head, cfg.init, cfg.modality, cfg.logit, cfg.reduction, cfg.residual, cfg.wiseft)
    if cfg.patience < 0:
        raise ConfigError(f"task.patience={cfg.patience}: expected 0 (no early stop) or an integer >= 1")
    sched = ScheduleConfig(cfg.iters, cfg.warmup, eval_every=cfg.eval_every, patience=cfg.patience or None,
                           faithful=cfg.faithful)  # fmt: skip
    protocol = ProtocolConfig(cfg.target, list(cfg.extra), cfg.extra_shots, list(cfg.shots), list(cfg.seeds))
    return protocol, head, sched, grid


# The pipeline reads the target clips (AVE layout, ``task.classes``); the report names the chance levels of clip
# classification, for ``avlearn train --help`` and the registry: the run writes its own table instead.
@TASKS.register("cma", pipeline=zeroshot_splits, report=AVE_CLS)
class CMATask(nn.Module):
    """Cross-Modal Adaptation's few-shot protocol on a frozen encoder's clip embeddings (not trained by the engine)."""

    Config = CMAConfig
    needs: tuple[str, ...] = ()
    primary_metric = "accuracy"

    def __init__(self, cfg: CMAConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        raise ConfigError(
            "task=cma is not a model trained by the engine: `avlearn train task=cma "
            "task.encoder=<pretrain_captions run>` runs its few-shot protocol (docs/methods/cma.md)"
        )
