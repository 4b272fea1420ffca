"""LLP, the Look, Listen and Parse dataset of audio-visual video parsing (AVVP; Tian et al., "Unified Multisensory
Perception: Weakly-Supervised Audio-Visual Video Parsing", ECCV 2020), in its published layout.

Annotations (YapengTian/AVVP-ECCV20, copied in DG-SCT ``data/AVVP``), tab-separated with a header, in
``<root>/LLP/`` or ``<root>/``:

- ``AVVP_train.csv`` (10000), ``AVVP_val_pd.csv`` (649), ``AVVP_test_pd.csv`` (1200): ``filename event_labels``,
  the video-level (weak) labels, comma-separated; ``filename`` is ``<YouTube id>_<start>_<end>``.
- ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv``: ``filename onset offset event_labels``, one row per event
  and modality for the val and test videos, whole seconds in [0, 10], offset exclusive. Rows with onset >=
  offset exist in the published files (e.g. ``9 9``); they mark no segment, as in the reference evaluation.

Classes: the 25 of the reference code, in its order (``AVVP_CLASSES``); when no label found is one of them
(AVSynth), the sorted labels of the three weak-label files. Targets: ``labels`` (K,) multi-hot weak labels; for
val and test also ``audio_segments`` and ``visual_segments`` (S, K), the per-second events of each modality.

Media: ``<root>/LLP/LLP_dataset/video/<filename>.mp4`` (the published download), ``<root>/videos/<filename>.mp4``
(AVSynth), or ``media=`` (a clip store, or a folder with ``frames/<filename>/`` and ``wave/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avlearn.data.datasets.base import ClipDataset, annotation_folder, check_split, class_index, multi_hot
from avlearn.data.datasets.media import Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import parse_int, read_table
from avlearn.errors import DataError
from avlearn.registry import DATASETS

# Class order of the LLP reference code.
AVVP_CLASSES: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm",
    "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner",
    "Baby_laughter", "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar",
    "Telephone_bell_ringing", "Baby_cry_infant_cry", "Blender", "Clapping",
)  # fmt: skip
SEGMENTS = 10
SPLIT_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
EVAL_FILES = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
WEAK_COLUMNS = ("filename", "event_labels")
EVENT_COLUMNS = ("filename", "onset", "offset", "event_labels")
MEDIA_TEMPLATES = ("LLP/LLP_dataset/video/{media}.mp4", "LLP_dataset/video/{media}.mp4", "videos/{media}.mp4")
Event = tuple[str, int, int, str]


def read_weak_labels(path: str | Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(file:line, filename, labels)`` per row of a weak-label file (``AVVP_train.csv`` format)."""
    out = []
    for where, row in read_table(path, WEAK_COLUMNS, "\t"):
        labels = tuple(x.strip() for x in row["event_labels"].split(",") if x.strip())
        if not labels:
            raise DataError(f"{where}: id '{row['filename']}': field 'event_labels': expected at least one label")
        out.append((where, row["filename"], labels))
    return out


def read_filenames(path: str | Path) -> list[str]:
    """The ``filename`` column of an LLP file, in order, each once."""
    return list(dict.fromkeys(row["filename"] for _, row in read_table(path, ("filename",), "\t")))


def read_eval_events(path: str | Path, classes: Sequence[str] = AVVP_CLASSES) -> list[Event]:
    """Rows ``(filename, onset, offset, label)`` of an ``AVVP_eval_*.csv``-format file (tab-separated)."""
    out = []
    for where, row in read_table(path, EVENT_COLUMNS, "\t"):
        at = f"{where}: id '{row['filename']}'"
        label = classes[class_index(classes, row["event_labels"], at, "event_labels")]
        onset = parse_int(row["onset"], at, "onset", 0, SEGMENTS)
        offset = parse_int(row["offset"], at, "offset", 0, SEGMENTS)
        out.append((row["filename"], onset, offset, label))
    return out


def llp_classes(folder: Path, event_files: Sequence[str | Path] = ()) -> tuple[str, ...]:
    """``AVVP_CLASSES``, unless none of the labels found is one of them: then the sorted labels found.

    The labels are the weak labels of the split files in ``folder`` or, when it has none (ground-truth files
    copied on their own, for scoring), the ``event_labels`` of ``event_files`` (``AVVP_eval_*.csv`` format).
    So a misspelt label in the real files is an error (naming its line), not a 26th class.
    """
    found = {lab for name in SPLIT_FILES.values() if (folder / name).is_file()
             for *_, labels in read_weak_labels(folder / name) for lab in labels}  # fmt: skip
    if not found:
        found = {row["event_labels"] for path in event_files for _, row in read_table(path, EVENT_COLUMNS, "\t")}
    return tuple(sorted(found)) if found and not found & set(AVVP_CLASSES) else AVVP_CLASSES


def segment_table(events: list[Event], classes: Sequence[str]) -> dict[str, np.ndarray]:
    """filename -> (S, K) float32, 1 where an event of class k covers second s (onset <= s < offset)."""
    out: dict[str, np.ndarray] = {}
    for name, onset, offset, label in events:
        table = out.setdefault(name, np.zeros((SEGMENTS, len(classes)), dtype=np.float32))
        table[onset:offset, list(classes).index(label)] = 1.0
    return out


@DATASETS.register("llp")
class LLPDataset(ClipDataset):
    """LLP (AVVP): 25 classes, weak video labels (train), per-second audio and visual events (val, test)."""

    name = "llp"
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
        folder = annotation_folder(root, "LLP", (SPLIT_FILES["train"], SPLIT_FILES["test"]))
        classes = llp_classes(folder)
        tables = {}
        if split != "train":
            tables = {m: segment_table(read_eval_events(folder / f, classes), classes) for m, f in EVAL_FILES.items()}
        empty = np.zeros((SEGMENTS, len(classes)), dtype=np.float32)
        records = []
        for where, name, labels in read_weak_labels(folder / SPLIT_FILES[split]):
            indices = tuple(class_index(classes, lab, f"{where}: id '{name}'", "event_labels") for lab in labels)
            targets: dict = {"labels": multi_hot(indices, len(classes))}
            for modality, table in tables.items():
                targets[f"{modality}_segments"] = table.get(name, empty)
            records.append(Record(name, name, split, targets, where, indices))
        super().__init__(root, split, records, classes, open_media(root, media, MEDIA_TEMPLATES),
                         decode or Decode(frames=SEGMENTS, seconds=float(SEGMENTS)), missing)  # fmt: skip

    def stats(self) -> dict:
        """The common statistics plus the share of multi-label videos and, for val/test, the event seconds."""
        out = super().stats()
        out["multi_label"] = float(np.mean([len(r.classes) > 1 for r in self.records])) if self.records else 0.0
        for modality in EVAL_FILES:
            key = f"{modality}_segments"
            if self.records and key in self.records[0].targets:
                out[f"{modality}_event_seconds"] = int(sum(r.targets[key].sum() for r in self.records))
        return out
