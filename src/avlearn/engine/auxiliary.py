"""The auxiliary-optimizer hook: a model part trained by its own optimizer, several inner steps per training step.

CMG's CLUB mutual-information estimator is the case in point: before the main loss of a batch is computed, the
estimator ``q_theta`` takes ``k`` Adam steps on its log-likelihood of *detached* features; the main loss then uses
the updated estimator (whose parameters the main optimizer never touches).

The protocol: the model (the task module that ``fit`` trains) may define ``auxiliary() -> Auxiliary | None``.
``fit`` calls it once, builds the auxiliary optimizer on ``Auxiliary.params`` (left out of the main optimizer's
parameter groups, of its gradient clipping and of DDP's gradient all-reduce), and in every optimizer step, before
the main forward:

1. ``prepare(batch)`` runs once per micro-batch of this rank, under ``torch.no_grad`` and the run's autocast (e.g.
   the encoder features the estimator reads; default: the batch itself);
2. ``steps`` times: zero the auxiliary gradients; for each micro-batch backpropagate ``loss(prepared)`` weighted by
   its share of the global batch (as the main loss is); average the gradients over the processes (so every rank's
   auxiliary parameters stay identical); step the auxiliary optimizer (through its own gradient scaler under fp16).

The auxiliary learning rate is constant (no schedule, no clipping). Its optimizer (and scaler) state goes into
``last/``, so a resumed run continues exactly. Not supported with ``train.strategy=fsdp``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from avlearn.distributed import all_reduce_mean_
from avlearn.engine.optim import build_optimizer
from avlearn.errors import ConfigError


@dataclass
class Auxiliary:
    """What a model asks of the engine for its auxiliary part.

    Attributes:
        params: The parameters the auxiliary optimizer trains (and only it).
        loss: The auxiliary loss (a scalar mean over the micro-batch) of ``prepare(batch)``.
        steps: Inner optimizer steps per training step (CMG's CLUB: 5).
        lr: Its constant learning rate.
        optimizer: ``adam``, ``adamw``, ``sgd`` (momentum 0.9) or ``lars``.
        weight_decay: Its weight decay.
        prepare: ``batch -> inputs of loss``, run once per micro-batch without gradients; None = the batch.
    """

    params: list[nn.Parameter]
    loss: Callable[[Any], torch.Tensor]
    steps: int = 1
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    prepare: Callable[[dict], Any] | None = None


@dataclass
class AuxiliaryTraining:
    """The live auxiliary part of a run: the model's request, its optimizer and (fp16) gradient scaler."""

    spec: Auxiliary
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None


def find_auxiliary(model: nn.Module) -> Auxiliary | None:
    """``model.auxiliary()`` if the model defines it (and it returns one), else None."""
    hook = getattr(model, "auxiliary", None)
    spec = hook() if callable(hook) else None
    if spec is not None and (spec.steps < 1 or not list(spec.params)):
        raise ConfigError(f"{type(model).__name__}.auxiliary(): needs steps >= 1 and some parameters")
    return spec


def build_auxiliary(
    spec: Auxiliary | None, scaler: Callable[[], torch.amp.GradScaler | None]
) -> AuxiliaryTraining | None:
    """The auxiliary optimizer (its defaults: betas 0.9/0.999, eps 1e-8, momentum 0.9) and its own scaler."""
    if spec is None:
        return None
    settings = SimpleNamespace(optimizer=spec.optimizer, lr=spec.lr, betas=(0.9, 0.999), eps=1e-8, momentum=0.9,
                               nesterov=False, lars_eta=0.001)  # fmt: skip
    group = {"params": list(spec.params), "lr": spec.lr, "weight_decay": spec.weight_decay, "name": "auxiliary"}
    return AuxiliaryTraining(spec, build_optimizer([group], settings), scaler())


def auxiliary_steps(aux: AuxiliaryTraining, micro: list[tuple[dict, float]], autocast: Callable[[], Any]) -> None:
    """The inner steps of one training step over this rank's ``(batch on device, weight)`` micro-batches."""
    prepare = aux.spec.prepare or (lambda batch: batch)
    with torch.no_grad(), autocast():
        inputs = [(prepare(batch), weight) for batch, weight in micro]
    for _ in range(aux.spec.steps):
        aux.optimizer.zero_grad(set_to_none=True)
        for x, weight in inputs:
            with autocast():
                loss = aux.spec.loss(x) * weight
            (aux.scaler.scale(loss) if aux.scaler is not None else loss).backward()
        for p in aux.spec.params:
            if p.grad is not None:
                all_reduce_mean_(p.grad)
        if aux.scaler is not None:
            aux.scaler.step(aux.optimizer)
            aux.scaler.update()
        else:
            aux.optimizer.step()
