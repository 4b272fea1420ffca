"""Open-ended QA on AVSynth's AVQA videos, from random initialisation, through the engine
(``avlearn.engine.run.run_supervised``, as ``avlearn train task=qa_open``): the generated answers' exact match on the
held-out test questions is clearly above the majority answer of every question type (the most frequent training
answer of the type, ``majority/<type>`` in the run's chance levels). "Clearly": by at least three binomial standard
deviations of the majority answer's exact match over that type's test questions, sqrt(p (1 - p) / n), p the
majority's exact match, n the type's test questions (counted here from the test annotations). 2000 videos (1600
train / 200 val / 200 test, six questions each), baseline small CNNs at 32 px trained at a tenth of the learning
rate (which keeps the audio features' class identity, see the docs), a 2-layer decoder of width 128 without dropout
or label smoothing (with them it under-fitted its own training questions: Audio/Counting 62.0 -> 81.0 on the test
questions without them), greedy decoding, 10 epochs, one thread.

Measured with this recipe (seed 0, the same call through ``run_supervised``): every type clears its 3-SD bar except
Audio-Visual/Existential (79.5 against a majority of 75.5, 1.3 SD; it needs 84.6), so the test FAILS there
(docs/tasks/qa_open.md has the numbers and what was tried).

Slow: ``pytest -m slow tests/integration/test_qa_open_learning.py -s``; AVSynth's 2000 videos are generated into
the AVSynth cache on first use (reused after). Measured numbers and times: docs/tasks/qa_open.md.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

RECIPE = ["task=qa_open", "method=baseline", "backbone=small_cnn", "data.size=32", "data.frame_size=32",
          "data.n_mels=32", "data.workers=1", "train.threads=1", "data.clips=0", "data.avqa_clips=2000",
          "train.epochs=10", "train.batch_size=16", "train.lr=2e-3", "+train.lr_mult={method:0.1}",
          "task.hidden_size=128", "task.intermediate_size=512", "task.dropout=0", "task.label_smoothing=0"]  # fmt: skip
STANDARD_DEVIATIONS = 3.0


def question_counts(root: Path) -> Counter:
    """Test questions per type ``"Group/Type"`` and ``"overall"``, from the MUSIC-AVQA test annotations."""
    rows = json.loads((root / "MUSIC-AVQA" / "avqa-test.json").read_text())
    counts = Counter("/".join(json.loads(row["type"])) for row in rows)
    counts["overall"] = len(rows)
    return counts


def clear_margin(majority: float, questions: int) -> float:
    """Points above a majority exact match of ``majority`` percent that are STANDARD_DEVIATIONS binomial standard
    deviations of ``questions`` answers."""
    p = majority / 100
    return STANDARD_DEVIATIONS * 100 * math.sqrt(p * (1 - p) / questions)


def test_clear_margin_is_three_binomial_standard_deviations():
    assert clear_margin(50.0, 100) == pytest.approx(15.0)  # 3 * sqrt(0.25 / 100) = 0.15
    assert clear_margin(70.0, 200) == pytest.approx(300 * math.sqrt(0.21 / 200))


@pytest.mark.slow
def test_exact_match_clearly_beats_the_majority_answer_of_every_question_type(tmp_path):
    from avlearn.config.compose import compose_run
    from avlearn.data.pipelines import ensure_avsynth
    from avlearn.engine.run import run_supervised

    torch.set_num_threads(1)
    cfg = compose_run([*RECIPE, f"out={tmp_path / 'runs'}", "name=qa"])
    result = run_supervised(cfg)
    test, chance = result["test"], result["chance"]
    counts = question_counts(ensure_avsynth(cfg.data, "qa_open"))
    margins = {q: clear_margin(chance[f"majority/{q}"], n) for q, n in counts.items()}
    print("test", test, "\nchance", chance, "\nquestions", dict(counts), "\nmargins", margins)
    assert set(counts) - {"overall"} == {k[len("majority/") :] for k in chance if k.count("/") == 2}
    for qtype, margin in margins.items():
        assert test[qtype] >= chance[f"majority/{qtype}"] + margin, qtype
