"""Audio-visual segmentation (AVSBench S4 / MS3): mIoU and F-score (beta^2 = 0.3).

Follows AVSBench (Zhou et al., "Audio-Visual Segmentation", ECCV 2022; ``utils/utility.py`` reused by
DG-SCT and CMG):

* **mIoU (foreground, default)**: per frame, ``P = prob > 0.5``, ``IoU = |P & G| / (|P | G| + 1e-7)``;
  a frame whose ground truth is empty scores ``|~P & ~G| / (H * W)`` instead. Mean over frames.
* **F-score**: per frame with a non-empty ground truth and for 255 thresholds
  ``linspace(0, 1 - 1e-10, 255)`` (float32, as in the reference), ``prec = TP / (#pred + 1e-20)``,
  ``rec = TP / (#gt + 1e-20)``, ``F = 1.3 * prec * rec / (0.3 * prec + rec)`` (NaN -> 0); the frame's
  F-score is its maximum over thresholds and the benchmark score the mean over those frames.
* **mIoU with background (option)**: the DeepAVFusion convention (``AVSegmEvaluator``): frames whose
  ground truth is empty are skipped; per class (background, foreground) the IoU (eps 1e-10) is summed
  over the frames where that class's union is non-empty and divided by that count; the score is the
  mean of the two classes. It is reported under its own key, ``miou_with_background``.

What differs: the reference averages the F-score and mIoU per test batch (``--test_batch_size 4``, 5
frames per video), taking the max over thresholds of the batch mean, so its F-score changes with the
batch size and a batch of empty frames counts as 0 (AVSBench#17). avlearn scores every frame on its
own, which equals the reference run with batch 1 and does not depend on batching. ``batch_size=N``
reproduces the reference's batch-of-N numbers (frames in id order) for comparison with papers.
All values are percentages.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from avlearn.errors import DataError
from avlearn.metrics.formats import (
    PathLike,
    as_numpy,
    check_finite,
    check_ids,
    expect_files,
    read_mask_folder,
    read_npz,
)
from avlearn.registry import SCORERS

BETA2 = np.float32(0.3)
NUM_THRESHOLDS = 255


@lru_cache(maxsize=1)
def _thresholds() -> np.ndarray:
    """The reference's float32 thresholds (``torch.linspace`` rounds differently from NumPy)."""
    import torch

    return torch.linspace(0, 1 - 1e-10, NUM_THRESHOLDS).numpy()  # (255,) float32


