"""VALOR-32K (Chen et al., "VALOR: Vision-Audio-Language Omni-Perception Pretraining Model and Dataset", 2023) in
the annotation format of the VALOR code, which MSR-VTT (``msrvtt.py``) shares.

Annotations, in ``<root>/VALOR-32K/``, ``<root>/valor32k/``, ``<root>/captions/`` (AVSynth) or ``<root>/``:

- id lists: ``<split>_id.json``, a JSON list of video ids (``["video0", ...]``);
- ``txt_mapper.json``: ``{video_id: [caption, ...]}`` (or one caption string per id). A split may have its own
  mapper (MSR-VTT's ``txt_mapper_1kAsplit_test.json``), tried first.

Targets: ``text`` (the first caption) and ``captions`` (all of them; retrieval and captioning evaluate on all, as
VALOR does). A listed id without a caption is an error. Media: ``videos/<id>.mp4``, ``raw_videos/<id>.mp4``,
VALOR's extracted ``frames_fps4/<id>/`` + ``audio_22050hz/<id>.wav`` when present, or ``media=``.
Batch with ``avlearn.data.schema.collate`` (caption lists differ in length).

``valor_qa``: VALOR's open-ended QA layout (``qa%`` tasks): the same ``<split>_id.json`` lists, in ``<root>/VALOR-QA/``
or ``<root>/``, with a ``txt_mapper.json`` of ``{video_id: [{"question": ..., "answer": ...}, ...]}``. One record
per question (id ``<video_id>#<n>``), targets ``question`` and ``answer`` (strings; no answer vocabulary).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avlearn.data.datasets.base import ClipDataset, check_split, find_file
from avlearn.data.datasets.media import Decode, FrameMedia, Media, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import read_json
from avlearn.errors import DataError
from avlearn.registry import DATASETS

MEDIA_TEMPLATES = ("videos/{media}.mp4", "raw_videos/{media}.mp4")


def read_id_list(path: Path) -> list[str]:
    """A JSON list of video ids."""
    ids = read_json(path)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DataError(f"{path}: expected a JSON list of video id strings")
    return ids


def read_txt_mapper(path: Path) -> dict[str, list[str]]:
    """``{video_id: [caption, ...]}`` (a single caption string is read as a list of one)."""
    mapping = read_json(path)
    if not isinstance(mapping, dict):
        raise DataError(f"{path}: expected a JSON object mapping video ids to captions")
    out = {}
    for vid, captions in mapping.items():
        caps = [captions] if isinstance(captions, str) else captions
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
            raise DataError(f"{path}: id '{vid}': expected a caption string or a non-empty list of strings")
        out[vid] = caps
    return out


def read_qa_mapper(path: Path) -> dict[str, list[tuple[str, str]]]:
    """``{video_id: [(question, answer), ...]}`` of a VALOR QA ``txt_mapper.json``."""
    mapping = read_json(path)
    if not isinstance(mapping, dict):
        raise DataError(f"{path}: expected a JSON object mapping video ids to question-answer lists")
    out = {}
    for vid, pairs in mapping.items():
        ok = isinstance(pairs, list) and all(
            isinstance(p, dict) and isinstance(p.get("question"), str) and isinstance(p.get("answer"), str)
            for p in pairs
        )
        if not ok:
            raise DataError(f"{path}: id '{vid}': expected a list of {{'question': str, 'answer': str}} objects")
        out[vid] = [(p["question"], p["answer"]) for p in pairs]
    return out


def _listed(ids_path: Path, mapping: dict[str, Any], mapper_path: Path, what: str) -> list[tuple[str, str, Any]]:
    """``(file: item N, video id, its mapper entry)`` per id of the list; an id the mapper lacks raises."""
    out = []
    for position, vid in enumerate(read_id_list(ids_path)):
        where = f"{ids_path}: item {position}"
        if vid not in mapping:
            raise DataError(f"{where}: id '{vid}' has no {what} in {mapper_path}")
        out.append((where, vid, mapping[vid]))
    return out


def caption_media(root: Path, media: str | Path | None) -> Media:
    """VALOR's extracted frames + audio when present under ``root``, else ``open_media``."""
    if media is None and (root / "frames_fps4").is_dir():
        return FrameMedia(root / "frames_fps4", root / "audio_22050hz")
    return open_media(root, media, MEDIA_TEMPLATES)


class CaptionDataset(ClipDataset):
    """Videos with captions in the VALOR format: the id list of a split and its txt_mapper."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        id_files: Sequence[str],
        mapper_files: Sequence[str],
        folders: Sequence[str],
        missing: str = "error",
        media: str | Path | None = None,
        decode: Decode | None = None,
    ) -> None:
        check_split(self.name, split, self.splits)
        root = Path(root)
        ids_path = find_file(root, [f"{d}/{f}" for f in id_files for d in folders], f"{self.name} {split} id list")
        mapper_path = find_file(ids_path.parent, mapper_files, f"{self.name} txt_mapper")
        records = self.read_records(split, ids_path, mapper_path)
        super().__init__(root, split, records, (), caption_media(root, media),
                         decode or Decode(frames=8, seconds=None), missing)  # fmt: skip

    @staticmethod
    def read_records(split: str, ids_path: Path, mapper_path: Path) -> list[Record]:
        """One record per listed video: ``text`` (its first caption) and ``captions``."""
        listed = _listed(ids_path, read_txt_mapper(mapper_path), mapper_path, "caption")
        return [Record(vid, vid, split, {"text": caps[0], "captions": caps}, where) for where, vid, caps in listed]

    def stats(self) -> dict:
        """The common statistics plus captions per video."""
        counts = [len(r.targets["captions"]) for r in self.records]
        return {**super().stats(), "captions": sum(counts), "captions_per_video": sum(counts) / max(1, len(counts))}


@DATASETS.register("valor32k")
class VALOR32KDataset(CaptionDataset):
    """VALOR-32K: videos with audio-visual captions (VALOR id lists + txt_mapper.json); train/val/test."""

    name = "valor32k"
    splits = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str, **options: object) -> None:
        folders = ("VALOR-32K", "valor32k", "captions", ".")
        super().__init__(root, split, [f"{split}_id.json"], ["txt_mapper.json"], folders, **options)  # type: ignore[arg-type]


@DATASETS.register("valor_qa")
class VALORQADataset(CaptionDataset):
    """Open-ended video QA in VALOR's layout (id lists + a question-answer txt_mapper.json); train/val/test."""

    name = "valor_qa"
    splits = ("train", "val", "test")
    stats = ClipDataset.stats  # no captions to count

    def __init__(self, root: str | Path, split: str, **options: object) -> None:
        super().__init__(root, split, [f"{split}_id.json"], ["txt_mapper.json"], ("VALOR-QA", "."), **options)  # type: ignore[arg-type]

    @staticmethod
    def read_records(split: str, ids_path: Path, mapper_path: Path) -> list[Record]:
        """One record per question (id ``<video_id>#<n>``): ``question`` and ``answer``."""
        listed = _listed(ids_path, read_qa_mapper(mapper_path), mapper_path, "question")
        return [Record(f"{vid}#{n}", vid, split, {"question": q, "answer": a}, where)
                for where, vid, pairs in listed for n, (q, a) in enumerate(pairs)]  # fmt: skip
