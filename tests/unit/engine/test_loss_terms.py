"""The ``loss_<name>`` terms a task reports are logged with every step record, averaged over the global batch."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from engine_toy import ToyData, ToyTask, toy_config

from avlearn.engine.env import Env
from avlearn.engine.loop import RunInfo, fit


class TermsTask(ToyTask):
    """The toy classifier whose loss is cross-entropy plus a weight penalty, each reported as a term."""

    def forward(self, batch: dict) -> dict:
        ce = F.cross_entropy(self.net(batch["x"]), batch["labels"])
        l2 = 0.01 * sum(p.pow(2).sum() for p in self.parameters())
        return {"loss": ce + l2, "loss_ce": ce.detach(), "loss_l2": l2.detach()}


def test_every_step_record_carries_the_terms_and_they_add_up_to_the_loss(tmp_path):
    torch.manual_seed(0)
    cfg = toy_config(batch_size=7, epochs=2, log_every=1, grad_accum=2)  # two micro-batches per step
    fit(TermsTask(), ToyData(20, seed=1), ToyData(12, seed=2), cfg, Env(), RunInfo(tmp_path / "run"))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["kind"] == "step"]
    assert len(steps) == 6 and all({"loss_ce", "loss_l2"} <= set(r) for r in steps)
    for r in steps:
        assert abs(r["loss_ce"] + r["loss_l2"] - r["loss"]) < 1e-5
    assert steps[-1]["loss_l2"] != steps[0]["loss_l2"]  # the weights moved: a fresh value each step
