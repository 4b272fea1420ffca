"""Few-shot splits for DG-SCT's few-shot tasks: K training clips per class, full validation and test splits.

Follows DG-SCT's few-shot data (haoyi-duan/DG-SCT ``few-shot/dataloader.py``; spec ``specs/dgsct.md`` §4.2):

- ``fewshot`` and ``fewshot_ave_cls`` read AVE; a clip's class is its annotated event category; every segment
  keeps its label (background = K), so the targets are ``labels (S,)`` as for the AVE task.
- ``fewshot_llp_cls`` reads LLP (AVVP); only videos with a single weak label are drawn for training (as the seed);
  validation and test keep every video; the targets are ``labels (K,)``, the multi-hot weak labels.
- DG-SCT's pre-training and zero-shot prompt tasks (``avlearn.tasks.fewshot``) use it too: ``pretrain_segments`` reads
  VGGSound-AVEL40K (``vggsound-avel40k_labels.csv``: per-second flags -> ``labels (S,)``, background = K);
  ``zeroshot_ave`` / ``zeroshot_ave_cls`` read AVE and ``zeroshot_llp_cls`` LLP, as the few-shot tasks (``shots=0``;
  every video of every split is kept, multi-label LLP videos included).

What we changed: the seed takes the *first* K clips of each class in file order with one fixed seed; here K clips per
class are drawn with ``avlearn.data.samplers.few_shot_indices`` for ``cfg.seed`` (``shots=0``: every eligible clip),
so a Hydra sweep over ``seed`` gives the mean and spread over draws. Model selection uses the validation split (the
seed selects on the test split). The audio of each one-second segment is the log-mel the configured audio backbone
reads: backbones whose front end covers a whole clip (HTS-AT, CLAP) get a one-second log-mel with their mel bins at
``data.sample_rate`` / ``data.hop_ms``, which DG-SCT tiles ``method.audio_tile`` times (the seed tiles the
one-second waveform ten times).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.data.datasets.media import Decode
from avlearn.data.pipelines import Splits, dataset_root, load_media, segment_items
from avlearn.data.schema import Record
from avlearn.data.segments import SegmentTensors, segment_log_mel, segment_split
from avlearn.errors import ConfigError
from avlearn.registry import DATASETS

SEGMENTS = 10
READERS = {"fewshot": "ave", "fewshot_ave_cls": "ave", "fewshot_llp_cls": "llp",
           "pretrain_segments": "vggsound_avel40k", "zeroshot_ave": "ave", "zeroshot_ave_cls": "ave",
           "zeroshot_llp_cls": "llp"}  # fmt: skip
# The record target that becomes the batch's ``labels``.
TARGETS = {"ave": "segment_labels", "llp": "labels", "vggsound_avel40k": "segment_labels"}


def few_shot_records(records: list[Record], shots: int, seed: int, single_label: bool) -> list[Record]:
    """``shots`` records per class (``shots=0``: all), drawn for ``seed``; ``single_label``: one-class records only."""
    from avlearn.data.samplers import few_shot_indices

    eligible = [r for r in records if len(r.classes) == 1] if single_label else list(records)
    if shots == 0:
        return eligible
    return [eligible[i] for i in few_shot_indices([r.classes[0] for r in eligible], shots, seed)]


def _decode(dataset: Any, records: list[Record], audio: AudioPreprocess, workers: int) -> SegmentTensors:
    """Frames, per-segment log-mels and the ``labels`` target of ``records``, in memory."""
    loaded = load_media(dataset.media, records, dataset.decode, workers, f"decoding {dataset.split}")
    frames = torch.from_numpy(np.stack([x["frames"] for x in loaded]))  # (N, S, H, W, 3)
    waves = torch.from_numpy(np.stack([x["wave"] for x in loaded]))  # (N, samples)
    mels = torch.cat([segment_log_mel(chunk, SEGMENTS, audio) for chunk in waves.split(64)])  # (N, S, F, T)
    key = TARGETS[dataset.name]
    labels = torch.from_numpy(np.stack([np.asarray(r.targets[key]) for r in records]))  # (N, S) or (N, K)
    return SegmentTensors([r.id for r in records], frames, mels, labels)


def _split(dataset: Any, records: list[Record], audio: AudioPreprocess, data: DictConfig) -> Any:
    """One split: read from ``data.store`` or lazily where the data config asks (``segment_split``), else
    decoded into memory from the reader's media."""
    items = segment_items(dataset, records, TARGETS[dataset.name])
    clips = segment_split(items, data, audio, SEGMENTS, f"reading {dataset.split}", own_decoding=True)
    return _decode(dataset, records, audio, data.workers) if clips is None else clips


def fewshot_splits(cfg: DictConfig, audio_pre: AudioPreprocess) -> Splits:
    """The few-shot task's splits: ``cfg.shots`` training clips per class drawn for ``cfg.seed``, all of val/test.

    Args:
        cfg: The run config (``task.name`` one of ``READERS``; ``data``, ``shots``, ``seed``).
        audio_pre: The one-second log-mel input of the configured audio backbone (``avlearn.build.audio_preprocess``).
    """
    import avlearn.data.datasets  # noqa: F401  (registers the readers)

    if cfg.task.name not in READERS:
        raise ConfigError(f"task.name={cfg.task.name!r} has no few-shot pipeline; expected one of {sorted(READERS)}")
    if cfg.shots < 0:
        raise ConfigError(f"shots={cfg.shots}: expected training clips per class >= 1 (0 = all)")
    root, reader = dataset_root(cfg), DATASETS.get(READERS[cfg.task.name])
    audio = audio_pre  # one-second log-mel segments (avlearn.build.audio_preprocess)
    decode = Decode(frames=SEGMENTS, seconds=float(SEGMENTS), size=cfg.data.frame_size, sample_rate=audio.sample_rate)
    datasets = {s: reader(root, s, decode=decode) for s in ("train", "val", "test")}
    single = cfg.task.name == "fewshot_llp_cls"  # the seed's few-shot LLP draws single-label videos only
    chosen = {s: list(d.records) for s, d in datasets.items()}
    chosen["train"] = few_shot_records(chosen["train"], cfg.shots, cfg.seed, single_label=single)
    out = {s: _split(datasets[s], chosen[s], audio, cfg.data) for s in datasets}
    return Splits(out["train"], out["val"], out["test"], datasets["train"].info, root)
