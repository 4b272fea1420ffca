"""The readers on small excerpts of the real files (tests/fixtures/datasets): targets, ids, splits, stats."""

from pathlib import Path

import numpy as np

from avlearn.data.datasets.ave import AVEDataset
from avlearn.data.datasets.avsbench import AVSBenchS4
from avlearn.data.datasets.llp import LLPDataset
from avlearn.data.datasets.music_avqa import MusicAVQADataset
from avlearn.data.datasets.vggsound import VGGSoundDataset


def test_ave_rows_segments_and_repeated_ids(fixtures: Path) -> None:
    train = AVEDataset(fixtures, "train", missing="keep")
    ids = [r.id for r in train.records]
    assert ids[-2:] == ["0N4aDYt8vmI", "0N4aDYt8vmI#2"]  # two events of one video: two samples
    assert train.records[-1].media == "0N4aDYt8vmI"
    by_id = {r.id: r.targets for r in train.records}
    assert by_id["fCZi6I6kPpU"]["segment_labels"].tolist() == [28] * 6 + [0] * 4  # Church bell&...&6&10
    assert by_id["VWi2ENBuTbw"]["segment_labels"].tolist() == [28] * 10  # published StartTime = EndTime = 0
    assert by_id["0N4aDYt8vmI#2"]["label"] == train.classes.index("Accordion")
    assert train.stats()["per_class"]["Church bell"] == 4


def test_llp_weak_labels_and_eval_segments(fixtures: Path) -> None:
    train = LLPDataset(fixtures, "train", missing="keep")
    assert train.records[0].id == "BjCEufrlXm4_20_30"
    speech, dog = train.classes.index("Speech"), train.classes.index("Dog")
    assert np.flatnonzero(train.records[0].targets["labels"]).tolist() == sorted([speech, dog])
    assert "audio_segments" not in train.records[0].targets  # weak labels only
    val = LLPDataset(fixtures, "val", missing="keep")
    frying = val.records[1].targets  # 8sfcMZ8A3OQ_180_190: audio Speech 0-4 and 8-9
    assert frying["audio_segments"][:, speech].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 1, 0]
    assert val.stats()["audio_event_seconds"] > 0


def test_music_avqa_fills_slots_and_maps_answers(fixtures: Path) -> None:
    data = MusicAVQADataset(fixtures, "val", missing="keep")
    first, third = data.records[0].targets, data.records[2].targets
    assert first["question"] == "Is the ukulele in the video always playing?"
    assert data.classes[first["answer"]] == "yes" and first["question_type"] == "Audio-Visual/Existential"
    assert third["question"] == "What is the instrument on the left of electric_bass?"
    assert data.classes[third["answer"]] == "saxophone"
    assert data.records[0].id == "7" and data.records[0].media == "00000028"


def test_avsbench_lists_group_five_frames(fixtures: Path) -> None:
    train = AVSBenchS4(fixtures, "train", missing="keep")
    assert [r.id for r in train.records] == ["5rQzpw4J7ss", "BIdHpHU42Ak"]
    assert train.records[0].fields["category"] == "playing_glockenspiel"
    assert train.records[0].targets["mask_valid"].sum() == 1


def test_vggsound_split_list(fixtures: Path) -> None:
    data = VGGSoundDataset(fixtures, "test", missing="keep")
    assert len(data) == 8 and data.records[0].fields["yid"] == "---g-f_I2yQ"
    assert data.classes[data.records[0].targets["label"]] == "people_marching"
