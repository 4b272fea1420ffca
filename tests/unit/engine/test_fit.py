"""The loop on one process: accumulation counts each micro-batch once, bf16, EMA, run-folder files, summary."""

from __future__ import annotations

import json

import pytest
import torch
from engine_toy import ToyData, make_task, parameters, step_losses, toy_config
from torch.testing import assert_close

from avlearn.engine.checkpoint import load_checkpoint
from avlearn.engine.ema import ema_copy, ema_update
from avlearn.engine.env import Env
from avlearn.engine.loop import RunInfo, autocast, fit, frozen_weights_in_bf16
from avlearn.errors import ConfigError

TRAIN, VAL = ToyData(20, seed=1), ToyData(12, seed=2)


def _fit(tmp_path, name, **overrides):
    task = make_task(overrides.pop("dropout", 0.0))
    state = fit(task, TRAIN, VAL, toy_config(**overrides), Env(), RunInfo(tmp_path / name, meta={"note": name}))
    return task, state


def test_accumulation_equals_the_unaccumulated_run(tmp_path):
    # 20 samples in global batches of 7, 7, 6; with accum=2 the micro-batches hold 4+3, 4+3, 3+3 samples, so a
    # per-micro-batch average (instead of the global-batch average) would give different gradients.
    plain, _ = _fit(tmp_path, "plain", batch_size=7)
    accumulated, _ = _fit(tmp_path, "accum", batch_size=7, grad_accum=2)
    assert_close(parameters(accumulated), parameters(plain), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(parameters(plain)["net.0.weight"], parameters(make_task())["net.0.weight"])
    losses_plain, losses_accum = step_losses(tmp_path / "plain"), step_losses(tmp_path / "accum")
    assert losses_plain.keys() == losses_accum.keys() and len(losses_plain) == 6
    assert_close(list(losses_accum.values()), list(losses_plain.values()), rtol=1e-5, atol=1e-6)


def test_run_folder_holds_best_and_last_checkpoints_log_and_summary(tmp_path, capsys):
    task, state = _fit(tmp_path, "run", epochs=3)
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]
    assert {"loss", "lr", "grad_norm", "samples_per_s"} <= set(records[0]) and state.step == 9
    best, meta = load_checkpoint(run / "checkpoint")
    assert meta["epoch"] == state.best_epoch and meta["note"] == "run" and "accuracy" in meta["val"]
    last, last_meta = load_checkpoint(run / "last", ("model", "optimizer"))
    assert_close(last["model"], parameters(task)) and last_meta["state"]["step"] == 9
    assert any(k.endswith("/exp_avg") for k in last["optimizer"])
    out = capsys.readouterr().out
    assert "train loss" in out and out.count("\n    3 ") == 1  # the summary table's row of epoch 3


def test_bf16_autocast_trains(tmp_path):
    task, state = _fit(tmp_path, "bf16", precision="bf16", epochs=4)
    assert state.best > 50.0  # 3 balanced-ish classes: chance is about 33 %
    assert all(p.dtype == torch.float32 for p in task.parameters())  # autocast: weights stay fp32


def test_frozen_weights_in_bf16_keeps_autocast_outputs_and_restores_fp32():
    task, x = make_task(), torch.randn(5, 8)
    task.net[0].requires_grad_(False)  # a frozen first layer, a trained second one
    with autocast("bf16", torch.device("cpu")):
        expected = task.net(x)
    with frozen_weights_in_bf16(task) as converted:
        assert converted == 1
        assert task.net[0].weight.dtype == task.net[0].bias.dtype == torch.bfloat16
        assert task.net[3].weight.dtype == torch.float32  # trained: stays fp32 for the optimizer
        with autocast("bf16", torch.device("cpu")):
            assert torch.equal(task.net(x), expected)  # autocast rounds fp32 weights the same way
    assert all(p.dtype == torch.float32 for p in task.parameters())


def test_bf16_fit_with_a_frozen_layer_trains_and_returns_fp32(tmp_path):
    task = make_task()
    task.net[0].requires_grad_(False)
    frozen = task.net[0].weight.detach().clone()
    state = fit(task, TRAIN, VAL, toy_config(precision="bf16", epochs=4), Env(), RunInfo(tmp_path / "frozen"))
    assert state.best > 50.0
    assert task.net[0].weight.dtype == torch.float32
    assert torch.equal(task.net[0].weight, frozen.bfloat16().float())  # the rounded values training used
    saved, _ = load_checkpoint(tmp_path / "frozen" / "checkpoint")
    assert saved["model"]["net.0.weight"].dtype == torch.bfloat16


def test_ema_moves_towards_the_weights_and_is_what_gets_selected(tmp_path):
    model = make_task()
    ema = ema_copy(model)
    with torch.no_grad():
        model.net[0].weight.add_(1.0)
    before = ema.net[0].weight.clone()
    ema_update(ema, model, decay=0.9)
    assert_close(ema.net[0].weight, 0.9 * before + 0.1 * model.net[0].weight)
    task, _ = _fit(tmp_path, "ema", ema=0.9, epochs=1)  # one epoch: the best epoch is the last one
    best, _ = load_checkpoint(tmp_path / "ema" / "checkpoint")
    last, _ = load_checkpoint(tmp_path / "ema" / "last", ("model", "ema"))
    assert torch.equal(best["model"]["net.0.weight"], last["ema"]["net.0.weight"])
    assert not torch.allclose(best["model"]["net.0.weight"], last["model"]["net.0.weight"])


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    eager, _ = _fit(tmp_path, "eager")
    compiled, _ = _fit(tmp_path, "compiled", compile=True)
    assert_close(parameters(compiled), parameters(eager), rtol=1e-4, atol=1e-5)  # same keys: no "_orig_mod."
    assert_close(list(step_losses(tmp_path / "compiled").values()), list(step_losses(tmp_path / "eager").values()))


class _NormedToy(torch.nn.Module):
    """The toy classifier behind a training-mode ``BatchNorm1d``, as a linear probe's head."""

    primary_metric = "accuracy"

    def __init__(self) -> None:
        super().__init__()
        self.toy = make_task()
        self.norm = torch.nn.BatchNorm1d(8)

    def forward(self, batch: dict) -> dict:
        return self.toy({**batch, "x": self.norm(batch["x"])})

    def predict(self, batch: dict) -> dict:
        return self.toy.predict({**batch, "x": self.norm(batch["x"])})

    def score(self, preds: dict, targets: dict) -> dict:
        return self.toy.score(preds, targets)


def test_a_one_sample_batch_for_a_batch_norm_is_a_config_error_and_drop_last_avoids_it(tmp_path):
    cfg = toy_config(batch_size=19, epochs=1)  # 20 samples: a last global batch of 1
    with pytest.raises(ConfigError, match=r"micro-batch of 1 sample .* set train.drop_last=true"):
        fit(_NormedToy(), TRAIN, VAL, cfg, Env(), RunInfo(tmp_path / "one"))
    state = fit(_NormedToy(), TRAIN, VAL, toy_config(batch_size=19, epochs=1, drop_last=True), Env(),
                RunInfo(tmp_path / "dropped"))  # fmt: skip
    assert state.step == 1
