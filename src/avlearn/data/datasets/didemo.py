"""DiDeMo (Hendricks et al., "Localizing Moments in Video with Natural Language", ICCV 2017) as paragraph-to-video
retrieval in the VALOR layout (``valor_layout.py``; the seed's ``fast-retrieval-didemo.json``).

Files, in ``<root>/didemo/``, ``<root>/DiDeMo/`` or ``<root>/``: ``train_id.json`` and ``test_id.json`` with
``txt_mapper.json`` (a video's moment descriptions, joined into one paragraph by the seed's preprocessing).
Media: VALOR's ``frames_fps1/<id>/`` + ``audio_22050hz/<id>.wav``, ``videos/<id>.mp4``, or ``media=``.
Splits: ``train``, ``test``.
"""

from __future__ import annotations

from avlearn.data.datasets.valor_layout import LayoutCaptionDataset
from avlearn.registry import DATASETS


@DATASETS.register("didemo")
class DiDeMoDataset(LayoutCaptionDataset):
    """DiDeMo: 10k Flickr videos with moment descriptions (paragraph retrieval); train/test."""

    name = "didemo"
    files = {s: ([f"{s}_id.json"], ["txt_mapper.json"]) for s in ("train", "test")}
    folders = ("didemo", "DiDeMo", ".")
    frame_folders = ("frames_fps1", "frames_fps4")
