"""The training loop, top to bottom: one process or many (DDP / FSDP under torchrun), the same code.

``fit`` builds the optimizer (AdamW) and the warmup + cosine schedule, restores the ``last/`` checkpoint when
resuming, then runs epochs of optimizer steps. One step (``train_step``) runs this rank's micro-batches of one
global batch (``engine.batches``) under optional bf16 autocast; each micro-batch's mean loss is weighted by its
share of the global batch, so accumulation and the number of processes do not change the gradient (DDP averages
over ranks, hence the ``world_size`` factor). Then clipping, the optimizer step, the schedule and the EMA. After
each epoch the validation split is scored, the best epoch is kept in ``checkpoint/`` (selection never looks at
the test split) and ``last/`` is rewritten; ``train.save_every`` adds mid-epoch ``last/`` checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from avlearn.config.schema import TrainConfig
from avlearn.engine.batches import MicroBatches, eval_shard, gather_predictions, global_batches
from avlearn.engine.ema import ema_copy, ema_update
from avlearn.engine.env import Env, all_reduce_sum
from avlearn.engine.log import MetricsLog, progress, summary_table
from avlearn.engine.resume import load_last, save_last, save_model
from avlearn.engine.state import TrainState
from avlearn.errors import ConfigError


@dataclass
class RunInfo:
    """Where a run writes, its seed, what its checkpoints record besides tensors, and whether it resumes."""

    dir: Path
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    resume: bool = False

    def __post_init__(self) -> None:
        self.dir = Path(self.dir)


@dataclass
class Training:
    """The live objects of a run, handed between the loop's functions (plain data: no methods, no hooks)."""

    task: nn.Module  # the model itself: checkpoints and evaluation use it
    model: nn.Module  # what a training step calls: ``task`` or its DDP / compiled form
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    ema: nn.Module | None
    state: TrainState
    log: MetricsLog


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """bf16 autocast when ``precision == "bf16"``, else a disabled context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _frozen_matmul_layers(task: nn.Module) -> list[nn.Module]:
    """Linear and convolution layers none of whose own parameters is trained."""
    layers = (nn.Linear, nn.modules.conv._ConvNd)
    return [m for m in task.modules() if isinstance(m, layers) and not any(p.requires_grad for p in m.parameters())]


@contextmanager
def frozen_weights_in_bf16(task: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Inside, the frozen Linear and convolution weights of ``task`` are stored in bf16; fp32 again on exit.

    Under bf16 autocast these layers compute in bf16 anyway: autocast rounds their fp32 weights to bf16 at every
    call, as this does once, so training computes the same numbers with half the memory for those weights (a frozen
    Swin-V2-L + HTS-AT: about 0.5 GB). Yields how many layers were converted (0 when not ``enabled``).
    Normalisation layers, embeddings and loose parameters keep their dtype. The weights are bf16-rounded after
    exit: the values training used.
    """
    layers = _frozen_matmul_layers(task) if enabled else []
    for layer in layers:
        layer.to(torch.bfloat16)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer.to(torch.float32)


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a batch dict to ``device`` (other values are kept)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _rows(batch: dict) -> int:
    return len(next(v for v in batch.values() if torch.is_tensor(v)))


def _shard_fsdp(task: nn.Module, min_params: int) -> None:
    """FSDP2 in place: every sub-module holding >= ``min_params`` not-yet-sharded parameters, then the root."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    sharded: set[int] = set()
    for module in reversed(list(task.modules())[1:]):  # descendants before their ancestors
        params = [p for p in module.parameters() if id(p) not in sharded]
        if params and sum(p.numel() for p in params) >= min_params:
            fully_shard(module)
            sharded.update(id(p) for p in params)
    fully_shard(task)
    register_fsdp_forward_method(task, "predict")  # evaluation calls predict, not forward


def wrap(task: nn.Module, cfg: TrainConfig, env: Env) -> nn.Module:
    """The module a training step calls: DDP or FSDP when there are several processes, compiled if asked."""
    if cfg.strategy not in ("ddp", "fsdp"):
        raise ConfigError(f"train.strategy={cfg.strategy!r}: expected ddp or fsdp")
    if cfg.strategy == "fsdp" and cfg.ema > 0:
        raise ConfigError("train.ema with train.strategy=fsdp is not supported; use ddp or train.ema=0")
    model = task
    if env.distributed and cfg.strategy == "fsdp":
        _shard_fsdp(task, cfg.fsdp_min_params)
    elif env.distributed:
        model = DistributedDataParallel(task, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    if cfg.compile:
        model.compile()  # in place: state-dict keys keep their names (no "_orig_mod.")
    return model


def _grad_sync(model: nn.Module, sync: bool) -> AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-batch of a step (DDP ``no_sync``; FSDP2 flag)."""
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(sync)
    elif isinstance(model, DistributedDataParallel) and not sync:
        return model.no_sync()
    return nullcontext()


