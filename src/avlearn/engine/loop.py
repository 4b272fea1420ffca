"""The training loop, top to bottom: AdamW, warmup + cosine, optional bf16 autocast and gradient accumulation,
validation every epoch, and selection of the best epoch on the validation split (never the test split).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from avlearn.config.schema import TrainConfig


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def autocast(cfg: TrainConfig, device: torch.device) -> torch.autocast:
    """bf16 autocast when ``precision=bf16``, else a disabled context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a batch dict to ``device`` (other values are kept)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.no_grad()
def predict_all(task: nn.Module, data: Dataset, batch_size: int, device: torch.device, cfg: TrainConfig) -> dict:
    """Run ``task.predict`` over ``data``; returns the predictions and targets concatenated over batches."""
    task.eval()
    preds: dict[str, list] = {}
    targets: dict[str, list] = {}
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        batch = to_device(batch, device)
        with autocast(cfg, device):
            out = task.predict(batch)
        for key, value in out.items():
            preds.setdefault(key, []).append(value.float().cpu() if value.is_floating_point() else value.cpu())
        for key, value in batch.items():
            targets.setdefault(key, []).append(value.cpu() if torch.is_tensor(value) else value)
    join = lambda parts: torch.cat(parts) if torch.is_tensor(parts[0]) else [x for p in parts for x in p]  # noqa: E731
    return {"preds": {k: join(v) for k, v in preds.items()}, "targets": {k: join(v) for k, v in targets.items()}}


def evaluate(task: nn.Module, data: Dataset, batch_size: int, device: torch.device, cfg: TrainConfig) -> dict:
    """The task's official scores on ``data``."""
    out = predict_all(task, data, batch_size, device, cfg)
    return task.score(out["preds"], out["targets"])


def _train_epoch(task, loader, optimizer, schedule, cfg, device, desc) -> float:  # noqa: ANN001
    from tqdm import tqdm

    task.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    for i, batch in enumerate(bar):
        with autocast(cfg, device):
            loss = task(to_device(batch, device))["loss"]
        (loss / cfg.grad_accum).backward()
        if (i + 1) % cfg.grad_accum == 0 or i + 1 == len(loader):
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(task.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
        total, count = total + loss.item() * len(batch["labels"]), count + len(batch["labels"])
        bar.set_postfix(loss=f"{total / count:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
    return total / max(1, count)


def fit(
    task: nn.Module,
    train: Dataset,
    val: Dataset,
    cfg: TrainConfig,
    device: torch.device,
    log_path: Path,
    on_best: Callable[[int, dict], None],
    seed: int = 0,
) -> list[dict]:
    """Train ``task`` for ``cfg.epochs``; after each epoch score ``val``, log a JSON line, and call ``on_best``
    (epoch, scores) when the primary metric improves. Returns the per-epoch history."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, generator=generator, drop_last=False)
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
    total, warmup = cfg.epochs * steps_per_epoch, max(1, int(cfg.warmup_epochs * steps_per_epoch))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    history, best = [], -math.inf
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        loss = _train_epoch(task, loader, optimizer, schedule, cfg, device, f"epoch {epoch}/{cfg.epochs}")
        scores = evaluate(task, val, cfg.batch_size, device, cfg)
        record = {"epoch": epoch, "train_loss": loss, **{f"val_{k}": v for k, v in scores.items()},
                  "seconds": time.perf_counter() - start}  # fmt: skip
        history.append(record)
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        primary = scores[task.primary_metric]
        improved = primary > best
        best = max(best, primary)
        if improved:
            on_best(epoch, scores)
        print(
            f"epoch {epoch:3d}/{cfg.epochs}  loss {loss:.4f}  val {task.primary_metric} {primary:.2f}"
            f"{'  *best' if improved else ''}  ({record['seconds']:.1f}s)",
            flush=True,
        )
    return history
