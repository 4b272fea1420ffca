"""VGGSound-AVEL40K, the 40k-clip, 141-class audio-visual event subset of VGGSound (from CPSP) that CMG pre-trains
on and DG-SCT uses for its zero-shot pre-training.

Annotations, in ``<root>/VGGSound-AVEL40K/``, ``<root>/vggsound/`` or ``<root>/``:

- ``vggsound-avel40k.csv`` (CMG): a header naming at least ``video_id``, ``category`` and ``split`` (train, val,
  test), one row per clip. DG-SCT's ``vggsound-avel40k_labels.csv`` adds ``label``: the 10 per-second event flags
  (0/1, written with or without separators and brackets), read into AVE-style ``segment_labels``.
- ``VggsoundAVEL40kCategories.txt``: the 141 classes in order (without it: the sorted categories found).

Targets: ``label`` (the category) and, with per-second flags, ``segment_labels`` (S,) int64 (background = K).
CMG pre-trains on all three splits together; here each split is read on its own (``split="all"`` gives the union).
Media: ``video/<video_id>.mp4``, ``videos/<video_id>.mp4``, or ``media=``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from avlearn.data.datasets.base import ClipDataset, check_split, class_index, find_file
from avlearn.data.datasets.media import Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import read_names, read_table
from avlearn.errors import DataError
from avlearn.registry import DATASETS

SPLITS = ("train", "val", "test", "all")
SEGMENTS = 10
FILES = ("vggsound-avel40k_labels.csv", "vggsound-avel40k.csv")
FOLDERS = ("VGGSound-AVEL40K", "vggsound", ".")
CATEGORIES = "VggsoundAVEL40kCategories.txt"
COLUMNS = ("video_id", "category", "split")
MEDIA_TEMPLATES = ("video/{media}.mp4", "videos/{media}.mp4")


def parse_flags(text: str, where: str) -> np.ndarray:
    """``"[0, 1, 1, ...]"`` or ``"0110..."`` -> (S,) bool of the per-second event flags."""
    digits = re.sub(r"[\s,;\[\]]", "", text)
    if len(digits) != SEGMENTS or set(digits) - {"0", "1"}:
        raise DataError(f"{where}: field 'label': expected {SEGMENTS} per-second 0/1 flags, got {text!r}")
    return np.array([d == "1" for d in digits])


@DATASETS.register("vggsound_avel40k")
class VGGSoundAVEL40KDataset(ClipDataset):
    """VGGSound-AVEL40K (CMG / DG-SCT pre-training): 141 event classes, optional per-second event flags."""

    name = "vggsound_avel40k"
    splits = SPLITS
    segments = SEGMENTS

    def __init__(
        self,
        root: str | Path,
        split: str,
        missing: str = "error",
        media: str | Path | None = None,
        decode: Decode | None = None,
    ) -> None:
        check_split(self.name, split, self.splits)
        root = Path(root)
        path = find_file(root, [f"{d}/{f}" for f in FILES for d in FOLDERS], "VGGSound-AVEL40K csv")
        rows = read_table(path, COLUMNS)
        listed = path.parent / CATEGORIES
        classes = read_names(listed) if listed.is_file() else tuple(sorted({r["category"] for _, r in rows}))
        records = []
        for where, row in rows:
            if split not in (row["split"], "all"):
                continue
            label = class_index(classes, row["category"], where, "category")
            targets: dict = {"label": label}
            if "label" in row:
                targets["segment_labels"] = np.where(parse_flags(row["label"], where), label, len(classes))
            records.append(Record(row["video_id"], row["video_id"], split, targets, where, (label,)))
        super().__init__(root, split, records, classes, open_media(root, media, MEDIA_TEMPLATES),
                         decode or Decode(frames=SEGMENTS, seconds=float(SEGMENTS)), missing)  # fmt: skip
