"""Text-to-video (or audio, or audio-video) retrieval: R@1/5/10, median and mean rank, both directions.

Follows VALOR's ``compute_metric_ret`` (Chen et al., "VALOR: Vision-Audio-Language Omni-Perception
Pretraining Model and Dataset", 2023; ``test.py``), the usual MSR-VTT / VALOR-32K protocol:

* text -> video: the rank of a text is the position of its own video when the videos are sorted by
  score; video -> text: the best position among the video's captions;
* ``R@K`` = percentage of queries ranked within the first K, ``ravg`` = mean of R@1, R@5 and R@10;
  ``medr`` = the lower median rank (``torch.median``), ``meanr`` = mean rank, both 1-based;
* dual softmax (optional, VALOR ``--dual_softmax``): text -> video uses
  ``S * softmax(S / tau, over texts) * N_texts``, video -> text ``S * softmax(S / tau, over videos) * N_videos``;
  its scores are reported separately, with a ``_dsl`` suffix.

What differs: ties. The reference takes the position from ``torch.sort``, whose order among equal
scores is unspecified; avlearn counts only strictly higher scores (a tie counts in the query's favour),
so the result is deterministic. Scores are kept in float64 (VALOR casts features to fp16). A video with
no caption has no video -> text rank and is left out of that direction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avlearn.data.textfiles import read_json
from avlearn.errors import DataError
from avlearn.metrics.formats import PathLike, as_numpy, check_finite, check_ids, expect_files, read_npz
from avlearn.registry import SCORERS


def retrieval_ranks(scores: np.ndarray, text_to_video: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks in both directions.

    Args:
        scores: ``(T, V)`` similarity of text t and video v.
        text_to_video: ``(T,)`` int, the video of each text.
        chunk: Texts compared at once for video -> text (bounds memory to ``chunk * T``).

    Returns:
        ``t2v`` ``(T,)`` and ``v2t`` ``(V,)``; a video without text gets -1.
    """
    own = scores[np.arange(len(scores)), text_to_video]  # (T,) score of each text's own video
    t2v = (scores > own[:, None]).sum(axis=1)
    per_text = np.empty(len(scores), dtype=np.int64)  # rank of text t among all texts for its video
    for lo in range(0, len(scores), chunk):
        cols = scores[:, text_to_video[lo : lo + chunk]]  # (T, n)
        per_text[lo : lo + chunk] = (cols > own[lo : lo + chunk][None, :]).sum(axis=0)
    v2t = np.full(scores.shape[1], np.iinfo(np.int64).max)
    np.minimum.at(v2t, text_to_video, per_text)
    return t2v, np.where(v2t == np.iinfo(np.int64).max, -1, v2t)


def rank_metrics(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    """R@1/5/10 and their mean (percent), lower-median and mean rank (1-based) of 0-based ``ranks``."""
    ranks = ranks[ranks >= 0]
    r1, r5, r10 = (float(100.0 * (ranks < k).mean()) for k in (1, 5, 10))
    lower_median = np.sort(ranks)[(len(ranks) - 1) // 2]
    return {
        f"{prefix}_r1": r1,
        f"{prefix}_r5": r5,
        f"{prefix}_r10": r10,
        f"{prefix}_ravg": (r1 + r5 + r10) / 3,
        f"{prefix}_medr": float(lower_median + 1),
        f"{prefix}_meanr": float(ranks.mean() + 1),
    }


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def retrieval_scores(
    scores: object, text_to_video: object, *, dual_softmax_temperature: float | None = None
) -> dict[str, float]:
    """Text -> video (``t2v_*``) and video -> text (``v2t_*``) retrieval metrics.

    Args:
        scores: ``(T, V)`` similarity matrix, texts x videos.
        text_to_video: ``(T,)`` int index of each text's video.
        dual_softmax_temperature: If given, also report the dual-softmax metrics (``*_dsl``) at this temperature.
    """
    s, gt = as_numpy(scores, np.float64), np.asarray(text_to_video, dtype=np.int64)
    if s.ndim != 2 or gt.shape != (s.shape[0],) or s.size == 0 or gt.min() < 0 or gt.max() >= s.shape[1]:
        raise ValueError(f"retrieval_scores expects (T, V) scores and (T,) video indices, got {s.shape}, {gt.shape}")
    t2v, v2t = retrieval_ranks(s, gt)
    out = {**rank_metrics(t2v, "t2v"), **rank_metrics(v2t, "v2t")}
    if dual_softmax_temperature:
        t2v_dsl, _ = retrieval_ranks(s * _softmax(s / dual_softmax_temperature, axis=0) * s.shape[0], gt)
        _, v2t_dsl = retrieval_ranks(s * _softmax(s / dual_softmax_temperature, axis=1) * s.shape[1], gt)
        out |= {f"{k}_dsl": v for k, v in (rank_metrics(t2v_dsl, "t2v") | rank_metrics(v2t_dsl, "v2t")).items()}
    return out


def _string_array(arrays: dict[str, np.ndarray], key: str, path: PathLike) -> list[str]:
    """A 1-D string array of the ``.npz``, as a list."""
    if key not in arrays or arrays[key].ndim != 1:
        raise DataError(f"{path}: expected a 1-D array '{key}' (found keys {sorted(arrays)})")
    return [str(v) for v in arrays[key]]


@SCORERS.register("retrieval")
def score_retrieval(
    pred: Sequence[PathLike], gt: Sequence[PathLike], dual_softmax_temperature: float = 0.0
) -> dict[str, float]:
    """Retrieval R@1/5/10, ravg, MedR and MeanR for text -> video and video -> text (+ dual softmax).

    Args:
        pred: One ``.npz`` with ``scores`` (T, V), ``text_ids`` (T,) and ``video_ids`` (V,).
        gt: One JSON object ``{text_id: video_id}``.
        dual_softmax_temperature: Also report dual-softmax metrics (``*_dsl``) at this temperature (0 = off).
    """
    (pred_file,) = expect_files(pred, 1, "retrieval --pred")
    (gt_file,) = expect_files(gt, 1, "retrieval --gt")
    arrays = read_npz(pred_file)
    text_ids, video_ids = _string_array(arrays, "text_ids", pred_file), _string_array(arrays, "video_ids", pred_file)
    scores = arrays.get("scores")
    if scores is None or scores.shape != (len(text_ids), len(video_ids)):
        shape = None if scores is None else scores.shape
        raise DataError(
            f"{pred_file}: 'scores' must be (text_ids, video_ids) = ({len(text_ids)}, {len(video_ids)}), got {shape}"
        )
    truth = read_json(gt_file)
    if not isinstance(truth, dict):
        raise DataError(f"{gt_file}: expected a JSON object mapping text_id to video_id")
    check_ids(text_ids, truth, pred_file)
    check_finite(scores, text_ids, pred_file, "scores")
    column = {v: i for i, v in enumerate(video_ids)}
    for text_id in text_ids:
        if truth[text_id] not in column:
            raise DataError(f"{pred_file}: id '{text_id}': its video '{truth[text_id]}' is not in video_ids")
    gt_index = np.array([column[truth[t]] for t in text_ids])
    return retrieval_scores(scores, gt_index, dual_softmax_temperature=dual_softmax_temperature or None)
