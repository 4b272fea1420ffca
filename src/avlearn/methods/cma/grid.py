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
    """Logits (G, B, C) of G stacked heads on normalised features z (B, d) or (G, B, d)."""
    if cfg.head == "adapter":
        hidden = F.relu(z @ params["down"].transpose(1, 2))  # (G, B, d/r)
        z = cfg.residual * F.relu(hidden @ params["up"].transpose(1, 2)) + (1 - cfg.residual) * z  # (G, B, d)
    return (z @ params["weight"].transpose(1, 2)) * cfg.scale  # (G, B, C)


def correct_counts(
    params: dict[str, torch.Tensor], x: torch.Tensor, labels: torch.Tensor, cfg: HeadConfig
) -> torch.Tensor:
    """(G,) numbers of correctly classified rows of x (n, d) for each stacked head."""
    with torch.no_grad():
        return (stacked_logits(params, F.normalize(x, dim=-1), cfg).argmax(dim=-1) == labels).sum(dim=1)


class _StackedAdamW:
    """AdamW over stacked parameters (G, ...) with per-configuration rates: the arithmetic of
    ``torch.optim.AdamW`` (decoupled decay first, bias-corrected moments), from (steps, G) tables of the decay
    factor ``1 - lr * wd`` and the step size ``lr / (1 - beta1^t)``. The second moment's correction c2 =
    sqrt(1 - beta2^t) is folded into the step: ``m / (sqrt(v) / c2 + eps) = c2 m / (sqrt(v) + c2 eps)`` (two
    passes over the weights fewer; equal up to rounding)."""

    def __init__(self, params: dict[str, torch.Tensor], rates: torch.Tensor, wds: torch.Tensor) -> None:
        self.params = params
        self.moments = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in params.items()}
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
            p.addcdiv_(m * self.step_size[t].view(shape), v.sqrt().add_(eps))


def _order(data: FewShotFeatures, cfg: HeadConfig, sizes: tuple[int, ...], steps: int, seed: int) -> list[torch.Tensor]:
    """Per batch size: the rows of ``cat(image, text)`` each step reads, (steps, bs)."""
    orders = []
    for bs in sizes:
        streams = batch_streams(cfg.modality, bs, data, seed)
        offsets = (0, len(data.image))
        order = torch.cat([s.take(steps) + o for s, o in zip(streams, offsets, strict=True) if s], dim=1)
        orders.append(order.to(data.image.device))
    return orders


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


