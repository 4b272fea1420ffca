"""Run-level pieces: which run ``resume=`` continues, the config check, starting weights, devices."""

from __future__ import annotations

import os

import pytest
import torch
from engine_toy import make_task
from omegaconf import OmegaConf

from avlearn.engine.checkpoint import CheckpointError, save_checkpoint
from avlearn.engine.env import pick_device
from avlearn.engine.run import _init_from, find_resumable
from avlearn.errors import ConfigError


def _run(tmp_path, stamp, epochs=3, with_last=True, age=0):
    cfg = OmegaConf.create(
        {"out": str(tmp_path), "name": "r", "resume": "", "train": {"epochs": epochs, "device": "cpu"}}
    )
    run_dir = tmp_path / "r" / stamp
    run_dir.mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    if with_last:
        save_checkpoint(run_dir / "last", {"step": 1}, {"model": {"w": torch.zeros(1)}})
        os.utime(run_dir / "last" / "checkpoint.json", (1e9 + age, 1e9 + age))
    return cfg, run_dir


def test_resume_true_picks_the_newest_run_with_a_last_checkpoint(tmp_path):
    cfg, older = _run(tmp_path, "20260101-000000", age=0)
    _, newer = _run(tmp_path, "20260102-000000", age=10)
    _run(tmp_path, "20260103-000000", with_last=False)  # killed before its first checkpoint
    cfg.resume = "true"
    assert find_resumable(cfg, "r") == newer
    cfg.resume = str(older)
    assert find_resumable(cfg, "r") == older
    cfg.train.device = "cuda"  # may change between a run and its resumption
    assert find_resumable(cfg, "r") == older


def test_resume_with_another_config_or_nothing_to_resume_is_an_error(tmp_path):
    cfg, _ = _run(tmp_path, "20260101-000000")
    cfg.resume, cfg.train.epochs = "true", 5
    with pytest.raises(ConfigError, match=r"config differs from .*config.yaml in train.epochs; resume with"):
        find_resumable(cfg, "r")
    with pytest.raises(ConfigError, match=r"resume=true: no run under .* has a last/ checkpoint"):
        find_resumable(cfg, "other")


def test_starting_weights_that_do_not_fit_are_a_one_line_error(tmp_path):
    save_checkpoint(tmp_path / "ckpt", {}, {"model": {"net.0.weight": torch.zeros(16, 8), "head.w": torch.zeros(2)}})
    with pytest.raises(CheckpointError, match=r"do not fit this model \(missing: net.0.bias.*unexpected: head.w\)"):
        _init_from(make_task(), str(tmp_path / "ckpt"))
    task = make_task()
    save_checkpoint(tmp_path / "good", {}, {"model": {k: v + 1 for k, v in task.state_dict().items()}})
    _init_from(task, str(tmp_path / "good"))
    assert torch.equal(task.net[0].bias, make_task().net[0].bias + 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_asking_for_cuda_without_it_is_a_config_error():
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="train.device='cuda:0' but CUDA is not available"):
        pick_device("cuda")
