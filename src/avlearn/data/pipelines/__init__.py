"""Per-task pipelines: dataset records -> decoded, model-ready tensors held in memory.

A dataset reader (``avlearn.data.datasets``) knows a benchmark's files; a pipeline knows what one task feeds its
model: which frames, which audio features, which targets, in which layout. A task names its pipeline when it
registers (``TASKS.register(name, pipeline=...)``); a pipeline is ``(run config, audio preprocess) -> Splits``. Each
module returns small indexable datasets whose items are the task's batch contract:

- ``ave``: AVE clips -> 10 frames, 10 one-second log-mels and the segment labels (``shots > 0``: K clips a class).

- ``avs``: AVSBench S4 / MS3 clips -> 5 frames, 5 one-second log-mels, 5 masks and which of them are annotated.
- ``avvp``: LLP videos -> 10 frames, 10 one-second log-mels, the weak video labels and (val/test) the per-second
  audio and visual events.
- ``avqa``: MUSIC-AVQA questions -> the 10 frames and log-mels of their video (decoded once per video), the
  tokenised question, the answer index and the question type.

- ``fewshot``, ``captions``: the few-shot, pre-training and zero-shot tasks' clips (see each module).

- ``clips``: the clip-level pipeline of every benchmark reader (VGGSound, AudioSet, ESC-50, UCF101, CoOp,
  ImageNet-ESC, VALOR-32K, MSR-VTT, VGGSound-AVEL40K, VALOR QA) that generic tasks read, chosen by ``data.benchmark``.

What every pipeline shares is here: ``Splits`` (what a pipeline returns), ``dataset_root`` (the dataset folder:
``data.root``, or AVSynth rendered on first use with only the part the task registered) and ``load_media``
(decoding many records' media, in parallel processes when asked).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from avlearn.data.datasets.media import Decode, Media
from avlearn.data.parallel import parallel_map
from avlearn.data.schema import Record
from avlearn.errors import ConfigError
from avlearn.registry import TASKS


def cache_dir() -> Path:
    """``$AVLEARN_CACHE`` or ``~/.cache/avlearn``."""
    return Path(os.environ.get("AVLEARN_CACHE", Path.home() / ".cache" / "avlearn")).expanduser()


def synth_config(data: DictConfig, task: str = "ave", part: str | None = None):  # noqa: ANN201 (SynthConfig)
    """The AVSynth parameters of a ``data`` config, rendering only the part ``task`` reads (its ``synth_part``), or
    ``part`` when given.

    ``data.clips`` sizes the event clips; ``data.avs_clips`` / ``data.avqa_clips`` / ``data.sound_clips`` /
    ``data.image_clips`` size the AVSBench / AVQA / ESC-50 / CoOp parts (-1: ``data.clips`` of them). The other
    parts get no clips, so each task's folder holds what it reads. ``data.sound_background`` (the probability of
    a background sound of another class in a sound) applies to the ``sounds`` part only, ``data.event_distractors``
    and ``data.extra_test_clips`` (more event clips, all in the test split) to the ``events`` part only.
    """
    from avlearn.data.synth import SynthConfig

    part = part or TASKS.spec(task).part(data)
    sizes = {"events": data.clips, "avs": data.avs_clips, "avqa": data.avqa_clips, "sounds": data.sound_clips,
             "images": data.image_clips}  # fmt: skip
    if part not in sizes:
        raise ConfigError(f"task={task!r} reads AVSynth part {part!r}; expected one of {', '.join(sizes)}")
    count = {name: (data.clips if n < 0 else n) if name == part else 0 for name, n in sizes.items()}
    return SynthConfig(
        clips=count["events"], seed=data.synth_seed, num_classes=data.num_classes, size=data.size,
        seconds=data.seconds, fps=data.fps, sample_rate=data.sample_rate, avs_clips=count["avs"],
        avqa_clips=count["avqa"], sound_clips=count["sounds"], image_clips=count["images"],
        sound_background=data.sound_background if part == "sounds" else 0.0,
        event_distractors=data.event_distractors if part == "events" else "half",
        extra_test_clips=data.extra_test_clips if part == "events" else 0,
    )  # fmt: skip


def ensure_avsynth(data: DictConfig, task: str = "ave", part: str | None = None) -> Path:
    """The AVSynth folder for ``data`` and ``task`` (or ``part``): generated on first use (with a progress bar),
    reused after."""
    from tqdm import tqdm

    from avlearn.data.synth import FLAVOURS, FORMAT_VERSION, generate, read_meta

    cfg = synth_config(data, task, part)
    key = {"format": FORMAT_VERSION, **cfg.params()}  # a newer format goes to a new cache folder
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    root = Path(data.root).expanduser() if data.root else cache_dir() / f"avsynth-{digest}"
    if read_meta(root) is None:
        total = sum(cfg.count(f) for f in FLAVOURS)
        print(f"generating AVSynth ({total} clips) in {root}", flush=True)
        with tqdm(total=total, desc="AVSynth", unit="clip", dynamic_ncols=True) as bar:
            generate(root, cfg, workers=data.workers, progress=bar.update)
    else:
        generate(root, cfg)  # checks that the folder was made with these parameters
    return root


@dataclass
class Splits:
    """Decoded train/val/test data of one task, and the dataset facts the head needs. (Which stores a pipeline
    reads instead of media is declared where its task registers: ``avlearn.registry.TaskSpec.stores``.)"""

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


def _load(job: tuple[Media, Record, Decode]) -> dict[str, Any]:
    media, record, decode = job
    return media.load(record, decode)


def load_media(
    media: Media, records: Sequence[Record], decode: Decode, workers: int = 1, desc: str = "decoding"
) -> list[dict[str, Any]]:
    """``media.load(record, decode)`` for every record, in order, over ``workers`` processes, with a progress bar."""
    return parallel_map(_load, [(media, record, decode) for record in records], workers, desc=desc)


def segment_items(dataset: Any, records: Sequence[Record], target: str, dtype: Any = None) -> list[tuple]:
    """``(id, video path, labels)`` per record, the items of ``avlearn.data.segments.segment_split``:
    the path is None unless the reader's media are video files; ``labels`` is the record's ``target`` as an array."""
    import numpy as np

    locate = getattr(dataset.media, "path", lambda _: None)
    return [(r.id, locate(r), np.asarray(r.targets[target], dtype)) for r in records]
