"""What every dataset reader shares: label and layout helpers, the missing-media policy and the reader base class.

Readers parse their annotation files with ``avlearn.data.textfiles`` (shared with the scorers), whose errors name
``file:line``, the field and what was expected. A reader parses its files into ``Record``s (``avlearn.data.schema``),
then ``ClipDataset`` checks that every record has media and applies the policy ``missing``:

- ``"error"`` (default): any record without media raises, listing how many and the first ids;
- ``"drop"``: those records are left out, and the count is printed (to stderr) with the first ids;
- ``"keep"``: records are kept without media (for annotation-only use: ``avlearn data check``, scoring); the
  count is printed, and decoding such a record raises.

Indexing a reader decodes one record into a ``Sample`` dict (media + targets + ``id`` + ``meta``), so a
``torch.utils.data.DataLoader(reader, collate_fn=avlearn.data.schema.collate)`` batches it.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.data.datasets.media import Decode, Media
from avlearn.data.schema import DatasetInfo, Record
from avlearn.errors import DataError

MISSING_POLICIES = ("error", "drop", "keep")
SHOW_IDS = 5  # ids named in a message


def find_file(root: Path, candidates: Sequence[str], what: str) -> Path:
    """The first of ``candidates`` (paths relative to ``root``) that exists; raise naming them all otherwise."""
    for candidate in candidates:
        if (Path(root) / candidate).is_file():
            return Path(root) / candidate
    tried = ", ".join(str(Path(root) / c) for c in candidates)
    raise DataError(f"{root}: no {what} found (looked for {tried})")


def annotation_folder(root: Path, name: str, markers: Iterable[str]) -> Path:
    """``root/name`` when it holds any of the files ``markers`` (the release's own folder), else ``root``."""
    inner = Path(root) / name
    return inner if any((inner / m).is_file() for m in markers) else Path(root)


def check_split(name: str, split: str, splits: Sequence[str]) -> None:
    """Raise unless ``split`` is one of the reader's ``splits``."""
    if split not in splits:
        raise DataError(f"unknown {name} split {split!r}; expected one of {', '.join(splits)}")


def class_index(classes: Sequence[str], name: str, where: str, field: str) -> int:
    """The index of ``name`` in ``classes``; an unknown name raises naming ``where`` and ``field``."""
    try:
        return list(classes).index(name)
    except ValueError:
        shown = ", ".join(list(classes)[:8]) + (" ..." if len(classes) > 8 else "")
        raise DataError(f"{where}: field '{field}': unknown class {name!r} (known: {shown})") from None


def multi_hot(indices: Sequence[int], size: int) -> np.ndarray:
    """(K,) float32 with ones at ``indices``."""
    out = np.zeros(size, dtype=np.float32)
    out[list(indices)] = 1.0
    return out


class ClipDataset:
    """A reader's records with their media: ``len``, indexing (decoded samples), label space and statistics.

    Subclasses parse their annotation files into records, then call ``__init__`` of this class.

    Attributes:
        name: The registry name of the reader.
        root: The dataset folder.
        split: The official split read.
        records: The records kept (after the missing-media policy).
        classes: The label space, in index order (background, where there is one, is not in it).
        info: ``DatasetInfo`` (class names, segments per clip) for the task heads.
        missing: Ids of the records without media (dropped under ``"drop"``, kept under ``"keep"``).
        dropped: Ids left out under ``"drop"`` (empty otherwise).
        media: Where the media come from.
        decode: How samples are decoded.
    """

    name = "dataset"
    splits: tuple[str, ...] = ()
    segments = 1

    @classmethod
    def official_splits(cls) -> tuple[str, ...]:
        """The splits the benchmark publishes (what ``avlearn data check`` reads by default)."""
        return tuple(s for s in cls.splits if s != "all")

    def __init__(
        self,
        root: Path,
        split: str,
        records: list[Record],
        classes: tuple[str, ...],
        media: Media,
        decode: Decode,
        missing: str,
    ) -> None:
        if missing not in MISSING_POLICIES:
            raise DataError(f"missing={missing!r}: expected one of {', '.join(MISSING_POLICIES)}")
        self.root, self.split, self.classes, self.media, self.decode = Path(root), split, classes, media, decode
        self.info = DatasetInfo(tuple(classes), self.segments)
        self.missing = [r.id for r in records if not media.has(r)]
        self.records = self._apply_policy(records, missing)
        self.dropped = list(self.missing) if missing == "drop" else []

    def _apply_policy(self, records: list[Record], missing: str) -> list[Record]:
        if not self.missing:
            return records
        first = ", ".join(self.missing[:SHOW_IDS])
        what = f"{self.name} {self.split}: {len(self.missing)} of {len(records)} samples have no media (first: {first})"
        if missing == "error":
            raise DataError(f"{what}; looked in {self.media.describe()}; add them, or pass missing='drop'")
        print(f"{what}; {'dropped' if missing == 'drop' else 'kept without media'}", file=sys.stderr)
        if missing == "keep":
            return records
        absent = set(self.missing)
        return [r for r in records if r.id not in absent]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        sample = {"id": record.id, **self.load_media(record), **record.targets}
        sample["meta"] = {"media": record.media, "split": record.split, "source": record.source}
        return sample

    def load_media(self, record: Record) -> dict[str, Any]:
        """The decoded media of one record (``frames`` and/or ``wave``)."""
        return self.media.load(record, self.decode)

    def stats(self) -> dict[str, Any]:
        """Counts and label statistics: samples, media missing, samples per class, classes per sample."""
        per_class = Counter(c for r in self.records for c in r.classes)
        per_sample = [len(r.classes) for r in self.records]
        return {
            "samples": len(self.records),
            "media_missing": len(self.missing),
            "classes": len(self.classes),
            "per_class": {self.classes[c]: per_class.get(c, 0) for c in range(len(self.classes))},
            "classes_per_sample": float(np.mean(per_sample)) if per_sample else 0.0,
            "unlabelled": sum(n == 0 for n in per_sample),
        }
