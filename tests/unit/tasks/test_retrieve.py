"""The retrieve task: its loss against a hand-written info-NCE, the clamped temperature, the scores against the
retrieval scorer, the duplicate-caption ceiling, the feature keys, and 2 gloo processes giving one process's
gradients over the global batch."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from avlearn.data.schema import DatasetInfo
from avlearn.errors import ConfigError
from avlearn.metrics.retrieval import retrieval_scores
from avlearn.tasks.retrieve import RetrieveConfig, RetrieveTask
from avlearn.viz.retrieval import caption_ceiling
from two_processes import spawn_two

TEXT = 32  # bert_tiny's width: the caption embeddings of these tests
ROWS = (3, 2)  # rows of the global batch held by rank 0 and rank 1


def _task(method, **cfg) -> RetrieveTask:
    torch.manual_seed(0)
    config = RetrieveConfig(text="bert_tiny", dim=16, heads=2, dropout=0.0, **cfg)
    return RetrieveTask(config, method, DatasetInfo(("a", "b"), 10))


def _batch(clip_batch, n: int, seed: int = 3) -> dict:
    text = F.normalize(torch.randn(n, TEXT, generator=torch.Generator().manual_seed(seed)), dim=-1)
    return clip_batch(torch.zeros(n, 10, dtype=torch.long), text=text)


def test_loss_is_the_symmetric_info_nce_of_the_embeddings(tiny_method, clip_batch):
    task = _task(tiny_method()).eval()
    batch = _batch(clip_batch, 4)
    loss = task(batch)["loss"]
    clip, text, _ = task.embed(batch)
    logits = task.scale() * text @ clip.T  # (T, V), distinct captions: the diagonal is the only positive
    by_hand = -(logits.log_softmax(dim=1).diag().mean() + logits.log_softmax(dim=0).diag().mean()) / 2
    torch.testing.assert_close(loss, by_hand)


def test_identical_captions_are_positives_of_each_other(tiny_method, clip_batch):
    task = _task(tiny_method()).eval()
    batch = _batch(clip_batch, 3)
    batch["text"][2] = batch["text"][0]
    loss = task(batch)["loss"]
    clip, text, _ = task.embed(batch)
    logits = task.scale() * text @ clip.T
    target = torch.tensor([[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]])
    by_hand = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(loss, by_hand)


def test_the_temperature_is_learned_and_kept_in_range(tiny_method, clip_batch):
    task = _task(tiny_method(), max_scale=50.0)
    assert task.scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    task(_batch(clip_batch, 4))["loss"].backward()
    assert task.log_scale.grad is not None and task.log_scale.grad != 0
    with torch.no_grad():
        task.log_scale.fill_(10.0)
    assert task.scale().item() == pytest.approx(50.0)
    with torch.no_grad():
        task.log_scale.fill_(-3.0)
    assert task.scale().item() == pytest.approx(1.0)


def test_scores_are_the_retrieval_scorer_on_the_split_similarity(tiny_method, clip_batch):
    task = _task(tiny_method(), dual_softmax=0.05).eval()
    batch = _batch(clip_batch, 5)
    preds = task.predict(batch)
    similarity = (preds["text"] @ preds["clip"].T).double()
    expected = retrieval_scores(similarity, torch.arange(5), dual_softmax_temperature=0.05)
    scores = task.score(preds, {})
    assert scores.keys() == expected.keys() and "t2v_r1_dsl" in scores
    assert scores == pytest.approx(expected)


@pytest.mark.parametrize(("features", "width"), [("audio", 16), ("visual", 16), ("av", 32)])
def test_features_key_picks_what_meets_the_text(tiny_method, clip_batch, features, width):
    task = _task(tiny_method(), features=features)
    assert task.clip.proj.in_features == width
    assert task.predict(_batch(clip_batch, 2))["clip"].shape == (2, 16)


@pytest.mark.parametrize(("cfg", "match"), [({"features": "text"}, "task.features"), ({"init_scale": 0.5}, "scale")])
def test_invalid_config_is_a_one_line_error(tiny_method, cfg, match):
    with pytest.raises(ConfigError, match=match) as err:
        _task(tiny_method(), **cfg)
    assert "\n" not in str(err.value)


def test_caption_ceiling_counts_distinct_queries():
    assert caption_ceiling(["a b", "a b", "c", "d"]) == 75.0
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert caption_ceiling(rows) == pytest.approx(200 / 3)


def _grads(task: RetrieveTask) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}


def _worker(rank: int, port: int, out: str, batch: dict) -> None:
    from avlearn.methods.baseline import Baseline, BaselineConfig
    from avlearn.registry import BACKBONES

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    method = Baseline(BaselineConfig(dim=16), BACKBONES.build("cnn_visual_tiny", size=32),
                      BACKBONES.build("cnn_audio_tiny"))  # fmt: skip
    task = _task(method).eval()  # eval: batch norm per sample (running statistics), so shards see what one process sees
    start, stop = sum(ROWS[:rank]), sum(ROWS[: rank + 1])
    shard = {k: v[start:stop] for k, v in batch.items()}
    (task(shard)["loss"] * (stop - start) * 2 / sum(ROWS)).backward()  # the engine's micro-batch weight
    for p in task.parameters():  # what DDP does: average the gradients over the ranks
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= 2
    torch.save(_grads(task), f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_gloo_processes_give_the_gradients_of_one_process_on_the_global_batch(tiny_method, clip_batch, tmp_path):
    batch = _batch(clip_batch, sum(ROWS))
    one = _task(tiny_method()).eval()
    one(batch)["loss"].backward()
    # fp32 through two CNNs: summation order moves a gradient by a few 1e-5 (seen: 1.3e-5 absolute); local negatives
    # only would move them by far more.
    spawn_two(_worker, str(tmp_path), batch)
    for rank in range(2):
        grads = torch.load(tmp_path / f"rank{rank}.pt")
        assert grads.keys() == _grads(one).keys()
        for name, grad in _grads(one).items():
            torch.testing.assert_close(grads[name], grad, atol=5e-5, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
    assert math.isfinite(float(one.log_scale.grad))
