"""MSRVTT-QA (Xu et al., "Video Question Answering via Gradually Refined Attention over Appearance and Motion",
ACM MM 2017) in the VALOR layout (``valor_layout.py``; the seed's ``VQA-msrvtt.json``): MSR-VTT's standard split
(``msrvtt.py``) with question-answer mappers.

Files, in ``<root>/MSRVTT/``, ``<root>/msrvtt/`` or ``<root>/``: ``standardsplit_train_id.json`` with
``txt_mapper_vqa_1500.json`` (the seed's training mapper; ``txt_mapper_vqa.json`` when there is none),
``standardsplit_test_id.json`` with ``txt_mapper_vqa.json`` (``{id: [{"question", "answer"}, ...]}``).
Media as MSR-VTT's. Splits: ``train``, ``test``.
"""

from __future__ import annotations

from avlearn.data.datasets.valor_layout import LayoutQADataset
from avlearn.registry import DATASETS


@DATASETS.register("msrvtt_qa")
class MSRVTTQADataset(LayoutQADataset):
    """MSRVTT-QA: open-ended questions on MSR-VTT's standard split; train/test."""

    name = "msrvtt_qa"
    files = {
        "train": (["standardsplit_train_id.json"], ["txt_mapper_vqa_1500.json", "txt_mapper_vqa.json"]),
        "test": (["standardsplit_test_id.json"], ["txt_mapper_vqa.json"]),
    }
    folders = ("MSRVTT", "msrvtt", ".")
