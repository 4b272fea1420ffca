"""Sequential streaming of WebDataset tar shards (object storage, many nodes): ``ShardStream``, without the
``webdataset`` package (the standard library's ``tarfile`` in streaming mode).

A WebDataset shard is a plain tar whose members are grouped by sample: ``<key>.<field>`` files, all members of a
sample adjacent; the key is the member's path up to the first dot of its file name. The shards of a clip store
(``avlearn extract``: ``<key>.frames.npy``, ``<key>.wave.npy``, ``<key>.json``) are such shards, so a store copied
to object storage streams as it is. Fields are decoded by suffix: ``.npy`` arrays, ``.json``, ``.txt`` / ``.cls``
(text / an integer label); others stay bytes. Each shard is read front to back once (``opener(path)`` gives any
readable binary stream: a local file by default, or e.g. an ``fsspec`` / ``boto3`` stream), never seeked.

Order and split: each epoch the shard list is permuted by ``(seed, epoch)``; a DataLoader over the stream on rank
``r`` of ``world`` with ``W`` workers has ``world * W`` slots, and slot ``s`` (rank ``s // W``, its worker ``s % W``)
reads shards ``s, s + world * W, ...`` of the permutation, samples in tar order. Every sample is read once an
epoch, by one slot, so each rank reads only its own shards. Each item carries ``slot`` (an int), so whoever consumes
the batches can count what each slot delivered (``StreamPosition``).

Resume (``ShardStream.resume``) after a kill mid-epoch: every slot skips the samples it had delivered (it reads them
again, without decoding them: a stream cannot seek), so no sample of the epoch is lost or repeated; and the worker
that plays each slot is rotated so that the DataLoader's round-robin over its workers continues where it stopped.
The batches after the resume are then exactly those of the uninterrupted run when no worker of the rank had run out
of shards before the kill (with shards of similar sizes: all but the epoch's last ``W`` batches or so); after that
point the same samples come, the order of the remaining batches may differ. Exact only with the same ``seed``,
``world``, ``W`` and batch size: the shard order is a function of them. The engine's training loop samples map-style
splits (``avlearn.engine.batches``) and does not drive a ``ShardStream`` yet.
"""

from __future__ import annotations

import glob
import json
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from avlearn.data.store import npy_array
from avlearn.errors import DataError


def shard_paths(pattern: str | Path) -> list[str]:
    """The shards a ``data.shards``-style value names, sorted: a glob (``**`` allowed), one tar, or a store folder."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        found = sorted(str(p) for p in path.glob("*.tar"))
    else:
        found = sorted(glob.glob(str(path), recursive=True))
    if not found:
        raise DataError(f"shards={str(pattern)!r}: no tar shard matches (expected a glob such as 'store/*.tar')")
    return found


def _split_name(name: str) -> tuple[str, str]:
    """``"a/b/clip1.frames.npy"`` -> ``("a/b/clip1", "frames.npy")``: WebDataset's key and field."""
    folder, _, base = name.rpartition("/")
    stem, _, field = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), field


def read_members(stream: IO[bytes]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {field: bytes})`` per sample of one tar, read sequentially (members of a sample must be adjacent)."""
    key, fields = None, {}
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name, field = _split_name(member.name)
            if name != key and fields:
                yield key, fields
                fields = {}
            key = name
            fields[field] = tar.extractfile(member).read()
    if fields:
        yield key, fields


def decode_field(field: str, data: bytes) -> Any:
    """One member's bytes by its suffix: ``npy`` -> array (writable), ``json``, ``txt`` -> str, ``cls`` -> int."""
    suffix = field.rsplit(".", 1)[-1]
    if suffix == "npy":
        return npy_array(np.frombuffer(bytearray(data), dtype=np.uint8))  # a writable buffer of its own
    if suffix == "json":
        return json.loads(data)
    if suffix == "txt":
        return data.decode()
    if suffix == "cls":
        return int(data.decode())
    return data


def _sample(key: str, fields: Mapping[str, bytes]) -> dict[str, Any]:
    """A decoded sample: ``key`` and one entry per field, named without its suffix (``frames.npy`` -> ``frames``)."""
    return {"key": key, **{f.rsplit(".", 1)[0]: decode_field(f, data) for f, data in fields.items()}}


class StreamPosition:
    """What a consumer of a ``ShardStream``'s loader has taken in the epoch: batches, and samples per slot."""

    def __init__(self) -> None:
        self.batches, self.samples = 0, Counter()

    def update(self, batch: Mapping[str, Any]) -> None:
        """Count one batch (its ``slot`` column)."""
        self.batches += 1
        self.samples.update(torch.as_tensor(batch["slot"]).tolist())

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able copy (for a checkpoint)."""
        return {"batches": self.batches, "samples": {str(k): v for k, v in self.samples.items()}}


class ShardStream(IterableDataset):
    """The samples of WebDataset shards, streamed (see the module docstring).

    Args:
        shards: Shard paths (``shard_paths``).
        make: ``sample -> item`` (``sample``: ``key`` and the decoded fields), module-level or a
            ``functools.partial`` so that it pickles into the workers; None: the sample itself.
        seed: With the epoch, fixes the shard order.
        rank: This process's rank.
        world: Processes (ranks).
        opener: ``path -> readable binary stream`` (a context manager), ``open(path, "rb")`` by default.
    """

    def __init__(
        self,
        shards: Sequence[str],
        make: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        opener: Callable[[str], IO[bytes]] | None = None,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        self.shards, self.make, self.seed, self.rank, self.world = list(shards), make, seed, rank, world
        self.opener = opener
        self.epoch, self.position = 0, StreamPosition()

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning (another shard order)."""
        self.epoch, self.position = epoch, StreamPosition()

    def resume(self, position: StreamPosition | Mapping[str, Any]) -> None:
        """Continue this epoch after what a consumer took (a ``StreamPosition`` or its ``state_dict``)."""
        if isinstance(position, Mapping):
            restored = StreamPosition()
            restored.batches = int(position["batches"])
            restored.samples.update({int(k): int(v) for k, v in position["samples"].items()})
            position = restored
        self.position = position

    def order(self) -> list[str]:
        """This epoch's shard order: a permutation seeded by ``(seed, epoch)``."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return [self.shards[i] for i in torch.randperm(len(self.shards), generator=generator).tolist()]

    def slot(self, worker: int, workers: int) -> int:
        """The slot that DataLoader worker ``worker`` of ``workers`` plays on this rank (rotated on a resume, so that
        the worker the round-robin asks first continues the slot that was next)."""
        return self.rank * workers + (worker + self.position.batches) % workers

    def _open(self, path: str) -> IO[bytes]:
        return self.opener(path) if self.opener is not None else open(path, "rb")  # noqa: SIM115 (closed by caller)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        slot = self.slot(worker, workers)
        skip = self.position.samples.get(slot, 0)
        for path in self.order()[slot :: self.world * workers]:
            for key, fields in self._members(path):
                if skip:  # delivered before the resume: read past, not decoded
                    skip -= 1
                    continue
                sample = _sample(key, fields)
                item = self.make(sample) if self.make is not None else sample
                yield {**item, "slot": slot}

    def _members(self, path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
        """``read_members`` of one shard; a shard that cannot be read is a ``DataError`` naming it."""
        try:
            with self._open(path) as stream:
                yield from read_members(stream)
        except (OSError, tarfile.TarError) as err:
            raise DataError(f"shard {path}: cannot be read as a tar ({err})") from None
