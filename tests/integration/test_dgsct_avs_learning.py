"""DG-SCT tiny learns AVSBench S4 on AVSynth from random initialisation: test mIoU >= 70 (72 with the seed decoder).

The same code path as ``avlearn train task=avs_s4 method=dgsct_tiny backbone=dgsct_tiny train=dgsct_avs_tiny
data.avs_clips=800``: Swin-V2 tiny + HTS-AT tiny with the DG-SCT adapters (all trainable, random init) feed the AVSBench
decoder with TPAVI through the method's ``visual_pyramid`` (64 px frames: four levels, 16x16 to 2x2). Measured through
that CLI command: test mIoU 74.40, F-score 85.61 (best val mIoU 72.68, epoch 8 of 14; empty masks 0.00), 1282 s on two
loaded CPU cores, one thread; this test gave the same numbers in 1128 s. With ``task.head=tpavi`` (the seed's decoder,
issue #18; recipe=dgsct_avs_s4_tiny selects it), the same command measured test mIoU 77.12, F-score 89.09 (best val
71.39, epoch 13; 3003 s on two cores shared with about eight jobs): one seed so far (the test's), so its threshold is
that run minus 5 points. Slow: ``pytest -m slow tests/integration/test_dgsct_avs_learning.py -s``. The run folder
(``metrics.json``, ``checkpoint/`` selected on the validation split, ``masks.png``) is written under pytest's temporary
directory and printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

OVERRIDES = ["task=avs_s4", "method=dgsct_tiny", "backbone=dgsct_tiny", "train=dgsct_avs_tiny", "data.avs_clips=800",
             "data.workers=2", "train.threads=1", "train.log_every=20"]  # fmt: skip


SEED = 0  # the run's ``seed=`` (torch, Python and NumPy); the data (``data.synth_seed``) stays fixed
REQUIRED = {"avsbench": 70.0, "tpavi": 72.0}  # tpavi: one measured seed (77.12) minus 5


def run_s4(tmp_path: Path, head: str, seed: int = SEED) -> dict:
    """The command above with ``task.head=head`` and ``seed=seed``; ``run_supervised``'s result."""
    from avlearn.config.compose import compose_run
    from avlearn.engine.run import run_supervised

    paths = [f"data.root={tmp_path / 'avsynth'}", f"out={tmp_path / 'runs'}"]
    return run_supervised(compose_run([*OVERRIDES, f"task.head={head}", f"seed={seed}", *paths]))


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(REQUIRED))
def test_dgsct_tiny_learns_avs_s4(tmp_path, head: str):
    result = run_s4(tmp_path, head)
    print(f"\nS4 DG-SCT tiny, {head}: test {result['test']}  chance {result['chance']}  run folder {result['run_dir']}")
    assert (Path(result["run_dir"]) / "masks.png").is_file()
    assert result["chance"]["empty_masks"] < 1.0  # every S4 frame has a sounding object: empty masks score 0
    assert result["test"]["miou"] >= REQUIRED[head], result
