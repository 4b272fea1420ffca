"""AVSynth's ``event_distractors`` option: ``both`` gives every event clip a seen-only and a heard-only distractor,
so that only the two modalities together name the clip's class; ``half`` (the default) is format 4's event clips."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import asdict

import numpy as np
import pytest
from omegaconf import OmegaConf

from avlearn.config.schema import DataConfig
from avlearn.data.pipelines import synth_config
from avlearn.data.synth import SynthConfig, clip_id, generate, read_meta
from avlearn.data.synth.scene import sample_scene
from avlearn.errors import DataError

# sha1 of the first 64 event scenes of seed 0 (10 s, 10 classes) and the render seed drawn after each, computed with
# scene.py of the base commit f16ea64, before the option existed: the default must draw exactly those scenes.
FORMAT_4_EVENTS_SHA1 = "3eafd0f530d73eead509ab4339b49598fa89246d"


def _events(index: int, distractors: str | None = None, num_classes: int = 10, seed: int = 0):
    rng = np.random.default_rng([seed, 0, index])
    extra = {} if distractors is None else {"event_distractors": distractors}
    scene = sample_scene("events", clip_id("events", index), rng, 10, num_classes, index, **extra)
    return scene, int(rng.integers(2**31))


def test_by_default_the_event_scenes_and_the_draws_after_them_are_those_of_format_4():
    for distractors in (None, "half"):
        drawn = [(repr(scene), after) for scene, after in (_events(i, distractors) for i in range(64))]
        assert hashlib.sha1(repr(drawn).encode()).hexdigest() == FORMAT_4_EVENTS_SHA1


def _classes(scene, modality: str) -> set[int]:
    return {src.cls for src in scene.sources if getattr(src, modality)}


@pytest.mark.parametrize("num_classes", [3, 10])
def test_with_both_each_modality_holds_two_candidates_and_only_the_label_is_seen_and_heard(num_classes):
    for index in range(200):
        scene, _ = _events(index, "both", num_classes, seed=7)
        cls, start, end = scene.event
        main, seen_only, heard_only = scene.sources
        seen, heard = _classes(scene, "visible"), _classes(scene, "audible")
        assert len(seen) == len(heard) == 2 and seen & heard == {cls} == {main.cls}
        assert len({main.cls, seen_only.cls, heard_only.cls}) == 3
        # The distractors keep the label's timing in their modality, so timing does not tell them apart.
        assert seen_only.visible == main.visible and seen_only.audible == []
        assert heard_only.audible == main.audible and heard_only.visible == []
        labels = scene.av_labels()  # per second: the label exactly over the event
        assert (labels[start:end] == cls).all() and (np.delete(labels, range(start, end)) == -1).all()


def test_with_both_the_label_is_equally_often_on_each_side_and_the_distractor_classes_are_uniform():
    n, num_classes = 3000, 5
    scenes = [_events(i, "both", num_classes, seed=3)[0] for i in range(n)]
    left = sum(s.sources[0].x < s.sources[1].x for s in scenes)
    assert abs(left / n - 0.5) < 4 * np.sqrt(0.25 / n)  # 4 binomial standard deviations
    offsets = np.array([[(src.cls - s.event[0]) % num_classes for src in s.sources[1:]] for s in scenes])  # (n, 2)
    for column in offsets.T:  # each distractor: every other class about equally often
        counts = np.bincount(column, minlength=num_classes)
        assert counts[0] == 0
        p = 1 / (num_classes - 1)
        assert (np.abs(counts[1:] / n - p) < 4 * np.sqrt(p * (1 - p) / n)).all()


def test_the_option_reaches_the_folder_parameters_only_when_not_the_default():
    assert "event_distractors" not in SynthConfig(clips=8).params()
    assert SynthConfig(clips=8, event_distractors="both").params()["event_distractors"] == "both"
    data = OmegaConf.structured(DataConfig(event_distractors="both"))
    assert synth_config(data, part="events").event_distractors == "both"  # the event part: in its cache key
    for part in ("avs", "avqa", "sounds", "images"):  # the other parts: their sets and keys unchanged
        assert synth_config(data, part=part).event_distractors == "half"


def test_bad_values_are_one_line_data_errors():
    with pytest.raises(DataError, match="event_distractors must be one of"):
        SynthConfig(event_distractors="all").validate()
    with pytest.raises(DataError, match="needs 3\\+ classes"):
        SynthConfig(num_classes=2, event_distractors="both").validate()


def test_a_rendered_set_records_the_option_labels_the_shared_class_and_refuses_the_other_option(tmp_path):
    base = SynthConfig(clips=6, avs_clips=0, avqa_clips=0, sound_clips=0, image_clips=0, num_classes=4, size=16,
                       sample_rate=8000, seed=2, event_distractors="both")  # fmt: skip
    root = generate(tmp_path / "both", base, workers=1)
    assert read_meta(root)["config"]["event_distractors"] == "both"
    names = [c["name"] for c in read_meta(root)["classes"]]
    with open(root / "VGGSound" / "vggsound.csv") as f:
        labels = {row[0]: row[2] for row in csv.reader(f)}
    assert len(labels) == 5  # the validation clip is left out, as in the release
    for index in range(6):
        rng = np.random.default_rng([2, 0, index])
        scene = sample_scene("events", clip_id("events", index), rng, 10, 4, index, event_distractors="both")
        assert labels.get(scene.clip_id, names[scene.event[0]]) == names[scene.event[0]]
    with pytest.raises(DataError, match="event_distractors"):
        generate(tmp_path / "both", SynthConfig(**{**asdict(base), "event_distractors": "half"}))


def test_the_synth_command_passes_the_option(tmp_path):
    from avlearn.cli.main import main

    out = tmp_path / "avsynth"
    args = ["synth", str(out), "--clips", "3", "--size", "16", "--classes", "3", "--workers", "1"]
    assert main([*args, "--event-distractors", "both"]) == 0
    assert read_meta(out)["config"]["event_distractors"] == "both"
