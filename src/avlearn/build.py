"""From a run config to objects: the dataset splits and the task (backbones -> method -> task head), fresh or trained.

Nothing here trains; it only looks names up in the registries and wires the pieces together.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from collections.abc import Callable
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


# The AVSynth part each task reads: "events" (the AVE / LLP clips), "avs" (AVSBench S4 and MS3) or "avqa".
SYNTH_PARTS = {"avs_s4": "avs", "avs_ms3": "avs", "avqa": "avqa"}


def synth_part(task: str) -> str:
    """The AVSynth part that ``task`` reads (AVE, AVVP, few-shot, zero-shot: the event clips)."""
    return SYNTH_PARTS.get(task, "events")


def synth_config(data: DictConfig, task: str = "ave"):  # noqa: ANN201 (SynthConfig, imported lazily)
    """The AVSynth parameters of a ``data`` config, rendering only the part ``task`` reads.

    ``data.clips`` sizes the event clips; ``data.avs_clips`` / ``data.avqa_clips`` size the AVSBench / AVQA parts
    (-1: ``data.clips`` of them). The other parts get no clips, so each task's folder holds what it reads.
    """
    from avlearn.data.synth import SynthConfig

    part = synth_part(task)
    sizes = {"events": data.clips, "avs": data.avs_clips, "avqa": data.avqa_clips}
    count = {name: (data.clips if n < 0 else n) if name == part else 0 for name, n in sizes.items()}
    return SynthConfig(
        clips=count["events"], seed=data.synth_seed, num_classes=data.num_classes, size=data.size,
        seconds=data.seconds, fps=data.fps, sample_rate=data.sample_rate, avs_clips=count["avs"],
        avqa_clips=count["avqa"],
    )  # fmt: skip


def ensure_avsynth(data: DictConfig, task: str = "ave") -> Path:
    """The AVSynth folder for ``data`` and ``task``: generated on first use (with a progress bar), reused after."""
    from tqdm import tqdm

    from avlearn.data.synth import FORMAT_VERSION, generate, read_meta

    cfg = synth_config(data, task)
    key = {"format": FORMAT_VERSION, **asdict(cfg)}  # a newer format goes to a new cache folder
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
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


def dataset_root(cfg: DictConfig) -> Path:
    """The dataset folder: AVSynth (generated for the task on first use) or ``data.root``, checked."""
    if cfg.data.name == "avsynth":
        return ensure_avsynth(cfg.data, cfg.task.name)
    root = Path(cfg.data.root or "").expanduser()
    if not cfg.data.root or not root.is_dir():
        raise ConfigError(f"data.root={cfg.data.root!r} is not a folder; point it at the {cfg.task.name} dataset root")
    return root


def _few_shot(items: list, shots: int, seed: int, background: int) -> list:
    """``shots`` clips per class with the shared deterministic sampler; a clip's class is its first event segment."""
    from avlearn.data.samplers import few_shot_indices

    classes = [int(labels[labels != background][0]) if (labels != background).any() else background
               for _, _, labels in items]  # fmt: skip
    return [items[i] for i in few_shot_indices(classes, shots, seed)]


def ave_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """AVE (and AVE classification): clips with one label per segment; ``shots > 0`` keeps K training clips a class."""
    from avlearn.data.segments import decode_segments

    root, reader = dataset_root(cfg), DATASETS.get("ave")
    splits = {s: reader(root, s) for s in ("train", "val", "test")}
    items = {s: d.items for s, d in splits.items()}
    if cfg.shots > 0:
        items["train"] = _few_shot(items["train"], cfg.shots, cfg.seed, splits["train"].info.num_classes)
    decoded = {
        s: decode_segments(items[s], cfg.data.frame_size, audio_pre, workers=cfg.data.workers, desc=f"decoding {s}")
        for s in ("train", "val", "test")
    }
    return Splits(decoded["train"], decoded["val"], decoded["test"], splits["train"].info, root)


def avvp_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """AVVP (LLP): weak video labels for training, per-modality segment labels for validation and test."""
    from avlearn.data.pipelines.avvp import avvp_splits as decode
    from avlearn.data.schema import DatasetInfo

    root = dataset_root(cfg)
    s = decode(root, cfg.data.frame_size, audio_pre, cfg.data.workers)
    return Splits(s["train"], s["val"], s["test"], DatasetInfo(tuple(s["classes"])), root)


def avs_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """AVSBench S4 / MS3 (``task=avs_s4`` / ``avs_ms3``): 5 frames with masks per clip."""
    from avlearn.data.pipelines.avs import FRAMES
    from avlearn.data.pipelines.avs import avs_splits as decode
    from avlearn.data.schema import DatasetInfo

    root = dataset_root(cfg)
    flavour = cfg.task.name.removeprefix("avs_")
    s = decode(root, flavour, cfg.data.frame_size, audio_pre, cfg.data.workers, flip=cfg.data.flip)
    return Splits(s["train"], s["val"], s["test"], DatasetInfo((), segments=FRAMES), root)


def avqa_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """MUSIC-AVQA: questions over 10-segment videos; the head's classes are the answer vocabulary. Training items are
    whole videos with all their questions (``train.batch_size`` counts videos; each is encoded once per step);
    validation and test items are questions, in the annotation order."""
    from avlearn.data.pipelines.avqa import avqa_splits as decode
    from avlearn.data.schema import DatasetInfo

    root = dataset_root(cfg)
    s = decode(root, cfg.data.frame_size, audio_pre, cfg.data.workers)
    return Splits(s["train"].by_video(), s["val"], s["test"], DatasetInfo(tuple(s["answers"])), root)


