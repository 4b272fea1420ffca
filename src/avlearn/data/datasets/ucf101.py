"""UCF101 (Soomro et al., "UCF101: A Dataset of 101 Human Actions Classes From Videos in The Wild", 2012) with its
three official train/test splits.

Layout of the release, in ``<root>/UCF101/`` or ``<root>/``: ``ucfTrainTestlist/classInd.txt`` (``1 ApplyEyeMakeup``
... ``101 YoYo``), ``trainlist0{1,2,3}.txt`` (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``, the class as a
1-based index) and ``testlist0{1,2,3}.txt`` (the path only; the class is its folder), and the videos
``UCF-101/<Class>/<name>.avi``. Splits: ``train`` / ``test`` with ``fold`` 1, 2 or 3. Targets: ``label``
(0-based). Many UCF101 videos have no audio track; decoding reads them as silence.
"""

from __future__ import annotations

from pathlib import Path

from avlearn.data.datasets.base import ClipDataset, check_split, find_file
from avlearn.data.datasets.media import Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import parse_int, text_lines
from avlearn.errors import DataError
from avlearn.registry import DATASETS

SPLITS = ("train", "test")
FOLDS = 3
FOLDERS = ("UCF101", ".")


def read_class_index(path: Path) -> tuple[str, ...]:
    """Class names of ``classInd.txt`` (``<1-based index> <name>`` lines, numbered in order)."""
    names = []
    for number, line in text_lines(path):
        parts = line.split()
        if len(parts) != 2 or parts[0] != str(len(names) + 1):
            raise DataError(f"{path}:{number}: expected '{len(names) + 1} <ClassName>', got {line!r}")
        names.append(parts[1])
    return tuple(names)


def read_list(path: Path, classes: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """``(file:line, relative video path, 0-based label)`` per line of a train or test list."""
    out = []
    for number, line in text_lines(path):
        where = f"{path}:{number}"
        parts = line.split()
        folder = parts[0].split("/")[0]
        if len(parts) not in (1, 2) or "/" not in parts[0] or folder not in classes:
            raise DataError(f"{where}: expected '<Class>/<video>.avi[ <index>]' with a class of classInd.txt")
        label = classes.index(folder)
        if len(parts) == 2 and parse_int(parts[1], where, "class index", 1, len(classes)) != label + 1:
            raise DataError(f"{where}: class index {parts[1]} does not match the folder {folder!r} ({label + 1})")
        out.append((where, parts[0], label))
    return out


@DATASETS.register("ucf101")
class UCF101Dataset(ClipDataset):
    """UCF101: 101 action classes, official splits 1-3 (train/test with fold=1, 2 or 3)."""

    name = "ucf101"
    splits = SPLITS

    def __init__(
        self,
        root: str | Path,
        split: str,
        fold: int = 1,
        missing: str = "error",
        media: str | Path | None = None,
        decode: Decode | None = None,
    ) -> None:
        check_split(self.name, split, self.splits)
        if not 1 <= fold <= FOLDS:
            raise DataError(f"UCF101 fold must be 1..{FOLDS}, got {fold}")
        root = Path(root)
        index = find_file(root, [f"{d}/ucfTrainTestlist/classInd.txt" for d in FOLDERS], "UCF101 classInd.txt")
        classes = read_class_index(index)
        records = [
            Record(Path(rel).stem, Path(rel).stem, split, {"label": label}, where, (label,), {"file": rel})
            for where, rel, label in read_list(index.parent / f"{split}list0{fold}.txt", classes)
        ]
        base = index.parent.parent
        super().__init__(root, split, records, classes, open_media(base, media, ("UCF-101/{file}", "videos/{file}")),
                         decode or Decode(frames=8, seconds=None, audio=False), missing)  # fmt: skip
