"""VGGSound (Chen et al., "VGGSound: A Large-scale Audio-Visual Dataset", ICASSP 2020): 10-second YouTube clips, one
of 309 sound classes each.

Two annotation layouts, in ``<root>/VGGSound/``, ``<root>/annotations/`` or ``<root>/``:

- the release's ``vggsound.csv``: headerless ``YouTubeID,start_seconds,label,split`` rows (labels with commas are
  quoted), splits train and test. AVSynth writes this file.
- split lists such as DeepAVFusion's ``metadata/vggsound_test.csv``: headerless ``<YouTubeID>_<start:06d>,label``
  rows (labels with ``_`` for spaces), one file per split named ``vggsound_<split>.csv``.

Classes: the sorted labels of the release csv (every split), or of the split lists found. A clip's id is
``<YouTubeID>_<start:06d>``. Media: ``video/<id>.mp4`` or ``videos/<id>.mp4`` (or ``<YouTubeID>.mp4``, as AVSynth
writes them), DeepAVFusion's ``clips/<label with _ for space ( ) ,>/<id>_<end:06d>.mp4``, or ``media=``.
"""

from __future__ import annotations

import re
from pathlib import Path

from avlearn.data.datasets.base import ClipDataset, check_split
from avlearn.data.datasets.media import Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import csv_rows, parse_int
from avlearn.errors import DataError
from avlearn.registry import DATASETS

SPLITS = ("train", "test")
FOLDERS = ("VGGSound", "annotations", ".")
RELEASE = "vggsound.csv"
MEDIA_TEMPLATES = (
    "video/{id}.mp4", "videos/{id}.mp4", "VGGSound/video/{id}.mp4", "videos/{yid}.mp4", "clips/{folder}/{id}_{end}.mp4",
)  # fmt: skip
Row = tuple[str, str, int, str, str]  # (file:line, YouTube id, start, label, split)


def read_release(path: Path) -> list[Row]:
    """Rows of the release's ``vggsound.csv`` (``YouTubeID,start_seconds,label,split``)."""
    out = []
    for number, cells in csv_rows(path):
        where = f"{path}:{number}"
        if len(cells) != 4:
            raise DataError(f"{where}: expected 4 fields (YouTubeID,start_seconds,label,split), got {len(cells)}")
        yid, start, label, split = (c.strip() for c in cells)
        if split not in SPLITS:
            raise DataError(f"{where}: field 'split': expected train or test, got {split!r}")
        out.append((where, yid, parse_int(start, where, "start_seconds", 0, 10**6), label, split))
    return out


def read_split_list(path: Path, split: str) -> list[Row]:
    """Rows of a split list (``<YouTubeID>_<start:06d>,label``)."""
    out = []
    for number, cells in csv_rows(path):
        where = f"{path}:{number}"
        match = re.fullmatch(r"(.+)_(\d{6})", cells[0].strip()) if len(cells) == 2 else None
        if match is None:
            raise DataError(f"{where}: expected '<YouTubeID>_<start:06d>,label', got {','.join(cells)!r}")
        out.append((where, match[1], int(match[2]), cells[1].strip(), split))
    return out


def find_annotations(root: Path) -> tuple[Path, bool]:
    """The folder holding the annotations and whether it is the release layout (else split lists)."""
    for name in FOLDERS:
        folder = (root / name).resolve()
        if (folder / RELEASE).is_file():
            return folder, True
        if any((folder / f"vggsound_{s}.csv").is_file() for s in SPLITS):
            return folder, False
    looked = ", ".join(str(root / n / RELEASE) for n in FOLDERS)
    raise DataError(f"{root}: no VGGSound annotations (looked for {looked} and vggsound_<split>.csv beside them)")


def label_folder(label: str) -> str:
    """DeepAVFusion's clip folder name of a label: space, ``(``, ``)`` and ``,`` become ``_``."""
    return re.sub(r"[ (),]", "_", label)


@DATASETS.register("vggsound")
class VGGSoundDataset(ClipDataset):
    """VGGSound: 309 classes, one label per 10-second clip; splits train/test."""

    name = "vggsound"
    splits = SPLITS

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
        folder, release = find_annotations(root)
        if release:
            every = read_release(folder / RELEASE)
        else:
            lists = [s for s in SPLITS if (folder / f"vggsound_{s}.csv").is_file()]
            every = [r for s in lists for r in read_split_list(folder / f"vggsound_{s}.csv", s)]
        classes = tuple(sorted({row[3] for row in every}))
        index = {name: i for i, name in enumerate(classes)}
        records = []
        for where, yid, start, label, row_split in every:
            if row_split != split:
                continue
            fields = {"yid": yid, "end": f"{start + 10:06d}", "folder": label_folder(label)}
            uid = f"{yid}_{start:06d}"
            records.append(Record(uid, uid, split, {"label": index[label]}, where, (index[label],), fields))
        if not records:
            raise DataError(f"{folder}: no VGGSound clips of split {split!r}")
        super().__init__(root, split, records, classes, open_media(root, media, MEDIA_TEMPLATES),
                         decode or Decode(frames=10, seconds=10.0), missing)  # fmt: skip
