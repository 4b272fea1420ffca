"""``avlearn.distributed`` and prediction gathering with two gloo processes, against one process on everything.

* an info-NCE loss over ``all_gather_with_grad`` keys (uneven shards: 5 + 3 rows), under DDP, gives the parameter
  gradients of one process on the whole batch;
* a module that updates a buffer with ``all_reduce_mean_`` of its batch statistics ends with identical buffers on
  both ranks, equal to the update from the mean of both ranks' statistics;
* ``predict_all`` gathers string predictions and ids across ranks in dataset order;
* a model with an auxiliary optimizer trains under DDP (with accumulation) as in one process, the auxiliary
  parameters included.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from engine_toy import AuxToyTask, ToyData, parameters, toy_config
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from avlearn.distributed import all_gather_with_grad, all_reduce_mean_
from avlearn.engine.env import Env, setup, teardown
from avlearn.engine.loop import RunInfo, fit, predict_all
from two_processes import spawn_two

ROWS = (5, 3)  # rank 0 holds rows 0-4 of the global batch, rank 1 rows 5-7
QUERIES, KEYS = torch.randn(2, 8, 6, generator=torch.Generator().manual_seed(1))  # (query | key, N, 6)
AUX = {"batch_size": 8, "epochs": 2}  # 20 samples: global batches 8, 8 (the last 4 are dropped with 2 x 2 parts)
TRAIN, VAL = ToyData(20, seed=1), ToyData(12, seed=2)
STATS = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(2))  # (rank, update, C)


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(6, 4)


def _info_nce(encoder: nn.Module, queries: torch.Tensor, keys: torch.Tensor, gather, offset: int) -> torch.Tensor:
    """Mean cross-entropy of each local query against every key of the global batch (its own key is row
    ``offset + i``), summed and scaled by ``world / global batch`` as the engine weights a micro-batch."""
    q, k = F.normalize(encoder(queries), dim=-1), gather(F.normalize(encoder(keys), dim=-1))  # (n, 4), (N, 4)
    logits = q @ k.T / 0.1  # (n, N)
    targets = offset + torch.arange(len(q))
    return F.cross_entropy(logits, targets, reduction="sum") * len(ROWS) / sum(ROWS)


class EMAStats(nn.Module):
    """Keeps ``running`` (C,) = an EMA of batch statistics, synchronised across ranks as EMA codebooks must be."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("running", torch.zeros(4))

    @torch.no_grad()
    def update(self, stats: torch.Tensor) -> None:
        self.running.mul_(0.9).add_(0.1 * all_reduce_mean_(stats.clone()))


class Captioner(nn.Module):
    """Predicts a caption string per sample (and the label), as captioning / QA tasks do."""

    def predict(self, batch: dict) -> dict:
        return {"caption": [f"caption of {i}" for i in batch["id"]], "label": batch["labels"]}


def _aux_task() -> AuxToyTask:
    torch.manual_seed(0)
    return AuxToyTask(aux_dropout=0.0)


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    env = setup("cpu", seed=0)
    start, stop = sum(ROWS[:rank]), sum(ROWS[: rank + 1])
    encoder = DistributedDataParallel(_encoder())
    _info_nce(encoder, QUERIES[start:stop], KEYS[start:stop], all_gather_with_grad, start).backward()
    stats = EMAStats()
    for update in STATS[rank]:
        stats.update(update)
    preds = predict_all(Captioner(), ToyData(7), batch_size=2, env=env)
    aux = _aux_task()
    fit(aux, TRAIN, VAL, toy_config(**AUX, grad_accum=2), env, RunInfo(f"{out}/aux"))
    torch.save({"grads": {n: p.grad for n, p in encoder.module.named_parameters()}, "running": stats.running,
                "preds": preds, "aux": parameters(aux)}, f"{out}/rank{rank}.pt")  # fmt: skip
    del encoder  # the DDP wrapper goes before its process group (it hung at exit now and then when it outlived it)
    teardown()


def test_two_gloo_processes_gather_reduce_and_collect_like_one(tmp_path):
    spawn_two(_worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    encoder = _encoder()
    (_info_nce(encoder, QUERIES, KEYS, lambda k: k, 0) * sum(ROWS) / len(ROWS) / sum(ROWS)).backward()
    for name, p in encoder.named_parameters():
        for r in ranks:
            torch.testing.assert_close(r["grads"][name], p.grad, rtol=0, atol=1e-6, msg=name)

    single = EMAStats()
    for update in STATS.mean(0):
        single.update(update)
    assert torch.equal(ranks[0]["running"], ranks[1]["running"])
    torch.testing.assert_close(ranks[0]["running"], single.running)

    data = ToyData(7)
    expected = predict_all(Captioner(), data, batch_size=2, env=Env())
    assert expected["preds"]["caption"] == [f"caption of s{i}" for i in range(7)]
    for r in ranks:
        assert r["preds"]["preds"]["caption"] == expected["preds"]["caption"]
        assert r["preds"]["targets"]["id"] == [f"s{i}" for i in range(7)]
        assert torch.equal(r["preds"]["preds"]["label"], data.labels)

    single = _aux_task()
    fit(single, TRAIN, VAL, toy_config(**AUX), Env(), RunInfo(tmp_path / "single"))
    for r in ranks:
        torch.testing.assert_close(r["aux"], parameters(single), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ranks[0]["aux"]["estimator.weight"], _aux_task().estimator.weight)
