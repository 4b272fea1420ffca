"""Parameter groups, optimizers and schedules: learning rates traced over the steps of a run against the formulas,
weight-decay classification, and one LARS step against a hand computation."""

from __future__ import annotations

import json
import math

import pytest
import torch
from engine_toy import ToyData, ToyTask, toy_config
from torch import nn

import avlearn.engine.loop as loop
from avlearn.engine.env import Env
from avlearn.engine.loop import RunInfo, fit
from avlearn.engine.optim import LARS, build_optimizer, check_train_values, describe_param_groups, param_groups
from avlearn.errors import ConfigError

TRAIN, VAL = ToyData(20, seed=1), ToyData(12, seed=2)  # batch 7: 3 steps per epoch


class LayeredToy(ToyTask):
    """The toy with the layer-decay protocol: ``net.0`` is layer 1 of 1, ``net.3`` the head (layer 2)."""

    def layer_id(self, name: str) -> int:
        return 1 if name.startswith("net.0.") else 2

    def num_layers(self) -> int:
        return 1


def _trace(tmp_path, monkeypatch, **overrides) -> list[dict[str, float]]:
    """``{param name: lr}`` in force at every optimizer step of a toy run."""
    torch.manual_seed(0)
    task = LayeredToy()
    names = {id(p): n for n, p in task.named_parameters()}
    seen, real_step = [], loop.train_step

    def tracing_step(t, *args, **kwargs):
        seen.append({names[id(p)]: g["lr"] for g in t.optimizer.param_groups for p in g["params"]})
        return real_step(t, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", tracing_step)
    fit(task, TRAIN, VAL, toy_config(batch_size=7, **overrides), Env(), RunInfo(tmp_path / "run"))
    return seen


def _cosine(s, total, warmup, floor=0.0):
    if s < warmup:
        return (s + 1) / warmup
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))


SCHEDULES = {  # name -> (overrides, factor(step)); 3 steps per epoch, 4 epochs = 12 steps unless train.steps
    "cosine": ({"warmup_epochs": 1.0}, lambda s: _cosine(s, 12, 3)),
    "cosine_floor": ({"warmup_epochs": 1.0, "min_lr_ratio": 0.2}, lambda s: _cosine(s, 12, 3, 0.2)),
    "step": (
        {"schedule": "step", "warmup_epochs": 0.0, "step_every": 2, "step_gamma": 0.35},
        lambda s: 0.35 ** (s // 6),
    ),
    "linear": ({"schedule": "linear", "warmup_epochs": 1.0}, lambda s: (s + 1) / 3 if s < 3 else 1 - (s - 3) / 9),
    "constant": ({"schedule": "constant", "warmup_epochs": 0.0}, lambda s: 1.0),
    "steps": ({"steps": 7, "warmup_epochs": 1.0}, lambda s: _cosine(s, 7, 3)),  # train.steps replaces the epochs
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_each_group_follows_multiplier_times_layer_decay_times_schedule(tmp_path, monkeypatch, schedule):
    overrides, factor = SCHEDULES[schedule]
    trace = _trace(tmp_path, monkeypatch, epochs=4, lr=0.1, layer_decay=0.5, lr_mult={"net.3.bias": 4.0}, **overrides)
    scale = {"net.0.weight": 0.5, "net.0.bias": 0.5, "net.3.weight": 1.0, "net.3.bias": 4.0}  # 0.5 ** (1 + 1 - 1)
    assert len(trace) == overrides.get("steps", 12)
    for step, lrs in enumerate(trace):
        assert lrs == pytest.approx({name: 0.1 * s * factor(step) for name, s in scale.items()}, rel=1e-9), step


def test_a_zero_multiplier_freezes_and_patterns_match_globs_regexes_and_module_names():
    task = LayeredToy()
    groups = param_groups(task, toy_config(lr_mult={"net.3": 0.0, r"net\.0\.b.*": 3.0, "*.weight": 2.0}))
    by_name = {n: g for g in groups for p in g["params"] for n, q in task.named_parameters() if q is p}
    assert set(by_name) == {"net.0.weight", "net.0.bias"}  # net.3 (module name) has multiplier 0: left out
    assert by_name["net.0.bias"]["lr_scale"] == 3.0 and by_name["net.0.weight"]["lr_scale"] == 2.0  # first match
    with pytest.raises(ConfigError, match=r"train.lr_mult: '\(\(' is neither"):
        param_groups(task, toy_config(lr_mult={"((": 1.0}))
    with pytest.raises(ConfigError, match=r"train.layer_decay=0.5 needs a model with layer_id\(name\)"):
        param_groups(ToyTask(), toy_config(layer_decay=0.5))


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))
        self.latents = nn.Parameter(torch.zeros(2, 4))
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 4)
        self.conv = nn.Conv1d(4, 4, 3)


def test_no_decay_on_biases_norms_embeddings_and_tokens():
    model = Tokens()
    groups = param_groups(model, toy_config(weight_decay=0.05))
    decay = {n for g in groups if g["weight_decay"] == 0.05 for n, p in model.named_parameters() if
             any(p is q for q in g["params"])}  # fmt: skip
    assert decay == {"proj.weight", "conv.weight"}
    assert {g["name"] for g in groups} == {"decay", "no_decay"}
    every = param_groups(model, toy_config(weight_decay=0.05, no_decay=False))
    assert len(every) == 1 and every[0]["weight_decay"] == 0.05 and len(every[0]["params"]) == 10
    table = describe_param_groups(groups)
    assert table.splitlines()[1].split()[:3] == ["no_decay", "8", "60"]  # 8 tensors, 60 numbers without decay