def train_step(t: Training, micro: list[dict], global_size: int, cfg: TrainConfig, env: Env) -> dict[str, Any]:
    """One optimizer step over this rank's micro-batches of a global batch of ``global_size`` samples."""
    loss_sum = torch.zeros((), device=env.device)
    for i, batch in enumerate(micro):
        rows = _rows(batch)
        with _grad_sync(t.model, sync=i == len(micro) - 1):
            with autocast(cfg.precision, env.device):
                loss = t.model(to_device(batch, env.device))["loss"]
            (loss * (rows * env.world_size / global_size)).backward()
        loss_sum += loss.detach().float() * rows
    params = [p for p in t.task.parameters() if p.grad is not None]
    grad_norm = nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)
    t.schedule.step()
    if t.ema is not None:
        ema_update(t.ema, t.task, cfg.ema)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # FSDP: a DTensor
    return {"loss": all_reduce_sum(loss_sum, env) / global_size, "grad_norm": grad_norm}


def _steps(loader: Iterable[dict], accum: int) -> Iterator[list[dict]]:
    """Group the loader's micro-batches ``accum`` at a time (one optimizer step each)."""
    group: list[dict] = []
    for batch in loader:
        group.append(batch)
        if len(group) == accum:
            yield group
            group = []


def _targets(batch: dict) -> dict:
    """The entries of a batch a scorer may need: ids and tensors of <= 2 dims per sample (not the media)."""
    return {k: v.cpu() if torch.is_tensor(v) else v for k, v in batch.items() if not torch.is_tensor(v) or v.dim() <= 3}


@torch.no_grad()
def predict_all(task: nn.Module, data: Dataset, batch_size: int, env: Env, precision: str = "fp32") -> dict:
    """``task.predict`` over ``data`` (sharded over ranks, gathered in order): ``{"preds": ..., "targets": ...}``."""
    task.eval()
    indices = eval_shard(len(data), env)
    columns: dict[str, list] = {}
    loader = DataLoader(Subset(data, indices), batch_size=batch_size, generator=torch.Generator())  # not the global RNG
    for batch in loader:
        with autocast(precision, env.device):
            out = task.predict(to_device(batch, env.device))
        out = {f"preds/{k}": v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in out.items()}
        for key, value in {**out, **{f"targets/{k}": v for k, v in _targets(batch).items()}}.items():
            columns.setdefault(key, []).append(value)
    joined = {k: torch.cat(v) if torch.is_tensor(v[0]) else [x for part in v for x in part] for k, v in columns.items()}
    full = gather_predictions(indices, joined, len(data), env)
    out: dict[str, dict] = {"preds": {}, "targets": {}}
    for key, value in full.items():
        group, name = key.split("/", 1)
        out[group][name] = value
    return out


def evaluate(task: nn.Module, data: Dataset, batch_size: int, env: Env, precision: str = "fp32") -> tuple[dict, dict]:
    """The task's official scores on ``data``, and the predictions and targets they were computed from."""
    out = predict_all(task, data, batch_size, env, precision)
    return task.score(out["preds"], out["targets"]), out


def _start(task: nn.Module, train_size: int, cfg: TrainConfig, env: Env, run: RunInfo) -> tuple[Training, int]:
    """Optimizer, schedule, EMA and counters (restored from ``last/`` when resuming); steps per epoch."""
    model = wrap(task, cfg, env)
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)  # fmt: skip
    per_epoch = len(global_batches(train_size, cfg.batch_size, run.seed, 0, min_size=env.world_size * cfg.grad_accum))
    total, warmup = cfg.epochs * per_epoch, max(1, round(cfg.warmup_epochs * per_epoch))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    ema = ema_copy(task) if cfg.ema > 0 else None
    state = load_last(run.dir / "last", task, optimizer, schedule, ema, env) if run.resume else TrainState()
    log = MetricsLog.open(run.dir, env.is_main, resume_step=state.step if run.resume else None)
    return Training(task, model, optimizer, schedule, ema, state, log), per_epoch


def _save_last(t: Training, cfg: TrainConfig, env: Env, run: RunInfo) -> None:
    if cfg.checkpoint:
        save_last(run.dir / "last", t.task, t.optimizer, t.schedule, t.ema, t.state, env, run.meta)


def _log_step(t: Training, out: dict[str, Any], rate: float, bar: Any) -> None:
    """A ``metrics.jsonl`` line for the step just done, and the progress bar's numbers."""
    record = {"kind": "step", "step": t.state.step, "epoch": t.state.epoch + 1, "loss": out["loss"].item(),
              "lr": t.schedule.get_last_lr()[0], "grad_norm": float(out["grad_norm"]),
              "samples_per_s": rate}  # fmt: skip
    t.log.write(record)
    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.1e}", samples_s=f"{rate:.0f}")


