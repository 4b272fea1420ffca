"""ActivityNet Captions (Krishna et al., "Dense-Captioning Events in Videos", ICCV 2017) as paragraph-to-video
retrieval, and ActivityNet-QA (Yu et al., "ActivityNet-QA", AAAI 2019), both in the VALOR layout
(``valor_layout.py``; the seed's ``fast-retrieval-activitynet.json`` and ``VQA-activitynet.json``).

Files, in ``<root>/activitynet/``, ``<root>/ActivityNet/`` or ``<root>/``:

- captions (``activitynet``): ``train_id.json`` and ``val1_id.json`` (the seed's test list: the ``val_1`` half of
  the release) with ``txt_mapper.json``; splits ``train``, ``val1``;
- QA (``activitynet_qa``): ``train_id_vqa.json`` and ``test_id_vqa.json`` with ``txt_mapper_vqa.json``
  (``{id: [{"question", "answer"}, ...]}``); splits ``train``, ``test``.

Media: VALOR's ``frames_1fps/<id>/`` + ``audio_22050hz/<id>.wav``, ``videos/<id>.mp4``, or ``media=``.
"""

from __future__ import annotations

from avlearn.data.datasets.valor_layout import LayoutCaptionDataset, LayoutQADataset
from avlearn.registry import DATASETS


class ActivityNetMedia:
    """Where both ActivityNet readers find their files: folders and VALOR's 1 fps frames."""

    folders = ("activitynet", "ActivityNet", ".")
    frame_folders = ("frames_1fps", "frames_fps4")


@DATASETS.register("activitynet")
class ActivityNetCaptionsDataset(ActivityNetMedia, LayoutCaptionDataset):
    """ActivityNet Captions: 20k YouTube videos with paragraph descriptions (paragraph retrieval); train/val1."""

    name = "activitynet"
    files = {s: ([f"{s}_id.json"], ["txt_mapper.json"]) for s in ("train", "val1")}


@DATASETS.register("activitynet_qa")
class ActivityNetQADataset(ActivityNetMedia, LayoutQADataset):
    """ActivityNet-QA: open-ended questions on ActivityNet videos; train/test."""

    name = "activitynet_qa"
    files = {s: ([f"{s}_id_vqa.json"], ["txt_mapper_vqa.json"]) for s in ("train", "test")}
