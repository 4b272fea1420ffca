"""Exponential moving average of the weights (``train.ema`` = the decay, e.g. 0.999; 0 = off).

After every optimizer step ``ema = decay * ema + (1 - decay) * weights`` for the floating-point parameters and
buffers; integer buffers (BatchNorm's batch counter) are copied. Validation, model selection and the saved best
checkpoint then use the averaged copy. Not combined with FSDP (the copy would need its own sharding).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to average into."""
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Move ``ema``'s floating-point tensors a step ``1 - decay`` towards ``model``'s; copy the others."""
    pairs = [*zip(ema.parameters(), model.parameters(), strict=True), *zip(ema.buffers(), model.buffers(), strict=True)]
    floats = [(e, m) for e, m in pairs if e.is_floating_point()]
    if floats:
        torch._foreach_lerp_([e for e, _ in floats], [m.detach() for _, m in floats], 1.0 - decay)
    for e, m in pairs:
        if not e.is_floating_point():
            e.copy_(m)
