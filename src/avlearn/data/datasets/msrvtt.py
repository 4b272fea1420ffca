"""MSR-VTT (Xu et al., "MSR-VTT: A Large Video Description Dataset for Bridging Video and Language", CVPR 2016) in
the annotation format of the VALOR code (see ``valor32k.py``).

Files, in ``<root>/MSRVTT/``, ``<root>/msrvtt/`` or ``<root>/``: the 1k-A retrieval split
(``1KAsplit_train_id.json``, 9000 videos; ``1kAsplit_test_id.json``, 1000 videos with one caption each in
``txt_mapper_1kAsplit_test.json``; note the case of the two names, as published), or the standard captioning split
(``standardsplit_{train,val,test}_id.json``), with ``txt_mapper.json`` (20 captions per video).
Splits: ``train`` and ``test`` (1k-A), ``std_train``, ``std_val``, ``std_test`` (standard).
"""

from __future__ import annotations

from pathlib import Path

from avlearn.data.datasets.valor32k import CaptionDataset
from avlearn.registry import DATASETS

FILES = {
    "train": (["1KAsplit_train_id.json", "1kAsplit_train_id.json"], ["txt_mapper.json"]),
    "test": (["1kAsplit_test_id.json", "1KAsplit_test_id.json"], ["txt_mapper_1kAsplit_test.json", "txt_mapper.json"]),
    **{f"std_{s}": ([f"standardsplit_{s}_id.json"], ["txt_mapper.json"]) for s in ("train", "val", "test")},
}


@DATASETS.register("msrvtt")
class MSRVTTDataset(CaptionDataset):
    """MSR-VTT: 10k videos with 20 captions each; 1k-A retrieval split (train/test) or the standard split."""

    name = "msrvtt"
    splits = tuple(FILES)

    def __init__(self, root: str | Path, split: str, **options: object) -> None:
        ids, mappers = FILES.get(split, ([], []))
        super().__init__(root, split, ids, mappers, ("MSRVTT", "msrvtt", "."), **options)  # type: ignore[arg-type]
