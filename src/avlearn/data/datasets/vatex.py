"""VATEX (Wang et al., "VaTeX: A Large-Scale, High-Quality Multilingual Dataset for Video-and-Language Research",
ICCV 2019), English captions, in the VALOR layout (``valor_layout.py``; the seed's ``fast-retrieval-vatex.json``
and ``caption-vatex.json``).

Files, in ``<root>/vatex/``, ``<root>/VATEX/`` or ``<root>/``: ``train_id.json``, ``test_id_ret.json`` (the
retrieval test list) and ``private_test_id.json`` (the captioning test list), with ``txt_mapper_en.json`` (10
English captions per video; ``txt_mapper.json`` is read when there is no ``_en`` file).
Media: VALOR's ``frames_fps2/<id>/`` + ``audio_22050hz/<id>.wav``, ``videos/<id>.mp4``, or ``media=``.
Splits: ``train``, ``test_ret``, ``private_test``.
"""

from __future__ import annotations

from avlearn.data.datasets.valor_layout import LayoutCaptionDataset
from avlearn.registry import DATASETS

MAPPERS = ["txt_mapper_en.json", "txt_mapper.json"]


@DATASETS.register("vatex")
class VATEXDataset(LayoutCaptionDataset):
    """VATEX: 41k videos with 10 English captions each; train, test_ret (retrieval), private_test (captioning)."""

    name = "vatex"
    files = {
        "train": (["train_id.json"], MAPPERS),
        "test_ret": (["test_id_ret.json"], MAPPERS),
        "private_test": (["private_test_id.json"], MAPPERS),
    }
    folders = ("vatex", "VATEX", ".")
    frame_folders = ("frames_fps2", "frames_fps4")
