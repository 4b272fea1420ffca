"""The auxiliary-optimizer hook: its inner steps equal a hand-run Adam on the detached features, its parameters stay
out of the main optimizer, and kill + resume (fp32 and fp16, with the scalers) continues exactly."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from engine_toy import AuxToyTask, ToyData, step_losses, toy_config

import avlearn.engine.loop as loop
from avlearn.engine.checkpoint import load_checkpoint
from avlearn.engine.env import Env
from avlearn.engine.loop import RunInfo, fit

TRAIN, VAL = ToyData(20, seed=1), ToyData(12, seed=2)


def _task(**kwargs) -> AuxToyTask:
    torch.manual_seed(0)
    return AuxToyTask(**kwargs)


def test_inner_steps_are_adam_on_the_detached_features_before_the_main_step(tmp_path):
    task, reference = _task(aux_dropout=0.0), _task(aux_dropout=0.0)
    # One optimizer step over the whole training split (one global batch of 20).
    fit(task, TRAIN, VAL, toy_config(batch_size=20, steps=1), Env(), RunInfo(tmp_path / "run"))
    with torch.no_grad():
        h = reference.hidden(TRAIN.x)  # the features before the main step
    adam = torch.optim.Adam(reference.estimator.parameters(), lr=1e-2)
    for _ in range(3):
        adam.zero_grad()
        F.mse_loss(reference.estimator(h), TRAIN.x).backward()
        adam.step()
    torch.testing.assert_close(task.estimator.weight, reference.estimator.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(task.estimator.bias, reference.estimator.bias, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(task.net[0].weight, reference.net[0].weight)  # the main step ran too


def test_the_auxiliary_parameters_are_not_in_the_main_optimizer(tmp_path):
    fit(_task(), TRAIN, VAL, toy_config(batch_size=7, epochs=1), Env(), RunInfo(tmp_path / "run"))
    tensors, _ = load_checkpoint(tmp_path / "run" / "last", ("optimizer", "aux_optimizer"))
    assert not any(k.startswith("estimator.") for k in tensors["optimizer"])
    assert {k.split("/")[0] for k in tensors["aux_optimizer"]} == {"estimator.weight", "estimator.bias"}


class Killed(Exception):
    """Stands for SIGKILL: raised inside the loop, so nothing after it runs."""


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_kill_and_resume_with_an_auxiliary_optimizer_is_exact(tmp_path, monkeypatch, precision):
    cfg = toy_config(batch_size=7, epochs=3, save_every=2, precision=precision)  # last/ at steps 2, 3, 4, 6, 8, 9

    def run(name, resume=False):
        task = _task(dropout=0.3)
        fit(task, TRAIN, VAL, cfg, Env(), RunInfo(tmp_path / name, seed=5, resume=resume))
        return task

    real_step, dying = loop.train_step, {"at": 0}

    def step(t, micro, *args, **kwargs):
        if t.state.step + 1 == dying["at"]:
            raise Killed
        if precision == "fp16" and t.state.step + 1 == 3:  # inf inputs: nan gradients, both scalers skip
            micro = [{**b, "x": b["x"] * float("inf")} for b in micro]
        return real_step(t, micro, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", step)
    reference = run("reference")
    dying["at"] = 6  # mid-epoch 2, after the step-4 save
    with pytest.raises(Killed):
        run("killed")
    dying["at"] = 0
    resumed = run("killed", resume=True)
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    assert step_losses(tmp_path / "killed") == step_losses(tmp_path / "reference")
    epochs = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    reference_epochs = [json.loads(x) for x in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    keys = ("train_loss", "val_accuracy", "best")
    assert [{k: r[k] for k in keys} for r in epochs if r["kind"] == "epoch"] == [
        {k: r[k] for k in keys} for r in reference_epochs if r["kind"] == "epoch"
    ]
    _, meta = load_checkpoint(tmp_path / "killed" / "last")
    _, reference_meta = load_checkpoint(tmp_path / "reference" / "last")
    assert meta["scalers"] == reference_meta["scalers"]  # the halved scales were restored, not reset
    if precision == "fp16":
        scales = {name: s["scale"] for name, s in meta["scalers"].items()}
        assert scales == {"scaler": 2.0**15, "aux_scaler": 2.0**13}  # halved once, and once per inner step
        assert meta["state"]["skipped"] == 1
