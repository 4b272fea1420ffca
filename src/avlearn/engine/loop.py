"""The training loop, top to bottom: one process or many (DDP / FSDP under torchrun), the same code.

``fit`` builds the parameter groups, the optimizer and the per-step schedule (``engine.optim``), an optional
auxiliary optimizer (``engine.auxiliary``) and fp16 gradient scaler, restores the ``last/`` checkpoint when
resuming, then runs epochs of optimizer steps. One step (``train_step``) runs this rank's micro-batches of one
global batch (``engine.batches``) under the run's autocast; each micro-batch's mean loss is weighted by its share
of the global batch, so accumulation and the number of processes do not change the gradient (DDP averages over
ranks, hence the ``world_size`` factor). Then clipping, the optimizer step (skipped by the fp16 scaler when a
gradient is inf/nan), the schedule and the EMA. The validation split is scored every ``train.val_every`` steps
(0: after each epoch; -1: never); ``checkpoint/`` keeps the best validation (``train.select=best``; selection never
looks at the test split) or the last state (``select=last``); ``train.patience`` validations without improvement
stop the run. ``last/`` is rewritten after each epoch and every ``train.save_every`` steps. A task with a
``monitor(epoch, last) -> dict`` method adds its scores to each epoch's record (the pretraining task's kNN probe;
logged, never used for selection).
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
from avlearn.data.parallel import worker_init
from avlearn.engine.auxiliary import AuxiliaryTraining, auxiliary_steps, build_auxiliary, find_auxiliary
from avlearn.engine.batches import MicroBatches, eval_shard, gather_predictions, global_batches, min_batch
from avlearn.engine.ema import ema_copy, ema_update
from avlearn.engine.env import Env, all_reduce_sum
from avlearn.engine.log import MetricsLog, progress, summary_table
from avlearn.engine.optim import (
    build_optimizer,
    build_schedule,
    check_train_values,
    describe_param_groups,
    param_groups,
    schedule_length,
)
from avlearn.engine.resume import load_last, save_last, save_model
from avlearn.engine.state import TrainState
from avlearn.errors import ConfigError


@dataclass
class RunInfo:
    """Where a run writes, its seed, what its checkpoints record besides tensors, and whether it resumes.

    ``started`` is set by ``fit`` once the first optimizer step is done (a run that fails before has nothing
    worth keeping: ``engine.run`` then removes its folder).
    """

    dir: Path
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    started: bool = False

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
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    aux: AuxiliaryTraining | None = None  # the model's auxiliary optimizer, if it asks for one
    total: int = 0  # optimizer steps of the whole run


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """bf16 / fp16 autocast when ``precision`` says so, else a disabled context."""
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision in ("bf16", "fp16"))


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16: a gradient scaler (loss scaling; a step whose gradients hold inf/nan is skipped and the scale
    halved); None for fp32 and bf16."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


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


def wrap(task: nn.Module, cfg: TrainConfig, env: Env, aux_params: set[int] = frozenset()) -> nn.Module:
    """The module a training step calls: DDP or FSDP when there are several processes, compiled if asked.

    DDP leaves the auxiliary optimizer's parameters (ids ``aux_params``) alone: ``auxiliary_steps`` averages
    their gradients itself.
    """
    if cfg.strategy not in ("ddp", "fsdp"):
        raise ConfigError(f"train.strategy={cfg.strategy!r}: expected ddp or fsdp")
    if cfg.strategy == "fsdp" and (cfg.ema > 0 or aux_params):
        raise ConfigError("train.ema or an auxiliary optimizer with train.strategy=fsdp is not supported; use ddp")
    model = task
    if env.distributed and cfg.strategy == "fsdp":
        _shard_fsdp(task, cfg.fsdp_min_params)
    elif env.distributed:
        if aux_params:
            ignored = [name for name, p in task.named_parameters() if id(p) in aux_params]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(task, ignored)
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


def _optimizer_step(t: Training) -> bool:
    """Step the main optimizer (through the fp16 scaler if any); False when the scaler skipped the step."""
    if t.scaler is None:
        t.optimizer.step()
        return True
    scale = t.scaler.get_scale()
    t.scaler.step(t.optimizer)
    t.scaler.update()
    return t.scaler.get_scale() >= scale  # the scale is halved exactly when inf/nan gradients skipped the step


def _forward(model: nn.Module, batch: dict, cfg: TrainConfig, env: Env) -> dict[str, Any]:
    """The training forward of one micro-batch; a one-sample micro-batch that a batch norm refuses is a ConfigError."""
    try:
        with autocast(cfg.precision, env.device):
            return model(to_device(batch, env.device))
    except ValueError as error:
        if "Expected more than 1 value per channel" not in str(error):
            raise
        raise ConfigError(
            f"a training micro-batch of {_rows(batch)} sample reached a batch norm in training mode, which needs >= 2;"
            " set train.drop_last=true (or a train.batch_size that leaves no such last batch)"
        ) from None


def train_step(t: Training, micro: list[dict], global_size: int, cfg: TrainConfig, env: Env) -> dict[str, Any]:
    """One optimizer step over this rank's micro-batches of a global batch of ``global_size`` samples.

    The auxiliary optimizer's inner steps (if any) come first. A step that the fp16 scaler skips still consumes
    its batch and advances the schedule and the EMA (the learning rate stays a function of the step count; the
    weights are unchanged); it is counted in ``state.skipped``.
    """
    weights = [_rows(batch) * env.world_size / global_size for batch in micro]
    if t.aux is not None:
        on_device = [(to_device(b, env.device), w) for b, w in zip(micro, weights, strict=True)]
        auxiliary_steps(t.aux, on_device, lambda: autocast(cfg.precision, env.device))
    loss_sum = torch.zeros((), device=env.device)
    terms: dict[str, torch.Tensor] = {}  # the task's detached ``loss_*`` terms, summed over samples like the loss
    for i, (batch, weight) in enumerate(zip(micro, weights, strict=True)):
        with _grad_sync(t.model, sync=i == len(micro) - 1):
            out = _forward(t.model, batch, cfg, env)
            loss = out["loss"]
            scaled = loss * weight
            (t.scaler.scale(scaled) if t.scaler is not None else scaled).backward()
        loss_sum += loss.detach().float() * _rows(batch)
        for name in (k for k in out if k.startswith("loss_")):
            terms[name] = terms.get(name, 0.0) + out[name].detach().float() * _rows(batch)
    if t.scaler is not None:
        t.scaler.unscale_(t.optimizer)
    params = [p for g in t.optimizer.param_groups for p in g["params"] if p.grad is not None]
    grad_norm = nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    applied = _optimizer_step(t)
    t.optimizer.zero_grad(set_to_none=True)
    t.schedule.step()
    if t.ema is not None:
        ema_update(t.ema, t.task, cfg.ema)
    t.state.skipped += not applied
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # FSDP: a DTensor
    # Every rank's task returns the same terms, so the reductions below pair up across ranks (sorted by name).
    logged = {name: all_reduce_sum(terms[name], env) / global_size for name in sorted(terms)}
    return {"loss": all_reduce_sum(loss_sum, env) / global_size, "grad_norm": grad_norm, **logged}


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


def _to_cpu(value: Any) -> Any:
    """A prediction column on the CPU: floating tensors as fp32, other tensors as they are, lists (strings,
    objects: one per sample) unchanged."""
    if not torch.is_tensor(value):
        return list(value)
    return value.float().cpu() if value.is_floating_point() else value.cpu()


@torch.no_grad()
def predict_all(
    task: nn.Module, data: Dataset, batch_size: int, env: Env, precision: str = "fp32", workers: int = 0
) -> dict:
    """``task.predict`` over ``data`` (sharded over ranks, gathered in order): ``{"preds": ..., "targets": ...}``.

    A prediction column may be a tensor ``(B, ...)`` or a list of ``B`` Python objects (captions, answers); lists
    come back as lists in dataset order. ``workers``: DataLoader worker processes (a lazy split decodes in them).
    """
    task.eval()
    indices = eval_shard(len(data), env)
    columns: dict[str, list] = {}
    generator = torch.Generator()  # not the global RNG
    loader = DataLoader(Subset(data, indices), batch_size=batch_size, num_workers=workers,
                        worker_init_fn=worker_init(), generator=generator)  # fmt: skip
    for batch in loader:
        with autocast(precision, env.device):
            out = task.predict(to_device(batch, env.device))
        out = {f"preds/{k}": _to_cpu(v) for k, v in out.items()}
        for key, value in {**out, **{f"targets/{k}": v for k, v in _targets(batch).items()}}.items():
            columns.setdefault(key, []).append(value)
    joined = {k: torch.cat(v) if torch.is_tensor(v[0]) else [x for part in v for x in part] for k, v in columns.items()}
    full = gather_predictions(indices, joined, len(data), env)
    out: dict[str, dict] = {"preds": {}, "targets": {}}
    for key, value in full.items():
        group, name = key.split("/", 1)
        out[group][name] = value
    return out


def evaluate(
    task: nn.Module, data: Dataset, batch_size: int, env: Env, precision: str = "fp32", workers: int = 0
) -> tuple[dict, dict]:
    """The task's official scores on ``data``, and the predictions and targets they were computed from."""
    out = predict_all(task, data, batch_size, env, precision, workers)
    return task.score(out["preds"], out["targets"]), out


