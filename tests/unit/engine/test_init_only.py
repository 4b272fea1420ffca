"""``train.init_only``: the weights of one sub-module (a method trained by another task) under a new head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avlearn.engine.checkpoint import CheckpointError, save_checkpoint
from avlearn.engine.run import _init_from
from avlearn.errors import ConfigError


def _task(head_width: int) -> nn.Module:
    task = nn.Module()
    task.method, task.head = nn.Linear(4, 3), nn.Linear(3, head_width)
    return task


def test_only_the_named_sub_module_is_loaded_and_the_head_keeps_its_weights(tmp_path):
    other = _task(2)
    other.decoder = nn.Linear(3, 5)  # another task's part, not in this task
    save_checkpoint(tmp_path / "ckpt", {}, {"model": {k: v + 1 for k, v in other.state_dict().items()}})
    task = _task(2)
    head = {k: v.clone() for k, v in task.head.state_dict().items()}
    _init_from(task, str(tmp_path / "ckpt"), only="method")
    torch.testing.assert_close(task.method.weight, other.method.weight + 1)
    for key, value in task.head.state_dict().items():
        torch.testing.assert_close(value, head[key])
    with pytest.raises(CheckpointError, match="do not fit"):  # the whole model: the head does not fit
        _init_from(_task(2), str(tmp_path / "ckpt"))
    with pytest.raises(ConfigError, match=r"train.init_only='encoder': the task has no such sub-module"):
        _init_from(_task(2), str(tmp_path / "ckpt"), only="encoder")