def _groups(sizes: list[int]) -> list[slice]:
    """The slices of equal consecutive batch sizes in ``sizes``."""
    bounds = [0] + [i for i in range(1, len(sizes)) if sizes[i] != sizes[i - 1]] + [len(sizes)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _grid_loss(
    params: dict[str, torch.Tensor], groups: list[slice], rows: list[torch.Tensor], pool: torch.Tensor,
    labels: torch.Tensor, cfg: HeadConfig,
) -> torch.Tensor:  # fmt: skip
    """The sum over configurations of each one's mean cross-entropy on its batch; each slice of configurations reads
    the batch ``rows`` (B,) of the normalised ``pool``."""
    total = pool.new_zeros(())
    for configs, batch in zip(groups, rows, strict=True):
        logits = stacked_logits({k: p[configs] for k, p in params.items()}, pool[batch], cfg)  # (G_k, B, C)
        target = labels[batch].repeat(configs.stop - configs.start)  # (G_k * B,)
        total = total + F.cross_entropy(logits.flatten(0, 1), target, reduction="sum") / len(batch)
    return total


class _LinearGrads:
    """``weight.grad`` (G, C, d) of ``_grid_loss`` for linear heads, in closed form (no autograd graph, which is most
    of a step's time on a CPU): d mean-CE / dW = (softmax - onehot)^T (scale z) / B per configuration.

    Every step's batches of all batch sizes are one matrix (B_1 + B_2 + ..., d) and all heads another (G * C, d): one
    product each way, the rows of a batch size weighted ``1 / B_k`` for its configurations and 0 for the others
    (``weights`` (sum B_k, G, 1); the wasted cross terms cost less than a product per batch size). The pool is kept
    multiplied by the logit scale, so the first product gives the logits."""

    def __init__(self, groups: list[slice], rows: list[torch.Tensor], pool: torch.Tensor, labels: torch.Tensor,
                 num_classes: int, cfg: HeadConfig) -> None:  # fmt: skip
        self.rows = torch.cat(rows, dim=1)  # (steps, sum B_k)
        self.scaled = pool * cfg.scale  # (N + M, d)
        self.onehot = F.one_hot(labels, num_classes).to(pool.dtype).unsqueeze(1)  # (N + M, 1, C)
        self.weights = pool.new_zeros(self.rows.shape[1], groups[-1].stop, 1)  # (sum B_k, G, 1)
        start = 0
        for configs, batch in zip(groups, rows, strict=True):
            self.weights[start : start + batch.shape[1], configs] = 1 / batch.shape[1]
            start += batch.shape[1]

    def __call__(self, weight: torch.Tensor, step: int) -> None:
        """Write the gradient of ``step``'s batches into ``weight.grad``."""
        if weight.grad is None:
            weight.grad = torch.empty_like(weight)
        batch = self.rows[step]
        z, heads = self.scaled[batch], weight.view(-1, weight.shape[-1])  # (B, d), (G * C, d)
        logits = (z @ heads.T).view(len(batch), *weight.shape[:2])  # (B, G * C) -> (B, G, C)
        # softmax written out: torch.softmax over a last dim of C ~ 10 took 4x as long on this CPU
        delta = (logits - logits.amax(dim=-1, keepdim=True)).exp_()  # (B, G, C)
        delta.div_(delta.sum(dim=-1, keepdim=True)).sub_(self.onehot[batch]).mul_(self.weights)
        torch.matmul(delta.view(len(batch), -1).T, z, out=weight.grad.view(heads.shape))  # (G * C, d)


def train_grid(
    data: FewShotFeatures, head_cfg: HeadConfig, sched: ScheduleConfig, grid: GridConfig, seed: int
) -> GridResult:
    """Train every configuration of ``grid`` at once (module docstring); the features' dtype is the compute dtype."""
    sizes = valid_batch_sizes(grid.batch_sizes, head_cfg.modality, len(data.image), len(data.text))
    configs = [(lr, wd, bs) for lr in grid.lrs for wd in grid.wds for bs in sizes]
    # Work in batch-size order, so that each batch size's configurations are one slice of the stack.
    order = sorted(range(len(configs)), key=lambda i: sizes.index(configs[i][2]))
    work = [configs[i] for i in order]
    groups = _groups([bs for _, _, bs in work])
    zero_shot = data.zero_shot()
    start = initial_state(head_cfg, zero_shot, seed)
    params = {k: t.expand(len(work), *t.shape).clone() for k, t in start.items()}  # (G, ...)
    autograd = head_cfg.head != "linear"  # linear heads take their gradient in closed form (``_LinearGrads``)
    for p in params.values():
        p.requires_grad_(autograd)
    rates = learning_rates(sched, [lr for lr, _, _ in work])  # (steps, G)
    optimizer = _StackedAdamW(params, rates, torch.tensor([wd for _, wd, _ in work], dtype=torch.float64))
    pool = F.normalize(torch.cat([data.image, data.text]), dim=-1)  # (N + M, d)
    pool_labels = torch.cat([data.image_labels, data.text_labels])
    rows = _order(data, head_cfg, sizes, sched.iters, seed)  # per batch size (steps, bs)
    linear_grads = None if autograd else _LinearGrads(groups, rows, pool, pool_labels, data.num_classes, head_cfg)
    tracker = _Tracker(params, sched)
    points = set(tracker.steps)
    for done in range(sched.iters + 1):
        if done in points:
            acc = correct_counts(params, data.val, data.val_labels, head_cfg).double() / len(data.val_labels)
            if not tracker.update(done, acc):
                break
        if done == sched.iters:
            break
        if linear_grads is not None:
            linear_grads(params["weight"], done)
        else:
            for p in params.values():
                p.grad = None
            _grid_loss(params, groups, [r[done] for r in rows], pool, pool_labels, head_cfg).backward()
        optimizer.step(done)
    return _result(tracker, configs, order, data, head_cfg, zero_shot)


def _result(
    tracker: _Tracker, configs: list[tuple[float, float, int]], order: list[int], data: FewShotFeatures,
    cfg: HeadConfig, zero_shot: torch.Tensor,
) -> GridResult:  # fmt: skip
    """The tracker's outcome back in the seed's configuration order, with test accuracies and the selection."""
    back = torch.argsort(torch.tensor(order, device=tracker.best_acc.device))  # work position of each configuration
    state = {k: t[back] for k, t in tracker.state.items()}
    best_acc = tracker.best_acc[back]
    result = GridResult(configs, tracker.steps[: len(tracker.curve)], torch.stack(tracker.curve, dim=1)[back],
                        best_acc, tracker.best_step[back], state, int(torch.argmax(best_acc)))  # fmt: skip
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
