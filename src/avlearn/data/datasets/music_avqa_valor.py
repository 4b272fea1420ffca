"""MUSIC-AVQA (Li et al., "Learning to Answer Questions in Dynamic Audio-Visual Scenarios", CVPR 2022) in VALOR's
open-ended QA layout (``valor_layout.py``; the seed's ``VQA-music.json``), not the release's own layout (that is
``music_avqa.py``, the AVQA answer-vocabulary task): answers are generated and scored by exact match.

Files, in ``<root>/music-avqa/``, ``<root>/MUSIC-AVQA/`` or ``<root>/``: ``train_id_vqa.json`` with
``txt_mapper_vqa_train.json`` and ``test_id_vqa.json`` with ``txt_mapper_vqa_test.json``
(``{id: [{"question", "answer"}, ...]}``, the release's templated questions filled in).
Media: VALOR's ``frames_1fps/<id>/`` + ``audio_22050hz/<id>.wav``, ``videos/<id>.mp4``, or ``media=``.
Splits: ``train``, ``test``.
"""

from __future__ import annotations

from avlearn.data.datasets.valor_layout import LayoutQADataset
from avlearn.registry import DATASETS


@DATASETS.register("music_avqa_valor")
class MusicAVQAValorDataset(LayoutQADataset):
    """MUSIC-AVQA as open-ended QA in VALOR's layout; train/test."""

    name = "music_avqa_valor"
    files = {s: ([f"{s}_id_vqa.json"], [f"txt_mapper_vqa_{s}.json"]) for s in ("train", "test")}
    folders = ("music-avqa", "MUSIC-AVQA", ".")
    frame_folders = ("frames_1fps", "frames_fps4")
