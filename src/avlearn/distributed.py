"""Collectives for module and loss code: the same call works in one process (a no-op) and under torchrun.

The lowest layer of the library (it imports torch only), so losses, layers and methods may use it:

* ``all_reduce_mean_(t)`` averages a tensor in place over the processes: for buffers that a module updates
  itself in ``forward`` (EMA codebook statistics, running counters), which DDP does not synchronise, so every
  rank must reduce the statistics before applying them to stay identical.
* ``all_gather_with_grad(x)`` concatenates every rank's ``x`` along dim 0, differentiably: a contrastive loss
  (info-NCE) sees the negatives of the whole global batch. The backward sums, over ranks, the gradients that
  reach each rank's own rows, so after DDP averages the parameter gradients over ranks they equal the gradient of
  one process computing the mean loss over the whole global batch (each rank's loss being the mean over its own
  rows, or the full global loss on every rank).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["world_size", "rank", "all_reduce_mean_", "all_gather_with_grad"]


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if world_size() > 1 else 0


@torch.no_grad()
def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """Replace ``tensor`` by its mean over all processes, in place, and return it (unchanged for one process)."""
    world = world_size()
    if world > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(world)
    return tensor


def _gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Every rank's ``x`` (rows may differ in number), concatenated in rank order; the row counts."""
    world = world_size()
    counts = torch.tensor([x.shape[0]], device=x.device)
    all_counts = [torch.zeros_like(counts) for _ in range(world)]
    dist.all_gather(all_counts, counts)
    sizes = [int(c) for c in all_counts]
    padded = x.new_zeros((max(sizes), *x.shape[1:]))  # (M, ...): all_gather needs equal shapes
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]), sizes


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 (autograd context)
        full, sizes = _gather_rows(x)
        ctx.start, ctx.count = sum(sizes[: rank()]), x.shape[0]
        return full

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's loss depends on this rank's rows
        return grad[ctx.start : ctx.start + ctx.count]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``(sum_r N_r, ...)``: every rank's ``x (N_r, ...)`` in rank order; gradients flow back to each rank's own
    rows (see the module docstring). ``x`` itself for one process."""
    return _GatherWithGrad.apply(x) if world_size() > 1 else x
