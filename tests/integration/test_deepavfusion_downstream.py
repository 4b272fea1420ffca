"""DeepAVFusion's downstream protocols through ``avlearn train`` on a tiny AVSynth (8 clips, the tiny towers): a
linear probe with LARS on the fusion tokens trains the head alone, and fine-tuning with LARS and layer decay gives
each layer the learning rate ``lr * decay ** (depth + 1 - layer)`` (the printed parameter groups). One epoch of one
step each, a few seconds."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from avlearn.cli.main import main

TINY = ["task=classify", "task.features=fused", "method=deepavfusion_tiny", "backbone=deepavfusion_tiny",
        "train.optimizer=lars", "data.size=32", "data.frame_size=32", "data.n_mels=32", "data.num_classes=4",
        "data.workers=1", "data.clips=8", "train.threads=1", "train.epochs=1", "train.batch_size=8",
        "train.log_every=1"]  # fmt: skip
LR, DEPTH = 2e-3, 2  # train.lr's default; the tiny towers' depth
GROUP_ROW = re.compile(r"^(?:decay|no_decay)(?: lr x\S+)?\s+(\d+)\s+([\d,]+)\s+(\S+)\s+(\S+)$")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))


def _train(tmp_path: Path, capsys, *overrides: str) -> tuple[list[tuple[int, float]], list[dict]]:
    """Runs ``avlearn train``; returns the printed parameter groups (tensors, lr) and the run's step records."""
    assert main(["train", *TINY, *overrides, f"out={tmp_path}", "name=run"]) == 0
    groups = [(int(m[1]), float(m[3])) for line in capsys.readouterr().out.splitlines()
              if (m := GROUP_ROW.match(line.strip()))]  # fmt: skip
    (metrics,) = tmp_path.glob("run/*/metrics.jsonl")
    steps = [r for r in map(json.loads, metrics.read_text().splitlines()) if r["kind"] == "step"]
    return groups, steps


def test_linear_probe_with_lars_trains_the_head_on_the_fusion_tokens(tmp_path, capsys):
    groups, steps = _train(tmp_path, capsys, "task.mode=linear")
    assert sum(tensors for tensors, _ in groups) == 2  # the probe's linear weight and bias; the method is frozen
    assert {lr for _, lr in groups} == {LR}
    assert len(steps) == 1 and math.isfinite(steps[0]["loss"])


def test_fine_tuning_with_lars_and_layer_decay_scales_each_layer(tmp_path, capsys):
    decay = 0.75
    groups, steps = _train(tmp_path, capsys, "task.mode=finetune", f"train.layer_decay={decay}")
    expected = {LR * decay ** (DEPTH + 1 - layer) for layer in range(DEPTH + 2)}  # embeddings 0 .. head DEPTH + 1
    assert {float(f"{lr:.3g}") for _, lr in groups} == {float(f"{lr:.3g}") for lr in expected}  # printed to 3 digits
    assert len(steps) == 1 and math.isfinite(steps[0]["loss"])
