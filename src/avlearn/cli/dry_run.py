"""``avlearn train --dry-run``: the resolved config and the optimizer's parameter groups, with nothing heavy built.

No dataset is decoded and AVSynth is not generated: the task head is sized from cheap dataset facts
(``dataset_info``), and the model is built on PyTorch's ``meta`` device (shapes only, no memory, no initialisation),
or on the CPU when it loads pretrained weights (a text tower, ``backbone.pretrained``), which ``meta`` cannot hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from avlearn.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from avlearn.data.schema import DatasetInfo

# Tasks whose real dataset is LLP (AVVP) or AVE: their classes come from the annotation files under data.root (the
# benchmark's own classes without a data.root). AVSynth tasks take AVSynth's class names for data.num_classes.
LLP_TASKS = ("avvp", "fewshot_llp_cls", "zeroshot_llp_cls")
AVE_TASKS = ("ave", "ave_cls", "fewshot", "fewshot_ave_cls", "zeroshot_ave", "zeroshot_ave_cls")


def _real_classes(task: str, root: str | None) -> tuple[str, ...]:
    """The class names of the real dataset of ``task`` read from its annotation files under ``root`` (if any)."""
    from avlearn.data.datasets import ave, llp
    from avlearn.data.datasets.base import annotation_folder

    if task in LLP_TASKS:
        folder = annotation_folder(Path(root), "LLP", llp.SPLIT_FILES.values()) if root else None
        return llp.llp_classes(folder) if folder else llp.AVVP_CLASSES
    if task in AVE_TASKS:
        folder = annotation_folder(Path(root), "AVE", ave.SPLIT_FILES.values()) if root else None
        return ave.read_classes(folder) if folder else ave.AVE_CATEGORIES
    known = ", ".join(AVE_TASKS + LLP_TASKS)
    raise ConfigError(f"--dry-run reads real-dataset classes for {known} only, not task={task}; use data=avsynth")


def dataset_info(cfg: DictConfig) -> DatasetInfo:
    """The dataset facts the task head is sized by, read without decoding or generating any data.

    AVSBench: 5 frames and no classes. AVSynth: its class names for ``data.num_classes``. A real dataset: the classes
    of its annotation files under ``data.root`` (the benchmark's own classes when there is no ``data.root``). AVQA's
    head is sized by the answer vocabulary, which only the data holds: not supported.
    """
    from avlearn.data.pipelines.avs import FRAMES
    from avlearn.data.schema import DatasetInfo
    from avlearn.data.synth import class_table
    from avlearn.registry import TASKS

    part = TASKS.spec(cfg.task.name).part(cfg.data)
    if part == "avs":
        return DatasetInfo((), segments=FRAMES)
    if part == "avqa":
        raise ConfigError(f"--dry-run cannot size task={cfg.task.name}: its answer vocabulary is read from the data")
    if cfg.data.name == "avsynth":
        return DatasetInfo(tuple(c.name for c in class_table(cfg.data.num_classes)))
    return DatasetInfo(_real_classes(cfg.task.name, cfg.data.root))


def build_cheaply(cfg: DictConfig, info: DatasetInfo) -> torch.nn.Module:
    """The task of ``cfg`` on the ``meta`` device, or on the CPU when it loads pretrained weights."""
    from avlearn.backbones.base import WeightsNotFoundError
    from avlearn.build import build_task

    try:
        with torch.device("meta"):
            return build_task(cfg, info)
    except WeightsNotFoundError:  # transformers' from_pretrained refuses the meta device; missing weights fail again
        return build_task(cfg, info)


def optimisation(train: DictConfig) -> str:
    """One line: optimizer, rate, weight decay, schedule, length, batch and early stopping of ``train``."""
    schedule = {
        "step": f"step decay every {train.step_every:g} epochs x {train.step_gamma:g}",
        "constant": "constant",
    }.get(train.schedule, f"{train.schedule} decay")
    length = f"{train.steps} steps" if train.steps > 0 else f"{train.epochs} epochs"
    stop = f"early stop after {train.patience} validations without improvement" if train.patience else "no early stop"
    return (
        f"{train.optimizer} lr {train.lr:g} weight decay {train.weight_decay:g}, {train.warmup_epochs:g} warmup epochs "
        f"then {schedule}, {length} of batch {train.batch_size}, {stop}, keep the {train.select} state"
    )


def dry_run(cfg: DictConfig) -> str:
    """The text ``--dry-run`` prints for one run: the resolved config, the model's size and its parameter groups."""
    from omegaconf import OmegaConf

    from avlearn.engine.optim import describe_param_groups, param_groups

    info = dataset_info(cfg)
    task = build_cheaply(cfg, info)
    total = sum(p.numel() for p in task.parameters())
    trained = sum(p.numel() for p in task.parameters() if p.requires_grad)
    groups = param_groups(task, cfg.train)
    return "\n".join([
        OmegaConf.to_yaml(cfg).rstrip(),
        "",
        f"dry run: task={cfg.task.name} method={cfg.method.name} backbone={cfg.backbone.name}, "
        f"{info.num_classes} classes; {total / 1e6:.2f} M parameters, {trained / 1e6:.2f} M trained",
        f"training: {optimisation(cfg.train)}",
        "parameter groups:",
        describe_param_groups(groups),
        "nothing was trained (--dry-run)",
    ])  # fmt: skip
