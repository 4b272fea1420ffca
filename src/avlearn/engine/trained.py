"""A finished run back as objects: its config and its task with the best checkpoint's weights (``avlearn eval`` and
``avlearn predict`` start here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from avlearn.build import build_task
from avlearn.engine.checkpoint import load_checkpoint
from avlearn.errors import ConfigError


def build_trained(run_dir: str | Path, device: Any = "cpu") -> tuple[DictConfig, nn.Module, dict]:
    """A trained run's config, its task with the best checkpoint's weights (eval mode), and the checkpoint meta.

    Reads ``RUN/config.yaml`` and ``RUN/checkpoint/`` (written by ``avlearn train``); the class names come from the
    checkpoint, so no dataset is needed.
    """
    from avlearn import register_all
    from avlearn.tasks.base import DatasetInfo

    register_all()
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: no config.yaml; pass a run folder made by `avlearn train` or `avlearn demo`")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    tensors, meta = load_checkpoint(run_dir / "checkpoint")
    task = build_task(cfg, DatasetInfo(tuple(meta["class_names"])))
    task.load_state_dict(tensors["model"])
    return cfg, task.to(device).eval(), meta
