"""Clip pipelines: any benchmark reader's records -> clip-level items for generic tasks (classify, retrieve, caption,
QA), the reader named by ``data.benchmark``.

A generic task registers ``TASKS.register(name, pipeline=clip_splits, synth_part=benchmark_part, ...)``: its data
and its AVSynth part then follow ``data.benchmark`` (``BENCHMARKS`` below, one row per reader). Each split item:

- ``id`` str; ``frames`` (S, H, W, 3) uint8, the frame at the middle of each of S one-second segments (an image is a
  one-frame clip, S = 1); ``audio`` (S, F, T) float32, the segment log-mels of ``avlearn.data.segments``
  (``segment_log_mel``: the whole clip's log-mel cut into S pieces, the backbone's front end);
- ``has_video`` / ``has_audio`` bool: a benchmark without that modality (ESC-50 has no video, UCF101 and CoOp are
  read without audio) gets black frames / the log-mel of silence, so every method runs, and a head can mask it;
- the reader's targets: ``label`` int64 (single-label), ``labels`` (K,) float32 multi-hot (AudioSet),
  ``segment_labels`` (S,) int64 (VGGSound-AVEL40K with per-second flags), ``text`` str (the first caption; all of
  them are in ``ClipSet.references[id]``, since caption counts differ and a batch holds equal-sized fields),
  ``question`` / ``answer`` str (VALOR QA: one item per question).

Splits: the benchmark's own train/val/test where it publishes them; where it has no validation split, validation is
every tenth record of each class of the training list(s) (``holdout``), never the test split. ``shots > 0``
keeps K training clips a class (single-label benchmarks; CoOp reads its ``split_fewshot`` files); VALOR-1M, which
has no test list, is tested on its held-out validation. Clips are decoded once, in ``data.workers`` processes, and
held in memory once per video: the items of a QA benchmark (one per question) index their video's frames and
log-mels (``ClipSet.rows``), so memory grows with the videos, not the questions.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from avlearn.data.datasets.media import Decode
from avlearn.data.pipelines import Splits, dataset_root, ensure_avsynth, load_media
from avlearn.data.schema import DatasetInfo, Record
from avlearn.errors import ConfigError
from avlearn.registry import DATASETS

SPLITS = ("train", "val", "test")
HOLDOUT_EVERY = 10  # validation = every tenth training record where a benchmark has no validation split

# Split -> the (reader split, reader options) read into it; "holdout:<split>" marks a training list that gives the
# validation split too (``holdout``).
Plan = dict[str, list[tuple[str, dict[str, Any]]]]


def _train_test(train: str, test: str, **options: Any) -> Plan:
    return {"train": [(f"holdout:{train}", options)], "test": [(test, options)]}


def _official() -> Plan:
    return {s: [(s, {})] for s in SPLITS}


def _audioset(data: DictConfig) -> Plan:
    lists = {"balanced": ["balanced_train"], "unbalanced": ["unbalanced_train"],
             "full": ["balanced_train", "unbalanced_train"]}[data.audioset_train]  # fmt: skip
    return {"train": [(f"holdout:{name}", {}) for name in lists], "test": [("eval", {})]}


@dataclass(frozen=True)
class Benchmark:
    """How a generic task reads one reader.

    Attributes:
        reader: The registered reader (``DATASETS``).
        part: The AVSynth part that holds it (``events``, ``sounds`` or ``images``).
        folder: The reader's root inside an AVSynth folder (``.``: the AVSynth root itself).
        plan: data config -> the reader splits (and options) of train/val/test.
        segments: Segments per clip (one per second); AVSynth event clips have ``data.seconds`` instead.
        video: Whether the benchmark is read with frames.
        audio: Whether it is read with audio.
    """

    reader: str
    part: str
    folder: str
    plan: Callable[[DictConfig], Plan]
    segments: int
    video: bool = True
    audio: bool = True

    def clip_segments(self, data: DictConfig) -> int:
        """S for ``data``: AVSynth event clips last ``data.seconds``; other clips their benchmark's length."""
        return int(data.seconds) if data.name == "avsynth" and self.part == "events" else self.segments


