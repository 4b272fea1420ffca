"""Cross-Modal Adaptation's classifier heads (Lin et al., CVPR 2023): structure, initialisation and WiSE-FT.

A head maps a feature x (image, text or audio embedding of the frozen encoders, d wide) to class logits
``exp(logit) * W f(x / |x|)``: the input is L2-normalised inside the head, the logit scale is fixed (``logit`` 4.60517,
exp = 100, CLIP's), W (C, d) has no bias and is not re-normalised while it trains. ``f`` is the identity (``linear``)
or the residual ``adapter`` ``f(z) = r ReLU(W2 ReLU(W1 z)) + (1 - r) z`` (W1: d -> d / reduction, W2 back, no biases,
r = 0.2). W starts from the zero-shot text classifier (``zeroshot``: each class's template embeddings averaged, then
L2-normalised) or at random (PyTorch's ``nn.Linear`` default, uniform within 1/sqrt(d)); the adapter always starts at
random. ``modality`` (whether the text embeddings are training samples) is independent of ``init``.

Parameters are plain tensors in a dict (``weight`` (C, d); with the adapter ``down`` (d/r, d) and ``up`` (d, d/r)),
so one starting point serves a single run (:class:`CMAHead`) and a stacked grid (``avlearn.methods.cma.grid``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.config.schema import check_choices, choice
from avlearn.errors import ConfigError, DataError

HEADS = ("linear", "adapter")
INITS = ("zeroshot", "random")
MODALITIES = ("cross_modal", "uni_modal")
CLIP_LOGIT = 4.60517  # log(100): CLIP's logit scale, the seed's default (partial fine-tuning uses 4.0)


@dataclass
class HeadConfig:
    """One head: its structure (``head``), starting point (``init``), training samples (``modality``), fixed log
    logit scale, adapter shape and the WiSE-FT ratio (the weight of the zero-shot head in the interpolation)."""

    head: str = choice("linear", HEADS)
    init: str = choice("zeroshot", INITS)
    modality: str = choice("cross_modal", MODALITIES)
    logit: float = CLIP_LOGIT
    reduction: int = 4
    residual: float = 0.2
    wiseft: float = 0.5

    def __post_init__(self) -> None:
        check_choices(HeadConfig, self, "cma")
        if self.reduction < 1:
            raise ConfigError(f"cma.reduction={self.reduction}: expected an integer >= 1 (adapter width d / reduction)")
        for key in ("residual", "wiseft"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"cma.{key}={getattr(self, key)}: expected a ratio in [0, 1]")

    @property
    def scale(self) -> float:
        """The fixed multiplier of the logits, exp(logit)."""
        return math.exp(self.logit)


def zero_shot_weights(
    text: torch.Tensor, labels: torch.Tensor, num_classes: int, normalize_templates: bool = False
) -> torch.Tensor:
    """The zero-shot classifier (C, d): each class's text embeddings (one per template) averaged, then L2-normalised.

    ``text`` (M, d) holds the unnormalised embeddings, ``labels`` (M,) their classes. ``normalize_templates``
    normalises each embedding before the mean (the paper-era seed code and its ImageNet-ESC script); the seed's
    current code averages them raw. Both agree when every class has one template.
    """
    counts = torch.bincount(labels, minlength=num_classes)  # (C,)
    if len(counts) > num_classes or bool((counts == 0).any()):
        raise DataError(f"text features: labels must cover classes 0..{num_classes - 1} once or more each; "
                        f"got counts {counts.tolist()}")  # fmt: skip
    rows = F.normalize(text, dim=-1) if normalize_templates else text
    sums = text.new_zeros(num_classes, text.shape[-1]).index_add_(0, labels, rows)  # (C, d)
    return F.normalize(sums / counts.unsqueeze(1).to(text.dtype), dim=-1)


def _uniform(shape: tuple[int, int], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """``nn.Linear``'s default weight init (Kaiming-uniform with a = sqrt(5)): uniform in +-1/sqrt(fan_in), drawn on
    the CPU, with the dtype and device of ``like``."""
    bound = 1.0 / math.sqrt(shape[1])
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1).mul_(bound).to(like)


def initial_state(cfg: HeadConfig, zero_shot: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """The head's starting parameters for ``zero_shot`` (C, d): ``weight`` (C, d) and, for the adapter, ``down``
    (d/r, d) and ``up`` (d, d/r). Random draws come from a generator seeded with ``seed`` (weight first, then the
    adapter), so every configuration of a grid starts from the same point."""
    num_classes, dim = zero_shot.shape
    generator = torch.Generator().manual_seed(seed)
    weight = _uniform((num_classes, dim), generator, zero_shot)
    state = {"weight": zero_shot.clone() if cfg.init == "zeroshot" else weight}
    if cfg.head == "adapter":
        hidden = dim // cfg.reduction
        if hidden < 1:
            raise ConfigError(f"cma.reduction={cfg.reduction} leaves no adapter width for {dim}-d features")
        state["down"] = _uniform((hidden, dim), generator, zero_shot)
        state["up"] = _uniform((dim, hidden), generator, zero_shot)
    return state


def wiseft(weight: torch.Tensor, zero_shot: torch.Tensor, ratio: float) -> torch.Tensor:
    """WiSE-FT: ``(1 - ratio) W + ratio normalize(W_zeroshot)`` for W (..., C, d); an adapter is kept as trained."""
    return (1 - ratio) * weight + ratio * F.normalize(zero_shot, dim=-1)


class CMAHead(nn.Module):
    """One head as a module: ``exp(logit) * W f(x / |x|)``, x (B, d) -> logits (B, C) (module docstring)."""

    def __init__(self, cfg: HeadConfig, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.cfg = cfg
        self.params = nn.ParameterDict({name: nn.Parameter(t.clone()) for name, t in state.items()})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """f(x / |x|): (B, d) -> (B, d)."""
        z = F.normalize(x, dim=-1)
        if self.cfg.head == "linear":
            return z
        hidden = F.relu(z @ self.params["down"].T)  # (B, d/r)
        return self.cfg.residual * F.relu(hidden @ self.params["up"].T) + (1 - self.cfg.residual) * z  # (B, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.embed(x) @ self.params["weight"].T) * self.cfg.scale  # (B, C)
