"""Open-ended QA on AVSynth's AVQA videos, from random initialisation, through the engine
(``avlearn.engine.run.run_supervised``, as ``avlearn train task=qa_open``): the generated answers' exact match on the
held-out test questions is above the majority answer (the most frequent training answer of the type,
``majority/<type>`` in the run's chance levels) by a margin for the three question types and overall where this
recipe gets there; two types do not (below). 1000 videos (800 train / 100 val / 100 test, six questions each),
baseline small CNNs at 32 px, a 2-layer decoder of width 128, greedy decoding, 25 epochs, one thread.

Slow (37 minutes by a script of this recipe on two cores shared with about seven other jobs; not timed alone):
``pytest -m slow tests/integration/test_qa_open_learning.py -s``. Measured numbers: docs/tasks/qa_open.md.
"""

from __future__ import annotations

import pytest
import torch

RECIPE = ["task=qa_open", "method=baseline", "backbone=small_cnn", "data.size=32", "data.frame_size=32",
          "data.n_mels=32", "data.workers=1", "train.threads=1", "data.clips=0", "data.avqa_clips=1000",
          "train.epochs=25", "train.batch_size=16", "train.lr=2e-3", "task.hidden_size=128",
          "task.intermediate_size=512"]  # fmt: skip
# Points above the majority answer each type must reach: about half the measured lead (docs/tasks/qa_open.md:
# Visual/Location 39.0 vs 9.0, Audio-Visual/Counting 98.0 vs 45.0, Audio-Visual/Temporal 31.5 vs 18.5, overall 53.3
# vs 34.8; 100 test questions a type, 200 Temporal). Not asserted: Audio/Counting (50.0 vs 48.0) and
# Audio-Visual/Existential (70.0 vs 70.0) stay at their majority answer with this recipe, on the training videos
# too (the shortfall and its analysis: the docs).
MARGINS = {"Visual/Location": 15.0, "Audio-Visual/Counting": 25.0, "Audio-Visual/Temporal": 6.0, "overall": 9.0}


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