BENCHMARKS: dict[str, Benchmark] = {
    "vggsound": Benchmark("vggsound", "events", ".", lambda d: _train_test("train", "test"), 10),
    "audioset": Benchmark("audioset", "events", ".", _audioset, 10),
    "esc50": Benchmark("esc50", "sounds", ".", lambda d: _train_test("train", "test", fold=d.fold), 5, video=False),
    "ucf101": Benchmark("ucf101", "events", ".", lambda d: _train_test("train", "test", fold=d.fold), 10,
                        audio=False),
    "coop": Benchmark("coop", "images", "CoOp", lambda d: _official(), 1, audio=False),
    "imagenet_esc": Benchmark("imagenet_esc", "sounds", "ImageNet-ESC",
                              lambda d: _train_test("train", "test", fold=d.fold, modality="audio"), 5, video=False),
    "imagenet_esc_image": Benchmark("imagenet_esc", "images", "ImageNet-ESC",
                                    lambda d: _train_test("train", "val", modality="image"), 1, audio=False),
    "valor32k": Benchmark("valor32k", "events", ".", lambda d: _official(), 10),
    # VALOR-1M publishes its pretraining list only: validation is a tenth held out of it and, with no test list
    # (``_read``), the test split is that same tenth (a pretraining run's test loss is its held-out loss).
    "valor1m": Benchmark("valor1m", "events", ".", lambda d: {"train": [("holdout:train", {})]}, 10),
    "msrvtt": Benchmark("msrvtt", "events", ".", lambda d: _train_test("train", "test"), 10),
    "vggsound_avel40k": Benchmark("vggsound_avel40k", "events", ".", lambda d: _official(), 10),
    "valor_qa": Benchmark("valor_qa", "events", ".", lambda d: _official(), 10),
    # The VALOR-layout readers (data/datasets/valor_layout.py) with the test lists of the seed's configs; S is the
    # seconds decoded from each clip's start (one frame and one log-mel segment per second).
    "msrvtt_std": Benchmark("msrvtt", "events", ".", lambda d: {s: [(f"std_{s}", {})] for s in SPLITS}, 10),
    "didemo": Benchmark("didemo", "events", ".", lambda d: _train_test("train", "test"), 30),
    "activitynet": Benchmark("activitynet", "events", ".", lambda d: _train_test("train", "val1"), 60),
    "lsmdc": Benchmark("lsmdc", "events", ".", lambda d: _train_test("train", "test"), 5),
    "vatex": Benchmark("vatex", "events", ".", lambda d: _train_test("train", "test_ret"), 10),
    "vatex_cap": Benchmark("vatex", "events", ".", lambda d: _train_test("train", "private_test"), 10),
    "msvd": Benchmark("msvd", "events", ".", lambda d: _train_test("train", "test"), 10, audio=False),
    "audiocaps": Benchmark("audiocaps", "sounds", ".", lambda d: _train_test("train", "test"), 10, video=False),
    "audiocaps_ret": Benchmark("audiocaps", "sounds", ".", lambda d: _train_test("ret_train", "ret_test"), 10,
                               video=False),
    "clotho": Benchmark("clotho", "sounds", ".", lambda d: _train_test("train", "test"), 30, video=False),
    "msrvtt_qa": Benchmark("msrvtt_qa", "events", ".", lambda d: _train_test("train", "test"), 10),
    "msvd_qa": Benchmark("msvd_qa", "events", ".", lambda d: _train_test("train", "test"), 10, audio=False),
    "tgif_qa": Benchmark("tgif_qa", "events", ".", lambda d: _train_test("train", "test"), 3, audio=False),
    "activitynet_qa": Benchmark("activitynet_qa", "events", ".", lambda d: _train_test("train", "test"), 60),
    "music_avqa_valor": Benchmark("music_avqa_valor", "events", ".", lambda d: _train_test("train", "test"), 60),
}  # fmt: skip


# The benchmarks whose records carry captions (``text`` and ``captions``) or questions (``question`` and ``answer``):
# what ``task=retrieve`` / ``caption`` / ``pretrain`` and ``task=qa_open`` read through ``clip_splits``
# (``text_benchmark``).
CAPTION_BENCHMARKS = ("valor1m", "valor32k", "msrvtt", "msrvtt_std", "didemo", "activitynet", "lsmdc", "vatex",
                      "vatex_cap", "msvd", "audiocaps", "audiocaps_ret", "clotho")  # fmt: skip
