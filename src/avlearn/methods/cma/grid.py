"""Cross-Modal Adaptation's hyper-parameter grid (Lin et al., CVPR 2023) trained at once on cached features.

The seed trains each (learning rate, weight decay, batch size) configuration of a dataset / shot / seed as its own
12,800-step run, one after the other (1,890 runs for its linear probe), and picks per seed the configuration with the
best validation accuracy. Here all G configurations are one computation: the head parameters are stacked (G, ...),
each configuration keeps its own AdamW moments and learning-rate schedule (a (steps, G) table), the configurations
sharing a batch size share its batches (the sample order depends on the seed and batch split only, see
``avlearn.methods.cma.training``), and every step is one forward, one backward and one stacked AdamW update for the
whole grid. Validation accuracy of all G heads is measured at the evaluation points; each configuration keeps its own
best state (strictly better only) and stops, under ``patience``, on its own: a stopped configuration's best state no
longer changes, and the loop ends when every configuration has stopped. The result equals running
``avlearn.methods.cma.training.train_run`` for each configuration (``tests/unit/methods/test_cma.py``).

``train_grids`` stacks the grids of several splits (a protocol's shots x seeds) the same way: their training pools
are one pool, each (split, batch size) is a block of configurations reading its own rows of it, the blocks of one
batch size take one batched matrix product, and each split's validation set is padded to the longest (the padding
never counts). Splits keep their own seeds, starting heads and valid batch sizes; each split's result equals its
grid trained alone.

Selection: the configuration with the highest best validation accuracy, the first in the seed's order (learning
rate, then weight decay, then batch size) on ties; WiSE-FT test accuracy is reported for the configuration selected
by the plain head's validation accuracy, as in the seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avlearn.errors import ConfigError, DataError
from avlearn.methods.cma.heads import HeadConfig, initial_state, wiseft
from avlearn.methods.cma.training import (
    BETAS,
    EPS,
    FewShotFeatures,
    ScheduleConfig,
    batch_streams,
    eval_points,
    learning_rates,
    valid_batch_sizes,
)


@dataclass
class GridConfig:
    """The grid: every learning rate x weight decay x (valid) batch size. Defaults: the seed's linear-probe grid."""

    lrs: tuple[float, ...] = (1e-3, 1e-4)
    wds: tuple[float, ...] = (0.0, 1e-2, 1e-4)
    batch_sizes: tuple[int, ...] = (8, 32)

    def __post_init__(self) -> None:
        for key in ("lrs", "wds", "batch_sizes"):
            values = getattr(self, key)
            if not values or any(v < 0 for v in values) or (key != "wds" and any(v <= 0 for v in values)):
                raise ConfigError(f"cma grid.{key}={list(values)}: expected a non-empty list of positive numbers"
                                  f"{' (0 allowed)' if key == 'wds' else ''}")  # fmt: skip


# The seed's grids by head (its HYPER_DICT): linear probe, adapter, partial fine-tuning and ImageNet-ESC audio.
GRIDS = {
    "linear": GridConfig((1e-3, 1e-4), (0.0, 1e-2, 1e-4), (8, 32)),
    "adapter": GridConfig((1e-4, 1e-5, 1e-6, 1e-7), (0.0, 1e-3, 1e-5), (8,)),
    "partial": GridConfig((1e-5, 1e-6, 1e-7), (0.0, 1e-3, 1e-5), (8,)),
    "audio": GridConfig((0.1, 0.01, 1e-3, 1e-4), (0.0, 1e-2, 1e-4), (8,)),
}


