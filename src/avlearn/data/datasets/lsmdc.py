"""LSMDC (Rohrbach et al., "Movie Description", IJCV 2017) as text-to-video retrieval in the VALOR layout
(``valor_layout.py``; the seed's ``fast-retrieval-lsmdc.json``).

Files, in ``<root>/lsmdc/``, ``<root>/LSMDC/`` or ``<root>/``: ``train_id.json`` and ``test_id.json`` with
``txt_mapper.json`` (one sentence per movie clip). Media: VALOR's ``frames_fps1/<id>/`` + ``audio_22050hz/<id>.wav``,
``videos/<id>.mp4``, or ``media=``. Splits: ``train``, ``test``.
"""

from __future__ import annotations

from avlearn.data.datasets.valor_layout import LayoutCaptionDataset
from avlearn.registry import DATASETS


@DATASETS.register("lsmdc")
class LSMDCDataset(LayoutCaptionDataset):
    """LSMDC: movie clips with one description each; train/test."""

    name = "lsmdc"
    files = {s: ([f"{s}_id.json"], ["txt_mapper.json"]) for s in ("train", "test")}
    folders = ("lsmdc", "LSMDC", ".")
    frame_folders = ("frames_fps1", "frames_fps4")
