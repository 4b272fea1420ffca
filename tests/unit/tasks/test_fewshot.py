"""Few-shot prompt classifier (DG-SCT's few-shot setting) and the shots x seeds protocol."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from avlearn.methods.baseline import Baseline, BaselineConfig
from avlearn.registry import BACKBONES
from avlearn.tasks.base import DatasetInfo
from avlearn.tasks.fewshot import FewShotConfig, PromptClassifierTask, class_prompts, few_shot_grid


def test_prompts_include_background_only_when_named():
    assert class_prompts("a photo of a {}.", ["dog", "car"], "background")[-1] == "a photo of a background."
    assert class_prompts("the sound of a {}.", ["dog", "car"], "") == ["the sound of a dog.", "the sound of a car."]


@pytest.fixture(scope="module")
def task():
    torch.manual_seed(0)
    method = Baseline(
        BaselineConfig(dim=16), BACKBONES.build("cnn_visual_tiny", size=32), BACKBONES.build("cnn_audio_tiny")
    )
    return PromptClassifierTask(FewShotConfig(), method, DatasetInfo(("dog", "violin", "car")))


def test_class_embeddings_come_from_the_text_tower(task):
    assert task.visual_classes.shape == (4, 384) and task.audio_classes.shape == (4, 384)  # 3 classes + background
    sims = task.visual_classes @ task.visual_classes.T
    assert (sims.diagonal() - 1).abs().max() < 1e-4 and sims.fill_diagonal_(0).max() < 0.99  # distinct prompts
    assert not any(p.requires_grad for p in task.buffers())


def test_prompt_classifier_trains_and_predicts(task):
    g = torch.Generator().manual_seed(0)
    batch = {
        "frames": torch.randint(0, 256, (2, 10, 32, 32, 3), dtype=torch.uint8, generator=g),
        "audio": torch.randn(2, 10, 32, 50, generator=g),
        "labels": torch.tensor([[3] * 5 + [1] * 5, [0] * 10]),
    }
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
