"""Classification: top-1 / top-5 accuracy, multi-label mAP and AUC, few-shot mean +- std over seeds.

* Top-k accuracy (VGGSound, ESC-50, UCF101, AVE/LLP video classification): a sample is correct when
  fewer than k classes score strictly higher than its label (ties count in its favour; ``torch.topk``
  leaves their order unspecified).
* mAP / AUC (AudioSet, multi-label): per class, scikit-learn's ``average_precision_score`` (step-wise
  precision-recall, one step per distinct score) and ``roc_auc_score`` (the Mann-Whitney statistic with
  tied ranks averaged), then the mean over the classes that have at least one positive, as
  DeepAVFusion's ``calc_multi_class_stats`` (a class with no negative has no AUC and is left out of it).
* Few-shot summaries: the mean and population standard deviation (``np.std``, ddof 0) of a metric over
  seeds, as Cross-Modal Adaptation's ``eval.py``.

Everything is in percent. Implemented with NumPy sorting, no scikit-learn dependency.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avlearn.data.textfiles import text_lines
from avlearn.errors import DataError
from avlearn.metrics.formats import PathLike, as_numpy, check_finite, check_ids, expect_files, read_npz
from avlearn.registry import SCORERS


def topk_accuracy(scores: object, target: object, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (percent) for each k in ``ks``; ``scores`` is ``(N, K)``, ``target`` ``(N,)`` int."""
    s, y = as_numpy(scores, np.float64), as_numpy(target, np.int64)
    if s.ndim != 2 or y.shape != (len(s),) or len(s) == 0 or y.min() < 0 or y.max() >= s.shape[1]:
        raise ValueError(f"topk_accuracy expects (N, K) scores and (N,) labels in 0..K-1, got {s.shape}, {y.shape}")
    higher = (s > s[np.arange(len(s)), y][:, None]).sum(axis=1)  # (N,) classes scoring above the label
    return {f"top{k}": float(100.0 * (higher < k).mean()) for k in ks}


def _average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision per column, ``(K,)``, for ``(N, K)`` scores and bool labels (each column has a positive)."""
    order = np.argsort(-scores, axis=0, kind="stable")  # (N, K)
    s = np.take_along_axis(scores, order, axis=0)
    y = np.take_along_axis(labels, order, axis=0)
    tp = np.cumsum(y, axis=0)  # (N, K)
    rank = np.arange(1, len(s) + 1)[:, None]  # (N, 1)
    last_of_tie = np.ones_like(s, dtype=bool)
    last_of_tie[:-1] = s[:-1] != s[1:]  # one precision-recall point per distinct score
    # Recall grows only at the end of a tie: the TP gained since the previous tie end, over all positives.
    gained = np.where(last_of_tie, tp, 0)
    previous = np.maximum.accumulate(np.vstack([np.zeros((1, s.shape[1])), gained[:-1]]), axis=0)
    recall_step = np.where(last_of_tie, tp - previous, 0)
    precision = tp / rank
    return (recall_step * precision).sum(axis=0) / tp[-1]


def _roc_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC per column with average ranks for ties, ``(K,)``; NaN where a column lacks negatives."""
    order = np.argsort(scores, axis=0, kind="stable")  # ascending
    s = np.take_along_axis(scores, order, axis=0)  # (N, K)
    y = np.take_along_axis(labels, order, axis=0)
    row = np.broadcast_to(np.arange(len(s))[:, None], s.shape)  # (N, K)
    first, last = np.ones_like(s, dtype=bool), np.ones_like(s, dtype=bool)
    first[1:], last[:-1] = s[1:] != s[:-1], s[:-1] != s[1:]
    start = np.maximum.accumulate(np.where(first, row, 0), axis=0)  # first row of each tie
    end = np.minimum.accumulate(np.where(last, row, len(s))[::-1], axis=0)[::-1]  # its last row
    ranks = (start + end) / 2 + 1  # (N, K) 1-based ranks, ties averaged
    pos = y.sum(axis=0)
    neg = len(y) - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * y).sum(axis=0) - pos * (pos + 1) / 2) / (pos * neg)