@dataclass
class GridResult:
    """All configurations of one split, in the seed's order (lr, then wd, then bs).

    ``val_acc`` (G, E): accuracy at each of ``steps`` (nan once a configuration stopped); ``best_acc`` / ``best_step``
    (G,); ``state``: the best parameters, stacked (G, ...); ``test_acc`` / ``wise_acc`` (G,) when the split has a
    test set; ``selected``: the index of the chosen configuration.
    """

    configs: list[tuple[float, float, int]]
    steps: list[int]
    val_acc: torch.Tensor
    best_acc: torch.Tensor
    best_step: torch.Tensor
    state: dict[str, torch.Tensor]
    selected: int
    test_acc: torch.Tensor | None = None
    wise_acc: torch.Tensor | None = None


def stacked_logits(params: dict[str, torch.Tensor], z: torch.Tensor, cfg: HeadConfig) -> torch.Tensor:
    """Logits (..., B, C) of stacked heads (``weight`` (..., C, d)) on normalised features z (..., B, d), the leading
    dimensions broadcast: e.g. heads (G, C, d) on z (B, d), or heads (S, P, C, d) on z (S, 1, B, d)."""
    if cfg.head == "adapter":
        hidden = F.relu(z @ params["down"].transpose(-1, -2))  # (..., B, d/r)
        z = cfg.residual * F.relu(hidden @ params["up"].transpose(-1, -2)) + (1 - cfg.residual) * z  # (..., B, d)
    return (z @ params["weight"].transpose(-1, -2)) * cfg.scale  # (..., B, C)


def correct_counts(
    params: dict[str, torch.Tensor], x: torch.Tensor, labels: torch.Tensor, cfg: HeadConfig
) -> torch.Tensor:
    """Numbers of correctly classified rows of x (..., n, d) (labels (..., n)) for each stacked head: (G,) for heads
    (G, ...) on x (n, d); (S, P) for heads (S, P, ...) on x (S, 1, n, d)."""
    with torch.no_grad():
        return (stacked_logits(params, F.normalize(x, dim=-1), cfg).argmax(dim=-1) == labels).sum(dim=-1)


class _StackedAdamW:
    """AdamW over stacked parameters (G, ...) with per-configuration rates: the arithmetic of
    ``torch.optim.AdamW`` (decoupled decay first, bias-corrected moments), from (steps, G) tables of the decay
    factor ``1 - lr * wd`` and the step size ``lr / (1 - beta1^t)``. The second moment's correction c2 =
    sqrt(1 - beta2^t) is folded into the step: ``m / (sqrt(v) / c2 + eps) = c2 m / (sqrt(v) + c2 eps)`` (two
    passes over the weights fewer; equal up to rounding). Two scratch tensors per parameter are kept: a fresh
    allocation of this size each step costs more than the arithmetic on a CPU (new pages every time)."""

    def __init__(self, params: dict[str, torch.Tensor], rates: torch.Tensor, wds: torch.Tensor) -> None:
        self.params = params
        self.moments = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in params.items()}
        self.scratch = {k: (torch.empty_like(p), torch.empty_like(p)) for k, p in params.items()}
        like = next(iter(params.values()))
        steps = torch.arange(1, len(rates) + 1, dtype=torch.float64).unsqueeze(1)  # (steps, 1)
        self.correction2 = torch.sqrt(1 - BETAS[1] ** steps)  # (steps, 1)
        self.decay = (1 - rates * wds.unsqueeze(0)).to(like)  # (steps, G)
        self.step_size = (-rates / (1 - BETAS[0] ** steps) * self.correction2).to(like)  # (steps, G), negated

    @torch.no_grad()
    def step(self, t: int) -> None:
        """Apply step t (0-based) with the parameters' gradients."""
        eps = EPS * float(self.correction2[t])
        for name, p in self.params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)  # (G, 1, ...) to broadcast a per-configuration value
            m, v = self.moments[name]
            g = p.grad
            p.mul_(self.decay[t].view(shape))
            m.lerp_(g, 1 - BETAS[0])
            v.mul_(BETAS[1]).addcmul_(g, g, value=1 - BETAS[1])
            step, denom = self.scratch[name]
            torch.mul(m, self.step_size[t].view(shape), out=step)
            p.addcdiv_(step, torch.sqrt(v, out=denom).add_(eps))


