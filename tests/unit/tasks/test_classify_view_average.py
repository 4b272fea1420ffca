"""``task.view_average``: multi-clip evaluation averaging the views' logits (DeepAVFusion's dense evaluation) or
their probabilities (the default), against the views run one by one."""

from __future__ import annotations

import pytest
import torch

from avlearn.errors import ConfigError
from avlearn.tasks.classify import ClassifyConfig, ClassifyTask, ClipInfo

K = 6


def _task(tiny_method, **cfg) -> ClassifyTask:
    return ClassifyTask(ClassifyConfig(**cfg), tiny_method(), ClipInfo(tuple(f"c{i}" for i in range(K)), 10)).eval()


def _view_logits(task: ClassifyTask, batch: dict) -> torch.Tensor:
    """(10, B, K): the head's logits on each one-segment view, run one by one."""
    rows = []
    for start in range(10):
        cut = {k: v[:, start : start + 1] if k in ("frames", "audio") else v for k, v in batch.items()}
        feats = task.method(cut)
        rows.append(task.head(torch.cat([feats.audio_pooled.mean(1), feats.visual_pooled.mean(1)], dim=-1)))
    return torch.stack(rows)


@pytest.mark.parametrize("average", ["probs", "logits"])
def test_identical_views_give_the_single_view_result(tiny_method, clip_batch, average):
    batch = clip_batch(torch.tensor([0, 1, 2]))
    same = {k: v[:, :1].expand_as(v).contiguous() if k in ("frames", "audio") else v for k, v in batch.items()}
    single = _task(tiny_method, views=1, view_segments=1).predict(same)["probs"]  # the first segment alone
    many = _task(tiny_method, views=10, view_segments=1, view_average=average).predict(same)["probs"]
    torch.testing.assert_close(many, single)


def test_logit_averaging_scores_the_softmax_of_the_mean_logits(tiny_method, clip_batch):
    batch = clip_batch(torch.tensor([0, 1, 2]))
    task = _task(tiny_method, views=10, view_segments=1, view_average="logits")
    logits = _view_logits(task, batch)
    preds = task.predict(batch)
    torch.testing.assert_close(preds["probs"], logits.mean(0).softmax(-1))
    assert preds["clip_labels"].tolist() == logits.mean(0).argmax(-1).tolist()
    by_probs = _task(tiny_method, views=10, view_segments=1).predict(batch)["probs"]
    torch.testing.assert_close(by_probs, logits.softmax(-1).mean(0))
    assert not torch.allclose(by_probs, preds["probs"])  # different views: the two averages differ


def test_multilabel_logit_averaging_is_the_sigmoid_of_the_mean_logits(tiny_method, clip_batch):
    labels = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1]], dtype=torch.float32)
    batch = clip_batch(labels)
    task = _task(tiny_method, views=10, view_segments=1, view_average="logits", multilabel=True)
    torch.testing.assert_close(task.predict(batch)["probs"], _view_logits(task, batch).mean(0).sigmoid())


@pytest.mark.parametrize(
    ("cfg", "match"),
    [({"view_average": "mean"}, "task.view_average='mean'"), ({"mode": "knn", "view_average": "logits"}, "knn")],
)
def test_invalid_view_average_is_a_one_line_error(tiny_method, cfg, match):
    with pytest.raises(ConfigError, match=match) as err:
        _task(tiny_method, **cfg)
    assert "\n" not in str(err.value)
