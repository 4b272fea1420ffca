"""Open-ended QA on AVSynth's AVQA videos, from random initialisation, through the engine
(``avlearn.engine.run.run_supervised``, as ``avlearn train task=qa_open``): the generated answers' exact match on the
held-out test questions is above the majority answer of every question type (the most frequent training answer
of the type, ``majority/<type>`` in the run's chance levels) by a margin. 1000 videos (800 train / 100 val / 100
test, six questions each), baseline small CNNs at 32 px trained at a tenth of the learning rate (which keeps the
audio features' class identity, see the docs), a 2-layer decoder of width 128, greedy decoding, 10 epochs, one
thread.

Slow (9 minutes under pytest on two cores shared with other jobs, AVSynth's generation included):
``pytest -m slow tests/integration/test_qa_open_learning.py -s``. Measured numbers: docs/tasks/qa_open.md.
"""

from __future__ import annotations

import pytest
import torch

RECIPE = ["task=qa_open", "method=baseline", "backbone=small_cnn", "data.size=32", "data.frame_size=32",
          "data.n_mels=32", "data.workers=1", "train.threads=1", "data.clips=0", "data.avqa_clips=1000",
          "train.epochs=10", "train.batch_size=16", "train.lr=2e-3", "+train.lr_mult={method:0.1}",
          "task.hidden_size=128", "task.intermediate_size=512"]  # fmt: skip
# Points above the majority answer each type must reach: about half the measured lead (docs/tasks/qa_open.md, 100
# test questions a type, 200 Temporal): Audio/Counting 54.0 vs 48.0, Visual/Location 55.0 vs 9.0, Audio-Visual/
# Existential 76.0 vs 70.0, Audio-Visual/Counting 100.0 vs 45.0, Audio-Visual/Temporal 34.5 vs 18.5, overall 59.0 vs
# 34.8 (by a script; under pytest 55.0, 49.0, 79.0, 97.0, 34.5, 58.2). The two yes/no types lead by 6-9 points
# only (the shortfall and its analysis: the docs).
MARGINS = {"Audio/Counting": 3.0, "Visual/Location": 20.0, "Audio-Visual/Existential": 3.0,
           "Audio-Visual/Counting": 25.0, "Audio-Visual/Temporal": 8.0, "overall": 12.0}  # fmt: skip


@pytest.mark.slow
def test_exact_match_beats_the_majority_answer_of_every_question_type(tmp_path):
    from avlearn.config.compose import compose_run
    from avlearn.engine.run import run_supervised

    torch.set_num_threads(1)
    cfg = compose_run([*RECIPE, f"data.root={tmp_path / 'avsynth'}", f"out={tmp_path / 'runs'}", "name=qa"])
    result = run_supervised(cfg)
    test, chance = result["test"], result["chance"]
    print("test", test, "\nchance", chance)
    for qtype, margin in MARGINS.items():
        assert test[qtype] >= chance[f"majority/{qtype}"] + margin, qtype
