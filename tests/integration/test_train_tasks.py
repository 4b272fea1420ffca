"""``avlearn train`` reaches every task: each run writes metrics.json with the task's primary metric, its chance
levels and its plot. Wiring only (tiny AVSynth, one epoch); the learning bars are tested in the *_learning tests."""

from __future__ import annotations

import json
import math

import pytest

from avlearn.cli.main import main

TINY = ["data.size=32", "data.frame_size=32", "data.num_classes=5", "data.workers=1", "train.batch_size=8",
        "train.epochs=1", "train.threads=1", "train.log_every=1"]  # fmt: skip
# run name -> (overrides, primary metric, chance keys, plot file)
RUNS = {
    "ave": (["task=ave", "data.clips=24"], "segment_accuracy", {"uniform", "majority"}, "timeline.png"),
    "ave_cls": (["task=ave_cls", "data.clips=24"], "accuracy", {"uniform", "majority"}, "timeline.png"),
    "avvp": (["task=avvp", "data.clips=24"], "segment_type_at_av", {"video_labels_everywhere"}, "timeline.png"),
    "avs_s4": (["task=avs_s4", "data.clips=12"], "miou", {"empty_masks"}, "masks.png"),
    "avs_ms3": (["task=avs_ms3", "data.clips=12"], "miou", {"empty_masks"}, "masks.png"),
    "avqa": (["task=avqa", "data.clips=12"], "overall", {"uniform", "majority_per_type"}, "grounding.png"),
    "ave_dgsct": (
        ["task=ave", "method=dgsct_tiny", "backbone=dgsct_tiny", "data.clips=24"],
        "segment_accuracy",
        {"uniform", "majority"},
        "timeline.png",
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One AVSynth cache for the module: the event clips are generated once for ave, ave_cls, avvp and DG-SCT."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("cache")
        patch.setenv("AVLEARN_CACHE", str(folder))
        yield folder


def _in_percent(value: float) -> bool:
    return math.isfinite(value) and 0.0 <= value <= 100.0


@pytest.mark.parametrize("run", list(RUNS))
def test_train_writes_the_tasks_metric_chance_and_plot(run, cache, tmp_path, capsys):
    overrides, metric, chance_keys, plot = RUNS[run]
    assert main(["train", *TINY, *overrides, f"out={tmp_path}", f"name={run}"]) == 0
    (run_dir,) = (tmp_path / run).iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["primary_metric"] == metric and metrics["plot"] == plot
    assert _in_percent(metrics["test"][metric]) and _in_percent(metrics["val"][metric])
    assert set(metrics["chance"]) == chance_keys and all(_in_percent(v) for v in metrics["chance"].values())
    assert (run_dir / plot).stat().st_size > 5_000
    assert (run_dir / "checkpoint" / "model.safetensors").is_file()
    summary = capsys.readouterr().out.split("summary")[-1]
    assert f"test {metric}" in summary and all(key in summary for key in chance_keys)
