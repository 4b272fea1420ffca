"""MUSIC-AVQA question answering: accuracy per question type, per modality group and overall.

Follows the MUSIC-AVQA test protocol (Li et al., "Learning to Answer Questions in Dynamic Audio-Visual
Scenarios", CVPR 2022; the ``test`` function of the AVST code, reused by DG-SCT): a prediction is correct
when it equals the ground-truth answer; the nine types are Audio {Counting, Comparative}, Visual
{Counting, Location} and Audio-Visual {Existential, Counting, Location, Comparative, Temporal}; the group
accuracy pools the questions of its types, and "overall" pools every question (it is not the mean of
the groups).

What differs: the reference matches predictions to question types by loader position (test batch 1,
JSON order); here predictions are keyed by ``question_id``, so order and batch size do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avlearn.data.datasets.music_avqa import question_type, read_questions
from avlearn.data.textfiles import read_json
from avlearn.errors import DataError
from avlearn.metrics.formats import PathLike, check_ids, expect_files
from avlearn.registry import SCORERS

GROUPS: dict[str, tuple[str, ...]] = {
    "Audio": ("Counting", "Comparative"),
    "Visual": ("Counting", "Location"),
    "Audio-Visual": ("Existential", "Counting", "Location", "Comparative", "Temporal"),
}


def avqa_accuracy(correct: object, question_types: Sequence[str]) -> dict[str, float]:
    """Accuracy (percent) per ``"Group/Type"``, per group and overall.

    Args:
        correct: ``(N,)`` bool, question n answered correctly.
        question_types: ``N`` strings ``"Group/Type"`` such as ``"Audio-Visual/Temporal"``.

    Returns:
        One key per type and per group present, plus ``overall``.
    """
    hits = np.asarray(correct, dtype=bool)
    types = np.asarray(question_types)
    if hits.shape != types.shape or hits.ndim != 1 or hits.size == 0:
        raise ValueError(f"avqa_accuracy expects N answers and N types, got {hits.shape} and {types.shape}")
    groups = np.array([t.split("/", 1)[0] for t in types])
    out = {}
    for group, names in GROUPS.items():
        for name in names:
            mask = types == f"{group}/{name}"
            if mask.any():
                out[f"{group}/{name}"] = float(100.0 * hits[mask].mean())
        if (groups == group).any():
            out[group] = float(100.0 * hits[groups == group].mean())
    out["overall"] = float(100.0 * hits.mean())
    return out


def read_avqa_ground_truth(path: PathLike) -> dict[str, tuple[str, str]]:
    """``avqa-{val,test}.json`` -> question_id (as a string) -> (answer, ``"Group/Type"``).

    Parsed by the MUSIC-AVQA dataset reader (``avlearn.data.datasets.music_avqa``).
    """
    out = {}
    for position, item in enumerate(read_questions(path)):
        where = f"{path}: item {position} (question_id {item['question_id']})"
        out[str(item["question_id"])] = (str(item["anser"]), question_type(item["type"], where))
    return out


def read_avqa_predictions(path: PathLike) -> dict[str, str]:
    """A JSON object ``{"question_id": "answer", ...}``."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object mapping question_id to the predicted answer")
    for key, value in data.items():
        if not isinstance(value, str):
            raise DataError(f"{path}: id '{key}': expected the answer as a string, got {type(value).__name__}")
    return data


@SCORERS.register("avqa")
def score_avqa(pred: Sequence[PathLike], gt: Sequence[PathLike]) -> dict[str, float]:
    """MUSIC-AVQA accuracy per question type, per Audio / Visual / Audio-Visual group and overall.

    Args:
        pred: One JSON object ``{question_id: answer}``.
        gt: One MUSIC-AVQA question file (``avqa-test.json``).
    """
    (pred_file,) = expect_files(pred, 1, "avqa --pred")
    (gt_file,) = expect_files(gt, 1, "avqa --gt")
    truth = read_avqa_ground_truth(gt_file)
    guess = read_avqa_predictions(pred_file)
    check_ids(guess, truth, pred_file)
    ids = list(truth)
    correct = np.array([guess[i] == truth[i][0] for i in ids])
    return avqa_accuracy(correct, [truth[i][1] for i in ids])
