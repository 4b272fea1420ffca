"""The classify task: the linear probe freezes the method (eval mode, no gradient), kNN votes against a hand
computation, multi-view averaging against the crops run one by one, the multi-label loss and scores, config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avlearn.errors import ConfigError
from avlearn.metrics.classification import multilabel_scores, topk_accuracy
from avlearn.tasks.classify import ClassifyConfig, ClassifyTask, ClipInfo, crop, view_starts
from avlearn.viz.classification import classify_chance

K = 6


def _task(tiny_method, memory=None, **cfg) -> ClassifyTask:
    info = ClipInfo(tuple(f"c{i}" for i in range(K)), 10, memory=memory)
    return ClassifyTask(ClassifyConfig(**cfg), tiny_method(), info)


def test_linear_probe_freezes_the_method_in_eval_mode_and_trains_only_the_head(tiny_method, clip_batch):
    task = _task(tiny_method, mode="linear").train()
    assert not task.method.training and task.head.training
    norm = task.head[0]
    assert isinstance(norm, torch.nn.BatchNorm1d) and not norm.affine  # MAE's probe: BN without affine, then linear
    method_state = {k: v.clone() for k, v in task.method.state_dict().items()}
    out = task(clip_batch(torch.tensor([0, 1, 2, 3])))
    out["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in task.method.parameters())
    assert all(p.grad is not None for p in task.head.parameters())
    for key, value in task.method.state_dict().items():  # running statistics untouched: the method ran in eval mode
        torch.testing.assert_close(value, method_state[key], msg=key)


def test_finetune_trains_the_method(tiny_method, clip_batch):
    task = _task(tiny_method, mode="finetune", features="audio").train()
    assert task.method.training
    task(clip_batch(torch.tensor([0, 1, 2, 3])))["loss"].backward()
    assert any(p.grad is not None for p in task.method.parameters())


def test_knn_votes_equal_a_hand_computation(tiny_method):
    task = _task(tiny_method, mode="knn", knn_k=3, knn_temperature=0.5)
    g = torch.Generator().manual_seed(1)
    bank = F.normalize(torch.randn(9, 5, generator=g), dim=-1)
    labels = torch.randint(0, K, (9,), generator=g)
    task._bank = bank, F.one_hot(labels, K).float()
    queries = F.normalize(torch.randn(4, 5, generator=g), dim=-1)
    votes = task.knn_votes(queries)
    for q, row in zip(queries.tolist(), votes.tolist(), strict=True):
        sims = [sum(a * b for a, b in zip(q, item, strict=True)) for item in bank.tolist()]
        nearest = sorted(range(9), key=lambda i: -sims[i])[:3]
        expected = [0.0] * K
        for i in nearest:
            expected[int(labels[i])] += math.exp(sims[i] / 0.5)
        np.testing.assert_allclose(row, [e / sum(expected) for e in expected], rtol=1e-5)


def test_knn_memory_bank_is_the_training_split_and_a_clip_finds_itself(tiny_method, clip_batch):
    batch = clip_batch(torch.tensor([0, 1, 2, 3, 4, 5]))
    memory = [{"frames": batch["frames"][i], "audio": batch["audio"][i], "label": batch["label"][i]} for i in range(6)]
    task = _task(tiny_method, memory=memory, mode="knn", knn_k=1).eval()
    preds = task.predict(batch)
    assert task.memory_bank()[0].shape[0] == 6
    assert preds["clip_labels"].tolist() == [0, 1, 2, 3, 4, 5]  # its nearest neighbour is itself
    with pytest.raises(ConfigError, match="does not train"):
        task(batch)


def test_knn_without_a_memory_bank_is_a_config_error(tiny_method, clip_batch):
    task = _task(tiny_method, mode="knn").eval()
    with pytest.raises(ConfigError, match="memory bank"):
        task.predict(clip_batch(torch.tensor([0])))


def test_views_average_the_probabilities_of_evenly_spread_crops(tiny_method, clip_batch):
    assert view_starts(10, 4, 3) == [0, 3, 6] and view_starts(10, 10, 1) == [0]
    task = _task(tiny_method, views=3, view_segments=4).eval()
    batch = clip_batch(torch.tensor([0, 1]))
    preds = task.predict(batch)
    one_by_one = []
    for start in (0, 3, 6):
        cut = {k: v[:, start : start + 4] if k in ("frames", "audio") else v for k, v in batch.items()}
        feats = task.method(cut)
        pooled = torch.cat([feats.audio_pooled.mean(1), feats.visual_pooled.mean(1)], dim=-1)
        one_by_one.append(task.head(pooled).softmax(dim=-1))
    torch.testing.assert_close(preds["probs"], torch.stack(one_by_one).mean(0))
    assert crop(batch, 3, 4)["frames"].shape[1] == 4 and crop(batch, 3, 4)["label"] is batch["label"]


def test_single_label_scores_are_the_metrics_top_k(tiny_method, clip_batch):
    task = _task(tiny_method).eval()
    labels = torch.tensor([0, 1, 2, 5])
    preds = task.predict(clip_batch(labels))
    assert task.score(preds, {"label": labels}) == topk_accuracy(preds["probs"], labels, (1, 5))


def test_multilabel_loss_and_scores(tiny_method, clip_batch):
    task = _task(tiny_method, multilabel=True, features="visual").eval()  # eval: both forwards see the same method
    assert task.primary_metric == "map"
    labels = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1], [1, 1, 0, 0, 0, 0]], dtype=torch.float32)
    batch = clip_batch(labels)
    torch.manual_seed(0)
    loss = task(batch)["loss"]
    feats = task.method(batch)
    expected = F.binary_cross_entropy_with_logits(task.head(feats.visual_pooled.mean(1)), labels)
    torch.testing.assert_close(loss, expected)
    preds = task.predict(batch)
    assert ((preds["probs"] > 0) & (preds["probs"] < 1)).all()  # sigmoid per class, not a softmax
    scores = task.score(preds, {"labels": labels})
    assert scores == {k: v for k, v in multilabel_scores(preds["probs"], labels).items() if v is not None}


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"mode": "probe"}, "task.mode"),
        ({"features": "text"}, "task.features"),
        ({"views": 3}, "view_segments"),
        ({"view_segments": 11}, "view_segments"),
        ({"mode": "knn", "knn_k": 0}, "knn_k"),
        ({"mode": "knn", "knn_batch": 0}, "knn_batch"),
        ({"features": "fused"}, "fused"),  # the baseline fuses nothing: refused at build time, naming both
    ],
)
def test_invalid_config_is_a_one_line_error(tiny_method, cfg, match):
    with pytest.raises(ConfigError, match=match) as err:
        _task(tiny_method, **cfg)
    assert "\n" not in str(err.value)


def test_chance_levels():
    class Splits:
        train = type("T", (), {"targets": {"label": torch.tensor([1, 1, 2, 0])}})
        info = ClipInfo(("a", "b", "c", "d"))

    out = {"targets": {"label": torch.tensor([1, 2, 1, 1])}}
    assert classify_chance(Splits, None, out) == {"uniform": 25.0, "majority": 75.0}
    multi = {"targets": {"labels": torch.tensor([[1, 0, 0], [1, 1, 0]])}}
    assert classify_chance(Splits, None, multi) == pytest.approx({"prevalence": 75.0})  # (100 + 50) / 2, class 3 unseen


@pytest.mark.parametrize(("multilabel", "present", "hint"), [(False, "labels", "true"), (True, "label", "false")])
def test_a_multilabel_switch_that_does_not_fit_the_benchmark_is_one_line(multilabel, present, hint):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from avlearn.tasks.classify import _check_targets

    cfg = OmegaConf.create({"task": {"multilabel": multilabel}, "data": {"benchmark": "audioset"}})
    train = SimpleNamespace(targets={present: torch.zeros(2)})
    expected = f"task.multilabel={str(multilabel).lower()}: .*it has {present}\\); set task.multilabel={hint}"
    with pytest.raises(ConfigError, match=expected):
        _check_targets(cfg, train)
    _check_targets(OmegaConf.merge(cfg, {"task": {"multilabel": not multilabel}}), train)  # the fitting switch passes
