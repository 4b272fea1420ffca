"""AudioCaps (Kim et al., "AudioCaps: Generating Captions for Audios in The Wild", NAACL 2019) in the VALOR layout
(``valor_layout.py``; the seed's ``caption-audiocaps.json`` and ``fast-retrieval-audiocaps.json``). Audio only:
the audio tower alone (``ta``).

Files, in ``<root>/audiocaps/``, ``<root>/AudioCaps/`` or ``<root>/``: captioning lists ``train_id_cap.json`` and
``test_id_cap.json`` with ``txt_mapper.json``; retrieval lists ``train_id_ret.json`` and ``test_id_ret.json`` with
``txt_mapper_ret.json``. Audio: ``audio_22050hz/<id>.wav`` (or ``all_audios/``, ``audio/``), or ``media=``.
Splits: ``train``, ``test`` (captioning), ``ret_train``, ``ret_test`` (retrieval).
"""

from __future__ import annotations

from avlearn.data.datasets.valor_layout import AudioCaptionDataset
from avlearn.registry import DATASETS


@DATASETS.register("audiocaps")
class AudioCapsDataset(AudioCaptionDataset):
    """AudioCaps: AudioSet clips with human captions (audio captioning, text-audio retrieval)."""

    name = "audiocaps"
    files = {
        **{s: ([f"{s}_id_cap.json"], ["txt_mapper.json"]) for s in ("train", "test")},
        **{f"ret_{s}": ([f"{s}_id_ret.json"], ["txt_mapper_ret.json"]) for s in ("train", "test")},
    }
    folders = ("audiocaps", "AudioCaps", ".")
