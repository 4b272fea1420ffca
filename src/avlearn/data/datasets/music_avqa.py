"""MUSIC-AVQA (Li et al., "Learning to Answer Questions in Dynamic Audio-Visual Scenarios", CVPR 2022) in its
published layout.

Annotations (GeWu-Lab/MUSIC-AVQA ``json_update``, copied in DG-SCT ``data/AVQA``), in ``<root>/MUSIC-AVQA/`` or
``<root>/``: ``avqa-{train,val,test}.json``, each a JSON list of questions ``{video_id, question_id, type,
question_content, templ_values, question_deleted, anser}`` where ``type`` and ``templ_values`` are JSON strings
(``'["Audio", "Counting"]'``, ``'["ukulele"]'``) and ``anser`` (sic) is the answer; ``ans_vocab.txt``, the 42
answers in the order of the reference code. Without ``ans_vocab.txt`` the vocabulary is built as the reference
code builds it: the answers of ``avqa-train.json`` in order of first appearance.

Each ``<Object>``, ``<LR>``, ``<FL>`` ... slot of ``question_content`` is filled, in order, with the next value of
``templ_values`` (the reference tokenizer does the same word by word). The question type is ``"Group/Type"`` with
group Audio, Visual or Audio-Visual and type Counting, Comparative, Location, Existential or Temporal. Targets:
``question`` (filled), ``answer`` (index in the vocabulary), ``question_type``.

Media: ``<root>/MUSIC-AVQA/videos/<video_id>.mp4``, ``<root>/videos/<video_id>.mp4`` (AVSynth), or ``media=``
(a clip store, or a folder with ``frames/<video_id>/`` and ``wave/``). Frames are spread over the whole clip
(``seconds=None``): set ``Decode(seconds=...)`` to batch clips of different lengths.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from avlearn.data.datasets.base import ClipDataset, annotation_folder, check_split
from avlearn.data.datasets.media import Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import read_json, read_names
from avlearn.errors import DataError
from avlearn.registry import DATASETS

SPLITS = ("train", "val", "test")
GROUPS = ("Audio", "Visual", "Audio-Visual")
TYPES = ("Counting", "Comparative", "Location", "Existential", "Temporal")
SLOT = re.compile(r"<[A-Za-z]+>")
FIELDS = ("video_id", "question_id", "type", "question_content", "templ_values", "anser")
MEDIA_TEMPLATES = ("MUSIC-AVQA/videos/{media}.mp4", "videos/{media}.mp4", "MUSIC-AVQA-videos-Real/{media}.mp4")


def _json_list(text: object, where: str, field: str) -> list:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list):
        raise DataError(f"{where}: field '{field}': expected a JSON list written as a string, got {text!r}")
    return value


def question_type(text: object, where: str) -> str:
    """``'["Audio", "Counting"]'`` -> ``"Audio/Counting"``, checked against the 3 groups and 5 types."""
    value = _json_list(text, where, "type")
    if len(value) != 2 or value[0] not in GROUPS or value[1] not in TYPES:
        raise DataError(f"{where}: field 'type': expected [group, type] with group in {GROUPS} and type in {TYPES}, "
                        f"got {text!r}")  # fmt: skip
    return f"{value[0]}/{value[1]}"


def fill_question(template: str, values: list, where: str) -> str:
    """``question_content`` with each ``<Slot>`` replaced, in order, by the next of ``values``."""
    slots = SLOT.findall(template)
    if len(slots) != len(values):
        raise DataError(f"{where}: field 'templ_values': {len(slots)} slot(s) {slots} in the question, "
                        f"{len(values)} value(s) {values}")  # fmt: skip
    filled = iter(str(v) for v in values)
    return SLOT.sub(lambda _: next(filled), template)


def read_questions(path: str | Path) -> list[dict]:
    """The question list of one ``avqa-*.json``, each item checked for the published fields."""
    items = read_json(path)
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of questions (MUSIC-AVQA format)")
    for position, item in enumerate(items):
        absent = [f for f in FIELDS if not isinstance(item, dict) or f not in item]
        if absent:
            raise DataError(f"{path}: item {position}: missing field(s) {absent}")
    return items


def answer_vocabulary(folder: Path) -> tuple[str, ...]:
    """``ans_vocab.txt`` of ``folder``, else the answers of ``avqa-train.json`` in order of first appearance."""
    if (folder / "ans_vocab.txt").is_file():
        return read_names(folder / "ans_vocab.txt")
    if (folder / "avqa-train.json").is_file():
        return tuple(dict.fromkeys(str(q["anser"]) for q in read_questions(folder / "avqa-train.json")))
    raise DataError(f"{folder}: no answer vocabulary (ans_vocab.txt, or avqa-train.json to build it from)")


def parse_question(item: dict, where: str, vocab: tuple[str, ...]) -> dict:
    """The targets of one question: filled ``question``, ``answer`` index, ``question_type``."""
    answer = str(item["anser"])
    if answer not in vocab:
        raise DataError(f"{where}: field 'anser': {answer!r} is not in the answer vocabulary ({len(vocab)} answers)")
    values = _json_list(item["templ_values"], where, "templ_values")
    return {
        "question": fill_question(str(item["question_content"]), values, where),
        "answer": vocab.index(answer),
        "question_type": question_type(item["type"], where),
    }


@DATASETS.register("music_avqa")
class MusicAVQADataset(ClipDataset):
    """MUSIC-AVQA: questions with <Object> slots filled, 42 answers, 9 question types; train/val/test."""

    name = "music_avqa"
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
        folder = annotation_folder(root, "MUSIC-AVQA", [f"avqa-{s}.json" for s in SPLITS])
        vocab = answer_vocabulary(folder)
        path = folder / f"avqa-{split}.json"
        records = []
        for position, item in enumerate(read_questions(path)):
            where = f"{path}: item {position} (question_id {item['question_id']})"
            targets = parse_question(item, where, vocab)
            vid = str(item["video_id"])
            records.append(Record(str(item["question_id"]), vid, split, targets, where, (targets["answer"],)))
        if len({r.id for r in records}) != len(records):
            repeated = next(i for i, c in Counter(r.id for r in records).items() if c > 1)
            raise DataError(f"{path}: question_id {repeated} appears more than once")
        super().__init__(root, split, records, vocab, open_media(root, media, MEDIA_TEMPLATES),
                         decode or Decode(frames=10, seconds=None), missing)  # fmt: skip

    def stats(self) -> dict:
        """The common statistics (per answer) plus questions per type and the number of videos."""
        types = Counter(r.targets["question_type"] for r in self.records)
        videos = len({r.media for r in self.records})
        return {**super().stats(), "per_type": dict(sorted(types.items())), "videos": videos}
