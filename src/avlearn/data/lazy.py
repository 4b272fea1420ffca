"""Lazy samples: datasets that decode each sample when it is asked for, in the DataLoader's worker processes.

A pipeline returns either decoded tensors held in memory (small sets: AVSynth, AVE's 4,143 clips) or one of these
datasets (VGGSound, AudioSet, VALOR-1M: too large for RAM). ``wants_preload`` decides from ``data.preload``:

- ``auto`` (default): in memory when the decoded split fits in ``data.preload_gb`` GiB, lazy otherwise;
- ``true`` / ``on``: always in memory; ``false`` / ``off``: always lazy.

A lazy dataset is a plain map-style ``torch.utils.data.Dataset``: the engine's ``MicroBatches`` sampler hands each
rank only the indices of its own micro-batches, so under torchrun a rank decodes only its own samples, and the
global-batch order and exact resume (``avlearn.engine.batches``) are those of an in-memory split. Samples are
decoded with ``train.loader_workers`` processes per rank (0: in the training process).

``LazyRecords`` is the general form for any reader: item ``i`` is ``make(record_i, media.load(record_i, decode))``
(``avlearn.data.datasets.media``: files, frame folders or a clip store from ``avlearn extract``), where ``make``
turns the decoded arrays into the task's batch layout (a module-level function or ``functools.partial``, so that
it pickles into the workers). ``avlearn.data.segments.LazySegments`` is the form of the segment pipeline
(AVE and the tasks that share ``decode_segments``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from avlearn.errors import ConfigError

PRELOAD = {"auto": "auto", "true": "on", "on": "on", "false": "off", "off": "off"}
_GIB = 1 << 30


def preload_mode(value: object) -> str:
    """``data.preload`` -> ``"auto"``, ``"on"`` or ``"off"`` (booleans and their spellings accepted)."""
    mode = PRELOAD.get(str(value).strip().lower())
    if mode is None:
        raise ConfigError(f"data.preload={value!r}: expected auto, true (on) or false (off)")
    return mode


def wants_preload(data: Any, count: int, sample_bytes: int) -> bool:
    """Whether a split of ``count`` samples of ``sample_bytes`` decoded bytes each is held in memory.

    ``data`` is the run's ``data`` config: ``preload`` (auto/on/off) and ``preload_gb`` (the budget of one split).
    """
    mode = preload_mode(data.get("preload", "auto"))
    budget = float(data.get("preload_gb", 4.0))
    if budget < 0:
        raise ConfigError(f"data.preload_gb={budget}: expected a size in GiB >= 0")
    return mode == "on" or (mode == "auto" and count * sample_bytes <= budget * _GIB)


class LazyRecords(Dataset):
    """A reader's records decoded one at a time: item ``i`` is ``make(records[i], arrays, rng)``.

    ``arrays`` is ``media.load(records[i], decode)``; ``rng`` is ``views.item_rng(seed, epoch, i)`` in a training
    split (``train=True``) and None otherwise, so that a ``ClipView`` samples randomly in training, centred in
    evaluation, and identically after a resume: the engine calls ``set_epoch`` before each epoch.

    Args:
        media: where the records' media are (a reader's ``media``: files, frame folders or a clip store).
        records: the records of one split.
        decode: how to decode a record (``avlearn.data.datasets.media.Decode``).
        make: ``(record, arrays, rng) -> item``: decoded ``{"frames", "wave"}`` arrays into the task's item
            (tensors, labels, ids); module-level or a ``functools.partial``, so that it pickles into the workers.
        train: whether items draw training randomness.
        seed: the run's seed (``cfg.seed``).
    """

    def __init__(
        self,
        media: Any,
        records: Sequence[Any],
        decode: Any,
        make: Callable[[Any, dict[str, Any], Any], dict],
        train: bool = False,
        seed: int = 0,
    ) -> None:
        self.media, self.records, self.decode, self.make = media, list(records), decode, make
        self.train, self.seed, self.epoch = train, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's training randomness (called by the engine before it builds the epoch's loader)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        from avlearn.data.views import item_rng

        record = self.records[i]
        rng = item_rng(self.seed, self.epoch, i) if self.train else None
        return self.make(record, self.media.load(record, self.decode), rng)
