"""``task=retrieve`` with ``task.similarity=method``: VALOR's MGA score through the ``retrieval_features`` /
``retrieval_similarity`` / ``retrieval_loss`` hooks, recomputed here from the method's own MGA pieces; the group key;
dual softmax still the task's (one-line refusals: test_method_hook_refusals.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.data.schema import DatasetInfo
from avlearn.methods.valor import VALOR, VALORConfig, contrastive_loss, mga_score
from avlearn.metrics.retrieval import retrieval_scores
from avlearn.registry import BACKBONES
from avlearn.tasks.retrieve import RetrieveConfig, RetrieveTask

IDS = torch.tensor([[101, 2000, 2001, 2002, 102, 0], [101, 3000, 102, 0, 0, 0], [101, 4000, 4001, 4002, 4003, 102]])


def _valor(**cfg: object) -> VALOR:
    torch.manual_seed(0)
    towers = [BACKBONES.build(n) for n in ("clip_vit_tiny", "ast_valor_tiny", "minilm_tiny")]
    return VALOR(VALORConfig(contra_dim=16, **cfg), *towers)


def _task(method: torch.nn.Module, **cfg: object) -> RetrieveTask:
    return RetrieveTask(RetrieveConfig(**{"similarity": "method", **cfg}), method, DatasetInfo(("a", "b"), 10))


@pytest.fixture
def batch(clip_batch):
    return clip_batch(torch.tensor([0, 1, 0]), input_ids=IDS, attention_mask=(IDS != 0).long())


def _expected_scores(method: VALOR, batch: dict, group: str) -> torch.Tensor:
    """(T, V) MGA scores of the batch's captions against its clips in ``group``, from VALOR's own pieces."""
    feats = method(batch)
    text, _ = method.encode_text(IDS, batch["attention_mask"])
    contrast = method.contrast_features(feats.visual, feats.audio, text, batch["attention_mask"])
    return mga_score(contrast.text, contrast.text_weight, contrast.text_mask, *contrast.group(group))


@pytest.mark.parametrize("group", ["tva", "tv", "ta"])
def test_scores_and_loss_are_valor_mga_of_the_chosen_group(batch, group: str):
    task = _task(_valor(retrieval_group=group)).eval()
    assert not any(n.startswith(("clip.", "text.", "log_scale")) for n, _ in task.named_parameters())
    expected = _expected_scores(task.method, batch, group)
    preds = task.predict(batch)
    torch.testing.assert_close(task.method.retrieval_similarity(preds), expected)
    torch.testing.assert_close(task.method.retrieval_similarity(preds, chunk=2), expected)  # chunked = whole
    loss = task(batch)["loss"]
    torch.testing.assert_close(loss, contrastive_loss(expected, task.method.temperature_value()))
    assert task.score(preds, {}) == retrieval_scores(expected.double(), torch.arange(3))


def test_groups_give_different_scores_and_dual_softmax_is_the_tasks(batch):
    scores = {g: _task(_valor(retrieval_group=g)).eval() for g in ("tva", "tv", "ta")}
    preds = {g: task.predict(batch) for g, task in scores.items()}
    sims = {g: task.method.retrieval_similarity(preds[g]) for g, task in scores.items()}
    assert not torch.allclose(sims["tva"], sims["tv"]) and not torch.allclose(sims["tv"], sims["ta"])
    task = _task(_valor(), dual_softmax=0.5).eval()
    out = task.score(task.predict(batch), {})
    assert out == retrieval_scores(sims["tva"].double(), torch.arange(3), dual_softmax_temperature=0.5)
    assert any(k.endswith("_dsl") for k in out)


def test_a_training_step_reaches_the_text_tower_and_the_weight_mlps(batch):
    task = _task(_valor()).train()
    task(batch)["loss"].backward()
    method = task.method
    assert method.weight_text[0].weight.grad is not None and method.contra_audio.weight.grad is not None
    assert method.text_backbone.model.embeddings.word_embeddings.weight.grad is not None
    assert method.lm_bias.grad is None  # no MGC: retrieval fine-tuning is contrastive only


def test_the_ranking_figure_is_left_out_for_token_features(batch, tmp_path):
    from avlearn.viz.retrieval import _retrieve_plot

    preds = _task(_valor()).eval().predict(batch)
    path = _retrieve_plot(SimpleNamespace(test=None), {"preds": preds}, tmp_path / "retrieval.png")
    assert path == tmp_path / "retrieval.png" and not path.exists()
