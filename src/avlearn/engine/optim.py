"""Optimizer, parameter groups and learning-rate schedule of a run (``train.optimizer``, ``train.schedule``, ...).

``param_groups`` sorts the trainable parameters into groups by learning-rate multiplier (``train.lr_mult``,
``train.layer_decay``), weight decay (``train.no_decay``) and ramp (``train.lr_ramp``); ``build_optimizer`` makes
AdamW, Adam, SGD or LARS over them; ``build_schedule`` is a per-step ``LambdaLR`` whose factor (``schedule_factor``)
multiplies every group's ``lr_scale * train.lr``, times ``ramp_factor`` for a ramped group. See docs/training.md,
"The optimisation".
"""

from __future__ import annotations

import fnmatch
import math
import re
from typing import Any

import torch
from torch import nn

from avlearn.config.schema import TrainConfig
from avlearn.errors import ConfigError

# The last component of a parameter's name that marks a learned token or position embedding (no weight decay).
TOKEN_NAME = re.compile(r".*(token|latent|pos_embed|pos_emb|position|prompt).*")


# train key -> (test, what it must be): numeric ranges that the schema's types cannot express.
RANGES = {
    "steps": (lambda v: v >= 0, ">= 0 (0 = use train.epochs)"),
    "layer_decay": (lambda v: 0 < v <= 1, "in (0, 1] (1 = off)"),
    "min_lr_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "step_every": (lambda v: v > 0, "> 0 epochs"),
    "step_gamma": (lambda v: v > 0, "> 0"),
    "betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    "val_every": (lambda v: v >= -1, ">= -1 (0 = each epoch end, -1 = never)"),
    "patience": (lambda v: v >= 0, ">= 0 (0 = no early stopping)"),
}


def check_train_values(cfg: TrainConfig) -> None:
    """A one-line ConfigError for the first out-of-range ``train`` value of ``RANGES``, or for validation turned
    off (``val_every=-1``) while selection or early stopping needs it."""
    for key, (valid, expected) in RANGES.items():
        value = getattr(cfg, key)
        if not valid(value):
            raise ConfigError(f"train.{key}={value!r} is not valid; expected {expected}")
    if cfg.val_every == -1 and (cfg.select == "best" or cfg.patience > 0):
        raise ConfigError("train.val_every=-1 (never validate) needs train.select=last and train.patience=0")


