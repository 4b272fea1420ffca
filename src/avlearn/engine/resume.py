"""The resumable ``last/`` checkpoint: model, optimizers, EMA, schedule, fp16 scalers, counters, data position, RNGs.

Saving and loading go through ``torch.distributed.checkpoint.state_dict`` (full, CPU-offloaded state dicts
keyed by parameter name), so the same code serves a plain module, DDP and FSDP: under FSDP gathering the full
state is a collective that every rank joins, and rank 0 writes. On load rank 0 reads the files and the state is
broadcast, so other nodes need not see rank 0's disk. RNG states are kept per rank; a run resumed with another
number of processes restores everything else and re-seeds each rank (not bit-exact, and said so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from avlearn.engine.checkpoint import load_checkpoint, save_checkpoint
from avlearn.engine.env import Env, all_gather_objects, barrier, broadcast_object, seed_everything
from avlearn.engine.state import TrainState, rng_state, set_rng_state


def _options(env: Env, loading: bool, strict: bool = True):  # noqa: ANN202 (StateDictOptions, imported lazily)
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    if loading:
        return StateDictOptions(full_state_dict=True, broadcast_from_rank0=env.distributed, strict=strict)
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _flatten_optimizer(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state keyed by parameter name -> tensors ``"<param>/<slot>"`` and JSON (groups, scalars)."""
    tensors, scalars = {}, {}
    for name, slots in osd["state"].items():
        for slot, value in slots.items():
            (tensors if torch.is_tensor(value) else scalars)[f"{name}/{slot}"] = value
    return tensors, {"param_groups": osd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {}
    for key, value in {**tensors, **info["scalars"]}.items():
        name, slot = key.rsplit("/", 1)
        state.setdefault(name, {})[slot] = value
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in info["param_groups"]]  # fmt: skip
    return {"state": state, "param_groups": groups}


def save_last(
    folder: Path, task: nn.Module, optimizers: dict[str, torch.optim.Optimizer], schedule: Any,
    ema: nn.Module | None, scalers: dict[str, Any], state: TrainState, env: Env, extra: dict[str, Any],
) -> None:  # fmt: skip
    """Write the resumable checkpoint (every rank calls this; rank 0 writes).

    ``optimizers``: name -> optimizer over parameters of ``task`` (``"optimizer"``, the main one, and
    ``"aux_optimizer"`` when the model has an auxiliary part); each becomes a tensor file of that name.
    ``scalers``: name -> fp16 gradient scaler (their state is a few numbers, kept in the JSON).
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model_state = get_model_state_dict(task, options=_options(env, loading=False))
    optim_states = {name: get_optimizer_state_dict(task, opt, options=_options(env, loading=False))
                    for name, opt in optimizers.items()}  # fmt: skip
    rngs = all_gather_objects(rng_state(), env)
    if env.is_main:
        tensors, infos = {"model": model_state}, {}
        for name, optim_state in optim_states.items():
            tensors[name], infos[name] = _flatten_optimizer(optim_state)
        if ema is not None:
            tensors["ema"] = ema.state_dict()
        meta = {**extra, "state": state.to_json(), **infos, "schedule": schedule.state_dict(),
                "scalers": {name: scaler.state_dict() for name, scaler in scalers.items()}, "rng": rngs,
                "world_size": env.world_size}  # fmt: skip
        save_checkpoint(folder, meta, tensors)
    barrier(env)


def load_last(
    folder: Path, task: nn.Module, optimizers: dict[str, torch.optim.Optimizer], schedule: Any,
    ema: nn.Module | None, scalers: dict[str, Any], env: Env,
) -> TrainState:  # fmt: skip
    """Restore what ``save_last`` wrote into the live objects; returns the counters to continue from."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    groups = ("model", *optimizers, *(("ema",) if ema is not None else ()))
    tensors, meta = load_checkpoint(folder, groups) if env.is_main else ({g: {} for g in groups}, None)
    meta = broadcast_object(meta, env)
    set_model_state_dict(task, tensors["model"], options=_options(env, loading=True))
    for name, optimizer in optimizers.items():
        optim_state = _unflatten_optimizer(tensors[name], meta[name])
        # Not strict: a trainable parameter that never had a gradient (a branch the task does not use) has no
        # optimizer state, before the kill as after; the model itself was loaded strictly above.
        options = _options(env, loading=True, strict=False)
        set_optimizer_state_dict(task, optimizer, optim_state, options=options)
    for name, scaler in scalers.items():
        scaler.load_state_dict(meta["scalers"][name])
    schedule.load_state_dict(meta["schedule"])
    state = TrainState.from_json(meta["state"])
    if ema is not None:
        ema.load_state_dict(broadcast_object(tensors["ema"], env))
    if meta["world_size"] == env.world_size:
        set_rng_state(meta["rng"][env.rank])
    else:
        seed_everything(state.step * 1_000 + env.rank)
        if env.is_main:
            print(f"resuming {meta['world_size']} processes' run on {env.world_size}: RNG streams are re-seeded")
    return state


def save_model(folder: Path, model: nn.Module, meta: dict[str, Any], env: Env) -> None:
    """Write ``model``'s full weights and ``meta`` (every rank calls this; under FSDP gathering is collective)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options(env, loading=False))
    if env.is_main:
        save_checkpoint(folder, meta, {"model": state})
    barrier(env)


def load_model(folder: Path, model: nn.Module, env: Env) -> dict[str, Any]:
    """Load the weights written by ``save_model`` into ``model`` (rank 0 reads, all receive); returns the meta."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    tensors, meta = load_checkpoint(folder) if env.is_main else ({"model": {}}, None)
    set_model_state_dict(model, tensors["model"], options=_options(env, loading=True))
    return broadcast_object(meta, env)