def test_one_lars_step_equals_the_hand_computation():
    w = nn.Parameter(torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    w.grad, b.grad = (
        torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64),
        torch.full((2,), 0.5, dtype=torch.float64),
    )
    cfg = toy_config(optimizer="lars", lr=0.1, momentum=0.9, lars_eta=0.01)
    opt = build_optimizer([{"params": [w, b], "lr": 0.1, "weight_decay": 0.1}], cfg)
    assert isinstance(opt, LARS)
    opt.step()
    # u = g + 0.1 w = [[1.3, 0.4], [0, 0]]; ||w|| = 5, ||u|| = sqrt(1.85); trust ratio 0.01 * 5 / sqrt(1.85).
    ratio = 0.01 * 5 / math.sqrt(1.85)
    expected = [[3 - 0.1 * 1.3 * ratio, 4 - 0.1 * 0.4 * ratio], [0.0, 0.0]]
    torch.testing.assert_close(w.detach(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(b.detach(), torch.tensor([0.95, 1.95], dtype=torch.float64))  # 1-D: plain step
    opt.step()  # momentum: m = 0.9 m + g for the bias (no decay, no ratio)
    torch.testing.assert_close(b.detach(), torch.tensor([0.95 - 0.1 * 0.95, 1.95 - 0.1 * 0.95], dtype=torch.float64))


@pytest.mark.parametrize(("name", "kind"), [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                                            ("sgd", torch.optim.SGD)])  # fmt: skip
def test_optimizers_take_their_settings(name, kind):
    p = nn.Parameter(torch.zeros(2, 2))
    cfg = toy_config(optimizer=name, betas=[0.8, 0.9], eps=1e-6, momentum=0.7, nesterov=True)
    opt = build_optimizer([{"params": [p], "lr": 0.5, "weight_decay": 0.0}], cfg)
    group = opt.param_groups[0]
    assert isinstance(opt, kind) and group["lr"] == 0.5
    if name == "sgd":
        assert group["momentum"] == 0.7 and group["nesterov"]
    else:
        assert group["betas"] == (0.8, 0.9) and group["eps"] == 1e-6


@pytest.mark.parametrize(
    ("key", "value"), [("layer_decay", 0.0), ("min_lr_ratio", 1.5), ("step_every", 0), ("betas", [0.9]),
                       ("steps", -1), ("val_every", -2), ("patience", -1)],
)  # fmt: skip
def test_out_of_range_values_are_one_line_errors(key, value):
    with pytest.raises(ConfigError, match=rf"^train\.{key}=.* is not valid; expected "):
        check_train_values(toy_config(**{key: value}))


def test_a_ramped_group_follows_the_half_cosine_ramp_on_top_of_the_schedule(tmp_path, monkeypatch):
    # 4 epochs x 3 steps = 12 steps; net.0 ramps over half of them (6 steps), as DeepAVFusion's pretrained towers.
    trace = _trace(tmp_path, monkeypatch, epochs=4, lr=0.1, warmup_epochs=1.0, lr_ramp={"net.0": 0.5})
    ramp = [0.0, 0.0669872981, 0.25, 0.5, 0.75, 0.9330127019] + [1.0] * 6  # 0.5 - 0.5 cos(pi s / 6), by hand
    assert len(trace) == 12
    for step, lrs in enumerate(trace):
        factor = 0.1 * _cosine(step, 12, 3)
        expected = {"net.0.weight": factor * ramp[step], "net.0.bias": factor * ramp[step],
                    "net.3.weight": factor, "net.3.bias": factor}  # fmt: skip
        assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12), step
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in logged if r["kind"] == "step"]  # written after steps 0, 1, 2: the factor of the next
    assert lrs[:3] == pytest.approx([0.1 * _cosine(s, 12, 3) for s in (1, 2, 3)])  # the unramped group's lr


def test_ramp_groups_and_their_errors():
    task = LayeredToy()
    groups = param_groups(task, toy_config(lr_ramp={"net.0.*": 0.25}))
    ramped = [g for g in groups if "lr_ramp" in g]
    assert len(ramped) == 2 and all(g["lr_ramp"] == 0.25 and g["name"].endswith("ramp 0.25") for g in ramped)
    assert sum(len(g["params"]) for g in ramped) == 2
    assert all("lr_ramp" not in g for g in param_groups(task, toy_config()))  # no ramp: the groups as before
    for ramp, message in (({"net.0": 0.0}, r"train.lr_ramp\['net.0'\]=0.0: expected a fraction of the run in \(0, 1\]"),
                          ({"net.9": 0.5}, r"train.lr_ramp: 'net.9' matches no trained parameter"),
                          ({"net": 0.5}, r"train.lr_ramp ramps every trained parameter"),
                          ({"((": 0.5}, r"train.lr_ramp: '\(\(' is neither")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            param_groups(task, toy_config(lr_ramp=ramp))