def _freeze_untrained(task: nn.Module, cfg: TrainConfig, aux_params: set[int], env: Env) -> None:
    """Rank 0 prints the main optimizer's parameter groups; parameters that ``train.lr_mult`` gives a multiplier
    of 0 are frozen (``requires_grad=False``: no gradient is computed for them)."""
    groups = param_groups(task, cfg, exclude=aux_params)
    if not groups:
        raise ConfigError("nothing to train: every parameter is frozen or has train.lr_mult 0")
    grouped = {id(p) for g in groups for p in g["params"]} | aux_params
    for p in task.parameters():
        if p.requires_grad and id(p) not in grouped:
            p.requires_grad_(False)
    if env.is_main:
        print(describe_param_groups(groups), flush=True)


def _start(task: nn.Module, train_size: int, cfg: TrainConfig, env: Env, run: RunInfo) -> tuple[Training, int]:
    """Optimizers, schedule, scalers, EMA and counters (restored from ``last/`` when resuming); steps per epoch."""
    aux_spec = find_auxiliary(task)
    aux_params = {id(p) for p in aux_spec.params} if aux_spec is not None else set()
    _freeze_untrained(task, cfg, aux_params, env)
    model = wrap(task, cfg, env, aux_params)
    optimizer = build_optimizer(param_groups(task, cfg, exclude=aux_params), cfg)  # FSDP: its sharded parameters
    keep = min_batch(cfg.batch_size, env, cfg.grad_accum, cfg.drop_last)
    per_epoch = len(global_batches(train_size, cfg.batch_size, run.seed, 0, min_size=keep))
    schedule = build_schedule(optimizer, cfg, per_epoch)
    aux = build_auxiliary(aux_spec, lambda: grad_scaler(cfg.precision, env.device))
    ema = ema_copy(task) if cfg.ema > 0 else None
    t = Training(task, model, optimizer, schedule, ema, TrainState(), MetricsLog(run.dir, False),
                 grad_scaler(cfg.precision, env.device), aux, schedule_length(cfg, per_epoch)[0])  # fmt: skip
    if run.resume:
        optimizers, scalers = _resumable(t)
        t.state = load_last(run.dir / "last", task, optimizers, schedule, ema, scalers, env)
    t.log = MetricsLog.open(run.dir, env.is_main, resume_step=t.state.step if run.resume else None)
    return t, per_epoch


