"""TGIF-QA, FrameQA (Jang et al., "TGIF-QA: Toward Spatio-Temporal Reasoning in Visual Question Answering", CVPR
2017) in the VALOR layout (``valor_layout.py``; the seed's ``VQA-tgif-frame.json``). GIFs: no audio.

Files, in ``<root>/tgif/``, ``<root>/TGIF-QA/`` or ``<root>/``: ``train_id_frameQA.json`` and
``test_id_frameQA.json`` with ``txt_mapper_frameQA.json`` (``{id: [{"question", "answer"}, ...]}``).
Media: VALOR's ``frames_fps4/<id>/``, ``gifs/<id>.gif``, ``videos/<id>.mp4``, or ``media=``. Splits: ``train``,
``test``.
"""

from __future__ import annotations

from avlearn.data.datasets.valor32k import MEDIA_TEMPLATES
from avlearn.data.datasets.valor_layout import LayoutQADataset
from avlearn.registry import DATASETS


@DATASETS.register("tgif_qa")
class TGIFFrameQADataset(LayoutQADataset):
    """TGIF-QA FrameQA: open-ended questions on animated GIFs; train/test."""

    name = "tgif_qa"
    files = {s: ([f"{s}_id_frameQA.json"], ["txt_mapper_frameQA.json"]) for s in ("train", "test")}
    folders = ("tgif", "TGIF-QA", ".")
    templates = (*MEDIA_TEMPLATES, "gifs/{media}.gif")
    audio_folder = None
