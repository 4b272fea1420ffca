"""Clips and 2-source mixture lists -> the separate task's tensors (visually guided source separation).

The lists are DeepAVFusion's VGGSound-Music files under ``<root>/VGGSound-Music/`` (``avlearn.data.synth.mixtures``
writes them for AVSynth): the training clips, and fixed mixtures for validation and test. Every clip is decoded
once (``S`` = 10 frames, one at the middle of each second, and the audio of the first ``S`` seconds) and held in
memory; a clip's media is ``videos/<YouTube id>.mp4`` (AVSynth) or DeepAVFusion's
``clips/playing_<class>/<YouTube id>_<start:06d>_<end:06d>.mp4``.

An item is one mixture of two clips, the first one the target; the model separates both sources, so the item holds
both clips' frames:

- ``frames (S, H, W, 3)`` uint8 of source 1 and ``frames_other`` of source 2;
- ``audio (S, F, T)``: the method's audio input (the audio backbone's segment log-mels) of the **mixture**, so no
  method sees a source alone;
- ``sources (2, N)`` float32: both waveforms at ``task.sample_rate`` (the mixture is their plain sum, as in
  DeepAVFusion: no gain normalisation);
- ``offset`` int: the sample of the clips at which ``sources`` start (the training crop's offset; 0: whole clips);
- ``hard`` bool: both clips are of one class (``sep_type`` Hard); ``id``: ``"<source 1>+<source 2>"``.

Training mixes on the fly: each read of clip i pairs it with another training clip drawn uniformly with torch's
random generator (the engine seeds its loader per epoch and batch, so a run is reproducible), and cuts
``task.train_seconds`` of both sources at one random offset (0: the whole clip) for the mask predictor; the
method's input stays the whole mixture. Validation and test read the fixed pairs, whole clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from avlearn.data.parallel import parallel_map
from avlearn.data.pipelines import Splits, dataset_root
from avlearn.data.schema import DatasetInfo
from avlearn.data.textfiles import csv_rows
from avlearn.errors import ConfigError, DataError

SEGMENTS = 10
LISTS = "VGGSound-Music"
TRAIN_LIST = "vggmusic_train.txt"
EVAL_LISTS = {"val": "vggmusic_val_ss.csv", "test": "vggmusic_eval_ss.csv"}
HEADER = ["source_1", "source_2", "class_1", "class_2", "sep_type"]


@dataclass
class Clips:
    """Decoded clips: ``frames (N, S, H, W, 3)`` uint8, ``feature_waves (N, n)`` at the audio backbone's rate (for
    its log-mels) and ``waves (N, n')`` at the separation rate."""

    ids: list[str]
    frames: torch.Tensor
    feature_waves: torch.Tensor
    waves: torch.Tensor


def _split_id(where: str, uid: str) -> tuple[str, int]:
    """``<YouTube id>_<start:06d>`` -> (YouTube id, start second)."""
    yid, _, start = uid.rpartition("_")
    if not yid or len(start) != 6 or not start.isdigit():
        raise DataError(f"{where}: clip {uid!r}: expected '<YouTubeID>_<start:06d>'")
    return yid, int(start)


def _media_path(root: Path, where: str, uid: str, cls: str) -> Path:
    yid, start = _split_id(where, uid)
    candidates = [root / "videos" / f"{yid}.mp4",
                  root / "clips" / f"playing_{cls}" / f"{yid}_{start:06d}_{start + 10:06d}.mp4"]  # fmt: skip
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise DataError(f"{where}: no media for clip {uid!r} (looked for {', '.join(map(str, candidates))})")
    return found


def read_train_list(path: Path) -> list[tuple[str, str, str]]:
    """``(file:line, clip id, class)`` rows of ``vggmusic_train.txt``."""
    rows = []
    for number, cells in csv_rows(path):
        if len(cells) != 2:
            raise DataError(f"{path}:{number}: expected '<YouTubeID>_<start:06d>,class', got {','.join(cells)!r}")
        rows.append((f"{path}:{number}", cells[0].strip(), cells[1].strip()))
    return rows


def read_mixture_list(path: Path) -> list[tuple[str, str, str, str, str, bool]]:
    """``(file:line, source 1, source 2, class 1, class 2, hard)`` rows of a ``*_ss.csv`` mixture list."""
    rows = list(csv_rows(path))
    if not rows or [c.strip() for c in rows[0][1]] != HEADER:
        raise DataError(f"{path}:1: expected the header {','.join(HEADER)}")
    out = []
    for number, cells in rows[1:]:
        if len(cells) != 5 or cells[4].strip() not in ("Easy", "Hard"):
            raise DataError(f"{path}:{number}: expected 5 fields {','.join(HEADER)} with sep_type Easy or Hard")
        s1, s2, c1, c2, kind = (c.strip() for c in cells)
        out.append((f"{path}:{number}", s1, s2, c1, c2, kind == "Hard"))
    return out


def _decode(job: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    from avlearn.io import read_clip

    path, frame_size, sample_rate = job
    clip = read_clip(path, timestamps=np.arange(SEGMENTS) + 0.5, size=frame_size, sample_rate=sample_rate,
                     duration=float(SEGMENTS))  # fmt: skip
    return clip.frames, clip.wave


def decode_clips(paths: dict[str, Path], frame_size: int, pre: Any, sample_rate: int, workers: int) -> Clips:
    """Decode ``clip id -> media path`` once each; the waveforms at ``pre.sample_rate`` and ``sample_rate``."""
    from avlearn.audio import resample

    ids = list(paths)
    decoded = parallel_map(_decode, [(str(paths[i]), frame_size, pre.sample_rate) for i in ids], workers,
                           desc="decoding separation clips")  # fmt: skip
    frames = torch.from_numpy(np.stack([f for f, _ in decoded]))  # (N, S, H, W, 3)
    feature_waves = torch.from_numpy(np.stack([w for _, w in decoded]))  # (N, n)
    return Clips(ids, frames, feature_waves, resample(feature_waves, pre.sample_rate, sample_rate))  # (N, n')


class Mixtures(torch.utils.data.Dataset):
    """Two-source mixtures of decoded clips: fixed ``pairs`` (evaluation), or each clip with a random partner
    drawn at every read (``pairs=None``: training; ``classes`` then gives each clip's class), cut to ``crop``
    samples at a random offset (0: whole)."""

    def __init__(self, clips: Clips, pre: Any, sample_rate: int, pairs: list[tuple[int, int, bool]] | None = None,
                 crop: int = 0, classes: list[str] | None = None) -> None:  # fmt: skip
        self.clips, self.pre, self.sample_rate, self.pairs, self.crop = clips, pre, sample_rate, pairs, crop
        self.classes = classes or []  # each clip's class (training: tells Hard mixtures)

    def __len__(self) -> int:
        return len(self.pairs) if self.pairs is not None else len(self.clips.ids)

    def _pair(self, index: int) -> tuple[int, int, bool]:
        if self.pairs is not None:
            return self.pairs[index]
        other = int(torch.randint(len(self.clips.ids) - 1, ()))
        other += other >= index  # any clip but this one
        return index, other, self.classes[index] == self.classes[other]

    def __getitem__(self, index: int) -> dict[str, Any]:
        from avlearn.data.segments import segment_log_mel

        i, j, hard = self._pair(index)
        c = self.clips
        sources, start = torch.stack([c.waves[i], c.waves[j]]), 0  # (2, N)
        if self.crop:
            start = int(torch.randint(sources.shape[-1] - self.crop + 1, ()))
            sources = sources[:, start : start + self.crop]  # (2, crop)
        audio = segment_log_mel(c.feature_waves[i] + c.feature_waves[j], SEGMENTS, self.pre)  # (S, F, T) of the mix
        return {"frames": c.frames[i], "frames_other": c.frames[j], "audio": audio, "sources": sources,
                "offset": torch.tensor(start), "hard": torch.tensor(hard), "id": f"{c.ids[i]}+{c.ids[j]}"}  # fmt: skip


def separation_splits(cfg: DictConfig, audio_pre: Any) -> Splits:
    """Training clips mixed on the fly, fixed validation and test mixtures (see the module docstring)."""
    root = dataset_root(cfg)
    if cfg.data.name == "avsynth":
        from avlearn.data.synth import write_mixtures

        write_mixtures(root)
    folder = root / LISTS
    train = read_train_list(folder / TRAIN_LIST)
    evals = {split: read_mixture_list(folder / name) for split, name in EVAL_LISTS.items()}
    paths = {uid: _media_path(root, where, uid, cls) for where, uid, cls in train}
    for rows in evals.values():
        for where, s1, s2, c1, c2, _ in rows:
            paths.update({s1: _media_path(root, where, s1, c1), s2: _media_path(root, where, s2, c2)})
    if len({uid for _, uid, _ in train}) < 2:
        raise DataError(f"{folder / TRAIN_LIST}: needs at least 2 training clips to mix")
    rate = cfg.task.sample_rate
    clips = decode_clips(paths, cfg.data.frame_size, audio_pre, rate, cfg.data.workers)
    crop = round(cfg.task.train_seconds * rate)
    if not 0 <= crop <= clips.waves.shape[-1]:
        raise ConfigError(f"task.train_seconds={cfg.task.train_seconds}: expected 0 (whole clips) to {SEGMENTS}")
    index = {uid: k for k, uid in enumerate(clips.ids)}
    train_set = Mixtures(_subset(clips, [index[uid] for _, uid, _ in train]), audio_pre, rate, crop=crop,
                         classes=[cls for _, _, cls in train])  # fmt: skip
    sets = {split: Mixtures(clips, audio_pre, rate, [(index[s1], index[s2], hard) for _, s1, s2, _, _, hard in rows])
            for split, rows in evals.items()}  # fmt: skip
    info = DatasetInfo(tuple(sorted({cls for _, _, cls in train})), segments=SEGMENTS)
    return Splits(train_set, sets["val"], sets["test"], info, root)


def _subset(clips: Clips, keep: list[int]) -> Clips:
    """The clips at ``keep``, in that order."""
    rows = torch.as_tensor(keep, dtype=torch.long)
    return Clips([clips.ids[k] for k in keep], clips.frames[rows], clips.feature_waves[rows], clips.waves[rows])
