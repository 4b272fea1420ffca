"""A toy task and dataset for the engine tests: small enough that a run takes a fraction of a second.

Imported by the tests as ``engine_toy`` (this folder is on ``sys.path`` under pytest, and so in the processes
that the DDP test spawns).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.config.schema import TrainConfig
from avlearn.engine.auxiliary import Auxiliary


class ToyTask(nn.Module):
    """A two-layer classifier of ``x (B, 8)`` into 3 classes, with the task contract (forward/predict/score)."""

    primary_metric = "accuracy"

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Dropout(dropout), nn.Linear(16, 3))

    def forward(self, batch: dict) -> dict:
        return {"loss": F.cross_entropy(self.net(batch["x"]), batch["labels"])}

    @torch.no_grad()
    def predict(self, batch: dict) -> dict:
        return {"label": self.net(batch["x"]).argmax(-1)}

    def score(self, preds: dict, targets: dict) -> dict:
        return {"accuracy": 100.0 * float((preds["label"] == targets["labels"]).float().mean())}


class ToyData(torch.utils.data.Dataset):
    """``n`` samples ``{"x": (8,), "labels": (), "id": str}``, the label a function of ``x`` (learnable)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.labels = (self.x[:, 0] > 0).long() + (self.x[:, 1] > 0.5).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.labels[i], "id": f"s{i}"}


def toy_config(**overrides) -> TrainConfig:
    base = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "warmup_epochs": 0.5, "log_every": 1, "device": "cpu"}
    return TrainConfig(**{**base, **overrides})


def step_losses(run_dir: Path) -> dict[int, float]:
    """``{step: loss}`` from a run's metrics.jsonl."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if r["kind"] == "step"}


def make_task(dropout: float = 0.0) -> ToyTask:
    """A ``ToyTask`` with the same initial weights every time."""
    torch.manual_seed(0)
    return ToyTask(dropout)


def parameters(task: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in task.state_dict().items()}


class AuxToyTask(ToyTask):
    """The toy with an auxiliary part trained by its own optimizer (as CMG's CLUB estimator is).

    ``estimator`` predicts ``x`` from the detached hidden features (its own Adam, ``steps`` inner steps per
    training step, with dropout on its input so the inner steps draw random numbers); the main loss adds the
    estimator's error on the live features, so the main gradient flows through the (frozen for it) estimator.
    """

    def __init__(self, dropout: float = 0.0, aux_dropout: float = 0.2, steps: int = 3) -> None:
        super().__init__(dropout)
        self.estimator = nn.Linear(16, 8)
        self.aux_dropout, self.steps = aux_dropout, steps

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[1](self.net[0](x))  # (B, 16)

    def forward(self, batch: dict) -> dict:
        h = self.hidden(batch["x"])
        loss = F.cross_entropy(self.net[3](self.net[2](h)), batch["labels"])
        return {"loss": loss + 0.1 * F.mse_loss(self.estimator(h), batch["x"])}

    def auxiliary(self) -> Auxiliary:
        def loss(inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            h, x = inputs
            return F.mse_loss(self.estimator(F.dropout(h, self.aux_dropout)), x)

        return Auxiliary(list(self.estimator.parameters()), loss, steps=self.steps, lr=1e-2,
                         prepare=lambda batch: (self.hidden(batch["x"]), batch["x"]))  # fmt: skip