QA_BENCHMARKS = ("valor_qa", "msrvtt_qa", "msvd_qa", "tgif_qa", "activitynet_qa", "music_avqa_valor")
OWN_LAYOUT = "vggsound"  # the schema's default data.benchmark: a text task then reads its own layout


def text_benchmark(cfg: DictConfig, choices: Sequence[str], own: str) -> bool:
    """Whether a text task reads ``data.benchmark`` (one of ``choices``) through ``clip_splits``; False for the
    default (``OWN_LAYOUT``): the task reads its own layout (``own`` describes it). Another benchmark is a one-line
    ConfigError naming the key and the choices."""
    name = cfg.data.benchmark
    if name in choices:
        return True
    if name == OWN_LAYOUT:
        return False
    raise ConfigError(f"data.benchmark={name!r}: task={cfg.task.name} reads one of: {', '.join(choices)} (or "
                      f"{OWN_LAYOUT}, the default: {own})")  # fmt: skip


def benchmark(data: DictConfig) -> Benchmark:
    """The ``BENCHMARKS`` row of ``data.benchmark``."""
    if data.benchmark not in BENCHMARKS:
        raise ConfigError(f"data.benchmark={data.benchmark!r} is not valid; expected one of: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[data.benchmark]


def benchmark_part(data: DictConfig) -> str:
    """The AVSynth part of ``data.benchmark`` (a generic task's ``synth_part``)."""
    return benchmark(data).part


benchmark_part.label = "data.benchmark"  # type: ignore[attr-defined]  # how ``avlearn train --help`` names the part


def holdout(records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    """``(train, val)``: validation is every tenth record of each class, training the others (list order kept).

    Single-label records are grouped by class (multi-label and unlabelled ones form one group) and each group is
    ordered by a checksum of the record ids, so the held-out tenth covers every class with ten or more records
    whatever order the annotation lists them in (every tenth record of a list that cycles through ten classes
    would be a single class). Lists too small for that (no class of ten) hold out every tenth record of the whole
    list in checksum order, or the last record of fewer than ten.
    """
    groups: dict[int | None, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r.classes[0] if len(r.classes) == 1 else None, []).append(i)
    held = {i for members in groups.values() for i in _every_tenth(records, members)}
    if not held:
        held = set(_every_tenth(records, list(range(len(records))))) or {len(records) - 1}
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def _every_tenth(records: Sequence[Record], members: list[int]) -> list[int]:
    """Positions 9, 19, ... of ``members`` (indices into ``records``) ordered by the checksum of their ids."""
    ordered = sorted(members, key=lambda i: zlib.crc32(f"{records[i].split}/{records[i].id}".encode()))
    return ordered[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]


def _read(cfg: DictConfig, bench: Benchmark, root: Any) -> tuple[dict[str, list[Record]], Any]:
    """Records per split (the held-out validation taken from the training lists together; a plan without a test
    list tests on that held-out validation) and the first reader (its media and classes serve every split)."""
    reader = DATASETS.get(bench.reader)
    records: dict[str, list[Record]] = {s: [] for s in SPLITS}
    pooled: list[Record] = []  # training lists that give the validation split too
    first = None
    for split, reads in bench.plan(cfg.data).items():
        for name, options in reads:
            extra = {"shots": cfg.shots, "seed": cfg.seed} if bench.reader == "coop" else {}
            dataset = reader(root, name.removeprefix("holdout:"), **options, **extra)
            first = first or dataset
            (pooled if name.startswith("holdout:") else records[split]).extend(dataset.records)
    if pooled:
        records["train"], records["val"] = holdout(pooled)
    if "test" not in bench.plan(cfg.data):
        records["test"] = records["val"]
    return records, first


def _few_shot(records: list[Record], shots: int, seed: int) -> list[Record]:
    from avlearn.data.samplers import few_shot_indices

    if any("label" not in r.targets for r in records):
        raise ConfigError(f"shots={shots}: few-shot subsets need single-label clips; this benchmark has none")
    return [records[i] for i in few_shot_indices([r.targets["label"] for r in records], shots, seed)]


@dataclass
class ClipSet:
    """Decoded clips of one split (the items are described in the module docstring).

    Attributes:
        ids: Item ids.
        frames: (V, S, H, W, 3) uint8, one row per distinct video of the split (V <= N).
        audio: (V, S, F, T) float32.
        rows: (N,) int64, each item's row of ``frames`` / ``audio`` (QA: a video's questions share one).
        targets: Per-item targets: tensors with N rows, or lists of N strings.
        has_video: Whether the frames are real (else black).
        has_audio: Whether the audio is real (else silence).
        references: Every caption of an item, by id (caption benchmarks; empty otherwise).
    """

    ids: list[str]
    frames: torch.Tensor
    audio: torch.Tensor
    rows: torch.Tensor
    targets: dict[str, Any]
    has_video: bool
    has_audio: bool
    references: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        item = {"id": self.ids[i], "frames": self.frames[row], "audio": self.audio[row], "has_video": self.has_video,
                "has_audio": self.has_audio}  # fmt: skip
        return {**item, **{key: values[i] for key, values in self.targets.items()}}


def _targets(records: Sequence[Record]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Stacked targets of ``records`` and the caption references by id."""
    first = records[0].targets
    out: dict[str, Any] = {}
    if "label" in first:
        out["label"] = torch.tensor([r.targets["label"] for r in records], dtype=torch.int64)  # (N,)
    for key in ("labels", "segment_labels"):
        if key in first:
            out[key] = torch.from_numpy(np.stack([r.targets[key] for r in records]))  # (N, K) / (N, S)
    for key in ("text", "question", "answer"):
        if key in first:
            out[key] = [r.targets[key] for r in records]
    references = {r.id: list(r.targets["captions"]) for r in records if "captions" in r.targets}
    return out, references


def _decode(media: Any, records: Sequence[Record], bench: Benchmark, segments: int, cfg: DictConfig, audio_pre: Any,
            desc: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Frames (V, S, H, W, 3) and segment log-mels (V, S, F, T) of the V distinct media of ``records``, each decoded
    once, and (N,) each record's row among them."""
    from avlearn.data.segments import segment_log_mel

    size, rate = cfg.data.frame_size, audio_pre.sample_rate
    decode = Decode(frames=segments if bench.video else 0, seconds=float(segments), size=size, sample_rate=rate,
                    audio=bench.audio)  # fmt: skip
    unique = list({r.media: r for r in records}.values())  # questions of one video share its decoding
    loaded = load_media(media, unique, decode, workers=cfg.data.workers, desc=desc)
    row = {r.media: k for k, r in enumerate(unique)}
    v, samples = len(unique), segments * rate
    frames = torch.zeros(v, segments, size, size, 3, dtype=torch.uint8)  # (V, S, H, W, 3): black without video
    waves = torch.zeros(v, samples)  # (V, S * rate): silence without audio
    for k, out in enumerate(loaded):
        if bench.video:
            frames[k] = torch.from_numpy(np.array(out["frames"]))  # (S, H, W, 3), a copy: may be read-only
        if bench.audio:
            wave = torch.from_numpy(np.asarray(out["wave"], dtype=np.float32))[:samples]
            waves[k, : len(wave)] = wave
    mels = torch.cat([segment_log_mel(chunk, segments, audio_pre) for chunk in waves.split(64)])  # (V, S, F, T)
    return frames, mels, torch.tensor([row[r.media] for r in records], dtype=torch.int64)


def clip_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """The ``data.benchmark`` reader's train/val/test as ``ClipSet``s (see the module docstring)."""
    bench = benchmark(cfg.data)
    if cfg.data.name == "avsynth":
        root = ensure_avsynth(cfg.data, cfg.task.name, part=bench.part) / bench.folder
    else:
        root = dataset_root(cfg)
    records, reader = _read(cfg, bench, root)
    if cfg.shots > 0 and bench.reader != "coop":
        records["train"] = _few_shot(records["train"], cfg.shots, cfg.seed)
    segments = bench.clip_segments(cfg.data)
    sets = {}
    for split in SPLITS:
        if not records[split]:
            raise ConfigError(f"data.benchmark={cfg.data.benchmark}: the {split} split has no clips under {root}")
        frames, audio, rows = _decode(reader.media, records[split], bench, segments, cfg, audio_pre,
                                      f"decoding {split}")  # fmt: skip
        targets, references = _targets(records[split])
        sets[split] = ClipSet([r.id for r in records[split]], frames, audio, rows, targets, bench.video, bench.audio,
                              references)  # fmt: skip
    return Splits(sets["train"], sets["val"], sets["test"], DatasetInfo(reader.classes, segments), root)
