"""ESC-50 (Piczak, "ESC: Dataset for Environmental Sound Classification", ACM MM 2015): 2000 five-second clips,
50 classes, 5 folds for cross-validation.

Layout of the release (``ESC-50-master``), in ``<root>/ESC-50-master/``, ``<root>/esc-50/ESC-50-master/`` or
``<root>/``: ``meta/esc50.csv`` (header ``filename,fold,target,category,esc10,src_file,take``) and
``audio/<filename>`` (5 s, 44.1 kHz wav). The label space is the 50 categories ordered by ``target``.

Splits: ``fold1`` ... ``fold5`` (one fold), ``all``, and for cross-validation ``train`` / ``test`` with
``fold=k``: test is fold k, train the four others. Targets: ``label`` (the target). Audio only.
"""

from __future__ import annotations

from pathlib import Path

from avlearn.data.datasets.base import ClipDataset, check_split, find_file
from avlearn.data.datasets.media import Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import parse_int, read_table
from avlearn.errors import DataError
from avlearn.registry import DATASETS

FOLDS = 5
FOLD_SPLITS = tuple(f"fold{k}" for k in range(1, FOLDS + 1))
SPLITS = ("train", "test", "all", *FOLD_SPLITS)
COLUMNS = ("filename", "fold", "target", "category")
FOLDERS = ("ESC-50-master", "esc-50/ESC-50-master", ".")


def read_meta(path: Path) -> list[tuple[str, str, int, int, str]]:
    """``(file:line, filename, fold, target, category)`` per row of ``meta/esc50.csv``."""
    out = []
    for where, row in read_table(path, COLUMNS):
        fold = parse_int(row["fold"], where, "fold", 1, FOLDS)
        out.append((where, row["filename"], fold, parse_int(row["target"], where, "target", 0, 999), row["category"]))
    return out


def class_names(rows: list[tuple[str, str, int, int, str]]) -> tuple[str, ...]:
    """Categories ordered by target; a target with two names, or a gap, raises."""
    names: dict[int, str] = {}
    for where, _, _, target, category in rows:
        if names.setdefault(target, category) != category:
            raise DataError(f"{where}: target {target} is {names[target]!r} elsewhere, {category!r} here")
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{rows[0][0].rsplit(':', 1)[0]}: targets are not 0..{len(names) - 1}")
    return tuple(names[t] for t in range(len(names)))


def in_split(fold: int, split: str, test_fold: int) -> bool:
    """Whether a clip of ``fold`` belongs to ``split`` (see the module docstring)."""
    if split == "all":
        return True
    if split.startswith("fold"):
        return fold == int(split[4:])
    return (fold == test_fold) == (split == "test")


@DATASETS.register("esc50")
class ESC50Dataset(ClipDataset):
    """ESC-50: 50 environmental sound classes, 2000 clips of 5 s, 5 folds (fold1..fold5, or train/test + fold)."""

    name = "esc50"
    splits = SPLITS

    @classmethod
    def official_splits(cls) -> tuple[str, ...]:
        """The five folds."""
        return FOLD_SPLITS

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
            raise DataError(f"ESC-50 fold must be 1..{FOLDS}, got {fold}")
        root = Path(root)
        meta = find_file(root, [f"{d}/meta/esc50.csv" for d in FOLDERS], "ESC-50 meta/esc50.csv")
        rows = read_meta(meta)
        classes = class_names(rows)
        records = [
            Record(name, Path(name).stem, split, {"label": target}, where, (target,), {"file": name})
            for where, name, k, target, _ in rows
            if in_split(k, split, fold)
        ]
        base = meta.parent.parent
        super().__init__(root, split, records, classes, open_media(base, media, ("audio/{file}",)),
                         decode or Decode(frames=0, seconds=5.0, sample_rate=44100), missing)  # fmt: skip
