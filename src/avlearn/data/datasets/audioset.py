"""AudioSet (Gemmeke et al., "Audio Set: An ontology and human-labeled dataset for audio events", ICASSP 2017):
10-second YouTube segments with multiple labels over 527 classes.

Annotations (the release), in ``<root>/AudioSet/``, ``<root>/annotations/`` or ``<root>/``:

- ``balanced_train_segments.csv``, ``unbalanced_train_segments.csv``, ``eval_segments.csv``: ``#`` comment lines
  (the first three), then ``YTID, start_seconds, end_seconds, "label,label,..."`` (labels are ontology ids such as
  ``/m/09x0r``).
- ``class_labels_indices.csv``: header ``index,mid,display_name``; the label space in index order (527).
- ``ontology.json`` (optional): the ontology; when present, every label must be one of its ids.

Targets: ``labels`` (K,) multi-hot. Splits: ``balanced_train``, ``unbalanced_train``, ``eval``. The id of a
segment is ``<YTID>_<start:06d>``. Media: ``audio/<split>/Y<YTID>.wav`` (audio-only downloads),
``videos/<id>.mp4``, DeepAVFusion's ``clips/<YTID[:2]>/<YTID>_<start:06d>_<end:06d>.mp4``, ``videos/<YTID>.mp4``
(as AVSynth writes them), or ``media=``.
"""

from __future__ import annotations

from pathlib import Path

from avlearn.data.datasets.base import ClipDataset, check_split, class_index, find_file, multi_hot
from avlearn.data.datasets.media import Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import csv_rows, read_json
from avlearn.errors import DataError
from avlearn.registry import DATASETS

SPLIT_FILES = {
    "balanced_train": "balanced_train_segments.csv",
    "unbalanced_train": "unbalanced_train_segments.csv",
    "eval": "eval_segments.csv",
}
FOLDERS = ("AudioSet", "annotations", ".")
MEDIA_TEMPLATES = (
    "audio/{split}/Y{yid}.wav", "audio/{split}/{id}.wav", "videos/{id}.mp4", "clips/{prefix}/{id}_{end}.mp4",
    "videos/{yid}.mp4",
)  # fmt: skip


def read_class_indices(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(mids, display names)`` of ``class_labels_indices.csv``, checked to be numbered 0..K-1 in order."""
    mids, names = [], []
    for number, cells in csv_rows(path):
        if number == 1 and cells[:2] == ["index", "mid"]:
            continue
        if len(cells) != 3 or cells[0] != str(len(mids)):
            raise DataError(f"{path}:{number}: expected 'index,mid,display_name' with index {len(mids)}, got {cells}")
        mids.append(cells[1])
        names.append(cells[2])
    return tuple(mids), tuple(names)


def ontology_ids(path: Path) -> set[str]:
    """The ids of ``ontology.json`` (a list of ``{"id": ..., "name": ...}``)."""
    nodes = read_json(path)
    if not isinstance(nodes, list) or not all(isinstance(n, dict) and "id" in n for n in nodes):
        raise DataError(f"{path}: expected the AudioSet ontology, a JSON list of objects with an 'id'")
    return {n["id"] for n in nodes}


def read_segments(path: Path, mids: tuple[str, ...]) -> list[tuple[str, str, float, float, tuple[int, ...]]]:
    """``(file:line, YTID, start, end, label indices)`` per segment row."""
    out = []
    for number, cells in csv_rows(path):
        where = f"{path}:{number}"
        if len(cells) != 4:
            raise DataError(
                f"{where}: expected 'YTID, start_seconds, end_seconds, \"labels\"', got {len(cells)} fields"
            )
        try:
            start, end = float(cells[1]), float(cells[2])
        except ValueError:
            raise DataError(
                f"{where}: start_seconds/end_seconds must be numbers, got {cells[1]!r}/{cells[2]!r}"
            ) from None
        names = [m.strip() for m in cells[3].split(",") if m.strip()]
        labels = tuple(class_index(mids, m, where, "positive_labels") for m in names)
        out.append((where, cells[0].strip(), start, end, labels))
    return out


@DATASETS.register("audioset")
class AudioSetDataset(ClipDataset):
    """AudioSet: 527 classes, multi-label 10-second segments; splits balanced_train/unbalanced_train/eval."""

    name = "audioset"
    splits = tuple(SPLIT_FILES)

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
        index_file = find_file(root, [f"{d}/class_labels_indices.csv" for d in FOLDERS], "class_labels_indices.csv")
        folder = index_file.parent
        mids, names = read_class_indices(index_file)
        if (folder / "ontology.json").is_file():
            unknown = sorted(set(mids) - ontology_ids(folder / "ontology.json"))
            if unknown:
                raise DataError(f"{index_file}: {len(unknown)} mid(s) not in ontology.json (first: {unknown[0]})")
        records = []
        for where, yid, start, end, labels in read_segments(folder / SPLIT_FILES[split], mids):
            uid = f"{yid}_{int(start):06d}"
            fields = {"yid": yid, "prefix": yid[:2], "end": f"{int(end):06d}"}
            records.append(Record(uid, uid, split, {"labels": multi_hot(labels, len(mids))}, where, labels, fields))
        super().__init__(root, split, records, names, open_media(root, media, MEDIA_TEMPLATES),
                         decode or Decode(frames=10, seconds=10.0), missing)  # fmt: skip
