"""AVSynth's ``extra_test_clips`` option: more event clips, all in the test split, while the first ``clips`` keep
their clips and their 80/10/10 splits (a more precise test score at the same training split)."""

from __future__ import annotations

import hashlib

import pytest
from omegaconf import OmegaConf

from avlearn.cli.main import main
from avlearn.config.schema import DataConfig
from avlearn.data.pipelines import synth_config
from avlearn.data.synth import SynthConfig, generate, read_meta
from avlearn.errors import DataError

SMALL = {"avs_clips": 0, "avqa_clips": 0, "sound_clips": 0, "image_clips": 0, "num_classes": 3, "size": 16,
         "seconds": 5, "fps": 2, "sample_rate": 8000, "seed": 4}  # fmt: skip


def _ave_rows(root, name: str) -> list[str]:
    return (root / "AVE" / name).read_text().splitlines()


def test_the_first_clips_keep_their_splits_and_videos_and_the_extra_ones_are_test_clips(tmp_path):
    plain = generate(tmp_path / "plain", SynthConfig(clips=5, **SMALL), workers=1)
    more = tmp_path / "more"  # through the command, which passes the option
    args = ("--clips 5 --extra-test-clips 2 --avs-clips 0 --avqa-clips 0 --classes 3 --size 16 --seconds 5 --fps 2 "
            "--sample-rate 8000 --seed 4 --workers 1").split()  # fmt: skip
    assert main(["synth", str(more), *args]) == 0
    for name in ("trainSet.txt", "valSet.txt"):
        assert _ave_rows(more, name) == _ave_rows(plain, name)
    tests = _ave_rows(more, "testSet.txt")
    assert tests[: len(_ave_rows(plain, "testSet.txt"))] == _ave_rows(plain, "testSet.txt")
    assert [row.split("&")[1] for row in tests[-2:]] == ["ev000005", "ev000006"]
    assert read_meta(more)["counts"]["events"] == {"train": 3, "val": 1, "test": 3}
    for i in range(5):  # the same clips, byte for byte
        digest = [hashlib.md5((root / "videos" / f"ev{i:06d}.mp4").read_bytes()).hexdigest() for root in (plain, more)]
        assert digest[0] == digest[1], i


def test_the_option_reaches_the_event_part_and_the_cache_key_only_when_set():
    assert "extra_test_clips" not in SynthConfig(clips=8).params()
    assert SynthConfig(clips=8, extra_test_clips=2).params()["extra_test_clips"] == 2
    data = OmegaConf.structured(DataConfig(extra_test_clips=40))
    assert synth_config(data, part="events").extra_test_clips == 40
    assert synth_config(data, part="events").count("events") == data.clips + 40
    for part in ("avs", "avqa", "sounds", "images"):
        assert synth_config(data, part=part).extra_test_clips == 0


def test_a_negative_count_is_a_one_line_data_error():
    with pytest.raises(DataError, match="extra_test_clips must be >= 0"):
        SynthConfig(extra_test_clips=-1).validate()
