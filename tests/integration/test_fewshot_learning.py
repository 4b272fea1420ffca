"""Few-shot accuracy rises with the number of shots: the DG-SCT few-shot protocol on AVSynth from random init.

The task is ``fewshot`` (AVE segment classification by text prompts, background included) on the plain baseline
method with the small CNN encoders (``method=baseline backbone=small_cnn``, random init); the prompts are embedded
by the real all-MiniLM-L6-v2 (frozen). For K in {1, 2, 4, 8, 16} training clips per class and three seeds (three
draws, three initialisations), each run trains a fixed number of steps, is selected on the validation split and
scored on the test split; ``few_shot_grid`` summarises mean and population std per K. Slow (minutes on one
thread): ``pytest -m slow tests/integration/test_fewshot_learning.py -s``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Subset

SHOTS = (1, 2, 4, 8, 16)
SEEDS = (0, 1, 2)
OVERRIDES = ["task=fewshot", "method=baseline", "backbone=small_cnn", "data.clips=250", "data.num_classes=5",
             "data.synth_seed=5", "data.size=32", "data.frame_size=32", "data.fps=2", "data.workers=2",
             "shots=0"]  # fmt: skip


def _scores(task, data, batch_size: int = 32) -> dict[str, float]:  # noqa: ANN001
    """``task.score`` of ``task.predict`` over ``data``."""
    task.eval()
    preds, labels = [], []
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=batch_size):
            preds.append(task.predict(batch)["segment_labels"])
            labels.append(batch["labels"])
    return task.score({"segment_labels": torch.cat(preds)}, {"labels": torch.cat(labels)})


def _fit(task, train, val, steps: int, lr: float, seed: int) -> dict[str, float]:  # noqa: ANN001
    """AdamW for ``steps`` optimizer steps (batches of up to 8 clips), the best validation checkpoint kept."""
    loader = DataLoader(train, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    best, state, step = -1.0, None, 0
    while step < steps:
        task.train()
        for batch in loader:
            task(batch)["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % 20 == 0 or step == steps:
                val_score = _scores(task, val)[task.primary_metric]
                if val_score > best:
                    best, state = val_score, {k: v.detach().clone() for k, v in task.state_dict().items()}
                task.train()
            if step == steps:
                break
    task.load_state_dict(state)
    return best


def run_grid(root: Path, steps: int = 120, lr: float = 3e-3) -> tuple[dict, float, float]:
    """The shots x seeds grid; returns ``{K: {"segment_accuracy_mean", "segment_accuracy_std"}}``, the test share
    of the most frequent training label (the majority-class chance level) and the wall time in seconds."""
    from avlearn.build import audio_preprocess, build_task
    from avlearn.config.compose import compose_run
    from avlearn.data.pipelines.fewshot import fewshot_splits
    from avlearn.tasks.fewshot import few_shot_grid

    torch.set_num_threads(1)
    started = time.perf_counter()
    cfg = compose_run([*OVERRIDES, f"data.root={root}"])
    splits = fewshot_splits(cfg, audio_preprocess(cfg))  # shots=0: every training clip; the grid draws from them
    background = splits.info.num_classes
    clip_labels = [int(row[row != background][0]) if (row != background).any() else background
                   for row in splits.train.labels]  # fmt: skip
    majority = torch.bincount(splits.train.labels.flatten()).argmax()
    chance = float(100.0 * (splits.test.labels == majority).float().mean())

    def run(positions: list[int], seed: int) -> dict[str, float]:
        torch.manual_seed(seed)
        task = build_task(cfg, splits.info)
        val = _fit(task, Subset(splits.train, positions), splits.val, steps, lr, seed)
        test = _scores(task, splits.test)
        print(f"K={len(positions) // background} seed={seed} val {val:.1f} test {test['segment_accuracy']:.1f}",
              flush=True)  # fmt: skip
        return test

    grid = few_shot_grid(clip_labels, SHOTS, SEEDS, run)
    return grid, chance, time.perf_counter() - started


@pytest.mark.slow
def test_fewshot_accuracy_rises_with_shots(tmp_path):
    grid, chance, seconds = run_grid(tmp_path / "avsynth")
    for k, row in grid.items():
        print(f"K={k:>2}: {row['segment_accuracy_mean']:.1f} ± {row['segment_accuracy_std']:.1f}")
    print(f"majority-class chance {chance:.1f}; {seconds:.0f} s")
    low, high = grid[SHOTS[0]]["segment_accuracy_mean"], grid[SHOTS[-1]]["segment_accuracy_mean"]
    assert high >= low + 10.0 and high >= chance + 10.0, (grid, chance)
