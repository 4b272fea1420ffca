"""Cross-Modal Adaptation's few-shot protocol (Lin et al., CVPR 2023) on cached clip embeddings.

For each number of shots K and each seed: K training samples per class drawn from the train split and min(K, 4) per
class from the validation split (CoOp's few-shot split, ``avlearn.data.samplers.few_shot_split``), the whole
(learning rate, weight decay, batch size) grid trained (every shots x seed split's grid in one stack:
``avlearn.methods.cma.grid.train_grids``), the configuration selected on the few-shot validation samples, its test
accuracy; then the mean and population standard deviation over seeds (the seed's ``eval.py``), one row per K, as the
paper's tables.

The classified modality (``target``: ``visual`` or ``audio``) is independent of the extra training samples
(``extra``: any of ``text``, ``visual``, ``audio`` but the target), so the paper's settings are all one switch:

* image few-shot, cross-modal: target ``visual``, extra ``[text]`` (the class prompts' embeddings);
* ImageNet-ESC's four modes (``imagenet_esc.py``): ``linear_prob`` (extra none: ``uni_modal``, ``random`` init),
  ``audiovisual_linear_prob`` (extra ``[visual]`` for the audio task), ``plustext_linear_prob`` (``[text]``) and
  ``allmodal_linear_prob`` (``[visual, text]``), each with the zero-shot init: the per-class mean of the extra pool.

Extra samples of another modality are ``extra_shots`` per class of the train split, drawn independently of the
target's few-shot samples (seed ``seed + EXTRA_SEED``), as the seed's other-modality one-shot samples come from other
images / clips than the target's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from avlearn.data.samplers import few_shot_indices, few_shot_split
from avlearn.errors import ConfigError, DataError
from avlearn.methods.cma.grid import GridConfig, GridResult, seed_summary, train_grids
from avlearn.methods.cma.heads import HeadConfig, zero_shot_weights
from avlearn.methods.cma.training import FewShotFeatures, ScheduleConfig

MODALITIES = ("visual", "audio")
EXTRA_SEED = 1000  # offset of the draw of another modality's extra samples from the target's draw


@dataclass
class SplitFeatures:
    """One modality's clip embeddings (d wide) and labels over a dataset's train / val / test splits."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor


@dataclass
class ProtocolFeatures:
    """Everything the protocol reads: per modality its ``SplitFeatures``, and the class prompts' embeddings
    ``text`` (P, d) with ``text_labels`` (P,) (one or more templates per class). All in one d-wide space."""

    modalities: dict[str, SplitFeatures]
    text: torch.Tensor
    text_labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class ProtocolConfig:
    """What to classify, with which extra samples, over which shots and seeds."""

    target: str = "visual"
    extra: list[str] = field(default_factory=lambda: ["text"])
    extra_shots: int = 1
    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])

    def __post_init__(self) -> None:
        if self.target not in MODALITIES:
            raise ConfigError(f"task.target={self.target!r}: expected one of {', '.join(MODALITIES)}")
        allowed = ("text", *(m for m in MODALITIES if m != self.target))
        if any(e not in allowed for e in self.extra) or len(set(self.extra)) != len(self.extra):
            raise ConfigError(f"task.extra={list(self.extra)}: expected distinct names among {', '.join(allowed)} "
                              f"(the target {self.target!r} excluded)")  # fmt: skip
        if not self.shots or any(k < 1 for k in self.shots) or not self.seeds:
            raise ConfigError(f"task.shots={list(self.shots)} / task.seeds={list(self.seeds)}: expected non-empty "
                              "lists, shots >= 1")  # fmt: skip
        if self.extra_shots < 1:
            raise ConfigError(f"task.extra_shots={self.extra_shots}: expected an integer >= 1")


