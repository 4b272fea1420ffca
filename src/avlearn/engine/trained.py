"""A finished run back as objects: its config and its task with the best checkpoint's weights (``avlearn eval`` and
``avlearn predict`` start here); and a seed's trained checkpoint written as such a run (``avlearn convert
dgsct_ave``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from avlearn.build import build_task
from avlearn.engine.checkpoint import load_checkpoint
from avlearn.errors import ConfigError

if TYPE_CHECKING:
    from avlearn.convert import Conversion


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


def convert_dgsct_ave_run(
    source: str | Path, output: str | Path, class_names: list[str], overrides: list[str] = ()
) -> Conversion:
    """A trained seed AVE checkpoint (``best_<acc>.pt``, a ``MMIL_Net`` state dict) -> an avlearn run folder
    (``config.yaml`` + ``checkpoint/``) that ``avlearn eval`` and ``avlearn predict`` load.

    Args:
        source: The seed checkpoint.
        output: The run folder to write.
        class_names: The K event classes in the seed's label order (background is added as class K).
        overrides: Config overrides after ``recipe=dgsct_ave_paper task.head=cmbs`` (data, or the
            architecture for other sizes).

    Raises:
        DataError: unreadable file, or tensors that do not fit the model the config builds (named).
    """
    from avlearn import register_all
    from avlearn.config import compose_run, save_config
    from avlearn.convert import convert_dgsct_ave_state_dict, load_converted
    from avlearn.engine.checkpoint import load_weights, save_checkpoint
    from avlearn.tasks.base import DatasetInfo

    register_all()
    cfg = compose_run(["recipe=dgsct_ave_paper", "task.head=cmbs", *overrides])
    task = build_task(cfg, DatasetInfo(tuple(class_names)))
    conversion = convert_dgsct_ave_state_dict(load_weights(source))
    load_converted(task, conversion, str(source))
    output = Path(output).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    save_config(cfg, output)
    meta = {"epoch": 0, "step": 0, "converted_from": str(source), "class_names": list(class_names),
            "config": OmegaConf.to_container(cfg, resolve=True)}  # fmt: skip
    save_checkpoint(output / "checkpoint", meta, {"model": task.state_dict()})
    return conversion