# task name -> its data pipeline ``(cfg, audio preprocess) -> Splits``: here, or (module, function) of
# ``avlearn.data.pipelines``, imported when used.
PIPELINES = {"ave": ave_splits, "ave_cls": ave_splits, "avvp": avvp_splits, "avs_s4": avs_splits,
             "avs_ms3": avs_splits, "avqa": avqa_splits, "fewshot": ("fewshot", "fewshot_splits"),
             "fewshot_ave_cls": ("fewshot", "fewshot_splits"), "fewshot_llp_cls": ("fewshot", "fewshot_splits"),
             "pretrain_captions": ("captions", "captions_splits"), "zeroshot": ("captions", "zeroshot_splits"),
             "zeroshot_cls": ("captions", "zeroshot_splits"), "pretrain_segments": ("fewshot", "fewshot_splits"),
             "zeroshot_ave": ("fewshot", "fewshot_splits"), "zeroshot_ave_cls": ("fewshot", "fewshot_splits"),
             "zeroshot_llp_cls": ("fewshot", "fewshot_splits")}  # fmt: skip


def _pipeline(task: str) -> Callable[[DictConfig, Any], Splits] | None:
    """The data pipeline of ``task`` (None for an unknown task); (module, function) entries are imported here."""
    entry = PIPELINES.get(task)
    if not isinstance(entry, tuple):
        return entry
    module, function = entry
    return getattr(importlib.import_module(f"avlearn.data.pipelines.{module}"), function)


def build_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """Read the task's dataset and decode each split into tensors, with the task's pipeline."""
    pipeline = _pipeline(cfg.task.name)
    if pipeline is None:
        raise ConfigError(f"task={cfg.task.name!r} has no data pipeline; available: {', '.join(PIPELINES)}")
    return pipeline(cfg, audio_pre)


def _backbone(name: str, data: DictConfig, pretrained: str | None, **extra: Any) -> nn.Module:
    """Build a registered backbone, passing the data settings (and ``extra`` arguments) its builder accepts."""
    builder = BACKBONES.get(name)
    offered = {"size": data.frame_size, "sample_rate": data.sample_rate, "n_mels": data.n_mels, "hop_ms": data.hop_ms,
               "pretrained": pretrained, **extra}  # fmt: skip
    accepted = inspect.signature(builder).parameters
    return builder(**{k: v for k, v in offered.items() if k in accepted and v is not None})


def _store_tower(store: str | None, slot: str) -> dict[str, Any]:
    """The ``features`` tower's arguments for ``slot``: its modality and the width and layout ``backbone.store``
    (a store made by ``avlearn extract --features``) holds."""
    from avlearn.data.store import ClipStore
    from avlearn.errors import DataError

    if not store:
        raise ConfigError(f"backbone.{slot}=features reads cached features: set backbone.store=<a folder made by "
                          "`avlearn extract --features`>")  # fmt: skip
    try:
        settings = ClipStore(store, kind="features").settings
    except DataError as err:
        raise ConfigError(f"backbone.store={store!r}: {err}") from None
    if slot not in settings:
        raise ConfigError(f"backbone.store={store!r} holds no {slot} features (it has: "
                          f"{', '.join(s for s in ('visual', 'audio') if s in settings)})")  # fmt: skip
    return {"modality": slot, "num_features": settings[slot]["num_features"], "tokens": settings["output"] == "tokens"}


def _tower(cfg: DictConfig, slot: str) -> nn.Module:
    """The ``backbone.<slot>`` tower (visual, audio or text), frozen by ``backbone.freeze``."""
    name = cfg.backbone[slot]
    pretrained = cfg.backbone.text_pretrained if slot == "text" else cfg.backbone.pretrained
    extra = _store_tower(cfg.backbone.store, slot) if name == "features" else {}
    return _backbone(name, cfg.data, pretrained, **extra).freeze(cfg.backbone.freeze)


def _schema_instance(cls: type, node: DictConfig) -> Any:
    return cls(**OmegaConf.to_container(node, resolve=True))


def build_task(cfg: DictConfig, info: Any) -> nn.Module:
    """Towers (visual, audio, optional text) -> method -> task, with the pairing of method and task checked."""
    from avlearn.methods.base import check_pairing

    visual, audio = _tower(cfg, "visual"), _tower(cfg, "audio")
    text = _tower(cfg, "text") if cfg.backbone.text else None
    method_cls, task_cls = METHODS.get(cfg.method.name), TASKS.get(cfg.task.name)
    method = method_cls(_schema_instance(method_cls.Config, cfg.method), visual, audio, text)
    check_pairing(cfg.method.name, method.produces, cfg.task.name, task_cls.needs)  # fields may depend on towers
    return task_cls(_schema_instance(task_cls.Config, cfg.task), method, info)


def segment_preprocess(pre: Any, data: DictConfig) -> Any:
    """The one-second log-mel input for an audio backbone whose front end is ``pre``.

    Every pipeline cuts a clip into one-second segments. A front end of about one second (the CNN encoders) is kept;
    one that covers a whole clip (HTS-AT, CLAP: 10 s; DG-SCT tiles the segment ``method.audio_tile`` times to fill
    it) becomes a one-second log-mel with the backbone's mel bins at ``data.sample_rate`` and ``data.hop_ms``.
    """
    from avlearn.backbones.cnn import log_mel_input

    if pre.num_frames * pre.hop_length <= 1.5 * pre.sample_rate:
        return pre
    return log_mel_input(data.sample_rate, pre.num_mel_bins, data.hop_ms)


def audio_preprocess(cfg: DictConfig) -> Any:
    """The one-second audio input of the configured audio backbone (built once, cheaply, to read its settings)."""
    return segment_preprocess(_backbone(cfg.backbone.audio, cfg.data, None).preprocess, cfg.data)


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
