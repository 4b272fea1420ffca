"""Per-task reporting of a finished run: the chance levels to read its test score against, and its plot.

A task names its ``Report`` when it registers (``TASKS.register(name, report=...)``); the reports of the task
families are here, where several task files share them. Chance levels are in the unit of the task's primary metric:

- ``ave``, ``fewshot``, ``zeroshot``, ``pretrain_captions``, ``pretrain_segments``, ``zeroshot_ave`` (segment
  accuracy): a uniform guess over the K + 1 labels, and always the most frequent training label.
- ``ave_cls``, ``fewshot_ave_cls``, ``zeroshot_cls``, ``zeroshot_ave_cls`` (clip accuracy): a uniform guess over the
  K classes, and always the most frequent training class.
- ``fewshot_llp_cls``, ``zeroshot_llp_cls`` (video accuracy against the first labelled class): the same two, no plot.
- ``avvp`` (segment-level Type@AV F1): every class of the video's true weak labels predicted in every segment of
  both modalities (predicting nothing scores 0), a reference that knows the labels but not when they occur.
- ``avs_s4`` / ``avs_ms3`` (mIoU): an empty mask everywhere.
- ``avqa`` (overall accuracy): a uniform guess over the answers, and the most frequent training answer of each
  question type.

Plots: ``timeline.png`` (segment tasks: true vs predicted segment labels; clip classification: the predicted clip
class drawn over every segment; AVVP: the first active class of each segment, audio and visual rows),
``masks.png`` (AVS: frame, true and predicted mask) and ``grounding.png`` (AVQA: the temporal attention of a few
test questions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SHOWN = 6  # test clips (questions) drawn in a plot


@dataclass(frozen=True)
class Report:
    """How one task reports: ``chance(splits, task, test_out)`` and ``plot(splits, test_out, path)`` (or none)."""

    chance: Callable[[Any, nn.Module, dict], dict[str, float]]
    plot: Callable[[Any, dict, Path], Path] | None = None
    plot_name: str | None = None


def _majority_accuracy(train: torch.Tensor, test: torch.Tensor) -> float:
    """Accuracy (percent) of always answering the most frequent value of ``train`` on ``test``."""
    majority = int(torch.bincount(train.flatten()).argmax())
    return 100.0 * float((test == majority).float().mean())


def _ave_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    labels = splits.train.labels  # (N, S), K = background
    return {
        "uniform": 100.0 / (splits.info.num_classes + 1),
        "majority": _majority_accuracy(labels, splits.test.labels),
    }


def _ave_cls_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    from avlearn.metrics.ave import clip_class

    background = splits.info.num_classes
    train, test = (clip_class(s.labels, background) for s in (splits.train, splits.test))  # (N,), -100: no event
    majority = _majority_accuracy(train[train >= 0], test[test >= 0])
    return {"uniform": 100.0 / splits.info.num_classes, "majority": majority}


def _llp_cls_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    train, test = (s.labels.argmax(dim=-1) for s in (splits.train, splits.test))  # (N, K) -> (N,) first class
    return {"uniform": 100.0 / splits.info.num_classes, "majority": _majority_accuracy(train, test)}


def _avvp_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    targets = out["targets"]
    segments = targets["gt_audio"].shape[-1]
    everywhere = targets["labels"].bool()[..., None].expand(-1, -1, segments)  # (N, K) -> (N, K, S)
    scores = task.score({"audio": everywhere, "visual": everywhere}, targets)
    return {"video_labels_everywhere": scores[task.primary_metric]}


def _avs_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    empty = {"probs": torch.zeros_like(out["preds"]["probs"])}
    return {"empty_masks": task.score(empty, out["targets"])[task.primary_metric]}


def _avqa_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    train, test = splits.train, splits.test
    answers = {}
    for answer, qtype in zip(train.answers.tolist(), train.question_types, strict=True):
        answers.setdefault(qtype, []).append(answer)
    majority = {qtype: Counter(a).most_common(1)[0][0] for qtype, a in answers.items()}
    hits = [a == majority.get(t, -1) for a, t in zip(test.answers.tolist(), test.question_types, strict=True)]
    return {"uniform": 100.0 / splits.info.num_classes, "majority_per_type": 100.0 * float(np.mean(hits))}


def _timeline(splits: Any, truth: torch.Tensor, pred: torch.Tensor, ids: list[str], path: Path) -> Path:
    from avlearn.viz.timeline import plot_timelines

    return plot_timelines(path, ids, truth.numpy(), pred.numpy(), splits.info.class_names)


def _ave_plot(splits: Any, out: dict, path: Path) -> Path:
    truth, pred = out["targets"]["labels"][:SHOWN], out["preds"]["segment_labels"][:SHOWN]  # (B, S) each
    return _timeline(splits, truth, pred, out["targets"]["id"][:SHOWN], path)


def _ave_cls_plot(splits: Any, out: dict, path: Path) -> Path:
    truth = out["targets"]["labels"][:SHOWN]  # (B, S)
    pred = out["preds"]["clip_labels"][:SHOWN, None].expand_as(truth)  # (B,) -> (B, S): the clip class everywhere
    return _timeline(splits, truth, pred, out["targets"]["id"][:SHOWN], path)


def _first_class(on: torch.Tensor) -> torch.Tensor:
    """(B, K, S) bool -> (B, S): the lowest class on in each segment, K where none is."""
    k = on.shape[1]
    index = torch.arange(k, device=on.device)[None, :, None]  # (1, K, 1)
    return torch.where(on, index, k).amin(dim=1)


def _avvp_plot(splits: Any, out: dict, path: Path) -> Path:
    targets, preds = out["targets"], out["preds"]
    rows = [(f"{vid} {m}", _first_class(targets[f"gt_{m}"][i : i + 1]), _first_class(preds[m][i : i + 1]))
            for i, vid in enumerate(targets["id"][: SHOWN // 2]) for m in ("audio", "visual")]  # fmt: skip
    truth, pred = torch.cat([t for _, t, _ in rows]), torch.cat([p for _, _, p in rows])  # (2n, S) each
    return _timeline(splits, truth, pred, [name for name, _, _ in rows], path)


def _avs_plot(splits: Any, out: dict, path: Path) -> Path:
    from avlearn.metrics.avs import frame_iou
    from avlearn.viz.masks import plot_masks

    test, n = splits.test, min(SHOWN // 2, len(splits.test))
    probs = out["preds"]["probs"][:n, :2].flatten(0, 1)  # (n, 2, H, W) -> (2n, H, W): two frames of n clips
    truth = out["targets"]["masks"][:n, :2].flatten(0, 1).unflatten(-1, probs.shape[-2:])  # (2n, H*W) -> (2n, H, W)
    frames = torch.stack([test[i]["frames"][:2] for i in range(n)])  # (n, 2, H, W, 3): in memory or lazy splits
    frames = frames.flatten(0, 1).numpy()  # (n, 2, H, W, 3) -> (2n, H, W, 3)
    titles = [f"{clip} frame {t + 1}" for clip in test.ids[:n] for t in range(2)]
    return plot_masks(path, frames, truth.numpy(), probs.numpy(), titles, frame_iou(probs.numpy(), truth.numpy()))


def _avqa_plot(splits: Any, out: dict, path: Path) -> Path:
    from avlearn.viz.grounding import plot_temporal_grounding

    test, names, shown = splits.test, splits.info.class_names, list(range(min(SHOWN, len(splits.test))))
    answers = [f"pred {names[int(out['preds']['answer'][i])]}, true {names[int(test.answers[i])]}" for i in shown]
    weights = {m: out["preds"][f"{m}_weights"][shown].numpy() for m in ("visual", "audio")}  # (Q, S) each
    return plot_temporal_grounding(path, [test.questions[i] for i in shown], weights, answers)


AVE = Report(_ave_chance, _ave_plot, "timeline.png")  # segment labels
AVE_CLS = Report(_ave_cls_chance, _ave_cls_plot, "timeline.png")  # one class per clip (its first event's)
AVS = Report(_avs_chance, _avs_plot, "masks.png")
AVVP = Report(_avvp_chance, _avvp_plot, "timeline.png")
AVQA = Report(_avqa_chance, _avqa_plot, "grounding.png")
LLP_CLS = Report(_llp_cls_chance)
