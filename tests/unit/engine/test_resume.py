"""Kill and resume: a run stopped at any step and resumed from last/ continues exactly as if never stopped."""

from __future__ import annotations

import json

import pytest
import torch
from engine_toy import ToyData, make_task, parameters, step_losses, toy_config

import avlearn.engine.loop as loop
from avlearn.engine.env import Env
from avlearn.engine.loop import RunInfo, fit

TRAIN, VAL = ToyData(20, seed=1), ToyData(12, seed=2)
# 3 steps per epoch, 9 in all; last/ is written at steps 2, 4, 6, 8 (save_every) and 3, 6, 9 (epoch ends).
CFG = toy_config(batch_size=7, epochs=3, save_every=2)
RAMPED = toy_config(batch_size=7, epochs=3, save_every=2, lr_ramp={"net.0": 0.5})  # a per-group LambdaLR factor


class Killed(Exception):
    """Stands for SIGKILL: raised inside the loop, so nothing after it runs."""


def _run(run_dir, resume=False, cfg=CFG):
    task = make_task(dropout=0.3)  # dropout: the RNG state must be restored too
    fit(task, TRAIN, VAL, cfg, Env(), RunInfo(run_dir, seed=5, resume=resume))
    return task


@pytest.mark.parametrize("cfg", [CFG, RAMPED], ids=["plain", "lr_ramp"])
@pytest.mark.parametrize("killed_before_step", [5, 8])  # 5: mid-epoch, after the step-4 save; 8: in epoch 3
def test_resumed_run_equals_the_uninterrupted_run(tmp_path, monkeypatch, killed_before_step, cfg):
    reference = _run(tmp_path / "reference", cfg=cfg)
    real_step = loop.train_step

    def dying_step(t, *args, **kwargs):
        if t.state.step + 1 == killed_before_step:
            raise Killed
        return real_step(t, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", dying_step)
    with pytest.raises(Killed):
        _run(tmp_path / "killed", cfg=cfg)
    monkeypatch.setattr(loop, "train_step", real_step)
    resumed = _run(tmp_path / "killed", resume=True, cfg=cfg)

    for name, value in parameters(reference).items():
        assert torch.equal(parameters(resumed)[name], value), name
    assert step_losses(tmp_path / "killed") == step_losses(tmp_path / "reference")
    steps = [json.loads(x)["step"] for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # the lines written after the checkpoint, before the kill, were dropped
    epochs = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]  # noqa: E731
    keys = ("train_loss", "val_accuracy", "best")
    assert [{k: r[k] for k in keys} for r in epochs(tmp_path / "killed") if r["kind"] == "epoch"] == [
        {k: r[k] for k in keys} for r in epochs(tmp_path / "reference") if r["kind"] == "epoch"
    ]
