"""AVSBench-object (Zhou et al., "Audio-Visual Segmentation", ECCV 2022): single-source S4 and multi-source MS3.

Each clip is 5 seconds with 5 frames (one per second), a binary ground-truth mask per frame and its audio. S4
training clips publish (and supervise) only the first frame's mask; S4 val/test and all MS3 clips have five.

Two annotation layouts, in ``<root>/AVSBench/`` or ``<root>/``:

- the AVSBench release: ``Single-source/s4_meta_data.csv`` (header ``name,start,category,split``) with
  ``s4_data/visual_frames/<split>/<category>/<name>/<name>_<i>.png``, ``s4_data/gt_masks/...`` (same pattern) and
  ``s4_data/audio_wav/<split>/<category>/<name>.wav``; ``Multi-sources/ms3_meta_data.csv`` (header
  ``video_id,split``) with ``ms3_data/visual_frames/<name>/<name>.mp4_<i>.png``,
  ``ms3_data/gt_masks/<split>/<name>/<name>_<i>.png`` and ``ms3_data/audio_wav/<split>/<name>.wav`` (i = 1..5).
  AVSynth writes exactly this.
- the S4 split lists of DeepAVFusion's ``metadata/``: ``avsbench_train.txt``, ``avsbench_val.csv``,
  ``avsbench_test.csv``, headerless ``<name>_<i>,<category>`` rows, five per clip (17260 / 3700 / 3700 rows: 3452 /
  740 / 740 clips, 23 categories). Their media are looked up in the release layout (``Single-source/s4_data``).

Targets: ``masks`` (5, H, W) bool with ``mask_valid`` (5,) bool (True where the frame has a ground-truth mask),
and ``label`` (S4: the category, over the sorted categories). ``media=`` may name another folder holding the
``Single-source`` / ``Multi-sources`` trees.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.data.datasets.base import ClipDataset, annotation_folder, check_split
from avlearn.data.datasets.media import Decode, load_image, load_mask
from avlearn.data.schema import Record
from avlearn.data.textfiles import csv_rows, parse_int, read_table
from avlearn.errors import DataError
from avlearn.registry import DATASETS

SPLITS = ("train", "val", "test")
FRAMES = 5
LISTS = {"train": "avsbench_train.txt", "val": "avsbench_val.csv", "test": "avsbench_test.csv"}
LAYOUT = {
    "s4": {
        "meta": "Single-source/s4_meta_data.csv",
        "frame": "Single-source/s4_data/visual_frames/{split}/{category}/{media}/{media}_{i}.png",
        "mask": "Single-source/s4_data/gt_masks/{split}/{category}/{media}/{media}_{i}.png",
        "wav": "Single-source/s4_data/audio_wav/{split}/{category}/{media}.wav",
    },
    "ms3": {
        "meta": "Multi-sources/ms3_meta_data.csv",
        "frame": "Multi-sources/ms3_data/visual_frames/{media}/{media}.mp4_{i}.png",
        "mask": "Multi-sources/ms3_data/gt_masks/{split}/{media}/{media}_{i}.png",
        "wav": "Multi-sources/ms3_data/audio_wav/{split}/{media}.wav",
    },
}
MARKERS = (*(m["meta"] for m in LAYOUT.values()), *LISTS.values())  # files that mark an annotation folder


def mask_valid(flavour: str, split: str) -> np.ndarray:
    """(5,) bool: which frames carry a ground-truth mask (S4 train: the first only)."""
    valid = np.ones(FRAMES, dtype=bool)
    if flavour == "s4" and split == "train":
        valid[1:] = False
    return valid


def read_meta(path: Path, flavour: str) -> list[tuple[str, str, str, str]]:
    """``(file:line, name, category, split)`` per row of an AVSBench meta csv (category "" for MS3).

    The name is the first column (``name`` in S4, ``video_id`` in MS3), as the release's loaders read it.
    """
    needed = ("split", "category") if flavour == "s4" else ("split",)
    rows = read_table(path, needed)
    return [(where, next(iter(row.values())), row.get("category", ""), row["split"]) for where, row in rows]


def read_frame_list(path: Path) -> list[tuple[str, str, str]]:
    """``(file:line, name, category)`` per clip of a DeepAVFusion list (``<name>_<i>,<category>``, 5 per clip)."""
    frames: dict[str, list[int]] = defaultdict(list)
    first: dict[str, tuple[str, str]] = {}
    for number, cells in csv_rows(path):
        where = f"{path}:{number}"
        if len(cells) != 2 or "_" not in cells[0]:
            raise DataError(f"{where}: expected '<name>_<frame>,<category>', got {','.join(cells)!r}")
        name, index = cells[0].rsplit("_", 1)
        frames[name].append(parse_int(index, where, "frame", 1, FRAMES))
        if name in first and first[name][1] != cells[1]:
            raise DataError(f"{where}: clip {name!r} has category {cells[1]!r} here, {first[name][1]!r} before")
        first.setdefault(name, (where, cells[1]))
    for name, seen in frames.items():
        if sorted(seen) != list(range(1, FRAMES + 1)):
            raise DataError(f"{first[name][0]}: clip {name!r} lists frames {sorted(seen)}, expected 1..{FRAMES} once")
    return [(where, name, category) for name, (where, category) in first.items()]


class AVSBenchMedia:
    """The frames, masks and wav of a clip in the AVSBench release layout under ``base``."""

    def __init__(self, base: Path, flavour: str) -> None:
        self.base, self.layout = Path(base), LAYOUT[flavour]

    def _path(self, kind: str, record: Record, i: int = 0) -> Path:
        return self.base / self.layout[kind].format(media=record.media, split=record.split, i=i, **record.fields)

    def has(self, record: Record) -> bool:
        valid = record.targets["mask_valid"]
        frames = all(self._path("frame", record, i + 1).is_file() for i in range(FRAMES))
        masks = all(self._path("mask", record, i + 1).is_file() for i in np.flatnonzero(valid))
        return frames and masks and self._path("wav", record).is_file()

    def describe(self) -> str:
        return f"{self.base / self.layout['frame']} (and masks, wav)"

    def masks(self, record: Record, size: int | None, shape: tuple[int, int]) -> np.ndarray:
        """(T, H, W) bool ground-truth masks of ``record`` at ``size`` (as its frames); frames without one (see
        ``mask_valid``) get an empty mask of ``shape`` (H, W)."""
        masks = np.zeros((FRAMES, *shape), dtype=bool)  # (T, H, W)
        for i in np.flatnonzero(record.targets["mask_valid"]):
            masks[i] = load_mask(self._path("mask", record, i + 1), size)
        return masks

    def load(self, record: Record, decode: Decode) -> dict[str, Any]:
        from avlearn.io import read_audio

        frames = np.stack([load_image(self._path("frame", record, i + 1), decode.size) for i in range(FRAMES)])
        out = {"frames": frames, "masks": self.masks(record, decode.size, frames.shape[1:3])}
        if decode.audio:
            wav = read_audio(self._path("wav", record), sample_rate=decode.sample_rate, duration=decode.seconds,
                             short="pad")  # fmt: skip
            out["wave"] = wav.wave
        return out


class AVSBenchDataset(ClipDataset):
    """AVSBench-object clips of one flavour (``s4`` or ``ms3``, set by the subclass) and split."""

    splits = SPLITS
    segments = FRAMES
    flavour = "s4"

    def __init__(
        self,
        root: str | Path,
        split: str,
        missing: str = "error",
        media: str | Path | None = None,
        decode: Decode | None = None,
    ) -> None:
        check_split(self.name, split, self.splits)
        flavour = self.flavour
        root = Path(root)
        folder = annotation_folder(root, "AVSBench", MARKERS)
        every = {s: self._rows(folder, flavour, s) for s in self.splits if s == split or self._has(folder, flavour, s)}
        rows = every[split]
        classes = tuple(sorted({category for split_rows in every.values() for *_, category in split_rows if category}))
        valid = mask_valid(flavour, split)
        records = []
        for where, name, category in rows:
            targets: dict[str, Any] = {"mask_valid": valid}
            if category:
                targets["label"] = classes.index(category)
            indices = (targets["label"],) if category else ()
            records.append(Record(name, name, split, targets, where, indices, {"category": category}))
        source = AVSBenchMedia(Path(media) if media else folder, flavour)
        super().__init__(root, split, records, classes, source, decode or Decode(frames=FRAMES, seconds=5.0), missing)

    @staticmethod
    def _has(folder: Path, flavour: str, split: str) -> bool:
        return (folder / LAYOUT[flavour]["meta"]).is_file() or (flavour == "s4" and (folder / LISTS[split]).is_file())

    @staticmethod
    def _rows(folder: Path, flavour: str, split: str) -> list[tuple[str, str, str]]:
        meta = folder / LAYOUT[flavour]["meta"]
        if meta.is_file():
            return [(w, n, c) for w, n, c, s in read_meta(meta, flavour) if s == split]
        if flavour == "s4" and (folder / LISTS[split]).is_file():
            return read_frame_list(folder / LISTS[split])
        lists = f" or {folder / LISTS[split]}" if flavour == "s4" else ""
        raise DataError(f"{folder}: no AVSBench {flavour.upper()} annotations (looked for {meta}{lists})")


@DATASETS.register("avsbench_s4")
class AVSBenchS4(AVSBenchDataset):
    """AVSBench-object S4 (single source): 23 categories, 5 frames, first-frame masks in train; train/val/test."""

    name = "avsbench_s4"
    flavour = "s4"


@DATASETS.register("avsbench_ms3")
class AVSBenchMS3(AVSBenchDataset):
    """AVSBench-object MS3 (multiple sources): 5 frames with 5 masks in every split; train/val/test."""

    name = "avsbench_ms3"
    flavour = "ms3"
