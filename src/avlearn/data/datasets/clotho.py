"""Clotho (Drossos et al., "Clotho: An Audio Captioning Dataset", ICASSP 2020) in the VALOR layout
(``valor_layout.py``; the seed's ``caption-clotho.json`` and ``fast-retrieval-clotho.json``). Audio only: the
audio tower alone (``ta``), 15-30 s clips with 5 captions each.

Files, in ``<root>/clotho/``, ``<root>/Clotho/`` or ``<root>/``: ``train_id.json`` and ``test_id.json`` with
``txt_mapper.json``. Audio: ``all_audios/<id>.wav`` (the seed's folder; or ``audio_22050hz/``, ``audio/``; an id
may carry its ``.wav``), or ``media=``. Splits: ``train``, ``test``.
"""

from __future__ import annotations

from avlearn.data.datasets.valor_layout import AudioCaptionDataset
from avlearn.registry import DATASETS


@DATASETS.register("clotho")
class ClothoDataset(AudioCaptionDataset):
    """Clotho: sound clips with 5 captions each (audio captioning, text-audio retrieval); train/test."""

    name = "clotho"
    files = {s: ([f"{s}_id.json"], ["txt_mapper.json"]) for s in ("train", "test")}
    folders = ("clotho", "Clotho", ".")
