"""Visually guided separation learns on AVSynth from random initialisation (baseline method, small CNNs): test SDRi
>= 4 dB on the fixed 2-source mixtures, at least 2 dB lower when each source is separated with the other source's
frames (the visual conditioning is used).

Slow (750 steps, 25 epochs of 30; 1.5-2.5 s a step on two shared CPU cores: about 20-30 min with AVSynth's
generation): ``pytest -m slow tests/integration/test_separate_learning.py -s``. The recipe is Sound of Pixels'
output conditioning (``task.fusion=output``); the default bottleneck FiLM stayed on the symmetric 0.5-mask solution
(0 dB) in the 60-100 steps measured. Measured with these overrides and this schedule (``avlearn train``, seed 0;
docs/tasks/separate.md, "On AVSynth"): test SDRi 4.06 dB, and -4.59 dB with the frames swapped (8.6 dB lower):
both conditions hold, the first with almost no margin (validation SDRi -0.01, 1.21, 2.04, 2.29, 2.66 dB at steps
150 .. 750). The same test on main gave 3.15 dB (swapped -3.74): it FAILS the 4 dB bar as it stands, kept at the
issue's value. Scored on all 435 pairs of the 30 test clips instead of the 30 fixed pairs, checkpoints of this
recipe give 2.80 (1,500 steps) and 3.08 dB (``task.pool=max``): the fixed list is a favourable draw (random lists of
30 pairs: sd 0.65 dB), Hard pairs stay at 0 dB, and 4.06 was luck (docs/tasks/separate.md, "Why the number moves").
Session 8 (docs/tasks/separate.md, "Which mixtures fail"): the failing half are the pairs of two tone classes or two
noise-band classes (0.17 / 0.44 dB on all pairs, against 6.67 dB for a noise-band target beside a tone): the
condition tells the two kinds of sound apart, not the classes; ``task.condition_time=frame`` gave 3.58 dB (swapped
-5.38), Hard pairs still 0 dB.
The run folder
(``metrics.jsonl``, ``checkpoint/`` selected on validation SDRi, ``metrics.json``, ``separation.png``: spectrograms
of test mixtures, sources and estimates) is under pytest's temporary directory; its path and the scores are printed.
"""

from __future__ import annotations

import json

import pytest
import torch

CLIPS = 300  # event clips: 240 train / 30 val / 30 test; each val/test clip is the first source of one mixture
OVERRIDES = ["task=separate", "method=baseline", "backbone=small_cnn", f"data.clips={CLIPS}", "data.size=32",
             "data.frame_size=32", "data.workers=2", "task.channels=[8,16,32]", "task.train_seconds=2",
             "task.fusion=output"]  # fmt: skip


@pytest.mark.slow
def test_separation_learns_on_avsynth_and_uses_the_frames(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from avlearn import register_all
    from avlearn.build import audio_preprocess, build_splits, build_task
    from avlearn.config import compose_run
    from avlearn.engine.env import seed_everything, setup
    from avlearn.engine.loop import RunInfo, evaluate, fit
    from avlearn.engine.resume import load_model
    from avlearn.tasks.separate import SEPARATION

    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))
    register_all()
    cfg = compose_run(OVERRIDES)
    splits = build_splits(cfg, audio_preprocess(cfg))
    env = setup("cpu", 0, 0)
    seed_everything(0)
    task = build_task(cfg, splits.info)
    train = OmegaConf.to_object(cfg.train)
    train.epochs, train.batch_size, train.lr, train.val_every = 25, 8, 2e-3, 150
    run = tmp_path / "separate"
    fit(task, splits.train, splits.val, train, env, RunInfo(run, 0))
    load_model(run / "checkpoint", task, env)  # selected on validation SDRi
    scores, out = evaluate(task, splits.test, 8, env)
    chance = SEPARATION.chance(splits, task, out)  # SDRi with the frames swapped between the sources
    SEPARATION.plot(splits, out, run / "separation.png")
    (run / "metrics.json").write_text(json.dumps({"test": scores, "chance": chance}, indent=1))
    print(f"\ntest {scores}\nswapped frames: SDRi {chance['swapped_frames']:.2f} dB  run folder {run}")
    assert torch.isfinite(torch.tensor(scores["sdri"]))
    assert scores["sdri"] >= 4.0
    assert scores["sdri"] - chance["swapped_frames"] >= 2.0
