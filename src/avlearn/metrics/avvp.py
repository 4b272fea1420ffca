"""Audio-visual video parsing (AVVP, LLP dataset): segment-level and event-level F1.

Follows the reference evaluation of Tian et al., "Unified Multisensory Perception: Weakly-Supervised
Audio-Visual Video Parsing" (ECCV 2020; YapengTian/AVVP-ECCV20 ``utils/eval_metrics.py``), which
DG-SCT, MGN and the other AVVP papers reuse unchanged:

* predictions and ground truth are per-class, per-second on/off arrays ``(B, K, S)`` (K = 25 classes,
  S = 10 one-second segments); audio-visual = audio AND visual, for both;
* for one video and one class, ``F = 2TP / (2TP + FP + FN)``; the video's score is the mean over the
  classes with ``TP + FP > 0 or TP + FN > 0``, and 1.0 if there is none; the benchmark score is the mean
  over videos, in percent;
* segment level counts segments; event level counts events (maximal runs of on-segments of one class):
  a predicted event is a TP when some ground-truth event of its class overlaps it with IoU >= 0.5,
  otherwise an FP; a ground-truth event that no prediction overlaps that much is an FN;
* Type@AV is the mean of the audio, visual and audio-visual scores; Event@AV pools the audio and
  visual TP/FP/FN of each class before taking F.

What differs: the reference loops over videos and classes in Python; this module computes every video
at once with array operations (run-length labels and one ``np.unique`` over overlapping positions), so
the 1200-video LLP test set scores in milliseconds. The results are the same numbers. ``score_avvp`` takes its
classes as the LLP reader does (``llp_classes``), so AVSynth's own classes score too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from avlearn.data.datasets.llp import AVVP_CLASSES, llp_classes, read_eval_events, read_filenames
from avlearn.metrics.formats import PathLike, as_numpy, check_ids, expect_files
from avlearn.registry import SCORERS

NUM_SEGMENTS = 10
EVENT_COLUMNS = ("filename", "onset", "offset", "event_labels")


def _video_f(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Per-video mean over active classes of ``2TP / (2TP + FP + FN)``; 1.0 for a video with no active class.

    Args:
        tp: ``(B, K)`` true positives per video and class.
        fp: ``(B, K)`` false positives.
        fn: ``(B, K)`` false negatives.
    """
    active = (tp + fp > 0) | (tp + fn > 0)
    f = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(tp.shape), where=active)
    count = active.sum(axis=1)
    return np.where(count > 0, f.sum(axis=1) / np.maximum(count, 1), 1.0)  # (B,)


def _segment_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment-level TP, FP, FN per video and class, each ``(B, K)``."""
    tp = (pred & gt).sum(axis=-1)
    fp = (pred & ~gt).sum(axis=-1)
    fn = (~pred & gt).sum(axis=-1)
    return tp, fp, fn


def _runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label maximal runs of ``True`` along the last axis of ``x`` ``(B, K, S)``.

    Returns:
        ``run_of`` ``(B*K*S,)`` the run index of each position (meaningful where ``x`` is on),
        ``length`` ``(R,)`` the length of each run and ``row`` ``(R,)`` its flat ``b * K + k`` index.
    """
    starts = x.copy()
    starts[..., 1:] &= ~x[..., :-1]  # a run starts where the previous segment is off
    flat_starts = starts.reshape(-1)  # (B*K*S,)
    run_of = np.cumsum(flat_starts) - 1
    on = x.reshape(-1)
    length = np.bincount(run_of[on], minlength=int(flat_starts.sum()))
    row = np.flatnonzero(flat_starts) // x.shape[-1]
    return run_of, length, row


