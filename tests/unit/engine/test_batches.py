"""Global-batch arithmetic: every world size and accumulation sees the same global batches, split exactly."""

from __future__ import annotations

import pytest
import torch

from avlearn.engine.batches import MicroBatches, eval_shard, gather_predictions, global_batches
from avlearn.engine.env import Env
from avlearn.errors import ConfigError


@pytest.mark.parametrize(("world", "accum"), [(1, 1), (2, 1), (1, 3), (2, 2)])
def test_ranks_and_micro_batches_partition_each_global_batch(world, accum):
    size, batch = 50, 12
    expected = global_batches(size, batch, seed=7, epoch=3, min_size=world * accum)
    per_rank = [
        list(MicroBatches(size, batch, Env(rank=r, world_size=world), accum, seed=7, epoch=3)) for r in range(world)
    ]
    assert all(len(micro) == len(expected) * accum for micro in per_rank)  # every rank runs as many forwards
    for step, global_batch in enumerate(expected):
        parts = [m for micro in per_rank for m in micro[step * accum : (step + 1) * accum]]
        assert all(parts), "an empty micro-batch"
        assert sorted(i for p in parts for i in p) == sorted(global_batch.tolist())


def test_global_batches_depend_on_seed_and_epoch_only():
    a = global_batches(30, 8, seed=1, epoch=0)
    assert [b.tolist() for b in a] == [b.tolist() for b in global_batches(30, 8, seed=1, epoch=0)]
    assert [b.tolist() for b in a] != [b.tolist() for b in global_batches(30, 8, seed=1, epoch=1)]
    assert sorted(torch.cat(a).tolist()) == list(range(30)) and [len(b) for b in a] == [8, 8, 8, 6]


def test_a_last_batch_too_small_for_every_micro_batch_is_dropped():
    sampler = MicroBatches(17, 8, Env(rank=0, world_size=2), accum=2, seed=0, epoch=0)  # 8, 8, 1 -> 1 < 4 parts
    assert sampler.global_sizes() == [8, 8] and len(sampler) == 4


def test_start_skips_the_global_batches_already_done():
    full = list(MicroBatches(40, 8, Env(), 2, seed=0, epoch=1))
    assert list(MicroBatches(40, 8, Env(), 2, seed=0, epoch=1, start=2)) == full[4:]


def test_a_global_batch_smaller_than_the_micro_batches_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"train.batch_size=4 is the global batch .* 4 processes x train.grad_accum=2"
    ):
        MicroBatches(40, 4, Env(rank=0, world_size=4), accum=2, seed=0, epoch=0)


def test_eval_shards_cover_the_split_with_equal_counts():
    shards = [eval_shard(10, Env(rank=r, world_size=4)) for r in range(4)]
    assert {len(s) for s in shards} == {3} and set().union(*shards) == set(range(10))


def test_gathered_predictions_are_in_dataset_order():
    idx = [3, 0, 2, 1]
    out = gather_predictions(idx, {"p": torch.tensor([30, 0, 20, 10]), "id": ["d", "a", "c", "b"]}, 4, Env())
    assert out["p"].tolist() == [0, 10, 20, 30] and out["id"] == ["a", "b", "c", "d"]


def test_drop_last_drops_every_partial_last_global_batch():
    kept = MicroBatches(21, 8, Env(), accum=1, seed=0, epoch=0)  # 8, 8, 5
    dropped = MicroBatches(21, 8, Env(), accum=1, seed=0, epoch=0, drop_last=True)
    assert kept.global_sizes() == [8, 8, 5] and dropped.global_sizes() == [8, 8]
    assert list(dropped) == list(kept)[:2]