def _resumable(t: Training) -> tuple[dict[str, torch.optim.Optimizer], dict[str, torch.amp.GradScaler]]:
    """The optimizers and gradient scalers that ``last/`` holds, by name."""
    optimizers = {"optimizer": t.optimizer}
    scalers = {"scaler": t.scaler} if t.scaler is not None else {}
    if t.aux is not None:
        optimizers["aux_optimizer"] = t.aux.optimizer
        if t.aux.scaler is not None:
            scalers["aux_scaler"] = t.aux.scaler
    return optimizers, scalers


def _save_last(t: Training, cfg: TrainConfig, env: Env, run: RunInfo) -> None:
    if cfg.checkpoint:
        optimizers, scalers = _resumable(t)
        save_last(run.dir / "last", t.task, optimizers, t.schedule, t.ema, scalers, t.state, env, run.meta)


def _base_lr(t: Training) -> float:
    """``train.lr`` times the schedule's current factor (the lr of a group with multiplier 1 and no ramp)."""
    group = next(g for g in t.optimizer.param_groups if "lr_ramp" not in g)
    return group["lr"] / group["lr_scale"]


def _log_step(t: Training, out: dict[str, Any], rate: float, bar: Any) -> None:
    """A ``metrics.jsonl`` line for the step just done, and the progress bar's numbers."""
    record = {"kind": "step", "step": t.state.step, "epoch": t.state.epoch + 1, "loss": out["loss"].item(),
              "lr": _base_lr(t), "grad_norm": float(out["grad_norm"]), "samples_per_s": rate,
              **{k: float(v) for k, v in out.items() if k.startswith("loss_")}}  # fmt: skip
    if t.scaler is not None:
        record.update(loss_scale=t.scaler.get_scale(), skipped=t.state.skipped)
    t.log.write(record)
    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.1e}", samples_s=f"{rate:.0f}")


