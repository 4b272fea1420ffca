"""Few-shot prompt classifier (DG-SCT's few-shot setting) and the shots x seeds protocol."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from avlearn.errors import ConfigError
from avlearn.layers.prompts import embed_prompts
from avlearn.losses.contrastive import info_nce
from avlearn.registry import BACKBONES
from avlearn.tasks.base import DatasetInfo
from avlearn.tasks.fewshot import (
    FewShotConfig,
    PromptAVEClassTask,
    PromptClassifierTask,
    PromptLLPClassTask,
    class_prompts,
    few_shot_grid,
)

CLASSES = ("dog", "violin", "car")


def test_prompts_include_background_only_when_named():
    assert class_prompts("a photo of a {}.", ["dog", "car"], "background")[-1] == "a photo of a background."
    assert class_prompts("the sound of a {}.", ["dog", "car"], "") == ["the sound of a dog.", "the sound of a car."]


@pytest.fixture(scope="module")
def task(tiny_method):
    return PromptClassifierTask(FewShotConfig(), tiny_method(), DatasetInfo(CLASSES))


def test_class_embeddings_come_from_the_text_tower(task):
    assert task.visual_classes.shape == (4, 384) and task.audio_classes.shape == (4, 384)  # 3 classes + background
    sims = task.visual_classes @ task.visual_classes.T
    assert (sims.diagonal() - 1).abs().max() < 1e-4 and sims.fill_diagonal_(0).max() < 0.99  # distinct prompts
    assert not any(p.requires_grad for p in task.buffers())


def test_prompt_classifier_trains_and_predicts(task, clip_batch):
    batch = clip_batch(torch.tensor([[3] * 5 + [1] * 5, [0] * 10]))
    out = task(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and task.visual_proj.weight.grad is not None and task.log_scale.grad is not None
    pred = task.predict(batch)
    assert pred["segment_labels"].shape == (2, 10) and pred["probs"].shape == (2, 10, 4)
    assert 0 <= task.score(pred, batch)["segment_accuracy"] <= 100


def test_grid_draws_k_clips_per_class_for_every_seed():
    labels = [0] * 20 + [1] * 20 + [2] * 3
    seen = []

    def run(positions: list[int], seed: int) -> dict[str, float]:
        seen.append((len(positions), seed, Counter(labels[p] for p in positions)))
        return {"accuracy": float(len(positions) + seed)}

    grid = few_shot_grid(labels, shots=[1, 4], seeds=[0, 1, 2], run=run)
    assert grid[1] == {"accuracy_mean": 4.0, "accuracy_std": pytest.approx(0.8165, abs=1e-4)}
    assert grid[4]["accuracy_mean"] == 12.0  # 4 + 4 + 3 (the small class gives all it has), plus the seed
    assert [dict(count) for _, _, count in seen] == [{0: 1, 1: 1, 2: 1}] * 3 + [{0: 4, 1: 4, 2: 3}] * 3


def test_config_composes():
    from avlearn.config.compose import compose_run

    cfg = compose_run(["task=fewshot", "shots=4"])
    assert cfg.task.name == "fewshot" and cfg.task.background == "background" and cfg.shots == 4
    for name in ("fewshot_ave_cls", "fewshot_llp_cls"):
        assert compose_run([f"task={name}"]).task.background == ""
    cfg = compose_run(["method=dgsct_fewshot", "backbone=dgsct_fewshot"])
    assert (cfg.method.alpha, cfg.method.beta, cfg.method.gamma) == (0.2, 0.05, 0.01)
    assert (cfg.backbone.visual, cfg.backbone.audio, cfg.backbone.freeze) == ("clip_vit_b32", "clap_audio_htsat", "all")


def test_contrastive_term_adds_to_the_loss_in_training_only(task, tiny_method, clip_batch):
    batch = clip_batch(torch.tensor([[3] * 5 + [1] * 5, [0] * 10]))
    with_term = PromptClassifierTask(FewShotConfig(contrastive=1.0), tiny_method(), DatasetInfo(CLASSES))
    with_term.load_state_dict(task.state_dict())
    for t in (task, with_term):
        t.train().method.eval()  # the term is on in training mode; the encoders deterministic (batch norm stats)
    plain, extra = task(batch), with_term(batch)
    assert torch.allclose(plain["loss_ce"], extra["loss_ce"]) and extra["loss"] > plain["loss"] + 0.1
    with_term.eval()
    assert torch.allclose(with_term(batch)["loss"], with_term(batch)["loss_ce"])


def test_info_nce_prefers_matching_pairs():
    x = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    scale = torch.tensor(10.0)
    assert info_nce(x, x, scale) < info_nce(x, x.roll(1, dims=0), scale) - 1.0


def test_joint_space_text_towers_give_projected_embeddings(monkeypatch):
    import avlearn.layers.prompts as prompts

    tower = BACKBONES.build("clip_text_tiny")  # random init: no tokenizer, so one is faked
    ids = torch.tensor([[98, 5, 6, 99], [98, 7, 8, 99]])
    monkeypatch.setattr(tower, "tokenize", lambda texts: {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    monkeypatch.setattr(prompts.BACKBONES, "build", lambda name, pretrained=None: tower)
    emb = embed_prompts("clip_text_tiny", ["a photo of a dog.", "a photo of a car."])
    assert tower.num_features == 32 and emb.shape == (2, 16)  # CLIP's joint space, not the pooled width
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2))


def test_ave_classification_uses_the_first_event_and_skips_clips_without_one(tiny_method, clip_batch):
    task = PromptAVEClassTask(FewShotConfig(name="fewshot_ave_cls", background=""), tiny_method(), DatasetInfo(CLASSES))
    assert task.visual_classes.shape[0] == 3  # no background prompt
    labels = torch.tensor([[3, 3, 2, 2, 0, 0, 3, 3, 3, 3], [3] * 10])  # first event: class 2; second clip: none
    batch = clip_batch(labels)
    task.eval()
    logits = task.clip_logits(batch)[0]
    assert torch.allclose(task(batch)["loss_ce"], torch.nn.functional.cross_entropy(logits[:1], torch.tensor([2])))
    preds = task.predict(batch)
    assert torch.equal(preds["clip_labels"], logits.argmax(-1))
    right = {"clip_labels": torch.tensor([2, 0])}
    assert task.score(right, {"labels": labels}) == {"accuracy": 100.0}  # the clip without an event is not scored


def test_classification_variants_refuse_a_background_class(tiny_method):
    with pytest.raises(ConfigError, match="task.background"):
        PromptLLPClassTask(FewShotConfig(name="fewshot_llp_cls"), tiny_method(), DatasetInfo(CLASSES))


def test_llp_classification_soft_target_and_first_label_accuracy(tiny_method, clip_batch):
    task = PromptLLPClassTask(FewShotConfig(name="fewshot_llp_cls", background=""), tiny_method(), DatasetInfo(CLASSES))
    labels = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    batch = clip_batch(labels)
    task.eval()
    logits = task.clip_logits(batch)[0]
    expected = -(labels * logits.log_softmax(-1)).sum(-1).mean()  # the multi-hot as it is, not normalised
    assert torch.allclose(task(batch)["loss_ce"], expected)
    preds = {"clip_labels": torch.tensor([2, 0])}  # class 2 is labelled but not the first one: wrong, as the seed
    assert task.score(preds, {"labels": labels}) == {"accuracy": 50.0}


def test_one_text_tower_call_when_both_prompts_share_it(monkeypatch):
    import avlearn.tasks.fewshot as fewshot

    calls = []

    def fake(tower: str, prompts: list[str], pretrained: str | None = None) -> torch.Tensor:
        calls.append(tower)
        return torch.eye(len(prompts), 8)

    monkeypatch.setattr(fewshot, "embed_prompts", fake)
    visual, audio = fewshot._class_embeddings(FewShotConfig(), CLASSES)
    assert calls == ["minilm_l6"] and visual.shape == audio.shape == (4, 8) and not torch.equal(visual, audio)
    calls.clear()
    fewshot._class_embeddings(FewShotConfig(audio_text="clap_text_roberta"), CLASSES)
    assert calls == ["minilm_l6", "clap_text_roberta"]
