"""MSVD (Chen and Dolan, "Collecting Highly Parallel Data for Paraphrase Evaluation", ACL 2011) captions and
MSVD-QA (Xu et al., "Video Question Answering via Gradually Refined Attention over Appearance and Motion", ACM MM
2017), in the VALOR layout (``valor_layout.py``; the seed's ``fast-retrieval-msvd.json``, ``caption-msvd.json``
and ``VQA-msvd.json``). No audio is read (the seed trains MSVD with ``tv`` only).

Files, in ``<root>/msvd/``, ``<root>/MSVD/`` or ``<root>/``:

- captions (``msvd``): ``train_id_ret_cap.json`` and ``test_id_ret_cap.json`` with ``txt_mapper.json``; splits
  ``train``, ``test``;
- QA (``msvd_qa``): ``train_id_vqa.json`` and ``test_id_vqa.json`` with ``txt_mapper_vqa.json``; splits
  ``train``, ``test``.

Media: VALOR's ``frames_fps4/<id>/``, ``videos/<id>.mp4`` (or ``.avi``), or ``media=``.
"""

from __future__ import annotations

from avlearn.data.datasets.valor32k import MEDIA_TEMPLATES
from avlearn.data.datasets.valor_layout import LayoutCaptionDataset, LayoutQADataset
from avlearn.registry import DATASETS


class MSVDMedia:
    """Where both MSVD readers find their files: folders and video templates; no audio."""

    folders = ("msvd", "MSVD", ".")
    templates = (*MEDIA_TEMPLATES, "videos/{media}.avi", "YouTubeClips/{media}.avi")
    audio_folder = None


@DATASETS.register("msvd")
class MSVDDataset(MSVDMedia, LayoutCaptionDataset):
    """MSVD: 1970 YouTube clips with ~40 captions each (retrieval and captioning); train/test."""

    name = "msvd"
    files = {s: ([f"{s}_id_ret_cap.json"], ["txt_mapper.json"]) for s in ("train", "test")}


@DATASETS.register("msvd_qa")
class MSVDQADataset(MSVDMedia, LayoutQADataset):
    """MSVD-QA: open-ended questions on MSVD clips; train/test."""

    name = "msvd_qa"
    files = {s: ([f"{s}_id_vqa.json"], ["txt_mapper_vqa.json"]) for s in ("train", "test")}
