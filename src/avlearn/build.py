"""From a run config to objects: the dataset splits and the task (backbones -> method -> task head), fresh or trained.

Nothing here trains; it only looks names up in the registries and wires the pieces together.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from avlearn.errors import ConfigError
from avlearn.registry import BACKBONES, DATASETS, METHODS, TASKS


def cache_dir() -> Path:
    """``$AVLEARN_CACHE`` or ``~/.cache/avlearn``."""
    return Path(os.environ.get("AVLEARN_CACHE", Path.home() / ".cache" / "avlearn")).expanduser()


def synth_config(data: DictConfig):  # noqa: ANN201 (SynthConfig, imported lazily)
    """The AVSynth parameters of a ``data`` config."""
    from avlearn.data.synth import SynthConfig

    return SynthConfig(
        clips=data.clips, seed=data.synth_seed, num_classes=data.num_classes, size=data.size,
        seconds=data.seconds, fps=data.fps, sample_rate=data.sample_rate, avs_clips=data.avs_clips,
        avqa_clips=data.avqa_clips,
    )  # fmt: skip


def ensure_avsynth(data: DictConfig) -> Path:
    """The AVSynth folder for ``data``: generated on first use (with a progress bar), reused after."""
    from tqdm import tqdm

    from avlearn.data.synth import generate, read_meta

    cfg = synth_config(data)
    digest = hashlib.sha1(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:10]
    root = Path(data.root).expanduser() if data.root else cache_dir() / f"avsynth-{digest}"
    if read_meta(root) is None:
        total = sum(cfg.count(f) for f in ("events", "s4", "ms3", "avqa"))
        print(f"generating AVSynth ({total} clips) in {root}", flush=True)
        with tqdm(total=total, desc="AVSynth", unit="clip", dynamic_ncols=True) as bar:
            generate(root, cfg, workers=data.workers, progress=bar.update)
    else:
        generate(root, cfg)  # checks that the folder was made with these parameters
    return root


@dataclass
class Splits:
    """Decoded train/val/test data of one task, and the dataset facts the head needs."""

    train: Any
    val: Any
    test: Any
    info: Any
    root: Path


def _few_shot(items: list, shots: int, seed: int, background: int) -> list:
    """``shots`` clips per class with the shared deterministic sampler; a clip's class is its first event segment."""
    from avlearn.data.samplers import few_shot_indices

    classes = [int(labels[labels != background][0]) if (labels != background).any() else background
               for _, _, labels in items]  # fmt: skip
    return [items[i] for i in few_shot_indices(classes, shots, seed)]


def build_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """Read the task's dataset (AVE layout for task=ave) and decode each split into tensors."""
    from avlearn.data.segments import decode_segments

    if cfg.task.name != "ave":
        raise ConfigError(f"task '{cfg.task.name}' has no data pipeline yet; available: ave")
    root = ensure_avsynth(cfg.data) if cfg.data.name == "avsynth" else Path(cfg.data.root or "")
    if cfg.data.name != "avsynth" and not root.is_dir():
        raise ConfigError(f"data.root={cfg.data.root!r} is not a folder; point it at the AVE dataset root")
    reader = DATASETS.get("ave")
    splits = {s: reader(root, s) for s in ("train", "val", "test")}
    items = {s: d.items for s, d in splits.items()}
    if cfg.shots > 0:
        items["train"] = _few_shot(items["train"], cfg.shots, cfg.seed, splits["train"].info.num_classes)
    decoded = {
        s: decode_segments(items[s], cfg.data.frame_size, audio_pre, workers=cfg.data.workers, desc=f"decoding {s}")
        for s in ("train", "val", "test")
    }
    return Splits(decoded["train"], decoded["val"], decoded["test"], splits["train"].info, root)


def _backbone(name: str, data: DictConfig, pretrained: str | None) -> nn.Module:
    """Build a registered backbone, passing the data settings its builder accepts."""
    builder = BACKBONES.get(name)
    offered = {"size": data.frame_size, "sample_rate": data.sample_rate, "n_mels": data.n_mels, "hop_ms": data.hop_ms,
               "pretrained": pretrained}  # fmt: skip
    accepted = inspect.signature(builder).parameters
    return builder(**{k: v for k, v in offered.items() if k in accepted and v is not None})


def _schema_instance(cls: type, node: DictConfig) -> Any:
    return cls(**OmegaConf.to_container(node, resolve=True))


def build_task(cfg: DictConfig, info: Any) -> nn.Module:
    """Backbones -> method -> task, with the pairing of method and task checked."""
    from avlearn.methods.base import check_pairing

    visual = _backbone(cfg.backbone.visual, cfg.data, cfg.backbone.pretrained).freeze(cfg.backbone.freeze)
    audio = _backbone(cfg.backbone.audio, cfg.data, cfg.backbone.pretrained).freeze(cfg.backbone.freeze)
    method_cls, task_cls = METHODS.get(cfg.method.name), TASKS.get(cfg.task.name)
    check_pairing(cfg.method.name, method_cls.produces, cfg.task.name, task_cls.needs)
    method = method_cls(_schema_instance(method_cls.Config, cfg.method), visual, audio)
    return task_cls(_schema_instance(task_cls.Config, cfg.task), method, info)


def audio_preprocess(cfg: DictConfig) -> Any:
    """The audio input settings of the configured audio backbone (built once, cheaply, to read them)."""
    return _backbone(cfg.backbone.audio, cfg.data, None).preprocess


def build_trained(run_dir: str | Path, device: Any = "cpu") -> tuple[DictConfig, nn.Module, dict]:
    """A trained run's config, its task with the best checkpoint's weights (eval mode), and the checkpoint meta.

    Reads ``RUN/config.yaml`` and ``RUN/checkpoint/`` (written by ``avlearn train``); the class names come from the
    checkpoint, so no dataset is needed.
    """
    from avlearn import register_all
    from avlearn.engine.checkpoint import load_checkpoint
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
