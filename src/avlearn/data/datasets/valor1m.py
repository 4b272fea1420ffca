"""VALOR-1M (Chen et al., "VALOR", TPAMI 2024), the pretraining corpus, in the VALOR layout (``valor_layout.py``;
the seed's ``pretrain-VALOR-base.json`` / ``pretrain-VALOR-large.json``).

Files, in ``<root>/valor-1m/``, ``<root>/VALOR-1M/`` or ``<root>/``: ``pretrain_ids.json`` with
``pretrain_txt_mapper.json`` (one audio-visual caption per video). Media: VALOR's ``frames_1fps_360*480_jpg/<id>/``
(or ``frames_fps4/``) + ``audio_22050hz/<id>.wav``, ``videos/<id>.mp4``, or ``media=``. Split: ``train`` (the
seed pretrains on all of it).
"""

from __future__ import annotations

from avlearn.data.datasets.valor_layout import LayoutCaptionDataset
from avlearn.registry import DATASETS


@DATASETS.register("valor1m")
class VALOR1MDataset(LayoutCaptionDataset):
    """VALOR-1M: 1M videos with audio-visual captions (pretraining); train."""

    name = "valor1m"
    files = {"train": (["pretrain_ids.json"], ["pretrain_txt_mapper.json"])}
    folders = ("valor-1m", "VALOR-1M", ".")
    frame_folders = ("frames_1fps_360*480_jpg", "frames_fps4")
