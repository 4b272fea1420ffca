"""VALOR-32K (Chen et al., "VALOR: Vision-Audio-Language Omni-Perception Pretraining Model and Dataset", 2023) in
the annotation format of the VALOR code, which MSR-VTT (``msrvtt.py``) shares.

Annotations, in ``<root>/VALOR-32K/``, ``<root>/valor32k/``, ``<root>/captions/`` (AVSynth) or ``<root>/``:

- id lists: ``<split>_id.json``, a JSON list of video ids (``["video0", ...]``);
- ``txt_mapper.json``: ``{video_id: [caption, ...]}`` (or one caption string per id). A split may have its own
  mapper (MSR-VTT's ``txt_mapper_1kAsplit_test.json``), tried first.

Targets: ``text`` (the first caption) and ``captions`` (all of them; retrieval and captioning evaluate on all, as
VALOR does). A listed id without a caption is an error. Media: ``videos/<id>.mp4``, ``raw_videos/<id>.mp4``,
VALOR's extracted frames (``frames_fps4/<id>/``, or the seed's ``frames_1fps_360*480_jpg/<id>/`` for VALOR-32K) +
``audio_22050hz/<id>.wav`` when present, or ``media=``. The seed's configs read ``txt_mapper_en.json``; either name
is read. ``CaptionDataset``'s class attributes (media templates, frame and audio folders, the default decoding) are
what the other VALOR-layout readers (``valor_layout.py``) change.
Batch with ``avlearn.data.schema.collate`` (caption lists differ in length).

``valor_qa``: VALOR's open-ended QA layout (``qa%`` tasks): the same ``<split>_id.json`` lists, in ``<root>/VALOR-QA/``
or ``<root>/``, with a ``txt_mapper.json`` of ``{video_id: [{"question": ..., "answer": ...}, ...]}``. One record
per question (id ``<video_id>#<n>``), targets ``question`` and ``answer`` (strings; no answer vocabulary).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

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
    if not isinstance(ids, list):
        raise DataError(f"{path}: expected a JSON list of video id strings, got a {type(ids).__name__}")
    bad = next((n for n, i in enumerate(ids) if not isinstance(i, str)), None)
    if bad is not None:
        raise DataError(f"{path}: item {bad}: expected a video id string, got {ids[bad]!r}")
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
        if not isinstance(pairs, list) or not all(isinstance(p, dict) for p in pairs):
            raise DataError(f"{path}: id '{vid}': expected a list of {{'question': str, 'answer': str}} objects")
        for n, pair in enumerate(pairs):
            for key in ("question", "answer"):
                if not isinstance(pair.get(key), str):
                    raise DataError(f"{path}: id '{vid}' item {n}: field '{key}': expected a string, "
                                    f"got {pair.get(key)!r}")  # fmt: skip
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


def caption_media(
    root: Path,
    media: str | Path | None,
    templates: Sequence[str] = MEDIA_TEMPLATES,
    frame_folders: Sequence[str] = ("frames_fps4",),
    audio_folder: str | None = "audio_22050hz",
) -> Media:
    """VALOR's extracted frames (the first of ``frame_folders`` under ``root``) + audio (``audio_folder``; None: no
    audio) when present, else ``open_media`` with ``templates``."""
    frames = next((root / f for f in frame_folders if (root / f).is_dir()), None)
    if media is None and frames is not None:
        return FrameMedia(frames, root / audio_folder if audio_folder else None)
    return open_media(root, media, templates)


class CaptionDataset(ClipDataset):
    """Videos with captions in the VALOR format: the id list of a split and its txt_mapper.

    Subclasses set where the media is: ``templates`` (media files under the root), ``frame_folders`` (VALOR's
    extracted frames, the first found), ``audio_folder`` (its extracted audio; None: none), ``default_decode``, and
    ``media_beside_ids``: the media folders are in the folder of the id lists (the seed's ``datasets/<name>/``)
    rather than under the root.
    """

    templates: ClassVar[tuple[str, ...]] = MEDIA_TEMPLATES
    frame_folders: ClassVar[tuple[str, ...]] = ("frames_fps4",)
    audio_folder: ClassVar[str | None] = "audio_22050hz"
    default_decode: ClassVar[Decode] = Decode(frames=8, seconds=None)
    media_beside_ids: ClassVar[bool] = False

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
        base = ids_path.parent if self.media_beside_ids else root
        source = caption_media(base, media, self.templates, self.frame_folders, self.audio_folder)
        super().__init__(root, split, records, (), source, decode or self.default_decode, missing)

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
    frame_folders = ("frames_fps4", "frames_1fps_360*480_jpg")

    def __init__(self, root: str | Path, split: str, **options: object) -> None:
        folders = ("VALOR-32K", "valor32k", "captions", ".")
        mappers = ["txt_mapper.json", "txt_mapper_en.json"]
        super().__init__(root, split, [f"{split}_id.json"], mappers, folders, **options)  # type: ignore[arg-type]


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
