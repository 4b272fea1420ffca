"""AVQA learns on AVSynth from random initialisation (baseline method, tiny CNNs), with the seed's ``avst`` head (the
task's default) and avlearn's ``grounded_qa`` variant, one case each.

Slow (each about 14 minutes on one CPU core: 4 generating and decoding, 9 training; 48 minutes on two shared cores):
``pytest -m slow tests/integration/test_avqa_learning.py -s``. The run folder holds ``metrics.json`` (per-type
accuracy, and chance: the majority training answer of each question type), ``checkpoint/`` (selected on the
validation split) and ``grounding.png`` (the temporal grounding weights over the 10 segments for a few test
questions).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

CLIPS = 2000  # 1600 train / 200 val / 200 test videos, 6 questions each
SIZE = 32
EPOCHS, VIDEOS_PER_BATCH, LR, WARMUP = 40, 32, 5e-3, 3  # a batch: 32 videos with all their questions (192)
SEED = 0  # torch / Python / NumPy seed of the tests' runs (``run_avqa``'s ``seed``); the data stays fixed
# Overall test accuracy each head must reach (docs/tasks/avqa.md, docs/methods/dgsct.md), against 39.3 % for the
# majority answer per type. avlearn's grounded_qa: 71.25 % under pytest (best val 72.1 at epoch 33); with the
# AVSynth-template readouts issue #18 removed it had reached 80.4 (pytest) / 84.6 (script). The seed's avst (the
# task's default) 55.8 by a script calling run_avqa (best val 52.8 at epoch 36, still rising): at the visual token
# width, 16 here, against grounded_qa's 96. One seed each, and runs of a recipe differ by about 4 points: each
# threshold is that run minus 5 (rounded down).
REQUIRED = {"grounded_qa": 66.0, "avst": 50.0}


def majority_chance(train, test) -> dict[str, float]:
    """Accuracy of answering every question with the most frequent training answer of its type (percent)."""
    majority = {}
    for qtype in set(train.question_types):
        answers = [int(a) for a, t in zip(train.answers, train.question_types, strict=True) if t == qtype]
        majority[qtype] = Counter(answers).most_common(1)[0][0]
    hits = [int(a) == majority.get(t, -1) for a, t in zip(test.answers, test.question_types, strict=True)]
    return {"overall": 100.0 * sum(hits) / len(hits)}


def run_avqa(tmp_path: Path, head: str = "grounded_qa", seed: int = SEED) -> dict:
    """The recipe below with ``task.head=head`` (avlearn's ``grounded_qa`` or the seed's ``avst``) and the torch /
    Python / NumPy seed ``seed`` (the data stays fixed); the test scores, the majority-answer chance and the grounding
    figure's path."""
    from avlearn.config.schema import TrainConfig
    from avlearn.data.pipelines.avqa import avqa_splits
    from avlearn.data.synth import SynthConfig, generate
    from avlearn.engine.env import seed_everything, setup
    from avlearn.engine.loop import RunInfo, evaluate, fit
    from avlearn.engine.resume import load_model
    from avlearn.methods.baseline import Baseline, BaselineConfig
    from avlearn.registry import BACKBONES
    from avlearn.tasks.avqa import AVQAConfig, AVQATask
    from avlearn.tasks.base import DatasetInfo
    from avlearn.viz.grounding import plot_temporal_grounding

    root = generate(tmp_path / "avsynth", SynthConfig(clips=0, seed=0, num_classes=10, size=SIZE, avs_clips=0,
                                                      avqa_clips=CLIPS), workers=2)  # fmt: skip
    audio = BACKBONES.build("cnn_audio_tiny")
    splits = avqa_splits(root, SIZE, audio.preprocess, workers=2)
    env = setup("cpu", 0, seed)
    seed_everything(seed)
    method = Baseline(BaselineConfig(dim=64), BACKBONES.build("cnn_visual_tiny", size=SIZE), audio)
    task = AVQATask(AVQAConfig(head=head, dim=96), method, DatasetInfo(tuple(splits["answers"])))
    run = tmp_path / "avqa"
    train = TrainConfig(
        epochs=EPOCHS, batch_size=VIDEOS_PER_BATCH, lr=LR, warmup_epochs=WARMUP, log_every=20, no_decay=False
    )  # the recipe as measured (weight decay on every parameter)
    videos = splits["train"].by_video()  # each video encoded once a step
    fit(task, videos, splits["val"], train, env, RunInfo(run, seed))
    load_model(run / "checkpoint", task, env)  # the epoch selected on the validation split
    scores, out = evaluate(task, splits["test"], 64, env)
    chance = majority_chance(splits["train"], splits["test"])

    test, names, shown = splits["test"], splits["answers"], list(range(0, 12, 2))  # two videos, three types each
    answers = [f"pred {names[int(out['preds']['answer'][i])]}, true {names[int(test.answers[i])]}" for i in shown]
    png = plot_temporal_grounding(run / "grounding.png", [test.questions[i] for i in shown],
                                  {m: out["preds"][f"{m}_weights"][shown].numpy() for m in ("visual", "audio")},
                                  answers)  # fmt: skip
    (run / "metrics.json").write_text(json.dumps({"test": scores, "chance_majority_per_type": chance}, indent=1))
    print(f"\navqa: test {json.dumps(scores, indent=1)}\nchance (majority answer per type): {chance}\nrun {run}")
    return {"scores": scores, "chance": chance, "png": png}


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(REQUIRED))
def test_avqa_learns_on_avsynth(tmp_path, head: str):
    result = run_avqa(tmp_path, head=head)
    assert result["png"].is_file()
    assert result["scores"]["overall"] >= REQUIRED[head] > result["chance"]["overall"]