class _Layout:
    """Where every configuration of every split sits in the stack. A block holds the P = ``len(lrs) * len(wds)``
    configurations of one (split, valid batch size), in (lr, wd) order; the blocks are ordered by batch size (the
    grid's order) then split, so each batch size's blocks are one slice of the stack, and configuration ``b * P + i``
    is block b's i-th. ``configs[s]`` / ``positions[s]``: split s's configurations in the seed's order (lr, then wd,
    then batch size) and their places in the stack."""

    def __init__(self, splits: Sequence[tuple[FewShotFeatures, int]], cfg: HeadConfig, grid: GridConfig) -> None:
        sizes = [valid_batch_sizes(grid.batch_sizes, cfg.modality, len(d.image), len(d.text)) for d, _ in splits]
        self.per_block = len(grid.lrs) * len(grid.wds)
        self.blocks = [(s, bs) for bs in dict.fromkeys(grid.batch_sizes) for s in range(len(splits)) if bs in sizes[s]]
        self.work = [(lr, wd) for _ in self.blocks for lr in grid.lrs for wd in grid.wds]  # (G,) in the stack
        place = {block: b for b, block in enumerate(self.blocks)}
        self.configs = [[(lr, wd, bs) for lr in grid.lrs for wd in grid.wds for bs in s_sizes] for s_sizes in sizes]
        self.positions = [
            [place[s, bs] * self.per_block + i * len(grid.wds) + j
             for i in range(len(grid.lrs)) for j in range(len(grid.wds)) for bs in s_sizes]
            for s, s_sizes in enumerate(sizes)
        ]  # fmt: skip
        self.slices = {}  # batch size -> its blocks' slice of ``blocks``
        for bs in dict.fromkeys(bs for _, bs in self.blocks):
            ids = [b for b, (_, size) in enumerate(self.blocks) if size == bs]
            self.slices[bs] = slice(ids[0], ids[-1] + 1)

    def blocked(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The stacked parameters (G, ...) viewed per block (blocks, P, ...)."""
        return {k: p.view(-1, self.per_block, *p.shape[1:]) for k, p in params.items()}


def _check_splits(splits: Sequence[tuple[FewShotFeatures, int]]) -> None:
    """One-line errors for splits that cannot share a stack."""
    if not splits:
        raise DataError("cma grid: no split to train")
    first = splits[0][0]
    for k, (data, _) in enumerate(splits):
        if (data.num_classes, data.image.shape[1], data.image.dtype, data.image.device) != (
            first.num_classes, first.image.shape[1], first.image.dtype, first.image.device
        ):  # fmt: skip
            raise DataError(f"cma grid: split {k} has {data.num_classes} classes, {data.image.shape[1]}-d "
                            f"{data.image.dtype} features on {data.image.device}; split 0 has {first.num_classes}, "
                            f"{first.image.shape[1]}-d {first.image.dtype} on {first.image.device}")  # fmt: skip


def _initial_params(
    splits: Sequence[tuple[FewShotFeatures, int]], layout: _Layout, cfg: HeadConfig, zero_shots: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The stacked starting parameters (G, ...): every configuration of a split starts from its ``initial_state``."""
    starts = [initial_state(cfg, zero_shot, seed) for zero_shot, (_, seed) in zip(zero_shots, splits, strict=True)]
    return {
        k: torch.stack([starts[s][k] for s, _ in layout.blocks]).repeat_interleave(layout.per_block, dim=0)
        for k in starts[0]
    }  # (G, ...)


def _pool(splits: Sequence[tuple[FewShotFeatures, int]]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Every split's normalised ``cat(image, text)`` in one pool (N, d), its labels (N,) and each split's offset."""
    parts = [torch.cat([data.image, data.text]) for data, _ in splits]
    offsets = torch.tensor([0] + [len(p) for p in parts[:-1]]).cumsum(0).tolist()
    labels = torch.cat([torch.cat([data.image_labels, data.text_labels]) for data, _ in splits])
    return F.normalize(torch.cat(parts), dim=-1), labels, offsets


def _rows(
    splits: Sequence[tuple[FewShotFeatures, int]], layout: _Layout, cfg: HeadConfig, steps: int, offsets: list[int]
) -> list[tuple[slice, torch.Tensor]]:
    """Per batch size: its blocks' slice and the pool rows each of them reads at every step, (steps, blocks, bs)."""
    parts = []
    for bs, blocks in layout.slices.items():
        per_block = []
        for s, _ in layout.blocks[blocks]:
            data, seed = splits[s]
            streams = batch_streams(cfg.modality, bs, data, seed)
            starts = (offsets[s], offsets[s] + len(data.image))  # the split's image and text rows in the pool
            per_block.append(torch.cat([st.take(steps) + o for st, o in zip(streams, starts, strict=True) if st], 1))
        parts.append((blocks, torch.stack(per_block, dim=1).to(splits[0][0].image.device)))  # (steps, blocks, bs)
    return parts


def _validation(
    splits: Sequence[tuple[FewShotFeatures, int]], layout: _Layout
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each block's split's validation features, padded to the longest: (blocks, 1, V, d), labels (blocks, 1, V)
    (padding -1: never correct) and the true counts (blocks, 1)."""
    vals = [splits[s][0] for s, _ in layout.blocks]
    longest, like = max(len(d.val) for d in vals), vals[0].val
    x = like.new_zeros(len(vals), longest, like.shape[1])  # (blocks, V, d)
    labels = torch.full((len(vals), longest), -1, dtype=torch.long, device=like.device)  # (blocks, V)
    for b, data in enumerate(vals):
        x[b, : len(data.val)], labels[b, : len(data.val)] = data.val, data.val_labels
    counts = torch.tensor([[len(d.val)] for d in vals], dtype=torch.float64, device=like.device)  # (blocks, 1)
    return x.unsqueeze(1), labels.unsqueeze(1), counts


class _Tracker:
    """Per-configuration validation curves, best states (strictly better only) and early stopping."""

    def __init__(self, params: dict[str, torch.Tensor], sched: ScheduleConfig) -> None:
        self.params, self.patience = params, sched.patience
        self.steps = eval_points(sched)
        g, device = next(iter(params.values())).shape[0], next(iter(params.values())).device
        self.curve: list[torch.Tensor] = []
        self.best_acc = torch.full((g,), -1.0, dtype=torch.float64, device=device)
        self.best_step = torch.zeros(g, dtype=torch.long, device=device)
        self.state = {k: p.detach().clone() for k, p in params.items()}
        self.stale = torch.zeros(g, dtype=torch.long, device=device)
        self.active = torch.ones(g, dtype=torch.bool, device=device)

    def update(self, done: int, acc: torch.Tensor) -> bool:
        """Record the accuracies (G,) after ``done`` steps; False once every configuration has stopped."""
        self.curve.append(torch.where(self.active, acc, math.nan))
        better = self.active & (acc > self.best_acc)
        self.best_acc = torch.where(better, acc, self.best_acc)
        self.best_step[better] = done
        for name, p in self.params.items():
            self.state[name][better] = p.detach()[better]
        self.stale = torch.where(better, 0, self.stale + 1)
        if self.patience is not None:
            self.active &= self.stale < self.patience
        return bool(self.active.any())


def _grid_loss(
    params: dict[str, torch.Tensor], rows: list[tuple[slice, torch.Tensor]], step: int, pool: torch.Tensor,
    labels: torch.Tensor, cfg: HeadConfig,
) -> torch.Tensor:  # fmt: skip
    """The sum over configurations of each one's mean cross-entropy on its batch at ``step``; ``params``: per block
    (blocks, P, ...); each batch size's blocks read their rows of the normalised ``pool``."""
    total = pool.new_zeros(())
    for blocks, steps_rows in rows:
        batch = steps_rows[step]  # (blocks_k, B)
        logits = stacked_logits({k: p[blocks] for k, p in params.items()}, pool[batch].unsqueeze(1), cfg)
        target = labels[batch].unsqueeze(1).expand(logits.shape[:-1])  # (blocks_k, P, B), as logits (.., B, C)
        total = total + F.cross_entropy(logits.flatten(0, 2), target.flatten(), reduction="sum") / batch.shape[1]
    return total


class _LinearGrads:
    """``weight.grad`` (G, C, d) of ``_grid_loss`` for linear heads, in closed form (no autograd graph, which is most
    of a step's time on a CPU): d mean-CE / dW = (softmax - onehot)^T (scale z) / B per configuration. Per batch
    size, one batched product each way over its blocks: the block's batch (B, d) against its P heads (P * C, d). The
    pool is kept multiplied by the logit scale, so the first product gives the logits."""

    def __init__(self, rows: list[tuple[slice, torch.Tensor]], pool: torch.Tensor, labels: torch.Tensor,
                 num_classes: int, per_block: int, cfg: HeadConfig) -> None:  # fmt: skip
        self.rows, self.num_classes, self.per_block = rows, num_classes, per_block
        self.scaled = pool * cfg.scale  # (N, d)
        self.onehot = F.one_hot(labels, num_classes).to(pool.dtype).unsqueeze(1)  # (N, 1, C)

    def __call__(self, weight: torch.Tensor, step: int) -> None:
        """Write the gradient of ``step``'s batches into ``weight.grad`` (G, C, d)."""
        if weight.grad is None:
            weight.grad = torch.empty_like(weight)
        heads = weight.view(-1, self.per_block * self.num_classes, weight.shape[-1])  # (blocks, P * C, d)
        grads = weight.grad.view(heads.shape)  # (blocks, P * C, d)
        for blocks, steps_rows in self.rows:
            batch = steps_rows[step]  # (blocks_k, B)
            z = self.scaled[batch]  # (blocks_k, B, d)
            logits = torch.bmm(z, heads[blocks].transpose(1, 2)).view(*batch.shape, -1, self.num_classes)
            # (blocks_k, B, P * C) -> (blocks_k, B, P, C); softmax written out: torch.softmax over a last dim of
            # C ~ 10 took 4x as long on this CPU
            delta = (logits - logits.amax(dim=-1, keepdim=True)).exp_()  # (blocks_k, B, P, C)
            delta.div_(delta.sum(dim=-1, keepdim=True)).sub_(self.onehot[batch]).div_(batch.shape[1])
            torch.bmm(delta.flatten(2).transpose(1, 2), z, out=grads[blocks])  # (blocks_k, P * C, d)


def train_grids(
    splits: Sequence[tuple[FewShotFeatures, int]], head_cfg: HeadConfig, sched: ScheduleConfig, grid: GridConfig
) -> list[GridResult]:
    """Train every configuration of ``grid`` on every (split, seed) of ``splits`` at once, e.g. all shots x seeds of
    a protocol (module docstring): one ``GridResult`` per split, each equal to ``train_grid`` of that split alone.
    The splits must share their classes, width, dtype (the compute dtype) and device."""
    _check_splits(splits)
    layout = _Layout(splits, head_cfg, grid)
    zero_shots = [data.zero_shot() for data, _ in splits]
    params = _initial_params(splits, layout, head_cfg, zero_shots)  # (G, ...)
    autograd = head_cfg.head != "linear"  # linear heads take their gradient in closed form (``_LinearGrads``)
    for p in params.values():
        p.requires_grad_(autograd)
    rates = learning_rates(sched, [lr for lr, _ in layout.work])  # (steps, G)
    optimizer = _StackedAdamW(params, rates, torch.tensor([wd for _, wd in layout.work], dtype=torch.float64))
    pool, pool_labels, offsets = _pool(splits)
    rows = _rows(splits, layout, head_cfg, sched.iters, offsets)
    num_classes = splits[0][0].num_classes
    linear_grads = None if autograd else _LinearGrads(rows, pool, pool_labels, num_classes, layout.per_block, head_cfg)
    val, val_labels, val_counts = _validation(splits, layout)
    tracker = _Tracker(params, sched)
    points, blocked = set(tracker.steps), layout.blocked(params)  # views (blocks, P, ...) of the stack
    for done in range(sched.iters + 1):
        if done in points:
            acc = correct_counts(blocked, val, val_labels, head_cfg).double() / val_counts  # (blocks, P)
            if not tracker.update(done, acc.flatten()):
                break
        if done == sched.iters:
            break
        if linear_grads is not None:
            linear_grads(params["weight"], done)
        else:
            for p in params.values():
                p.grad = None
            # views taken in the step, so that they are part of its autograd graph
            _grid_loss(layout.blocked(params), rows, done, pool, pool_labels, head_cfg).backward()
        optimizer.step(done)
    return [_result(tracker, layout, s, data, head_cfg, zero_shots[s]) for s, (data, _) in enumerate(splits)]


def train_grid(
    data: FewShotFeatures, head_cfg: HeadConfig, sched: ScheduleConfig, grid: GridConfig, seed: int
) -> GridResult:
    """Train every configuration of ``grid`` on one split at once (module docstring); the features' dtype is the
    compute dtype."""
    return train_grids([(data, seed)], head_cfg, sched, grid)[0]


def _result(
    tracker: _Tracker, layout: _Layout, split: int, data: FewShotFeatures, cfg: HeadConfig, zero_shot: torch.Tensor
) -> GridResult:  # fmt: skip
    """Split ``split``'s configurations from the tracker, in the seed's order, with test accuracies and the
    selection; its curve ends where its last configuration stopped."""
    index = torch.tensor(layout.positions[split], device=tracker.best_acc.device)  # stack place of each configuration
    state = {k: t[index] for k, t in tracker.state.items()}
    curve = torch.stack(tracker.curve, dim=1)[index]  # (G_s, E)
    evaluated = int((~curve.isnan()).any(dim=0).sum())
    best_acc = tracker.best_acc[index]
    result = GridResult(layout.configs[split], tracker.steps[:evaluated], curve[:, :evaluated], best_acc,
                        tracker.best_step[index], state, int(torch.argmax(best_acc)))  # fmt: skip
    if data.test is not None:
        wise = {**state, "weight": wiseft(state["weight"], zero_shot, cfg.wiseft)}
        result.test_acc = correct_counts(state, data.test, data.test_labels, cfg).double() / len(data.test_labels)
        result.wise_acc = correct_counts(wise, data.test, data.test_labels, cfg).double() / len(data.test_labels)
    return result


def seed_summary(results: Sequence[GridResult]) -> dict[str, tuple[float, float]]:
    """Mean and population standard deviation over seeds (one ``GridResult`` each, as the seed's ``eval.py``) of the
    selected configuration's ``val_acc``, ``test_acc``, ``wise_acc`` (WiSE-FT, selected by the plain head's
    validation accuracy) and ``best_step``, as fractions and steps."""
    if not results or any(r.test_acc is None for r in results):
        raise DataError("cma seed summary: needs one grid result per seed, each with test accuracies")
    picked = {
        "val_acc": [float(r.best_acc[r.selected]) for r in results],
        "test_acc": [float(r.test_acc[r.selected]) for r in results],
        "wise_acc": [float(r.wise_acc[r.selected]) for r in results],
        "best_step": [float(r.best_step[r.selected]) for r in results],
    }
    return {k: (statistics.fmean(v), statistics.pstdev(v)) for k, v in picked.items()}