def _event_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Event-level TP, FP, FN per video and class, each ``(B, K)``, with the IoU >= 0.5 matching rule."""
    rows = pred.shape[0] * pred.shape[1]
    p_run, p_len, p_row = _runs(pred)
    g_run, g_len, g_row = _runs(gt)
    both = (pred & gt).reshape(-1)
    pairs = p_run[both] * len(g_len) + g_run[both]  # one key per overlapping (pred run, gt run)
    keys, inter = np.unique(pairs, return_counts=True)
    p_idx, g_idx = keys // max(len(g_len), 1), keys % max(len(g_len), 1)
    ok = inter >= 0.5 * (p_len[p_idx] + g_len[g_idx] - inter)
    p_hit = np.zeros(len(p_len), dtype=bool)
    g_hit = np.zeros(len(g_len), dtype=bool)
    p_hit[p_idx[ok]] = True
    g_hit[g_idx[ok]] = True
    tp = np.bincount(p_row, weights=p_hit, minlength=rows)
    fp = np.bincount(p_row, weights=~p_hit, minlength=rows)
    fn = np.bincount(g_row, weights=~g_hit, minlength=rows)
    shape = pred.shape[:2]
    return tp.reshape(shape), fp.reshape(shape), fn.reshape(shape)


Counts = tuple[np.ndarray, np.ndarray, np.ndarray]


def _level_scores(
    counts: Callable[[np.ndarray, np.ndarray], Counts],
    prefix: str,
    pred_a: np.ndarray,
    pred_v: np.ndarray,
    gt_a: np.ndarray,
    gt_v: np.ndarray,
) -> dict[str, float]:
    """The five scores of one level (segment or event) from its counting function."""
    ca, cv = counts(pred_a, gt_a), counts(pred_v, gt_v)
    cav = counts(pred_a & pred_v, gt_a & gt_v)
    f_a, f_v, f_av = (100 * _video_f(*c).mean() for c in (ca, cv, cav))
    pooled = _video_f(*(a + v for a, v in zip(ca, cv, strict=True)))
    return {
        f"{prefix}_audio": float(f_a),
        f"{prefix}_visual": float(f_v),
        f"{prefix}_audio_visual": float(f_av),
        f"{prefix}_type_at_av": float((f_a + f_v + f_av) / 3),
        f"{prefix}_event_at_av": float(100 * pooled.mean()),
    }


def avvp_scores(pred_audio: object, pred_visual: object, gt_audio: object, gt_visual: object) -> dict[str, float]:
    """Segment- and event-level F1 (percent) of per-second AVVP predictions.

    Args:
        pred_audio: ``(B, K, S)`` bool, class k audible in segment s of video b.
        pred_visual: ``(B, K, S)`` bool, class k visible.
        gt_audio: ``(B, K, S)`` bool ground truth, same layout.
        gt_visual: ``(B, K, S)`` bool ground truth.

    Returns:
        ``segment_*`` and ``event_*`` keys for ``audio``, ``visual``, ``audio_visual``, ``type_at_av``
        and ``event_at_av``, each the mean over the B videos.
    """
    arrays = [as_numpy(x, bool) for x in (pred_audio, pred_visual, gt_audio, gt_visual)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 3 or arrays[0].shape[0] == 0:
        raise ValueError(f"avvp_scores expects four non-empty (B, K, S) arrays of one shape, got {sorted(shapes)}")
    return {**_level_scores(_segment_counts, "segment", *arrays), **_level_scores(_event_counts, "event", *arrays)}


def segments_to_events(
    x: object, video_ids: Sequence[str], classes: Sequence[str] = AVVP_CLASSES
) -> list[tuple[str, int, int, str]]:
    """Per-second on/off arrays ``(B, K, S)`` -> event rows ``(filename, onset, offset, label)``.

    One row per maximal run of on-segments, ``offset`` exclusive (the AVVP_eval_*.csv convention),
    ordered by video, then class, then onset.
    """
    x = as_numpy(x, bool)
    if x.ndim != 3 or x.shape[:2] != (len(video_ids), len(classes)):
        raise ValueError(f"expected ({len(video_ids)}, {len(classes)}, S) for the ids and classes, got {x.shape}")
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))  # (B, K, S + 2): an off segment on each side
    change = padded[..., 1:] != padded[..., :-1]  # (B, K, S + 1): run boundaries
    b, k, t = np.nonzero(change)
    # Boundaries alternate onset, offset within each (b, k) row, in the order np.nonzero returns them.
    return [
        (video_ids[vb], int(on), int(off), classes[vk])
        for vb, vk, on, off in zip(b[0::2], k[0::2], t[0::2], t[1::2], strict=True)
    ]


def events_to_segments(
    rows: Sequence[tuple[str, int, int, str]],
    video_ids: Sequence[str],
    classes: Sequence[str] = AVVP_CLASSES,
    num_segments: int = NUM_SEGMENTS,
) -> np.ndarray:
    """Event rows ``(filename, onset, offset, label)`` -> ``(B, K, S)`` bool, B and K in the given orders.

    Segments ``onset <= s < offset`` are on; a row with ``onset >= offset`` marks nothing, as in the
    reference evaluation (the LLP ground truth has such rows). Unknown ids or labels raise ``KeyError``.
    """
    video_index = {v: i for i, v in enumerate(video_ids)}
    class_index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(video_ids), len(classes), num_segments + 1), dtype=np.int32)
    if rows:
        vid, onset, offset, label = zip(*rows, strict=True)
        b = np.fromiter((video_index[v] for v in vid), dtype=np.int64, count=len(rows))
        k = np.fromiter((class_index[c] for c in label), dtype=np.int64, count=len(rows))
        on, off = np.asarray(onset, dtype=np.int64), np.asarray(offset, dtype=np.int64)
        keep = on < off
        np.add.at(out, (b[keep], k[keep], on[keep]), 1)  # +1 at each onset ...
        np.add.at(out, (b[keep], k[keep], off[keep]), -1)  # ... -1 after each offset
    return np.cumsum(out, axis=-1)[..., :num_segments] > 0  # (B, K, S)


def read_event_file(path: PathLike, classes: Sequence[str] = AVVP_CLASSES) -> list[tuple[str, int, int, str]]:
    """Rows of an ``AVVP_eval_*.csv``-style file: tab-separated ``filename onset offset event_labels``.

    Parsed by the LLP dataset reader (``avlearn.data.datasets.llp.read_eval_events``).
    """
    return read_eval_events(path, classes)


def write_event_file(path: PathLike, rows: Sequence[tuple[str, int, int, str]]) -> None:
    """Write event rows in the ``AVVP_eval_*.csv`` format (header + tab-separated lines)."""
    lines = ["\t".join(EVENT_COLUMNS)] + [f"{v}\t{on}\t{off}\t{c}" for v, on, off, c in rows]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _video_list(gt_files: list[Path], events: list[list[tuple[str, int, int, str]]]) -> list[str]:
    """Videos to score: the ``filename`` column of a third ground-truth file, else every id in the event files."""
    if len(gt_files) == 3:
        return read_filenames(gt_files[2])
    return list(dict.fromkeys(r[0] for rows in events for r in rows))


@SCORERS.register("avvp")
def score_avvp(pred: Sequence[PathLike], gt: Sequence[PathLike]) -> dict[str, float]:
    """AVVP segment/event-level F1 (audio, visual, audio-visual, Type@AV, Event@AV) from event files.

    The classes are decided as the LLP reader decides them (``llp_classes``): the 25 LLP classes when the labels
    are LLP classes, else (AVSynth) the sorted labels of the weak-label files beside the ground truth, or of the
    ground-truth event files when there are none.

    Args:
        pred: Predicted audio events file, then predicted visual events file (``AVVP_eval_*.csv`` format).
        gt: ``AVVP_eval_audio.csv``, ``AVVP_eval_visual.csv`` and optionally the list of videos to score
            (``AVVP_test_pd.csv``); without it, every video named in the two ground-truth files is scored.
    """
    pred_files = expect_files(pred, 2, "avvp --pred (audio events, visual events)")
    gt_files = expect_files(gt, (2, 3), "avvp --gt (audio events, visual events[, video list])")
    classes = llp_classes(gt_files[0].parent, gt_files[:2])
    gt_rows = [read_event_file(p, classes) for p in gt_files[:2]]
    videos = _video_list(gt_files, gt_rows)
    scored = set(videos)
    gt_rows = [[r for r in rows if r[0] in scored] for rows in gt_rows]
    pred_rows = [read_event_file(p, classes) for p in pred_files]
    for path, rows in zip(pred_files, pred_rows, strict=True):
        # A video with no predicted event has no row, so missing ids cannot be detected here.
        check_ids((r[0] for r in rows), videos, path, allow_missing=True)
    arrays = [events_to_segments(rows, videos, classes) for rows in (*pred_rows, *gt_rows)]
    return avvp_scores(*arrays)
