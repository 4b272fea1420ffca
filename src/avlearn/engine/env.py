"""The process environment of a run: torch.distributed as torchrun sets it up, the device, threads and seeds.

``torchrun --nproc_per_node=N -m avlearn train ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address in their environment; ``setup`` reads them (nothing else in the library
does), joins the process group (NCCL on CUDA, gloo on CPU) and pins each process to ``cuda:LOCAL_RANK``. A plain
``avlearn train`` is the same code with a world of one and no process group, so nothing below branches on
"distributed or not" except the few collectives, which are no-ops for one process.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from avlearn.errors import ConfigError


@dataclass(frozen=True)
class Env:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` if CUDA is available, else CPU; ``cuda`` -> ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available here; use train.device=cpu or auto")
    return device


def process_rank() -> int:
    """This process's rank: from the process group if there is one, else from torchrun's ``RANK`` (0 alone)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def setup(device: str = "auto", threads: int = 0, seed: int = 0, deterministic: bool = False) -> Env:
    """Join the process group when launched by torchrun, pick the device, set threads, seed and determinism.

    Calling it again (the next run of a sweep) reuses the group; a group made by the caller is used as it is.
    """
    world = dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = process_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    if threads > 0:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for deterministic GEMMs
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    seed_everything(seed)
    return Env(rank, world, local, dev)


def teardown(wait: bool = True) -> None:
    """Leave the process group, if any (the end of ``avlearn train``).

    ``wait``: first wait for every process to get here (a gloo process that leaves while its peer still has traffic
    in flight makes the peer abort with SIGABRT); ``False`` on an error path, where the others may never arrive.
    """
    if dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(value: torch.Tensor, env: Env) -> torch.Tensor:
    """The sum of ``value`` over all processes (``value`` itself for one process)."""
    if env.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_gather_objects(obj: Any, env: Env) -> list[Any]:
    """``obj`` of every rank, in rank order (pickled between our own processes, never read from a file)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, env: Env) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: Env) -> None:
    """Wait for every process."""
    if env.distributed:
        dist.barrier()