def _validation_due(t: Training, cfg: TrainConfig) -> bool:
    """Whether to score the validation split after this step: every ``val_every`` steps and at the last step
    (``val_every > 0``; 0 validates in ``_end_epoch`` instead, -1 never)."""
    return cfg.val_every > 0 and (t.state.step % cfg.val_every == 0 or t.state.step >= t.total)


def _validate(t: Training, val: Dataset, cfg: TrainConfig, env: Env, run: RunInfo) -> dict[str, Any]:
    """Score the validation split; on improvement keep the model in ``checkpoint/`` (``select=best``); count
    validations without improvement and stop at ``train.patience``. Returns ``val_<metric>`` entries and ``best``."""
    scored = t.ema if t.ema is not None else t.task
    scores, _ = evaluate(scored, val, cfg.batch_size, env, cfg.precision, cfg.loader_workers)
    metric = t.task.primary_metric
    value = -scores[metric] if getattr(t.task, "lower_is_better", False) else scores[metric]  # higher is better
    improved = value > t.state.best
    if improved:
        t.state.best, t.state.best_epoch, t.state.stale = value, t.state.epoch + 1, 0
        if cfg.checkpoint and cfg.select == "best":
            _save_model(t, run, env, {"val": scores})
    else:
        t.state.stale += 1
    t.state.stopped = cfg.patience > 0 and t.state.stale >= cfg.patience
    return {**{f"val_{k}": v for k, v in scores.items()}, "best": improved}


def _save_model(t: Training, run: RunInfo, env: Env, extra: dict[str, Any]) -> None:
    """The selected model (the EMA weights when there are some) into ``checkpoint/``."""
    scored = t.ema if t.ema is not None else t.task
    save_model(run.dir / "checkpoint", scored, {**run.meta, "epoch": t.state.epoch + 1, "step": t.state.step,
                                                **extra}, env)  # fmt: skip


def _finished(t: Training) -> bool:
    return t.state.step >= t.total or t.state.stopped


