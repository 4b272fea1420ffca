"""Readers for datasets in the VALOR annotation layout (Chen et al., "VALOR", TPAMI 2024; the layout of
``valor32k.py``): a dataset is its split table (split -> id-list file names, txt_mapper file names), its folders
and where its media is. The table-driven bases here are what the per-dataset modules (``didemo.py``,
``activitynet.py``, ``lsmdc.py``, ``vatex.py``, ``msvd.py``, ``msrvtt_qa.py``, ``tgif_qa.py``,
``music_avqa_valor.py``, ``audiocaps.py``, ``clotho.py``, ``valor1m.py``) fill in with the file names of the
seed's configs.

- ``LayoutCaptionDataset``: one record per listed video, targets ``text`` and ``captions`` (``CaptionDataset``);
- ``LayoutQADataset``: one record per question (id ``<video_id>#<n>``), targets ``question`` and ``answer``
  (``VALORQADataset``'s records);
- ``AudioCaptionDataset``: an audio-only one (no frames): clips ``audio_22050hz/<id>.wav`` (the seed's extracted
  audio), ``all_audios/<id>.wav`` or ``audio/<id>.wav`` (``.flac`` too, or the id already with its suffix), the
  whole clip decoded.

Media (frame and audio folders, video files) is looked for in the folder that holds the id lists, as in the
seed's ``datasets/<name>/``. The file names of a split are tried in order (the first that exists is read); a
missing file raises naming every name tried, and a malformed one names the file and the item or field
(``valor32k.read_*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from avlearn.data.datasets.base import ClipDataset
from avlearn.data.datasets.media import Decode
from avlearn.data.datasets.valor32k import CaptionDataset, VALORQADataset

# split -> (id-list file names, txt_mapper file names), each tried in order
SplitFiles = dict[str, tuple[list[str], list[str]]]
AUDIO_FOLDERS = ("audio_22050hz", "all_audios", "audio")


class LayoutCaptionDataset(CaptionDataset):
    """A captioned dataset in the VALOR layout, given by ``files`` (split -> file names; its keys are the splits)
    and ``folders``."""

    files: ClassVar[SplitFiles] = {}
    folders: ClassVar[tuple[str, ...]] = (".",)
    media_beside_ids = True  # the seed's datasets/<name>/ holds the lists, the mappers and the media

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.splits = tuple(cls.files)

    def __init__(self, root: str | Path, split: str, **options: object) -> None:
        ids, mappers = self.files.get(split, ([], []))
        super().__init__(root, split, ids, mappers, self.folders, **options)  # type: ignore[arg-type]


class LayoutQADataset(LayoutCaptionDataset):
    """Open-ended QA in the VALOR layout (a txt_mapper of question-answer records), given by ``files``."""

    stats = ClipDataset.stats  # no captions to count
    read_records = staticmethod(VALORQADataset.read_records)


class AudioCaptionDataset(LayoutCaptionDataset):
    """An audio-only captioned dataset in the VALOR layout (audio captioning, text-audio retrieval)."""

    templates = tuple(f"{d}/{{media}}{s}" for d in AUDIO_FOLDERS for s in (".wav", ".flac", ""))
    frame_folders = ()
    audio_folder = None
    default_decode = Decode(frames=0, seconds=None)
