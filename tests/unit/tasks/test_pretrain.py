"""``task=pretrain``: a method's own loss terms are the whole training loss, each logged; validation reports their
mean per split; a method without loss terms is refused at build time."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from avlearn.data.schema import DatasetInfo
from avlearn.errors import ConfigError
from avlearn.methods.base import AVFeatures
from avlearn.methods.baseline import Baseline
from avlearn.tasks.pretrain import Pretrain, PretrainConfig

INFO = DatasetInfo(("a", "b"), 10)


class SelfSupervised(Baseline):
    """The baseline plus two loss terms: one on its visual features, one that reads the caption ids."""

    loss_terms = ("energy", "text")

    def forward(self, batch: dict[str, torch.Tensor], **request: bool) -> AVFeatures:
        feats = super().forward(batch, **request)
        words = batch["text_mask"].float().sum(dim=1)  # (B,) caption lengths
        losses = {"energy": feats.visual_pooled.pow(2).mean(), "text": (words * feats.audio_pooled.mean()).mean()}
        return dataclasses.replace(feats, losses=losses)


@pytest.fixture
def pretrain(tiny_method):
    baseline = tiny_method()
    method = SelfSupervised.__new__(SelfSupervised)
    method.__dict__ = baseline.__dict__  # the same tiny baseline, with the loss terms
    return Pretrain(PretrainConfig(), method, INFO)


@pytest.fixture
def batch(clip_batch):
    ids = torch.tensor([[101, 7, 8, 102, 0], [101, 9, 102, 0, 0], [101, 5, 6, 7, 102]])  # (B, L) WordPiece ids
    return clip_batch(torch.tensor([0, 1, 0]), caption_ids=ids, caption_mask=(ids != 0).long())


def test_a_method_without_loss_terms_is_refused_at_build_in_one_line(tiny_method):
    with pytest.raises(ConfigError) as refused:
        Pretrain(PretrainConfig(), tiny_method(), INFO)
    message = str(refused.value)
    assert "task 'pretrain'" in message and "method 'baseline'" in message and "\n" not in message


def test_the_loss_is_the_sum_of_the_method_terms_each_logged(pretrain, batch):
    pretrain.eval()  # no dropout: the two forwards below see the same features
    out = pretrain(batch)
    feats = pretrain.method(
        {**batch, "text_ids": batch["caption_ids"], "text_mask": batch["caption_mask"]}
    )  # the captions reach the method as text_ids / text_mask
    words = torch.tensor([4.0, 3.0, 5.0])
    torch.testing.assert_close(out["loss_text"], (words * feats.audio_pooled.mean()).mean())
    torch.testing.assert_close(out["loss"], out["loss_energy"] + out["loss_text"])
    assert out["loss"].requires_grad and not out["loss_energy"].requires_grad
    out["loss"].backward()
    assert all(p.grad is not None for p in pretrain.method.parameters() if p.requires_grad)


def test_validation_scores_the_mean_of_each_term_weighted_by_batch_size(pretrain, batch):
    pretrain.eval()
    first = pretrain.predict(batch)
    small = {k: v[:1] for k, v in batch.items()}
    second = pretrain.predict(small)
    assert first["loss"].shape == (3,) and second["loss"].shape == (1,)
    merged = {k: torch.cat([first[k], second[k]]) for k in first}
    scores = pretrain.score(merged, {})
    expected = (3 * first["loss"][0] + second["loss"][0]) / 4
    assert scores["loss"] == pytest.approx(float(expected), rel=1e-6)
    assert set(scores) == {"loss", "loss_energy", "loss_text"} and Pretrain.lower_is_better
