"""AVE (Tian et al., "Audio-Visual Event Localization in Unconstrained Videos", ECCV 2018) in its published layout.

Annotations (YapengTian/AVE-ECCV18, copied in DG-SCT ``data/AVE``), in ``<root>/AVE/`` or ``<root>/``:
``Annotations.txt`` (with a header) and ``trainSet.txt`` / ``valSet.txt`` / ``testSet.txt`` (without), one
``Category&VideoID&Quality&StartTime&EndTime`` row per event, whole seconds in [0, 10]; 4143 rows, 3339 / 402 /
402. ``categories.txt`` lists the 28 classes in the benchmark's order; without it, the classes are the 28 real ones
(``AVE_CATEGORIES``), or the sorted categories of Annotations.txt when none of them is a real one (AVSynth always
writes categories.txt); a misspelt category is therefore an error naming its line, never a new class. Each
video has 10 one-second segments; segment s carries the category when StartTime <= s < EndTime, otherwise
background (index K = number of classes; 28 on the real benchmark). The video-level label
(AVE classification) is the event category. One published row has StartTime = EndTime = 0 (trainSet.txt line 64,
``VWi2ENBuTbw``): it is read as it is written, a video whose 10 segments are all background.

A VideoID that repeats within a file (the real train split has some) gets the ids ``VideoID#2``, ``VideoID#3`` ...
in file order, since each row is its own sample with its own event; its media is still ``<VideoID>.mp4``.

Media: ``<root>/AVE/<VideoID>.mp4`` (the published AVE.zip), ``<root>/videos/<VideoID>.mp4`` (AVSynth),
``<root>/<VideoID>.mp4``, or ``media=`` (a clip store, or a folder with ``frames/<VideoID>/`` and ``wave/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlearn.data.datasets.base import ClipDataset, annotation_folder, check_split, class_index
from avlearn.data.datasets.media import Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import read_names, text_lines
from avlearn.errors import DataError
from avlearn.registry import DATASETS

SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt", "all": "Annotations.txt"}
SEGMENTS = 10
HEADER = "Category&VideoID&Quality&StartTime&EndTime"
MEDIA_TEMPLATES = ("AVE/{media}.mp4", "videos/{media}.mp4", "{media}.mp4")
AVE_CATEGORIES: tuple[str, ...] = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane", "Race car, auto racing",
    "Female speech, woman speaking", "Helicopter", "Violin, fiddle", "Flute", "Ukulele", "Frying (food)", "Truck",
    "Shofar", "Motorcycle", "Acoustic guitar", "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus",
    "Chainsaw", "Cat", "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
)  # fmt: skip


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
        labels[self.start : self.end] = class_index(classes, self.category, self.source, "Category")
        return labels


def _parse_row(text: str, where: str) -> AVEEvent:
    fields = text.split("&")
    if len(fields) != 5:
        raise DataError(f"{where}: expected 5 '&'-separated fields ({HEADER}), got {len(fields)}")
    category, video_id, _, start, end = (f.strip() for f in fields)
    try:
        start_s, end_s = int(start), int(end)
    except ValueError:
        raise DataError(f"{where}: StartTime/EndTime must be whole seconds, got {start!r}/{end!r}") from None
    if not 0 <= start_s <= end_s <= SEGMENTS:
        raise DataError(f"{where}: expected 0 <= StartTime <= EndTime <= {SEGMENTS}, got {start_s} and {end_s}")
    return AVEEvent(video_id, category, start_s, end_s, where)


def read_events(path: str | Path) -> list[AVEEvent]:
    """All rows of one AVE annotation file; a bad row raises a DataError naming ``file:line``."""
    rows = [(n, line) for n, line in text_lines(path) if not line.startswith(HEADER)]
    return [_parse_row(line.strip(), f"{path}:{n}") for n, line in rows]


def unique_ids(video_ids: list[str]) -> list[str]:
    """``VideoID``, then ``VideoID#2``, ``VideoID#3`` ... for repeats, in order."""
    seen: dict[str, int] = {}
    out = []
    for vid in video_ids:
        seen[vid] = seen.get(vid, 0) + 1
        out.append(vid if seen[vid] == 1 else f"{vid}#{seen[vid]}")
    return out


def read_classes(folder: str | Path) -> tuple[str, ...]:
    """The class list of the AVE annotation folder ``folder`` (see the module docstring for the fallbacks)."""
    folder = Path(folder)
    if (folder / "categories.txt").is_file():
        return read_names(folder / "categories.txt")
    if (folder / SPLIT_FILES["all"]).is_file():
        found = {e.category for e in read_events(folder / SPLIT_FILES["all"])}
        return tuple(sorted(found)) if found and not found & set(AVE_CATEGORIES) else AVE_CATEGORIES
    return AVE_CATEGORIES


def read_segment_labels(path: str | Path, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Unique id -> (S,) segment labels of one annotation file (the form the AVE scorer compares)."""
    events = read_events(path)
    ids = unique_ids([e.video_id for e in events])
    return {uid: e.segment_labels(classes) for uid, e in zip(ids, events, strict=True)}


@DATASETS.register("ave")
class AVEDataset(ClipDataset):
    """AVE: 28 event classes + background, 10 one-second segments, splits train/val/test (3339/402/402)."""

    name = "ave"
    splits = tuple(SPLIT_FILES)
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
        folder = annotation_folder(root, "AVE", SPLIT_FILES.values())
        classes = read_classes(folder)
        events = read_events(folder / SPLIT_FILES[split])
        records = []
        for uid, event in zip(unique_ids([e.video_id for e in events]), events, strict=True):
            segments = event.segment_labels(classes)
            label = class_index(classes, event.category, event.source, "Category")
            targets = {"label": label, "segment_labels": segments}
            records.append(Record(uid, event.video_id, split, targets, event.source, (label,)))
        super().__init__(root, split, records, classes, open_media(root, media, MEDIA_TEMPLATES),
                         decode or Decode(frames=SEGMENTS, seconds=float(SEGMENTS)), missing)  # fmt: skip

    @property
    def items(self) -> list[tuple[str, Path | None, np.ndarray]]:
        """(id, video path, (S,) segment labels) per record, for ``avlearn.data.segments.decode_segments``.

        The path is None unless the media are video files (a store or frame folders are decoded by indexing).
        """
        locate = getattr(self.media, "path", lambda _: None)
        return [(r.id, locate(r), r.targets["segment_labels"]) for r in self.records]

    def stats(self) -> dict:
        """The common statistics plus the mean event length in seconds."""
        lengths = [int((r.targets["segment_labels"] < len(self.classes)).sum()) for r in self.records]
        return {**super().stats(), "mean_event_seconds": float(np.mean(lengths)) if lengths else 0.0}
