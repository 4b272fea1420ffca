"""AVE (Tian et al., "Audio-Visual Event Localization in Unconstrained Videos", ECCV 2018) in its published layout.

Annotations: ``Annotations.txt`` (with a header) and ``trainSet.txt`` / ``valSet.txt`` / ``testSet.txt`` (without),
one ``Category&VideoID&Quality&StartTime&EndTime`` row per event, whole seconds in [0, 10]; ``categories.txt``
(optional) lists the classes in order — without it, the classes are the sorted categories found in
Annotations.txt. Each video has 10 one-second segments; segment s carries the category when StartTime <= s <
EndTime, otherwise background (index K = number of classes; 28 on the real benchmark).

Media: ``<root>/AVE/<VideoID>.mp4`` (the published AVE.zip) or ``<root>/videos/<VideoID>.mp4`` (AVSynth).
A row whose video is missing is an error by default; ``missing="drop"`` drops it and reports the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlearn.errors import DataError
from avlearn.registry import DATASETS
from avlearn.tasks.base import DatasetInfo

SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt", "all": "Annotations.txt"}
SEGMENTS = 10


@dataclass(frozen=True)
class AVEEvent:
    """One annotation row: where it came from (file, line) and what it says."""

    video_id: str
    category: str
    start: int
    end: int
    source: str

    def segment_labels(self, classes: tuple[str, ...]) -> np.ndarray:
        """(S,) int64: the category index inside [start, end), background (len(classes)) elsewhere."""
        labels = np.full(SEGMENTS, len(classes), dtype=np.int64)
        labels[self.start : self.end] = classes.index(self.category)
        return labels


def _parse_row(text: str, where: str) -> AVEEvent:
    fields = text.split("&")
    if len(fields) != 5:
        raise DataError(f"{where}: expected 5 '&'-separated fields (Category&VideoID&Quality&StartTime&EndTime)")
    category, video_id, _, start, end = (f.strip() for f in fields)
    try:
        start_s, end_s = int(start), int(end)
    except ValueError:
        raise DataError(f"{where}: StartTime/EndTime must be whole seconds, got {start!r}/{end!r}") from None
    if not 0 <= start_s < end_s <= SEGMENTS:
        raise DataError(f"{where}: expected 0 <= StartTime < EndTime <= {SEGMENTS}, got {start_s} and {end_s}")
    return AVEEvent(video_id, category, start_s, end_s, where)


def read_events(path: str | Path) -> list[AVEEvent]:
    """All rows of one AVE annotation file; a bad row raises a DataError naming ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: AVE annotation file not found")
    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() and not line.startswith("Category&"):
            events.append(_parse_row(line.strip(), f"{path}:{number}"))
    return events


def read_classes(folder: str | Path) -> tuple[str, ...]:
    """Class names from ``categories.txt`` if present, else the sorted categories of ``Annotations.txt``."""
    folder = Path(folder)
    listed = folder / "categories.txt"
    if listed.is_file():
        return tuple(n.strip() for n in listed.read_text(encoding="utf-8").splitlines() if n.strip())
    return tuple(sorted({e.category for e in read_events(folder / SPLIT_FILES["all"])}))


def _media_dir(root: Path) -> Path:
    for candidate in (root / "videos", root / "AVE"):
        if any(candidate.glob("*.mp4")):
            return candidate
    raise DataError(f"{root}: no videos found in {root / 'videos'} or {root / 'AVE'} (expected <VideoID>.mp4 files)")


@DATASETS.register("ave")
class AVEDataset:
    """AVE split ``split`` under ``root``: ``items`` of (video id, mp4 path, (S,) segment labels)."""

    def __init__(self, root: str | Path, split: str, missing: str = "error") -> None:
        if split not in SPLIT_FILES:
            raise DataError(f"unknown AVE split '{split}'; expected one of {', '.join(SPLIT_FILES)}")
        self.root = Path(root)
        folder = self.root / "AVE"
        self.classes = read_classes(folder)
        events = read_events(folder / SPLIT_FILES[split])
        unknown = next((e for e in events if e.category not in self.classes), None)
        if unknown:
            raise DataError(
                f"{unknown.source}: unknown Category {unknown.category!r}; known: {', '.join(self.classes)}"
            )
        media = _media_dir(self.root)
        self.items = [(e.video_id, media / f"{e.video_id}.mp4", e.segment_labels(self.classes)) for e in events]
        self.dropped = self._check_media(missing)
        self.info = DatasetInfo(self.classes, SEGMENTS)

    def _check_media(self, missing: str) -> list[str]:
        absent = [vid for vid, path, _ in self.items if not path.is_file()]
        if absent and missing == "error":
            raise DataError(
                f"{self.root}: {len(absent)} of {len(self.items)} videos are missing (first: {', '.join(absent[:5])}); "
                "add them, or pass missing=drop to leave those rows out"
            )
        self.items = [item for item in self.items if item[1].is_file()]
        return absent

    def __len__(self) -> int:
        return len(self.items)