def _matches(name: str, pattern: str, key: str = "lr_mult") -> bool:
    """``name`` is the module ``pattern`` or inside it, matches it as a glob, or matches it as a full regex (a
    pattern that is none of these is an error naming ``train.<key>``)."""
    if name == pattern or name.startswith(pattern + ".") or fnmatch.fnmatchcase(name, pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error as err:
        raise ConfigError(f"train.{key}: {pattern!r} is neither a module name, a glob nor a regex ({err})") from None


def lr_multiplier(name: str, lr_mult: dict[str, float]) -> float:
    """The multiplier of the first ``train.lr_mult`` pattern that matches ``name`` (1.0 when none does)."""
    for pattern, mult in lr_mult.items():
        if _matches(name, pattern):
            if mult < 0:
                raise ConfigError(f"train.lr_mult[{pattern!r}]={mult}: expected a multiplier >= 0")
            return float(mult)
    return 1.0


def ramp_fraction(name: str, lr_ramp: dict[str, float]) -> tuple[float, str | None]:
    """The ramp fraction of the first ``train.lr_ramp`` pattern that matches ``name``, and that pattern ((0.0,
    None) when none does)."""
    for pattern, fraction in lr_ramp.items():
        if _matches(name, pattern, "lr_ramp"):
            if not 0 < fraction <= 1:
                raise ConfigError(f"train.lr_ramp[{pattern!r}]={fraction}: expected a fraction of the run in (0, 1]")
            return float(fraction), pattern
    return 0.0, None


def _check_ramped(groups: dict[tuple[float, bool, float], dict[str, Any]], matched: set[str], cfg: TrainConfig
                  ) -> None:  # fmt: skip
    """Every ``train.lr_ramp`` pattern must match a trained parameter, and some group must not ramp (the logged
    learning rate is that of an unramped group; ramping everything is a warmup: ``train.warmup_epochs``)."""
    unmatched = [pattern for pattern in cfg.lr_ramp if pattern not in matched]
    if unmatched:
        raise ConfigError(f"train.lr_ramp: {unmatched[0]!r} matches no trained parameter (a module name, glob or "
                          "regex of parameter names, as train.lr_mult)")  # fmt: skip
    if groups and all(key[2] > 0 for key in groups):
        raise ConfigError("train.lr_ramp ramps every trained parameter; ramp a subset (for all of them use "
                          "train.warmup_epochs)")  # fmt: skip


def decays(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """Whether weight decay applies to ``param`` (``train.no_decay=true``).

    Not decayed: every parameter of at most one dimension (biases, norm weights and shifts, learned scales and
    1-D tokens), the weights of ``nn.Embedding`` modules, and parameters whose own name (the part after the last
    dot) contains ``token``, ``latent``, ``pos_embed``, ``pos_emb``, ``position`` or ``prompt`` (class tokens,
    latents, position embeddings, learned prompts). Everything else (Linear / conv / attention weights) decays.
    """
    return param.ndim > 1 and not isinstance(module, nn.Embedding) and not TOKEN_NAME.fullmatch(name.rsplit(".", 1)[-1])


def _layer_scale(model: nn.Module, name: str, cfg: TrainConfig) -> float:
    """``decay ** (num_layers + 1 - layer_id)``: 1 for the head (id ``num_layers + 1``), less towards the input."""
    if cfg.layer_decay == 1.0:
        return 1.0
    if not (callable(getattr(model, "layer_id", None)) and callable(getattr(model, "num_layers", None))):
        raise ConfigError(
            f"train.layer_decay={cfg.layer_decay} needs a model with layer_id(name) and num_layers(); "
            f"{type(model).__name__} has none (set train.layer_decay=1.0)"
        )
    return cfg.layer_decay ** (model.num_layers() + 1 - model.layer_id(name))


def param_groups(model: nn.Module, cfg: TrainConfig, exclude: set[int] = frozenset()) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: one per distinct (lr scale, weight decay), in order of first appearance.

    Each group: ``params``, ``name``, ``lr_scale`` (multiplier of ``train.lr``: ``train.lr_mult`` times the
    layer decay), ``lr`` (= ``lr_scale * train.lr``, what the schedule then multiplies) and ``weight_decay``
    (``train.weight_decay``, or 0 for parameters ``decays`` rejects when ``train.no_decay``); a group that
    ``train.lr_ramp`` ramps also has ``lr_ramp`` (its fraction of the run). Only parameters with
    ``requires_grad``; those whose multiplier is 0 and those in ``exclude`` (ids: the auxiliary optimizer's) are
    left out. Layer decay reads the model's ``layer_id(param_name) -> int`` and ``num_layers() -> int``.
    """
    owners = {f"{m_name}.{p_name}".lstrip("."): m for m_name, m in model.named_modules()
              for p_name, _ in m.named_parameters(recurse=False)}  # fmt: skip
    groups: dict[tuple[float, bool, float], dict[str, Any]] = {}
    matched: set[str] = set()  # the train.lr_ramp patterns that matched a trained parameter
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in exclude:
            continue
        scale = lr_multiplier(name, cfg.lr_mult)
        if scale == 0.0:
            continue
        scale *= _layer_scale(model, name, cfg)
        decay = not cfg.no_decay or decays(name, param, owners[name])
        ramp, pattern = ramp_fraction(name, cfg.lr_ramp)
        matched |= {pattern} if pattern is not None else set()
        key = (scale, decay, ramp)
        if key not in groups:
            groups[key] = _new_group(scale, decay, ramp, cfg)
        groups[key]["params"].append(param)
    _check_ramped(groups, matched, cfg)
    return list(groups.values())


def _new_group(scale: float, decay: bool, ramp: float, cfg: TrainConfig) -> dict[str, Any]:
    """An empty parameter group of lr multiplier ``scale``, weight decay or not, ramp fraction ``ramp`` (0: none)."""
    label = ("decay" if decay else "no_decay") + (f" lr x{scale:.4g}" if scale != 1.0 else "")
    group = {"params": [], "name": label, "lr_scale": scale, "lr": cfg.lr * scale,
             "weight_decay": cfg.weight_decay if decay else 0.0}  # fmt: skip
    if ramp > 0:
        group["name"] += f" ramp {ramp:g}"
        group["lr_ramp"] = ramp
    return group


def describe_param_groups(groups: list[dict[str, Any]]) -> str:
    """A table: group name, number of tensors, number of parameters, learning rate, weight decay."""
    rows = [f"{'group':<24} {'tensors':>7} {'params':>12} {'lr':>10} {'weight_decay':>12}"]
    for g in groups:
        count = sum(p.numel() for p in g["params"])
        rows.append(f"{g['name']:<24} {len(g['params']):>7} {count:>12,} {g['lr']:>10.3g} {g['weight_decay']:>12.3g}")
    return "\n".join(rows)


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017), in the form MAE and SimCLR use for linear probing.

    For each parameter ``w`` with gradient ``g``: if ``w.ndim > 1`` (weights), ``u = g + wd * w`` and
    ``u *= eta * ||w|| / ||u||`` (the trust ratio; 1 when either norm is 0); parameters of at most one dimension
    (biases, norms) get neither weight decay nor the trust ratio (``u = g``). Then heavy-ball momentum:
    ``m = momentum * m + u``, ``w -= lr * m``.
    """

    def __init__(self, params: Any, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, eta: float = 0.001):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "eta": eta})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                update = w.grad
                if w.ndim > 1:
                    update = update.add(w, alpha=group["weight_decay"])
                    w_norm, u_norm = torch.linalg.vector_norm(w), torch.linalg.vector_norm(update)
                    ratio = torch.where((w_norm > 0) & (u_norm > 0), group["eta"] * w_norm / u_norm, 1.0)
                    update = update * ratio
                state = self.state[w]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(w)
                buf = state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                w.add_(buf, alpha=-group["lr"])
        return loss


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer`` over ``groups``: adamw / adam (``betas``, ``eps``), sgd (``momentum``, ``nesterov``),
    lars (``momentum``, ``lars_eta``). Each group's own ``lr`` and ``weight_decay`` apply."""
    if cfg.optimizer in ("adamw", "adam"):
        kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return kind(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, eta=cfg.lars_eta)
    raise ConfigError(f"train.optimizer={cfg.optimizer!r} is not valid; expected one of: adamw, adam, sgd, lars")


def schedule_factor(step: int, total: int, warmup: int, cfg: TrainConfig, per_epoch: int = 1) -> float:
    """The learning-rate factor of optimizer step ``step`` (0-based) of ``total``.

    Warmup: ``(step + 1) / warmup`` for the first ``warmup`` steps (linear, reaching 1 at step ``warmup - 1``).
    Then ``train.schedule``: ``cosine`` from 1 to ``train.min_lr_ratio`` at ``total``; ``linear`` from 1 to 0 at
    ``total``; ``step``: ``train.step_gamma ** (step // (train.step_every * per_epoch))`` (counted from step 0,
    as ``StepLR`` stepped per epoch); ``constant``: 1.
    """
    if step < warmup:
        return (step + 1) / warmup
    done = min(1.0, (step - warmup) / max(1, total - warmup))
    if cfg.schedule == "cosine":
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * done))
    if cfg.schedule == "linear":
        return 1.0 - done
    if cfg.schedule == "step":
        return cfg.step_gamma ** (step // max(1, round(cfg.step_every * per_epoch)))
    return 1.0


def ramp_factor(step: int, length: float) -> float:
    """The ``train.lr_ramp`` multiplier of optimizer step ``step`` (0-based) for a ramp of ``length`` steps: a half
    cosine ``0.5 - 0.5 * cos(pi * step / length)`` from 0 at step 0 to 1 at ``length``, then 1 (DeepAVFusion's
    ramp of its pretrained towers, ``pt_lr_mult`` 0 -> 1 over ``pt_warmup_epochs``; 1 when ``length`` is 0)."""
    return 0.5 - 0.5 * math.cos(math.pi * step / length) if step < length else 1.0


def schedule_length(cfg: TrainConfig, per_epoch: int) -> tuple[int, int]:
    """``(total, warmup)`` in optimizer steps: ``train.steps`` if set, else ``train.epochs * per_epoch``; warmup
    ``train.warmup_epochs * per_epoch`` rounded, at least 1."""
    total = cfg.steps if cfg.steps > 0 else cfg.epochs * per_epoch
    return total, max(1, round(cfg.warmup_epochs * per_epoch))


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step: every group's lr is its ``lr_scale * train.lr`` times
    ``schedule_factor``, and for a group with ``lr_ramp`` (a fraction of the run's steps) times ``ramp_factor``."""
    total, warmup = schedule_length(cfg, per_epoch)

    def factor(ramp: float) -> Any:
        if ramp == 0:
            return lambda s: schedule_factor(s, total, warmup, cfg, per_epoch)
        return lambda s: schedule_factor(s, total, warmup, cfg, per_epoch) * ramp_factor(s, ramp * total)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(g.get("lr_ramp", 0.0)) for g in optimizer.param_groups])
