"""Two gloo processes (DDP, and FSDP) train exactly like one process with the same global batch."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from engine_toy import ToyData, make_task, parameters, step_losses, toy_config
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.testing import assert_close

from avlearn.engine.checkpoint import load_checkpoint
from avlearn.engine.env import Env, setup, teardown
from avlearn.engine.loop import RunInfo, fit
from avlearn.engine.resume import load_model
from two_processes import spawn_two

TRAIN, VAL = ToyData(20, seed=1), ToyData(12, seed=2)
# Global batch 8: one process runs 8 samples per step; two processes with accumulation 2 run 2 x 2 micro-batches
# of 2 each. The last global batch of an epoch has 4 samples (1 per micro-batch).
CFG = {"batch_size": 8, "epochs": 2, "fsdp_min_params": 100}
FULL = StateDictOptions(full_state_dict=True)


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    env = setup("cpu", seed=0)
    assert (env.rank, env.world_size, env.distributed) == (rank, 2, True)
    for strategy in ("ddp", "fsdp"):
        cfg = toy_config(**CFG, grad_accum=2, strategy=strategy)
        task = make_task()
        fit(task, TRAIN, VAL, cfg, env, RunInfo(f"{out}/{strategy}"))
        # Resuming the finished run only loads last/ (rank 0 reads, all receive): the same full weights.
        resumed = make_task()
        fit(resumed, TRAIN, VAL, cfg, env, RunInfo(f"{out}/{strategy}", resume=True))
        trained, loaded = (get_model_state_dict(m, options=FULL) for m in (task, resumed))
        assert all(torch.equal(trained[k], loaded[k]) for k in trained), strategy
        best = load_model(Path(out) / strategy / "checkpoint", resumed, env)  # the best epoch's weights
        assert best["epoch"] >= 1 and get_model_state_dict(resumed, options=FULL).keys() == trained.keys()
    teardown()


def test_two_gloo_processes_match_one_process(tmp_path):
    single = make_task()
    fit(single, TRAIN, VAL, toy_config(**CFG), Env(), RunInfo(tmp_path / "single"))
    spawn_two(_worker, str(tmp_path))
    for strategy in ("ddp", "fsdp"):
        tensors, meta = load_checkpoint(tmp_path / strategy / "last")
        assert meta["world_size"] == 2 and meta["state"]["step"] == 6
        assert_close(tensors["model"], parameters(single), rtol=1e-5, atol=1e-6, msg=strategy)
        losses, reference = step_losses(tmp_path / strategy), step_losses(tmp_path / "single")
        assert losses.keys() == reference.keys()  # rank 0 alone writes: one line per step
        assert_close(list(losses.values()), list(reference.values()), rtol=1e-5, atol=1e-6)
