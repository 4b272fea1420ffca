"""The readers on the benchmarks' full published annotation files (../shared/data; skipped when absent)."""

import pytest
from dataset_paths import SHARED, needs_shared

from avlearn.data.datasets.ave import AVEDataset
from avlearn.data.datasets.avsbench import AVSBenchS4
from avlearn.data.datasets.llp import LLPDataset
from avlearn.data.datasets.music_avqa import GROUPS, TYPES, MusicAVQADataset
from avlearn.data.datasets.vggsound import VGGSoundDataset

pytestmark = needs_shared


def _read(reader, split):
    return reader(SHARED, split, missing="keep")


def test_ave_counts_and_classes() -> None:
    splits = {s: _read(AVEDataset, s) for s in ("train", "val", "test", "all")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 3339, "val": 402, "test": 402, "all": 4143}
    assert len(splits["all"].classes) == 28 and splits["all"].classes[0] == "Church bell"
    assert len({r.id for r in splits["all"].records}) == 4143  # repeated VideoIDs get #2 ...
    assert all(d.info.segments == 10 for d in splits.values())


def test_llp_counts_and_segments() -> None:
    splits = {s: _read(LLPDataset, s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 10000, "val": 649, "test": 1200}
    assert len(splits["train"].classes) == 25
    test = splits["test"]
    first = test.records[0]  # 4YdbENYcIyE_23_33: audio Baby_cry 0-4, visual Baby_cry 0-10
    k = test.classes.index("Baby_cry_infant_cry")
    assert first.targets["audio_segments"][:, k].tolist() == [1] * 4 + [0] * 6
    assert first.targets["visual_segments"][:, k].sum() == 10


@pytest.mark.parametrize(("split", "count"), [("val", 4568), ("test", 9129)])
def test_music_avqa_parses_completely(split: str, count: int) -> None:
    data = _read(MusicAVQADataset, split)
    assert len(data) == count and len(data.classes) == 42
    types = {r.targets["question_type"] for r in data.records}
    assert len(types) == 9 and all(t.split("/")[0] in GROUPS and t.split("/")[1] in TYPES for t in types)
    assert all(0 <= r.targets["answer"] < 42 and "<" not in r.targets["question"] for r in data.records)


def test_avsbench_s4_lists_parse() -> None:
    splits = {s: _read(AVSBenchS4, s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 3452, "val": 740, "test": 740}
    assert len(splits["train"].classes) == 23
    assert splits["train"].records[0].targets["mask_valid"].tolist() == [True, False, False, False, False]
    assert splits["test"].records[0].targets["mask_valid"].all()


def test_vggsound_test_list_parses() -> None:
    data = _read(VGGSoundDataset, "test")
    assert len(data) == 15446 and len(data.classes) == 309
    assert data.records[0].id == "---g-f_I2yQ_000001"