def frame_iou(prob: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """AVSBench foreground IoU per frame ``(N,)`` (float32) from ``(N, H, W)`` probabilities and masks."""
    pred = prob > 0.5
    inter = (pred & gt).sum(axis=(1, 2))
    union = (pred | gt).sum(axis=(1, 2))
    empty = ~gt.any(axis=(1, 2))
    inter = np.where(empty, (~pred & ~gt).sum(axis=(1, 2)), inter)
    union = np.where(empty, gt.shape[1] * gt.shape[2], union)
    return inter.astype(np.float32) / (union.astype(np.float32) + np.float32(1e-7))


def frame_fscore_curves(prob: np.ndarray, gt: np.ndarray, chunk: int = 64) -> np.ndarray:
    """F-beta at the 255 reference thresholds for every frame, ``(N, 255)`` float32.

    Counts come from one histogram of the threshold index of each pixel instead of 255 comparisons.
    """
    th = _thresholds()
    out = np.empty((len(prob), NUM_THRESHOLDS), dtype=np.float32)
    for lo in range(0, len(prob), chunk):
        p = prob[lo : lo + chunk].reshape(-1, prob.shape[1] * prob.shape[2])  # (n, H*W)
        g = gt[lo : lo + chunk].reshape(p.shape)  # (n, H*W)
        n = len(p)
        level = np.searchsorted(th, p, side="right")  # (n, H*W): pixel is on for thresholds [0, level)
        flat = level + (NUM_THRESHOLDS + 1) * np.arange(n)[:, None]
        hist = np.bincount(flat.ravel(), minlength=n * (NUM_THRESHOLDS + 1)).reshape(n, -1)
        hist_tp = np.bincount(flat[g], minlength=n * (NUM_THRESHOLDS + 1)).reshape(n, -1)
        n_pred = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float32)  # (n, 255): #pixels >= th
        tp = np.cumsum(hist_tp[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float32)  # (n, 255)
        n_gt = g.sum(axis=1, dtype=np.float32)[:, None]  # (n, 1)
        prec = tp / (n_pred + np.float32(1e-20))
        rec = tp / (n_gt + np.float32(1e-20))
        with np.errstate(invalid="ignore", divide="ignore"):
            f = (1 + BETA2) * prec * rec / (BETA2 * prec + rec)
        out[lo : lo + chunk] = np.nan_to_num(f, nan=0.0)
    return out


def miou_with_background(prob: np.ndarray, gt: np.ndarray) -> float:
    """DeepAVFusion's two-class mIoU (background and foreground), frames with empty ground truth skipped."""
    keep = gt.any(axis=(1, 2))
    pred, gt = prob[keep] > 0.5, gt[keep]
    ious, counts = [], []
    for p, g in ((~pred, ~gt), (pred, gt)):  # background, then foreground
        inter = (p & g).sum(axis=(1, 2)).astype(np.float32)
        union = p.sum(axis=(1, 2)).astype(np.float32) + g.sum(axis=(1, 2)) - inter
        ious.append((inter / (np.float32(1e-10) + union)).sum(dtype=np.float64))
        counts.append(int((union > 0).sum()))
    per_class = [i / c for i, c in zip(ious, counts, strict=True) if c > 0]
    return float(100.0 * np.mean(per_class)) if per_class else 0.0


def _batched(values: np.ndarray, batch_size: int) -> float:
    """Mean over consecutive batches of the per-batch mean of ``values`` (the reference's aggregation)."""
    return float(
        np.mean([values[i : i + batch_size].mean(dtype=np.float64) for i in range(0, len(values), batch_size)])
    )


def _batched_fscore(curves: np.ndarray, nonempty: np.ndarray, batch_size: int) -> float:
    """Per batch: float32 running mean over its non-empty frames, max over thresholds; then mean over batches."""
    scores = []
    for lo in range(0, len(curves), batch_size):
        c = curves[lo : lo + batch_size][nonempty[lo : lo + batch_size]]
        batch = np.cumsum(c, axis=0, dtype=np.float32)[-1] / np.float32(len(c)) if len(c) else np.zeros(1)
        scores.append(float(batch.max()))
    return float(np.mean(scores))


def avs_scores(
    pred: object, gt: object, *, with_background: bool = False, batch_size: int | None = None
) -> dict[str, float]:
    """AVSBench mIoU and F-score (percent) of probability maps.

    Args:
        pred: ``(N, H, W)`` foreground probabilities in [0, 1] (apply the sigmoid first).
        gt: ``(N, H, W)`` bool ground-truth masks.
        with_background: Also report DeepAVFusion's background-inclusive ``miou_with_background``.
        batch_size: Average per consecutive batch of this many frames, as the reference does (batch-dependent).

    Returns:
        ``miou`` (foreground, AVSBench) and ``fscore``, plus ``miou_with_background`` when asked.
    """
    prob, mask = as_numpy(pred, np.float32), as_numpy(gt, bool)
    if prob.shape != mask.shape or prob.ndim != 3 or prob.shape[0] == 0:
        raise ValueError(
            f"avs_scores expects two non-empty (N, H, W) arrays of one shape, got {prob.shape}, {mask.shape}"
        )
    iou = frame_iou(prob, mask)
    curves = frame_fscore_curves(prob, mask)
    nonempty = mask.any(axis=(1, 2))
    if batch_size:
        out = {
            "miou": 100.0 * _batched(iou, batch_size),
            "fscore": 100.0 * _batched_fscore(curves, nonempty, batch_size),
        }
    else:
        best = curves[nonempty].max(axis=1) if nonempty.any() else np.zeros(1)
        out = {"miou": float(100.0 * iou.mean(dtype=np.float64)), "fscore": float(100.0 * best.mean(dtype=np.float64))}
    if with_background:
        out["miou_with_background"] = miou_with_background(prob, mask)
    return out


def read_masks(path: Path, *, as_probability: bool) -> dict[str, np.ndarray]:
    """Masks keyed by frame id from a folder of PNGs or an ``.npz`` of ``(H, W)`` / ``(T, H, W)`` arrays."""
    if path.is_dir():
        return read_mask_folder(path, as_probability=as_probability)
    arrays = read_npz(path)
    out = {}
    for key, value in arrays.items():
        if value.ndim not in (2, 3):
            raise DataError(f"{path}: id '{key}': expected an (H, W) or (T, H, W) array, got shape {value.shape}")
        frames = value if value.ndim == 3 else value[None]  # (T, H, W)
        for t, frame in enumerate(frames):
            out[key if value.ndim == 2 else f"{key}/{t}"] = frame.astype(np.float32 if as_probability else bool)
    return out


@SCORERS.register("avs")
def score_avs(
    pred: Sequence[PathLike], gt: Sequence[PathLike], with_background: bool = False, batch_size: int = 0
) -> dict[str, float]:
    """AVSBench mIoU (foreground) and F-score (beta^2 = 0.3, max over thresholds per frame), in percent.

    Args:
        pred: A folder of PNG masks (grey levels = probability x 255) or an ``.npz`` of probability maps.
        gt: A folder of PNG ground-truth masks (non-zero = foreground) or an ``.npz`` of masks, same ids.
        with_background: Also report the background-inclusive mIoU (DeepAVFusion) as ``miou_with_background``.
        batch_size: Reproduce the reference's per-batch averaging with this many frames per batch (0 = off).
    """
    (pred_path,) = expect_files(pred, 1, "avs --pred")
    (gt_path,) = expect_files(gt, 1, "avs --gt")
    truth = read_masks(gt_path, as_probability=False)
    guess = read_masks(pred_path, as_probability=True)
    check_ids(guess, truth, pred_path)
    ids = sorted(truth)
    for key in ids:
        if guess[key].shape != truth[key].shape:
            raise DataError(f"{pred_path}: id '{key}': mask shape {guess[key].shape}, ground truth {truth[key].shape}")
    prob = np.stack([guess[k] for k in ids])  # (N, H, W)
    check_finite(prob, ids, pred_path, "mask")
    if prob.min() < 0 or prob.max() > 1:
        first = ids[int(np.argmax(((prob < 0) | (prob > 1)).reshape(len(ids), -1).any(axis=1)))]
        raise DataError(f"{pred_path}: id '{first}': probabilities outside [0, 1] (apply the sigmoid first)")
    return avs_scores(prob, np.stack([truth[k] for k in ids]), with_background=with_background, batch_size=batch_size)
