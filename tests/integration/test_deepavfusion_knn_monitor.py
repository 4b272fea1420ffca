"""kNN monitoring during DeepAVFusion pretraining through ``avlearn train`` (tiny towers, 40 AVSynth clips, a few
seconds an epoch): ``task.knn_every=2`` over 4 epochs logs ``knn_top1`` after epochs 1, 3 and 4 only (the seed's
"every eval_freq, plus the first and the last"), the probe leaves the training itself unchanged, and the last
value equals a separate kNN evaluation (``task=classify task.mode=knn``) of the saved checkpoint. At this size the
validation split holds 3 clips, so the accuracies are coarse; tests/unit/tasks/test_pretrain_knn.py compares the
probe's votes with the classify task's at the probability level. About a minute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avlearn.cli.main import main

DATA = ["data.size=32", "data.frame_size=32", "data.n_mels=32", "data.num_classes=4", "data.workers=1",
        "data.clips=40", "train.threads=1"]  # fmt: skip
MODEL = ["method=deepavfusion_tiny", "backbone=deepavfusion_tiny"]
PRETRAIN = ["task=pretrain", "method.pretrain=true", "train.epochs=4", "train.batch_size=8", "train.select=last",
            "train.test=false"]  # fmt: skip
KNN = ["task.knn_k=5", "task.knn_temperature=0.1"]  # audio features: AVSynth's sounds tell classes apart early


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))


def _epochs(out: Path, name: str) -> list[dict]:
    (metrics,) = out.glob(f"{name}/*/metrics.jsonl")
    return [r for r in map(json.loads, metrics.read_text().splitlines()) if r["kind"] == "epoch"]


def test_knn_probe_at_the_expected_epochs_equals_a_knn_evaluation_of_the_checkpoint(tmp_path):
    out = f"out={tmp_path}"
    assert (
        main(["train", *MODEL, *DATA, *PRETRAIN, *KNN, "task.knn_every=2", "task.knn_features=audio", out, "name=pre"])
        == 0
    )
    epochs = _epochs(tmp_path, "pre")
    assert [r["epoch"] for r in epochs if "knn_top1" in r] == [1, 3, 4]
    assert epochs[-1]["knn_top1"] > 0  # the audio features find the class (measured: 100.0 on the 3 val clips)

    assert main(["train", *MODEL, *DATA, *PRETRAIN, out, "name=plain"]) == 0  # the same run without the probe
    plain = _epochs(tmp_path, "plain")
    assert [r["train_loss"] for r in plain] == [r["train_loss"] for r in epochs]  # the probe changes no training

    (run,) = tmp_path.glob("pre/*/checkpoint")
    knn = [
        "task=classify",
        "task.mode=knn",
        "task.features=audio",
        "method.pretrain=false",
        "train.epochs=0",
        "train.checkpoint=false",
        f"train.init_from={run.parent}",
        "train.init_only=method",
        "train.test=false",
    ]
    assert main(["train", *MODEL, *DATA, *KNN, *knn, out, "name=knn"]) == 0
    (scores,) = tmp_path.glob("knn/*/metrics.json")
    assert json.loads(scores.read_text())["val"]["top1"] == epochs[-1]["knn_top1"]