def multilabel_scores(scores: object, labels: object) -> dict[str, float | None]:
    """AudioSet-style ``map`` and ``auc`` (percent) over the classes with at least one positive.

    Args:
        scores: ``(N, K)`` class scores (logits or probabilities).
        labels: ``(N, K)`` bool multi-hot targets.
    """
    s, y = as_numpy(scores, np.float64), as_numpy(labels, bool)
    if s.shape != y.shape or s.ndim != 2 or len(s) == 0:
        raise ValueError(f"multilabel_scores expects two (N, K) arrays of one shape, got {s.shape}, {y.shape}")
    seen = y.any(axis=0)
    if not seen.any():
        raise ValueError("multilabel_scores: no class has a positive sample")
    ap = _average_precision(s[:, seen], y[:, seen])
    auc = _roc_auc(s[:, seen], y[:, seen])
    mean_auc = float(100.0 * np.nanmean(auc)) if np.isfinite(auc).any() else None
    return {"map": float(100.0 * ap.mean()), "auc": mean_auc}


def fewshot_summary(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """``<metric>_mean`` and ``<metric>_std`` (population std) over per-seed result dicts."""
    if not results:
        raise ValueError("fewshot_summary needs at least one result")
    out = {}
    for key in results[0]:
        values = np.array([r[key] for r in results], dtype=np.float64)
        out[f"{key}_mean"], out[f"{key}_std"] = float(values.mean()), float(values.std())
    return out


def read_label_file(path: PathLike) -> dict[str, list[str]]:
    """``id,label`` or ``id<TAB>label[,label ...]`` lines -> id -> labels (a tab allows several labels)."""
    out: dict[str, list[str]] = {}
    for line, text in text_lines(path):
        key, sep, rest = text.partition("\t") if "\t" in text else text.partition(",")
        if not sep or not rest:
            raise DataError(f"{path}:{line}: expected 'id<TAB>labels' or 'id,label', got {text!r}")
        if key in out:
            raise DataError(f"{path}:{line}: id '{key}' appears twice")
        out[key] = rest.split(",") if "\t" in text else [rest]
    return out


def _label_index(labels: list[str], classes: list[str] | None, path: PathLike, key: str, k: int) -> list[int]:
    """Class indices of ``labels``: names looked up in ``classes``, else integers 0..k-1."""
    try:
        idx = [classes.index(c) if classes is not None else int(c) for c in labels]
    except ValueError:
        raise DataError(
            f"{path}: id '{key}': labels {labels} are not " + ("in 'classes'" if classes else "integers")
        ) from None
    if any(not 0 <= i < k for i in idx):
        raise DataError(f"{path}: id '{key}': label index outside 0..{k - 1}")
    return idx


def _score_one(pred_file: PathLike, truth: dict[str, list[str]], gt_file: PathLike, multilabel: bool) -> dict:
    """Metrics of one prediction ``.npz`` (``ids``, ``scores`` and optional ``classes``)."""
    arrays = read_npz(pred_file)
    if "ids" not in arrays or "scores" not in arrays or arrays["scores"].ndim != 2:
        raise DataError(f"{pred_file}: expected arrays 'ids' (N,) and 'scores' (N, K) (found {sorted(arrays)})")
    ids, scores = [str(i) for i in arrays["ids"]], arrays["scores"]
    if len(ids) != len(scores):
        raise DataError(f"{pred_file}: 'ids' has {len(ids)} entries but 'scores' has {len(scores)} rows")
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else None
    check_ids(ids, truth, pred_file)
    check_finite(scores, ids, pred_file, "scores")
    target = [_label_index(truth[i], classes, gt_file, i, scores.shape[1]) for i in ids]
    if multilabel:
        multi_hot = np.zeros(scores.shape, dtype=bool)
        for row, idx in enumerate(target):
            multi_hot[row, idx] = True
        return multilabel_scores(scores, multi_hot)
    return topk_accuracy(scores, [t[0] for t in target], ks=(1, 5) if scores.shape[1] >= 5 else (1,))


@SCORERS.register("classification")
def score_classification(
    pred: Sequence[PathLike], gt: Sequence[PathLike], multilabel: bool = False
) -> dict[str, float]:
    """Top-1/top-5 accuracy, or multi-label mAP/AUC; several --pred files (seeds) give mean and std.

    Args:
        pred: One ``.npz`` per seed with ``ids`` (N,), ``scores`` (N, K) and optionally ``classes`` (K,).
        gt: One label file: ``id,label`` lines (VGGSound csv) or ``id<TAB>label,label`` (multi-label).
        multilabel: Report AudioSet-style mAP and AUC instead of top-k accuracy.
    """
    pred_files = expect_files(pred, (1, 1000), "classification --pred")
    (gt_file,) = expect_files(gt, 1, "classification --gt")
    truth = read_label_file(gt_file)
    results = [_score_one(p, truth, gt_file, multilabel) for p in pred_files]
    return results[0] if len(results) == 1 else fewshot_summary(results)
