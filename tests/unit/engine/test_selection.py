"""Validation cadence, model selection, early stopping, ``train.steps``, the optional test run, and a run that
fails before its first step leaving no run folder."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from engine_toy import ToyData, ToyTask, make_task, parameters, toy_config
from omegaconf import OmegaConf

import avlearn.build
from avlearn.config.schema import TrainConfig
from avlearn.engine.checkpoint import load_checkpoint
from avlearn.engine.env import Env
from avlearn.engine.loop import RunInfo, fit
from avlearn.engine.run import run_supervised
from avlearn.errors import ConfigError
from avlearn.registry import TASKS, TaskSpec

TRAIN, VAL = ToyData(20, seed=1), ToyData(12, seed=2)  # batch 7: 3 steps per epoch


def _records(run_dir, kind):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == kind]


def _fit(tmp_path, name, task=None, **overrides):
    task = task or make_task()
    state = fit(task, TRAIN, VAL, toy_config(batch_size=7, **overrides), Env(), RunInfo(tmp_path / name))
    return task, state


def test_validation_every_n_steps_and_at_the_last_step(tmp_path):
    _, state = _fit(tmp_path, "run", epochs=3, val_every=2)
    assert [r["step"] for r in _records(tmp_path / "run", "val")] == [2, 4, 6, 8, 9]
    assert all("val_accuracy" not in r for r in _records(tmp_path / "run", "epoch"))
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert meta["step"] in (2, 4, 6, 8, 9) and meta["val"]["accuracy"] == state.best


def test_never_validating_keeps_the_last_state(tmp_path):
    task, state = _fit(tmp_path, "run", epochs=2, val_every=-1, select="last")
    assert _records(tmp_path / "run", "val") == [] and state.best_epoch == 0
    assert all("val_accuracy" not in r for r in _records(tmp_path / "run", "epoch"))
    saved, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert meta["selected"] == "last" and meta["step"] == 6
    torch.testing.assert_close(saved["model"], parameters(task), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="train.val_every=-1 .* needs train.select=last"):
        _fit(tmp_path, "bad", val_every=-1)


def test_select_best_keeps_the_best_validation_and_last_the_final_weights(tmp_path):
    # lr 0.2 overshoots: the validation score moves up and down, so best and last differ.
    best_task, best_state = _fit(tmp_path, "best", epochs=6, lr=0.2)
    last_task, _ = _fit(tmp_path, "last", epochs=6, lr=0.2, select="last")
    scores = [r["val_accuracy"] for r in _records(tmp_path / "best", "epoch")]
    assert best_state.best == max(scores) and best_state.best_epoch == scores.index(max(scores)) + 1
    best, best_meta = load_checkpoint(tmp_path / "best" / "checkpoint")
    last, _ = load_checkpoint(tmp_path / "last" / "checkpoint")
    torch.testing.assert_close(last["model"], parameters(last_task), rtol=0, atol=0)
    assert best_meta["epoch"] == best_state.best_epoch and best_meta["val"]["accuracy"] == max(scores)


class ErrorTask(ToyTask):
    """The toy classifier scored by its error rate: a primary metric to minimise."""

    primary_metric, lower_is_better = "error", True

    def score(self, preds: dict, targets: dict) -> dict:
        return {"error": 100.0 - super().score(preds, targets)["accuracy"]}


def test_a_lower_is_better_metric_selects_its_minimum(tmp_path):
    torch.manual_seed(0)
    _, state = _fit(tmp_path, "run", task=ErrorTask(), epochs=6, lr=0.2)
    errors = [r["val_error"] for r in _records(tmp_path / "run", "epoch")]
    assert len(set(errors)) > 1  # the overshooting lr makes the error move both ways
    assert state.best == -min(errors) and state.best_epoch == errors.index(min(errors)) + 1
    assert [r["best"] for r in _records(tmp_path / "run", "epoch")][0]
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert meta["val"]["error"] == min(errors)


def test_patience_stops_after_that_many_validations_without_improvement(tmp_path):
    # lr 0: the score never changes, so only the first validation improves (on -inf).
    _, state = _fit(tmp_path, "run", epochs=10, lr=0.0, patience=2)
    assert state.stopped and state.epoch == 3 and state.step == 9 and state.stale == 2
    assert [r["best"] for r in _records(tmp_path / "run", "epoch")] == [True, False, False]
    again = fit(make_task(), TRAIN, VAL, toy_config(batch_size=7, epochs=10, lr=0.0, patience=2), Env(),
                RunInfo(tmp_path / "run", resume=True))  # fmt: skip
    assert again.step == 9  # a stopped run stays stopped


def test_train_steps_ends_mid_epoch(tmp_path):
    _, state = _fit(tmp_path, "run", epochs=50, steps=4)
    assert state.step == 4 and state.epoch == 1 and state.batch == 1  # one epoch done, one global batch of the next
    assert [r["epoch"] for r in _records(tmp_path / "run", "epoch")] == [1, 2]


class Failing(ToyTask):
    """Raises in its first training forward (a bad input shape, an out-of-memory ...)."""

    def forward(self, batch: dict) -> dict:
        raise RuntimeError("boom")


def _cfg(tmp_path, **train) -> OmegaConf:
    train = OmegaConf.structured(TrainConfig(**{**toy_config(batch_size=7, epochs=1).__dict__, **train}))
    return OmegaConf.create({"task": {"name": "toy"}, "method": {"name": "m"}, "backbone": {"name": "b"},
                             "data": {"name": "d"}, "train": train, "seed": 0, "out": str(tmp_path), "name": "r",
                             "resume": ""})  # fmt: skip


def _patch_build(monkeypatch, task_class=ToyTask, fail_in_data=False):
    def splits(cfg, pre):
        if fail_in_data:
            raise RuntimeError("no data")
        return SimpleNamespace(train=TRAIN, val=VAL, test=ToyData(9, seed=3), info=SimpleNamespace(class_names=()),
                               root="toy")  # fmt: skip

    monkeypatch.setitem(TASKS._entries, "toy", task_class)  # registered without a pipeline or report
    monkeypatch.setitem(TASKS._specs, "toy", TaskSpec())
    monkeypatch.setattr(avlearn.build, "audio_preprocess", lambda cfg: None)
    monkeypatch.setattr(avlearn.build, "build_splits", splits)
    monkeypatch.setattr(avlearn.build, "build_task", lambda cfg, info: task_class())


def test_the_test_run_is_optional(tmp_path, monkeypatch):
    _patch_build(monkeypatch)
    with_test = run_supervised(_cfg(tmp_path / "a"))
    without = run_supervised(_cfg(tmp_path / "b", test=False))
    assert "test" in with_test and "test" not in without and without["val"] == with_test["val"]
    saved = json.loads((tmp_path / "b" / "r").glob("*/metrics.json").__next__().read_text())
    assert "test" not in saved and "accuracy" in saved["val"]


@pytest.mark.parametrize("where", ["data", "first step"])
def test_a_run_that_fails_before_its_first_step_leaves_no_folder(tmp_path, monkeypatch, where):
    _patch_build(monkeypatch, Failing if where == "first step" else ToyTask, fail_in_data=where == "data")
    with pytest.raises(RuntimeError, match="boom|no data"):
        run_supervised(_cfg(tmp_path))
    assert list((tmp_path / "r").iterdir()) == []


def test_a_run_that_fails_after_its_first_step_keeps_its_folder(tmp_path, monkeypatch):
    class FailsLater(ToyTask):
        calls = 0

        def forward(self, batch: dict) -> dict:
            FailsLater.calls += 1
            if FailsLater.calls == 2:
                raise RuntimeError("boom")
            return super().forward(batch)

    _patch_build(monkeypatch, FailsLater)
    with pytest.raises(RuntimeError, match="boom"):
        run_supervised(_cfg(tmp_path))
    (run_dir,) = (tmp_path / "r").iterdir()
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.jsonl").is_file()
