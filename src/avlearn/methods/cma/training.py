"""One Cross-Modal Adaptation training run (Lin et al., CVPR 2023) on the cached features of one few-shot split.

The seed's loop, written once: each step takes ``bs - bs // 2`` image and ``bs // 2`` text samples (cross-modal; all
``bs`` from the images uni-modally) from two independent shuffled cyclic streams (each a pass over a fresh
permutation, the last partial batch dropped, like a ``DataLoader(shuffle=True, drop_last=True)`` re-iterated when
exhausted), computes the cross-entropy of the concatenated batch, takes an AdamW step (betas 0.9 / 0.999) and, at
the evaluation points, measures validation accuracy; the best state (strictly better, so the earliest best wins) is
the result.

The schedule (``ScheduleConfig``) is linear warm-up then cosine. With ``faithful`` it is the seed's exactly: the
first step runs at 1e-5 whatever the base rate, steps 1..49 at ``base * i / 50``, then a cosine over ``iters`` steps
counted from step 50, which never completes (at the last step the rate is still 3.9e-5 of the base), and validation
after steps 0, 100, ..., 12700 (the last 99 steps are never evaluated). Fixed (the default): step i < warm-up runs at
``base * (i + 1) / warmup``, the cosine spans the remaining ``iters - warmup`` steps, and validation happens before
the first step (so a zero-shot-initialised head's first point is zero-shot accuracy) and after every
``eval_every`` steps, the last step included.

Sample order depends on the run's seed and batch split only (image stream seeded ``2 * seed``, text ``2 * seed +
1``), so the configurations of a grid that share a batch size see the same batches (``avlearn.methods.cma.grid``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avlearn.errors import ConfigError, DataError
from avlearn.methods.cma.heads import CMAHead, HeadConfig, initial_state, wiseft, zero_shot_weights

BETAS = (0.9, 0.999)
EPS = 1e-8  # AdamW's default


@dataclass
class ScheduleConfig:
    """Steps, warm-up, evaluation frequency, early stopping and the seed's schedule quirks (``faithful``).

    ``patience``: a run stops after this many evaluations in a row without a strictly better validation accuracy
    (None: it runs all ``iters`` steps, as the seed).
    """

    iters: int = 12800
    warmup: int = 50
    warmup_start: float = 1e-5  # faithful only: the learning rate of the first step
    eval_every: int = 100
    patience: int | None = None
    faithful: bool = False

    def __post_init__(self) -> None:
        if self.iters < 1 or self.eval_every < 1:
            raise ConfigError(f"cma schedule: iters={self.iters} and eval_every={self.eval_every} must be >= 1")
        if not 0 <= self.warmup < self.iters:
            raise ConfigError(f"cma schedule: warmup={self.warmup}: expected 0 <= warmup < iters={self.iters}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"cma schedule: patience={self.patience}: expected None or an integer >= 1")


def lr_factors(cfg: ScheduleConfig) -> torch.Tensor:
    """(iters,) float64: the multiple of the base rate each step uses (the faithful first step is set separately,
    ``learning_rates``)."""
    step = torch.arange(cfg.iters, dtype=torch.float64)
    if cfg.faithful:
        warm = step / cfg.warmup if cfg.warmup else step
        cosine = 0.5 * (1 + torch.cos(math.pi * (step - cfg.warmup) / cfg.iters))
    else:
        warm = (step + 1) / max(cfg.warmup, 1)
        cosine = 0.5 * (1 + torch.cos(math.pi * (step - cfg.warmup) / (cfg.iters - cfg.warmup)))
    return torch.where(step < cfg.warmup, warm, cosine)


def learning_rates(cfg: ScheduleConfig, base: list[float]) -> torch.Tensor:
    """(iters, G) float64: the rate of every step for each of the G base rates ``base``."""
    rates = lr_factors(cfg).unsqueeze(1) * torch.tensor(base, dtype=torch.float64).unsqueeze(0)  # (iters, 1) x (1, G)
    if cfg.faithful and cfg.warmup:
        rates[0] = cfg.warmup_start
    return rates


def eval_points(cfg: ScheduleConfig) -> list[int]:
    """The numbers of steps done at which validation accuracy is measured (0: the initial head)."""
    if cfg.faithful:
        return [i + 1 for i in range(0, cfg.iters, cfg.eval_every)]
    points = list(range(0, cfg.iters + 1, cfg.eval_every))
    return points if points[-1] == cfg.iters else [*points, cfg.iters]


@dataclass
class FewShotFeatures:
    """The cached features of one few-shot split (d wide; unnormalised, the head normalises).

    ``image`` (N, d) / ``image_labels`` (N,): the training images (every view, e.g. centre crop and its mirror);
    ``text`` (M, d) / ``text_labels`` (M,): one embedding per class and template; ``val`` (V, d) / ``val_labels``;
    optionally ``test`` (T, d) / ``test_labels``. ``num_classes`` C: labels lie in 0..C-1.
    """

    image: torch.Tensor
    image_labels: torch.Tensor
    text: torch.Tensor
    text_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    num_classes: int
    test: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        dim = self.image.shape[-1]
        for name in ("image", "text", "val", "test"):
            x, y = getattr(self, name), getattr(self, f"{name}_labels")
            if x is None:
                continue
            if x.dim() != 2 or x.shape[1] != dim or y is None or y.shape != (x.shape[0],):
                raise DataError(f"few-shot features: {name} must be (n, {dim}) with {name}_labels (n,); got "
                                f"{tuple(x.shape)} and {None if y is None else tuple(y.shape)}")  # fmt: skip
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DataError(f"few-shot features: {name}_labels must lie in 0..{self.num_classes - 1}")

    def zero_shot(self, normalize_templates: bool = False) -> torch.Tensor:
        """The zero-shot classifier (C, d) of the text embeddings."""
        return zero_shot_weights(self.text, self.text_labels, self.num_classes, normalize_templates)


def batch_split(modality: str, batch_size: int) -> tuple[int, int]:
    """(image, text) samples per step: half text (rounded down) cross-modally, none uni-modally."""
    text = batch_size // 2 if modality == "cross_modal" else 0
    return batch_size - text, text


def valid_batch_sizes(sizes: tuple[int, ...], modality: str, num_image: int, num_text: int) -> tuple[int, ...]:
    """The batch sizes whose image and text parts are each 0 or strictly smaller than their pool (the seed's rule,
    strict ``<``: EuroSAT's 10 text samples allow bs 8 only)."""

    def fits(batch_size: int) -> bool:
        image, text = batch_split(modality, batch_size)
        return (image == 0 or image < num_image) and (text == 0 or text < num_text)

    kept = tuple(bs for bs in sizes if fits(bs))
    if not kept:
        raise ConfigError(f"cma grid: no batch size of {list(sizes)} fits {num_image} image and {num_text} text "
                          f"samples ({modality}); use smaller batch sizes")  # fmt: skip
    return kept


class CyclicBatches:
    """Batches of ``size`` indices of ``range(n)``: passes over fresh random permutations (``torch.randperm`` with a
    generator seeded ``seed``), the last partial batch of each pass dropped."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        if not 0 < size <= n:
            raise ConfigError(f"cma: batch part {size} does not fit a pool of {n} samples")
        self.n, self.size = n, size
        self.generator = torch.Generator().manual_seed(seed)
        self._pending: list[torch.Tensor] = []

    def permutation(self) -> torch.Tensor:
        """The next pass's order (n,)."""
        return torch.randperm(self.n, generator=self.generator)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        if not self._pending:
            per_pass = self.n // self.size
            self._pending = list(self.permutation()[: per_pass * self.size].view(per_pass, self.size).unbind(0))
        return self._pending.pop(0)

    def take(self, steps: int) -> torch.Tensor:
        """The next ``steps`` batches at once, (steps, size)."""
        return torch.stack([next(self) for _ in range(steps)]) if steps else torch.zeros(0, self.size, dtype=torch.long)


def batch_streams(modality: str, batch_size: int, data: FewShotFeatures, seed: int) -> list[CyclicBatches | None]:
    """The image and text streams of a run (None for a part of size 0)."""
    parts = batch_split(modality, batch_size)
    pools = (len(data.image), len(data.text))
    return [CyclicBatches(pool, part, 2 * seed + k) if part else None
            for k, (part, pool) in enumerate(zip(parts, pools, strict=True))]  # fmt: skip


@dataclass
class RunResult:
    """One run: validation accuracy at each of ``steps`` (evaluation points, steps done), the best accuracy (the
    first of the strict maxima), the steps done at it, and the head's parameters there."""

    steps: list[int]
    val_acc: list[float]
    best_acc: float
    best_step: int
    state: dict[str, torch.Tensor]


def accuracy(head: CMAHead, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy (fraction) of ``head`` on features ``x`` (n, d)."""
    with torch.no_grad():
        return int((head(x).argmax(dim=-1) == labels).sum()) / len(labels)


def _batch(data: FewShotFeatures, streams: list[CyclicBatches | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """The next step's features (B, d) and labels (B,): image part first, then text."""
    pools = ((data.image, data.image_labels), (data.text, data.text_labels))
    features, labels = [], []
    for stream, (x, y) in zip(streams, pools, strict=True):
        if stream is not None:
            rows = next(stream)  # (part,)
            features.append(x[rows])
            labels.append(y[rows])
    return torch.cat(features), torch.cat(labels)


def train_run(
    data: FewShotFeatures, head_cfg: HeadConfig, sched: ScheduleConfig, lr: float, wd: float, batch_size: int,
    seed: int, state: dict[str, torch.Tensor] | None = None,
) -> RunResult:  # fmt: skip
    """Train one head (``torch.optim.AdamW``) and return its validation curve and best state (module docstring);
    ``state``: the starting parameters (default ``initial_state`` of the zero-shot weights and ``seed``)."""
    head = CMAHead(head_cfg, state if state is not None else initial_state(head_cfg, data.zero_shot(), seed))
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=wd, betas=BETAS, eps=EPS)
    rates = learning_rates(sched, [lr])[:, 0].tolist()
    streams = batch_streams(head_cfg.modality, batch_size, data, seed)
    points, curve = set(eval_points(sched)), []
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    stale = 0
    for done in range(sched.iters + 1):
        if done in points:
            curve.append(accuracy(head, data.val, data.val_labels))
            if curve[-1] > best[0]:
                best, stale = (curve[-1], done, {k: p.detach().clone() for k, p in head.params.items()}), 0
            else:
                stale += 1
            if sched.patience is not None and stale >= sched.patience:
                break
        if done == sched.iters:
            break
        x, y = _batch(data, streams)
        for group in optimizer.param_groups:
            group["lr"] = rates[done]
        loss = F.cross_entropy(head(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return RunResult(sorted(points)[: len(curve)], curve, best[0], best[1], best[2])


def score_test(
    state: dict[str, torch.Tensor], head_cfg: HeadConfig, data: FewShotFeatures, wise: bool = False
) -> float:
    """Test accuracy of a trained head's ``state``; with ``wise``, of its WiSE-FT interpolation with the zero-shot
    head."""
    if data.test is None:
        raise DataError("few-shot features: no test split to score")
    if wise:
        state = {**state, "weight": wiseft(state["weight"], data.zero_shot(), head_cfg.wiseft)}
    return accuracy(CMAHead(head_cfg, state), data.test, data.test_labels)
