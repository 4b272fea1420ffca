"""Per-task pipelines: dataset records -> decoded, model-ready tensors held in memory.

A dataset reader (``avlearn.data.datasets``) knows a benchmark's files; a pipeline knows what one task feeds its
model: which frames, which audio features, which targets, in which layout. Each module returns a small indexable
dataset whose items are the task's batch contract:

- ``avs``: AVSBench S4 / MS3 clips -> 5 frames, 5 one-second log-mels, 5 masks and which of them are annotated.
- ``avvp``: LLP videos -> 10 frames, 10 one-second log-mels, the weak video labels and (val/test) the per-second
  audio and visual events.
- ``avqa``: MUSIC-AVQA questions -> the 10 frames and log-mels of their video (decoded once per video), the
  tokenised question, the answer index and the question type.

``load_media`` is what both share: decoding many records' media, in parallel processes when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from avlearn.data.datasets.media import Decode, Media
from avlearn.data.parallel import parallel_map
from avlearn.data.schema import Record


def _load(job: tuple[Media, Record, Decode]) -> dict[str, Any]:
    media, record, decode = job
    return media.load(record, decode)


def load_media(
    media: Media, records: Sequence[Record], decode: Decode, workers: int = 1, desc: str = "decoding"
) -> list[dict[str, Any]]:
    """``media.load(record, decode)`` for every record, in order, over ``workers`` processes, with a progress bar."""
    return parallel_map(_load, [(media, record, decode) for record in records], workers, desc=desc)
