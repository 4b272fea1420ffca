"""Audio-visual event localisation (AVE): segment accuracy and video-level accuracy.

Follows the AVE benchmark (Tian et al., "Audio-Visual Event Localization in Unconstrained Videos",
ECCV 2018) as scored by DG-SCT / CMBS (``compute_accuracy_supervised``): every video has 10 one-second
segments, each labelled with one of 29 classes (the 28 event categories of ``categories.txt`` in that
order, then background = 28); segment accuracy is the percentage of segments, over all videos, whose
predicted class equals the label. Video-level accuracy (AVE classification, used by the DG-SCT few-shot
and zero-shot protocols) compares one class per video.

What differs: the reference averages per-batch accuracies while training (over-weighting the last
short batch); this module always pools all segments, which equals the reference test run (batch 1).
Ground-truth rows that repeat a VideoID (the AVE train split has some) are keyed ``VideoID#2``,
``VideoID#3`` ... in file order, since each row is its own sample with its own event. The ground truth is
parsed by the AVE dataset reader (``avlearn.data.datasets.ave``), with the classes of ``categories.txt`` beside
it when present, so AVSynth (other classes, background = their count) is scored the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avlearn.data.datasets.ave import AVE_CATEGORIES, read_classes, read_segment_labels
from avlearn.data.textfiles import parse_int, text_lines
from avlearn.errors import DataError
from avlearn.metrics.formats import PathLike, as_numpy, check_ids, expect_files
from avlearn.registry import SCORERS

if TYPE_CHECKING:
    import torch  # the scorers import without torch (tests/unit/datasets/test_textfiles.py)

BACKGROUND = len(AVE_CATEGORIES)  # 28
NUM_SEGMENTS = 10


def ave_segment_accuracy(pred: object, target: object) -> float:
    """Percentage of segments whose predicted class equals the target.

    Args:
        pred: ``(B, S)`` int class per segment (0..27 events, 28 background).
        target: ``(B, S)`` int, same layout.
    """
    pred, target = as_numpy(pred, np.int64), as_numpy(target, np.int64)
    if pred.shape != target.shape or pred.ndim != 2 or pred.size == 0:
        raise ValueError(
            f"ave_segment_accuracy expects two non-empty (B, S) arrays, got {pred.shape} and {target.shape}"
        )
    return float(100.0 * (pred == target).mean())


def ave_video_accuracy(pred: object, target: object) -> float:
    """Percentage of videos whose predicted class equals the target; ``pred`` and ``target`` are ``(B,)`` int."""
    pred, target = as_numpy(pred, np.int64), as_numpy(target, np.int64)
    if pred.shape != target.shape or pred.ndim != 1 or pred.size == 0:
        raise ValueError(f"ave_video_accuracy expects two non-empty (B,) arrays, got {pred.shape} and {target.shape}")
    return float(100.0 * (pred == target).mean())


def read_ave_annotations(path: PathLike) -> dict[str, np.ndarray]:
    """``Category&VideoID&Quality&StartTime&EndTime`` rows -> id -> ``(10,)`` segment labels.

    Parsed by ``avlearn.data.datasets.ave``: the classes are those of ``categories.txt`` beside the file when
    present (so AVSynth scores too), else the 28 AVE categories; segments ``StartTime <= s < EndTime`` carry the
    category index, the others background (the number of classes). A header line is skipped.
    """
    return read_segment_labels(path, read_classes(Path(path).parent))


def _parse_label(text: str, where: str, video_id: str, classes: Sequence[str]) -> int:
    """One predicted label (of the line ``where``): an index 0..K (K = background), a category, or ``background``."""
    background = len(classes)
    if text.strip().lstrip("-").isdigit():
        return parse_int(text, where, f"label of '{video_id}'", 0, background)
    if text == "background":
        return background
    if text in classes:
        return list(classes).index(text)
    raise DataError(f"{where}: id '{video_id}': unknown label {text!r} (index 0..{background}, category or background)")


def read_ave_predictions(path: PathLike, classes: Sequence[str] = AVE_CATEGORIES) -> dict[str, np.ndarray]:
    """Tab-separated ``VideoID<TAB>label[<TAB>label ...]`` lines -> id -> labels (1 or 10 per video)."""
    out: dict[str, np.ndarray] = {}
    for line, text in text_lines(path):
        where = f"{path}:{line}"
        video_id, *labels = text.split("\t")
        if len(labels) not in (1, NUM_SEGMENTS):
            raise DataError(f"{where}: id '{video_id}': expected 1 or 10 labels, got {len(labels)}")
        if video_id in out:
            raise DataError(f"{where}: id '{video_id}' appears twice")
        out[video_id] = np.array([_parse_label(t, where, video_id, classes) for t in labels])
    return out


def _video_label(segments: np.ndarray, background: int) -> int:
    """The class of a video: its first event segment (the DG-SCT classification convention)."""
    events = segments[segments != background]
    return int(events[0]) if events.size else background


def clip_class(labels: torch.Tensor, background: int) -> torch.Tensor:
    """(B, S) segment labels -> (B,) the class of the first event segment, -100 (ignored by CE) if there is none.

    The tensor twin of ``_video_label``: the class that AVE classification trains on and scores against.
    """
    event = labels != background  # (B, S)
    first = event.int().argmax(dim=1, keepdim=True)  # (B, 1) index of the first event segment (0 if none)
    return labels.gather(1, first).squeeze(1).where(event.any(dim=1), -100)  # (B,)


@SCORERS.register("ave")
def score_ave(pred: Sequence[PathLike], gt: Sequence[PathLike]) -> dict[str, float]:
    """AVE segment accuracy (10 labels per video) or video accuracy (1 label per video), in percent.

    Args:
        pred: One tab-separated file ``VideoID<TAB>label ...`` with 10 segment labels per line, or 1 video label.
        gt: One AVE annotation file (``testSet.txt`` / ``Annotations.txt`` format).
    """
    (pred_file,) = expect_files(pred, 1, "ave --pred")
    (gt_file,) = expect_files(gt, 1, "ave --gt")
    classes = read_classes(gt_file.parent)
    truth = read_ave_annotations(gt_file)
    guess = read_ave_predictions(pred_file, classes)
    check_ids(guess, truth, pred_file)
    ids = list(truth)
    widths = {len(guess[i]) for i in ids}
    if len(widths) != 1:
        raise DataError(f"{pred_file}: mixes lines of 1 and 10 labels; use one kind per file")
    if widths == {NUM_SEGMENTS}:
        acc = ave_segment_accuracy(np.stack([guess[i] for i in ids]), np.stack([truth[i] for i in ids]))
        return {"segment_accuracy": acc}
    video_pred = np.array([guess[i][0] for i in ids])
    video_true = np.array([_video_label(truth[i], len(classes)) for i in ids])
    return {"video_accuracy": ave_video_accuracy(video_pred, video_true)}
