"""The common sample schema of every dataset reader: one ``Record`` per annotated sample, one dict per decoded sample.

A reader (``avlearn.data.datasets``) parses a benchmark's annotation files into ``Record``s: the sample's id, the
key of its media, its split, its targets and the ``file:line`` it came from. Indexing the reader decodes the media
of one record into a ``Sample`` dict. Keys, with shapes (T frames, N audio samples, S segments, K classes):

- ``id``: str, unique within the split (AVE rows that repeat a VideoID are ``VideoID#2`` ...).
- ``frames``: (T, H, W, 3) uint8 RGB, taken at the middle of T equal parts of the clip (absent for audio-only data).
- ``wave``: (N,) float32 mono waveform at the reader's sample rate (absent for image-only data).
- targets, present when the benchmark has them:
  ``label`` int (single-label class; AVE: the event class), ``labels`` (K,) float32 multi-hot,
  ``segment_labels`` (S,) int64 (AVE: the class per second, background = K),
  ``audio_segments`` / ``visual_segments`` (S, K) float32 (LLP per-second events per modality),
  ``masks`` (T, H, W) bool with ``mask_valid`` (T,) bool (AVSBench; True = the frame has a ground-truth mask),
  ``question`` str, ``answer`` int, ``question_type`` str ``"Group/Type"`` (MUSIC-AVQA), ``text`` str (a caption).
- ``meta``: dict of str: ``media`` (the media key), ``split`` and ``source`` (``file:line`` of the annotation).

Masks are True = valid, everywhere. Strings and lists are never tensors: ``collate`` keeps them as lists, so a
``torch.utils.data.DataLoader(dataset, collate_fn=collate)`` batches any reader. ``DatasetInfo`` is what a task
head needs to know of the data (a reader's ``info``); it lives here, not in ``avlearn.tasks``, so that readers and
scorers do not import torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about the data a head is built for: class names (without background) and segments per clip."""

    class_names: tuple[str, ...]
    segments: int = 10

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Record:
    """One annotated sample, before decoding.

    Attributes:
        id: Unique within its split.
        media: The key of its media (a video id); ``fields`` fill the media path templates of the reader.
        split: The official split it belongs to.
        targets: The sample's targets (keys as in the module docstring), NumPy arrays, ints or strings.
        source: ``file:line`` (or ``file: item N``) of the annotation it came from.
        classes: Indices of the classes it carries, for counting (empty: none, e.g. a caption).
        fields: Extra values for the media path templates (category, start second, ...).
    """

    id: str
    media: str
    split: str
    targets: Mapping[str, Any]
    source: str
    classes: tuple[int, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)


class Sample(TypedDict, total=False):
    """A decoded sample (see the module docstring for every key)."""

    id: str
    frames: np.ndarray
    wave: np.ndarray
    label: int
    labels: np.ndarray
    segment_labels: np.ndarray
    audio_segments: np.ndarray
    visual_segments: np.ndarray
    masks: np.ndarray
    mask_valid: np.ndarray
    question: str
    answer: int
    question_type: str
    text: str
    meta: dict[str, str]


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch samples: arrays and numbers become stacked tensors, strings, lists and dicts stay Python.

    Raises:
        ValueError: the samples do not all have the same keys, or arrays of one key differ in shape.
    """
    import torch

    keys = list(samples[0])
    if any(list(s) != keys for s in samples):
        raise ValueError(f"cannot batch samples with different keys: {sorted(keys)} vs others")
    out: dict[str, Any] = {}
    for key in keys:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))  # (B, ...)
        elif isinstance(first, bool | int | float | np.number):
            out[key] = torch.tensor(values)  # (B,)
        elif isinstance(first, Mapping):
            out[key] = {k: [v[k] for v in values] for k in first}
        else:
            out[key] = values
    return out