def _train_epoch(t: Training, train: Dataset, per_epoch: int, cfg: TrainConfig, env: Env, run: RunInfo) -> float:
    """The optimizer steps of one epoch (from the saved data position when resuming); mean training loss."""
    epoch = t.state.epoch
    sampler = MicroBatches(len(train), cfg.batch_size, env, cfg.grad_accum, run.seed, epoch, start=t.state.batch)
    # Its own generator: a DataLoader iterator draws its workers' base seed from it, not from the global RNG
    # that dropout uses (which would make a resumed epoch draw different dropout masks).
    generator = torch.Generator().manual_seed(run.seed * 100_003 + epoch * 1_009 + t.state.batch + env.rank)
    loader = DataLoader(train, batch_sampler=sampler, num_workers=cfg.loader_workers, generator=generator,
                        pin_memory=env.device.type == "cuda")  # fmt: skip
    bar = progress(per_epoch, t.state.batch, f"epoch {epoch + 1}/{cfg.epochs}", env.is_main)
    t.task.train()
    total, seen = torch.tensor(t.state.epoch_loss, device=env.device), t.state.epoch_samples  # resumed mid-epoch
    since, tick = 0, time.perf_counter()
    for micro, size in zip(_steps(loader, cfg.grad_accum), sampler.global_sizes(), strict=True):
        out = train_step(t, micro, size, cfg, env)
        t.state.step, t.state.batch = t.state.step + 1, t.state.batch + 1
        total, seen, since = total + out["loss"] * size, seen + size, since + size
        if cfg.log_every > 0 and t.state.step % cfg.log_every == 0:
            rate, since, tick = since / (time.perf_counter() - tick), 0, time.perf_counter()
            _log_step(t, out, rate, bar)
        if cfg.save_every and t.state.step % cfg.save_every == 0:
            t.state.epoch_loss, t.state.epoch_samples = float(total), seen
            _save_last(t, cfg, env, run)
        bar.update()
    bar.close()
    return float(total) / max(1, seen)


def _end_epoch(t: Training, val: Dataset, loss: float, seconds: float, cfg: TrainConfig, env: Env, run: RunInfo):
    """Score the validation split, keep the best epoch in ``checkpoint/``, log, and rewrite ``last/``."""
    scored = t.ema if t.ema is not None else t.task
    scores, _ = evaluate(scored, val, cfg.batch_size, env, cfg.precision)
    metric = t.task.primary_metric
    improved = scores[metric] > t.state.best
    epoch = t.state.epoch + 1
    t.state.epoch, t.state.batch, t.state.epoch_loss, t.state.epoch_samples = epoch, 0, 0.0, 0
    if improved:
        t.state.best, t.state.best_epoch = scores[metric], epoch
        if cfg.checkpoint:
            save_model(run.dir / "checkpoint", scored, {**run.meta, "epoch": epoch, "step": t.state.step,
                                                        "val": scores}, env)  # fmt: skip
    record = {"kind": "epoch", "epoch": epoch, "step": t.state.step, "train_loss": loss,
              **{f"val_{k}": v for k, v in scores.items()}, "lr": t.schedule.get_last_lr()[0], "seconds": seconds,
              "best": improved}  # fmt: skip
    t.state.history.append(record)
    t.log.write(record)
    _save_last(t, cfg, env, run)
    if env.is_main:
        print(f"epoch {epoch:3d}/{cfg.epochs}  loss {loss:.4f}  val {metric} {scores[metric]:.2f}"
              f"{'  *best' if improved else ''}  ({seconds:.1f}s)", flush=True)  # fmt: skip


def _frozen_bf16(cfg: TrainConfig, env: Env) -> bool:
    """Whether ``fit`` stores frozen weights in bf16: bf16 training, ``train.frozen_bf16``, and not FSDP (which
    shards a module's parameters as one flat tensor of a single dtype)."""
    return cfg.precision == "bf16" and cfg.frozen_bf16 and not (env.distributed and cfg.strategy == "fsdp")


def fit(task: nn.Module, train: Dataset, val: Dataset, cfg: TrainConfig, env: Env, run: RunInfo) -> TrainState:
    """Train ``task`` for ``cfg.epochs`` (continuing from ``run.dir/last`` if ``run.resume``); returns the counters.

    Every rank calls this with the same arguments; rank 0 prints, logs and writes the checkpoints.
    """
    with frozen_weights_in_bf16(task, _frozen_bf16(cfg, env)):
        t, per_epoch = _start(task, len(train), cfg, env, run)
        if per_epoch == 0:
            raise ConfigError(f"train split of {len(train)} samples holds no global batch of {cfg.batch_size}")
        while t.state.epoch < cfg.epochs:
            started = time.perf_counter()
            loss = _train_epoch(t, train, per_epoch, cfg, env, run)
            _end_epoch(t, val, loss, time.perf_counter() - started, cfg, env, run)
    t.log.close()
    if env.is_main and t.state.history:
        print("\n" + summary_table(t.state.history, task.primary_metric), flush=True)
    return t.state
