"""Global-batch arithmetic: which samples each process sees, so that N processes train like one.

``train.batch_size`` is the **global** batch: the samples behind one optimizer step, over all processes and
all accumulation micro-batches. Each epoch is a seeded permutation of the training set cut into global batches;
global batch ``g`` is split into ``world_size * grad_accum`` near-equal micro-batches and rank ``r`` runs
micro-batches ``r, r + world_size, ...`` (one per accumulation step). The permutation depends only on the seed
and the epoch, so 1 process, N processes and any accumulation see the same global batches in the same order
(``DistributedSampler`` shuffles per rank instead, which changes the batches when the world size changes), and
a resumed run skips the global batches already done without touching an RNG.

A last global batch too small to give every micro-batch one sample is dropped (every rank must run the same
number of forward passes); with ``drop_last`` every partial last global batch is dropped (as the seeds' loaders do:
a training batch norm cannot take a micro-batch of one sample). Evaluation shards a split over ranks with padding
by repetition (as ``DistributedSampler`` does) and ``gather_predictions`` puts the pieces back in dataset order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from avlearn.engine.env import Env, all_gather_objects
from avlearn.errors import ConfigError


def global_batches(size: int, batch_size: int, seed: int, epoch: int, min_size: int = 1) -> list[torch.Tensor]:
    """Index tensors of one epoch's global batches: a permutation seeded by ``(seed, epoch)``, cut in order."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    batches = list(torch.randperm(size, generator=generator).split(batch_size))
    return [b for b in batches if len(b) >= min_size]


def min_batch(batch_size: int, env: Env, accum: int, drop_last: bool) -> int:
    """The smallest global batch an epoch keeps: the full batch with ``drop_last``, else one sample per micro-batch."""
    return batch_size if drop_last else env.world_size * accum


class MicroBatches(Sampler[list[int]]):
    """A ``DataLoader`` batch sampler: this rank's micro-batches of one epoch, from global batch ``start`` on.

    Args:
        size: Number of samples in the dataset.
        batch_size: The global batch (all ranks, all micro-batches of one optimizer step).
        env: This process's rank and the world size.
        accum: Micro-batches per rank per optimizer step (gradient accumulation).
        seed: Run seed; with ``epoch`` it fixes the permutation.
        epoch: Epoch index (0-based).
        start: Global batches already done in this epoch (a resumed run).
        drop_last: Drop a last global batch smaller than ``batch_size``.
    """

    def __init__(self, size: int, batch_size: int, env: Env, accum: int, seed: int, epoch: int, start: int = 0,
                 drop_last: bool = False):  # fmt: skip
        parts = env.world_size * accum
        if batch_size < parts:
            raise ConfigError(
                f"train.batch_size={batch_size} is the global batch and must be >= {env.world_size} processes x "
                f"train.grad_accum={accum}; raise it or lower the accumulation"
            )
        self.rank, self.world, self.accum = env.rank, env.world_size, accum
        self.batches = global_batches(size, batch_size, seed, epoch, min_batch(batch_size, env, accum, drop_last))
        self.batches = self.batches[start:]

    def global_sizes(self) -> list[int]:
        """Samples in each remaining global batch (the loss of a step is averaged over all of them)."""
        return [len(b) for b in self.batches]

    def __len__(self) -> int:
        return len(self.batches) * self.accum

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            parts = torch.tensor_split(batch, self.world * self.accum)
            for m in range(self.accum):
                yield parts[m * self.world + self.rank].tolist()


def eval_shard(size: int, env: Env) -> list[int]:
    """This rank's indices of an evaluation split, padded by repetition so every rank has the same count."""
    per_rank = -(-size // env.world_size)
    padded = [i % size for i in range(per_rank * env.world_size)]
    return padded[env.rank :: env.world_size]


def gather_predictions(indices: list[int], columns: dict[str, Any], size: int, env: Env) -> dict[str, Any]:
    """Every rank's ``columns`` (tensors ``(n, ...)`` or lists, row i = sample ``indices[i]``) in dataset order."""
    pieces = all_gather_objects((indices, columns), env)
    return {key: _place([(idx, cols[key]) for idx, cols in pieces], size) for key in columns}


def _place(pieces: list[tuple[list[int], Any]], size: int) -> Any:
    """Rows scattered over ranks -> one column of ``size`` rows (padding duplicates write the same value)."""
    if torch.is_tensor(pieces[0][1]):
        first = pieces[0][1]
        out = torch.empty((size, *first.shape[1:]), dtype=first.dtype)
        for idx, rows in pieces:
            out[torch.as_tensor(idx, dtype=torch.long)] = rows
        return out
    column: list[Any] = [None] * size
    for idx, rows in pieces:
        for i, value in zip(idx, rows, strict=True):
            column[i] = value
    return column