def _pick(x: torch.Tensor, labels: torch.Tensor, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.tensor(positions, dtype=torch.long)
    return x[index], labels[index]


def extra_pool(feats: ProtocolFeatures, cfg: ProtocolConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The extra samples (M, d) and labels (M,): the class prompts and / or ``extra_shots`` train clips per class of
    each other modality (its own draw), in ``cfg.extra``'s order; the prompts when ``cfg.extra`` is empty. A
    ``uni_modal`` head never trains on them: their per-class mean is its zero-shot init and WiSE-FT's zero-shot head."""
    parts = []
    for name in cfg.extra:
        if name == "text":
            parts.append((feats.text, feats.text_labels))
            continue
        pool = feats.modalities[name]
        drawn = few_shot_indices(pool.train_labels.tolist(), cfg.extra_shots, seed + EXTRA_SEED)
        parts.append(_pick(pool.train, pool.train_labels, drawn))
    if not parts:  # no extra samples: the prompts still give the zero-shot init and WiSE-FT's zero-shot head
        return feats.text, feats.text_labels
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def few_shot_features(feats: ProtocolFeatures, cfg: ProtocolConfig, shots: int, seed: int) -> FewShotFeatures:
    """One few-shot split of the target modality: K train and min(K, 4) val samples per class, the whole test
    split, and the extra pool as the second (``text``) stream of the head's batches."""
    pool = feats.modalities[cfg.target]
    split = few_shot_split(pool.train_labels.tolist(), pool.val_labels.tolist(), shots, seed)
    train, train_labels = _pick(pool.train, pool.train_labels, split["train"])
    val, val_labels = _pick(pool.val, pool.val_labels, split["val"])
    extra, extra_labels = extra_pool(feats, cfg, seed)
    return FewShotFeatures(train, train_labels, extra, extra_labels, val, val_labels, feats.num_classes,
                           pool.test, pool.test_labels)  # fmt: skip


def zero_shot_accuracy(feats: ProtocolFeatures, target: str, split: str = "test") -> float:
    """Accuracy (fraction) of the zero-shot classifier (the class prompts' mean embedding per class) on ``split``
    of the ``target`` modality: the argmax of the cosine similarity."""
    pool = feats.modalities[target]
    weights = zero_shot_weights(feats.text, feats.text_labels, feats.num_classes)  # (C, d)
    x, labels = getattr(pool, split), getattr(pool, f"{split}_labels")
    return float((F.normalize(x, dim=-1) @ weights.T).argmax(dim=-1).eq(labels).double().mean())


@dataclass
class ShotResult:
    """One row of the table: K shots, one ``GridResult`` per seed and their ``seed_summary``."""

    shots: int
    results: list[GridResult]
    summary: dict[str, tuple[float, float]]


def run_protocol(
    feats: ProtocolFeatures, cfg: ProtocolConfig, head: HeadConfig, sched: ScheduleConfig, grid: GridConfig
) -> list[ShotResult]:
    """Every (shots, seed): a few-shot split; the whole grid of every split trained at once (``train_grids``), the
    per-seed selection; summarised per shots over seeds."""
    if cfg.target not in feats.modalities or any(e != "text" and e not in feats.modalities for e in cfg.extra):
        raise DataError(f"cma: the features hold {', '.join(feats.modalities)}; task.target={cfg.target!r} and "
                        f"task.extra={list(cfg.extra)} need more")  # fmt: skip
    if head.modality == "cross_modal" and not cfg.extra:
        raise ConfigError("task.extra=[]: a cross_modal head needs extra samples; expected e.g. [text], or "
                          "task.modality=uni_modal")  # fmt: skip
    runs = [(k, seed) for k in cfg.shots for seed in cfg.seeds]
    results = train_grids([(few_shot_features(feats, cfg, k, seed), seed) for k, seed in runs], head, sched, grid)
    per_shots = len(cfg.seeds)
    rows = []
    for i, k in enumerate(cfg.shots):
        row = results[i * per_shots : (i + 1) * per_shots]  # this K's seeds
        rows.append(ShotResult(k, row, seed_summary(row)))
    return rows


def format_table(rows: Sequence[ShotResult], title: str, zero_shot: float | None = None) -> str:
    """A markdown table like the paper's: per shots, test accuracy (percent) mean +- std over seeds, WiSE-FT's, the
    selected configurations' validation accuracy and best step."""
    lines = [f"{title}", "", "| shots | test acc. | WiSE-FT test acc. | val acc. (selected) | best step | seeds |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    if zero_shot is not None:
        lines.append(f"| 0 (zero-shot) | {100 * zero_shot:.2f} | | | | |")
    for row in rows:
        s = row.summary
        pct = {k: f"{100 * s[k][0]:.2f} +- {100 * s[k][1]:.2f}" for k in ("test_acc", "wise_acc", "val_acc")}
        lines.append(f"| {row.shots} | {pct['test_acc']} | {pct['wise_acc']} | {pct['val_acc']} | "
                     f"{s['best_step'][0]:.0f} +- {s['best_step'][1]:.0f} | {len(row.results)} |")  # fmt: skip
    return "\n".join(lines)