def _train_epoch(t: Training, data: tuple[Dataset, Dataset], per_epoch: int, cfg: TrainConfig, env: Env,
                 run: RunInfo) -> float:  # fmt: skip
    """The optimizer steps of one epoch (from the saved data position when resuming; until the run's last step or
    an early stop), with the validations due within it; mean training loss."""
    (train, val), epoch = data, t.state.epoch
    if hasattr(train, "set_epoch"):  # a lazy split's training randomness is a function of (seed, epoch, index)
        train.set_epoch(epoch)
    sampler = MicroBatches(len(train), cfg.batch_size, env, cfg.grad_accum, run.seed, epoch, start=t.state.batch,
                           drop_last=cfg.drop_last)  # fmt: skip
    # Its own generator: a DataLoader iterator draws its workers' base seed from it, not from the global RNG
    # that dropout uses (which would make a resumed epoch draw different dropout masks).
    generator = torch.Generator().manual_seed(run.seed * 100_003 + epoch * 1_009 + t.state.batch + env.rank)
    # Only this rank's micro-batches reach the loader, so a lazy split decodes nothing of the other ranks' samples;
    # the workers die with this process (``die_with_parent``).
    loader = DataLoader(train, batch_sampler=sampler, num_workers=cfg.loader_workers, generator=generator,
                        worker_init_fn=worker_init(), pin_memory=env.device.type == "cuda")  # fmt: skip
    epochs = -(-t.total // per_epoch)
    bar = progress(per_epoch, t.state.batch, f"epoch {epoch + 1}/{epochs}", env.is_main)
    t.task.train()
    total, seen = torch.tensor(t.state.epoch_loss, device=env.device), t.state.epoch_samples  # resumed mid-epoch
    since, tick = 0, time.perf_counter()
    for micro, size in zip(_steps(loader, cfg.grad_accum), sampler.global_sizes(), strict=True):
        out = train_step(t, micro, size, cfg, env)
        t.state.step, t.state.batch, run.started = t.state.step + 1, t.state.batch + 1, True
        total, seen, since = total + out["loss"] * size, seen + size, since + size
        if cfg.log_every > 0 and t.state.step % cfg.log_every == 0:
            rate, since, tick = since / (time.perf_counter() - tick), 0, time.perf_counter()
            _log_step(t, out, rate, bar)
        bar.update()
        if _validation_due(t, cfg):
            t.log.write({"kind": "val", "step": t.state.step, "epoch": epoch + 1, **_validate(t, val, cfg, env, run)})
            t.task.train()
        stop = _finished(t)
        if stop or (cfg.save_every and t.state.step % cfg.save_every == 0):
            t.state.epoch_loss, t.state.epoch_samples = float(total), seen  # a resumed epoch reports the whole mean
            if not stop:
                _save_last(t, cfg, env, run)
        if stop:
            break
    bar.close()
    return float(total) / max(1, seen)


def _end_epoch(t: Training, val: Dataset, loss: float, seconds: float, epoch_done: bool, cfg: TrainConfig, env: Env,
               run: RunInfo) -> None:  # fmt: skip
    """Validate (``val_every=0``; also when the run ended mid-epoch), log the epoch, move the data position to the
    next epoch (unless the run ended mid-epoch: ``epoch_done`` False) and rewrite ``last/``."""
    scores = _validate(t, val, cfg, env, run) if cfg.val_every == 0 else {}
    scored = t.ema if t.ema is not None else t.task
    monitor = getattr(scored, "monitor", None)  # a task's own per-epoch scores (logged only, never selecting)
    monitored = monitor(t.state.epoch + 1, _finished(t)) if callable(monitor) else {}
    record = {"kind": "epoch", "epoch": t.state.epoch + 1, "step": t.state.step, "train_loss": loss, **scores,
              **monitored, "lr": _base_lr(t), "seconds": seconds}  # fmt: skip
    if epoch_done:
        t.state.epoch, t.state.batch, t.state.epoch_loss, t.state.epoch_samples = t.state.epoch + 1, 0, 0.0, 0
    t.state.history.append(record)
    t.log.write(record)
    _save_last(t, cfg, env, run)
    if env.is_main:
        metric = t.task.primary_metric
        shown = f"  val {metric} {scores[f'val_{metric}']:.2f}{'  *best' if scores['best'] else ''}" if scores else ""
        print(f"epoch {record['epoch']:3d}  loss {loss:.4f}{shown}  ({seconds:.1f}s)", flush=True)


def _frozen_bf16(cfg: TrainConfig, env: Env) -> bool:
    """Whether ``fit`` stores frozen weights in bf16: bf16 training, ``train.frozen_bf16``, and not FSDP (which
    shards a module's parameters as one flat tensor of a single dtype)."""
    return cfg.precision == "bf16" and cfg.frozen_bf16 and not (env.distributed and cfg.strategy == "fsdp")


def fit(task: nn.Module, train: Dataset, val: Dataset, cfg: TrainConfig, env: Env, run: RunInfo) -> TrainState:
    """Train ``task`` for ``train.epochs`` or ``train.steps`` (continuing from ``run.dir/last`` if ``run.resume``)
    until the end or an early stop; returns the counters. ``select=last`` writes ``checkpoint/`` at the end.

    Every rank calls this with the same arguments; rank 0 prints, logs and writes the checkpoints.
    """
    check_train_values(cfg)
    with frozen_weights_in_bf16(task, _frozen_bf16(cfg, env)):
        t, per_epoch = _start(task, len(train), cfg, env, run)
        if per_epoch == 0:
            raise ConfigError(f"train split of {len(train)} samples holds no global batch of {cfg.batch_size}")
        while not _finished(t):
            started = time.perf_counter()
            loss = _train_epoch(t, (train, val), per_epoch, cfg, env, run)
            _end_epoch(t, val, loss, time.perf_counter() - started, t.state.batch == per_epoch, cfg, env, run)
        if cfg.checkpoint and cfg.select == "last":
            _save_model(t, run, env, {"selected": "last"})
    t.log.close()
    if env.is_main and t.state.history:
        print("\n" + summary_table(t.state.history, task.primary_metric), flush=True)
    return t.state
