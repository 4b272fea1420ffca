"""fp16: autocast with a gradient scaler; the loss falls, and a step with inf gradients is skipped and counted."""

from __future__ import annotations

import json

import torch
from engine_toy import ToyData, make_task, parameters, toy_config

import avlearn.engine.loop as loop
from avlearn.engine.env import Env
from avlearn.engine.loop import RunInfo, fit

TRAIN, VAL = ToyData(40, seed=1), ToyData(12, seed=2)  # batch 8: 5 steps per epoch
POISONED = 7  # this step's inputs are inf: its gradients are nan


def test_fp16_training_skips_an_inf_step_and_learns(tmp_path, monkeypatch):
    real_step, around = loop.train_step, {}

    def step(t, micro, *args, **kwargs):
        if t.state.step + 1 == POISONED:
            micro = [{**b, "x": b["x"] * float("inf")} for b in micro]
            around["before"] = parameters(t.task)
            out = real_step(t, micro, *args, **kwargs)
            around["after"] = parameters(t.task)
            return out
        return real_step(t, micro, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", step)
    task = make_task()
    state = fit(task, TRAIN, VAL, toy_config(precision="fp16", epochs=8, lr=3e-2), Env(), RunInfo(tmp_path / "run"))
    assert all(torch.equal(around["before"][k], around["after"][k]) for k in around["before"])  # not applied
    assert state.skipped == 1 and all(p.dtype == torch.float32 for p in task.parameters())
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in records if r["kind"] == "step"}
    assert steps[POISONED - 1]["loss_scale"] == 2.0**16 and steps[POISONED]["loss_scale"] == 2.0**15
    assert steps[POISONED - 1]["skipped"] == 0 and steps[len(steps)]["skipped"] == 1
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs[-1]["train_loss"] < 0.7 * epochs[0]["train_loss"]  # falls (the nan step is in epoch 2)
    assert state.best > 60.0  # 3 classes: chance about 33 %
