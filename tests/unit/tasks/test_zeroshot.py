"""Caption pre-training and zero-shot tasks (DG-SCT's pre-training / zero-shot settings, text-space heads)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avlearn.errors import ConfigError
from avlearn.losses.contrastive import symmetric_nce
from avlearn.tasks.base import DatasetInfo
from avlearn.tasks.zeroshot import (
    CaptionPretrainTask,
    PretrainCaptionsConfig,
    ZeroShotClassifyTask,
    ZeroShotClsConfig,
    ZeroShotConfig,
    ZeroShotTask,
    class_texts,
    masked_mean,
)

CLASSES = ("dog", "violin", "car")


@pytest.fixture(scope="module")
def pretrain(tiny_method):
    return CaptionPretrainTask(PretrainCaptionsConfig(), tiny_method(), DatasetInfo(CLASSES))


def test_class_texts_use_descriptions_else_names():
    from avlearn.data.pipelines.captions import DescribedInfo

    described = DescribedInfo(("organ",), descriptions=("red striped circle",))
    assert class_texts("the {name} is a {description}", described) == ["the organ is a red striped circle"]
    assert class_texts("a {description}", DatasetInfo(("dog",))) == ["a dog"]


def test_zero_shot_tasks_load_the_pretrained_weights_exactly(pretrain, tiny_method):
    state = pretrain.state_dict()
    assert not any(key.startswith("prompts") for key in state)  # class prompts are rebuilt, never loaded
    for cls, cfg in ((ZeroShotTask, ZeroShotConfig()), (ZeroShotClassifyTask, ZeroShotClsConfig())):
        other = cls(cfg, tiny_method(), DatasetInfo(("cat", "piano")))  # other classes, other number of classes
        assert other.load_state_dict(state, strict=True) is not None
        assert other.prompts.shape == (3, 384)  # 2 classes + background, embedded by minilm_l6


def test_symmetric_nce_counts_clips_with_identical_captions_as_positives():
    x = torch.eye(3)  # clip 0 matches the embedding of clip 1, which has the same caption
    y = torch.eye(3)[[1, 0, 2]]
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    scale = torch.tensor(20.0)
    assert symmetric_nce(x, y, soft, scale) < 0.6 * symmetric_nce(x, y, torch.eye(3), scale)  # ~6.7 vs ~13.3


def test_masked_mean_averages_event_segments_or_all_when_none():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])  # (B=2, S=2, C=2)
    keep = torch.tensor([[True, False], [False, False]])
    out = masked_mean(x, keep)
    assert torch.allclose(out[0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(out[1], torch.tensor([0.5, 0.5]).sqrt())


def test_pretraining_loss_trains_method_and_projections(pretrain, clip_batch):
    labels = torch.tensor([[3] * 3 + [0] * 7, [1] * 10])  # clip 0: background then an event; clip 1: all event
    texts = F.normalize(torch.randn(2, 384, generator=torch.Generator().manual_seed(1)), dim=-1)
    pretrain.zero_grad()
    loss = pretrain(clip_batch(labels, text=texts))["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert pretrain.visual_proj.weight.grad.abs().sum() > 0 and pretrain.audio_proj.weight.grad.abs().sum() > 0
    assert pretrain.log_scale.grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pretrain.method.parameters())


def test_segment_loss_matches_captions_and_decides_background(pretrain):
    texts = F.normalize(torch.randn(2, 384, generator=torch.Generator().manual_seed(2)), dim=-1)
    background = pretrain.prompts[-1]
    event = torch.tensor([[True, False], [True, True]])
    target = torch.eye(2)
    right = torch.stack([torch.stack([texts[0], background]), torch.stack([texts[1], texts[1]])])  # (B, S, Ct)
    swapped = torch.stack([torch.stack([texts[1], background]), torch.stack([texts[0], texts[0]])])  # wrong captions
    no_background = torch.stack([torch.stack([texts[0], texts[0]]), torch.stack([texts[1], texts[1]])])
    with torch.no_grad():
        good = pretrain.segment_loss(right, right, texts, target, event)
        wrong_caption = pretrain.segment_loss(swapped, swapped, texts, target, event)
        missed_background = pretrain.segment_loss(no_background, no_background, texts, target, event)
    assert good < 0.1 < min(wrong_caption, missed_background)


def test_background_is_decided_apart_from_the_class_prompts(pretrain):
    classes = torch.tensor([[[5.0, 1.0, 0.0], [0.0, 3.0, 1.0]]])  # (B=1, S=2, K=3)
    background = torch.tensor([[-2.0, 2.0]])  # segment 1 is background, whatever its class logits
    preds = pretrain.segment_predictions(classes, background)
    assert preds["segment_labels"].tolist() == [[0, 3]]
    assert torch.allclose(preds["probs"].sum(dim=-1), torch.ones(1, 2))
    assert pretrain.segment_predictions(classes, None)["segment_labels"].tolist() == [[0, 1]]


def test_zero_shot_predicts_background_as_a_class_and_does_not_train(tiny_method, clip_batch):
    task = ZeroShotTask(ZeroShotConfig(), tiny_method(), DatasetInfo(CLASSES))
    labels = torch.tensor([[3] * 5 + [1] * 5, [2] * 10])
    preds = task.predict(clip_batch(labels))
    assert preds["probs"].shape == (2, 10, 4) and preds["segment_labels"].shape == (2, 10)
    assert 0 <= task.score(preds, {"labels": labels})["segment_accuracy"] <= 100
    with pytest.raises(ConfigError, match="train.epochs=0"):
        task(clip_batch(labels))
    seedlike = ZeroShotTask(ZeroShotConfig(background=""), tiny_method(), DatasetInfo(CLASSES))
    assert seedlike.predict(clip_batch(labels))["probs"].shape == (2, 10, 3)  # the seed's zero-shot: no background


def test_zero_shot_classification_scores_clips_by_their_first_event(tiny_method, clip_batch):
    task = ZeroShotClassifyTask(ZeroShotClsConfig(), tiny_method(), DatasetInfo(CLASSES))
    labels = torch.tensor([[3] * 4 + [2] * 6, [3] * 10, [0] * 10])
    preds = task.predict(clip_batch(labels))
    assert preds["clip_labels"].shape == (3,) and int(preds["clip_labels"].max()) < 3  # background never a clip class
    targets = {"labels": labels}
    assert task.score({"clip_labels": torch.tensor([2, 1, 0])}, targets)["accuracy"] == 100.0  # clip 1 has no event
    assert task.score({"clip_labels": torch.tensor([2, 1, 1])}, targets)["accuracy"] == 50.0
