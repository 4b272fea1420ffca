"""AVSynth's ``sound_background`` option: a background sound of another class in ESC-50 / ImageNet-ESC's sounds."""

from __future__ import annotations

import wave
from dataclasses import asdict

import numpy as np
import pytest

from avlearn.data.synth import LATER_DEFAULTS, SynthConfig, clip_id, generate, read_meta
from avlearn.data.synth.scene import sample_scene
from avlearn.errors import DataError


def _scene(flavour: str, index: int, background: float, num_classes: int = 10):
    rng = np.random.default_rng([3, 4, index])
    return sample_scene(flavour, clip_id(flavour, index), rng, 5, num_classes, index, background), rng


def test_without_background_the_scenes_and_the_draws_after_them_are_those_of_before():
    for flavour in ("sounds", "images"):
        for index in range(12):
            old, old_rng = _scene(flavour, index, 0.0)
            rng = np.random.default_rng([3, 4, index])
            new = sample_scene(flavour, clip_id(flavour, index), rng, 5, 10, index)  # the format-4 call
            assert new == old
            assert rng.integers(2**31) == old_rng.integers(2**31)  # the render seed drawn next is the same


def test_a_background_is_another_class_heard_over_part_of_the_sound_and_never_seen():
    for index in range(30):
        clean, _ = _scene("sounds", index, 0.0)
        noisy, _ = _scene("sounds", index, 1.0)
        main, extra = noisy.sources
        assert main == clean.sources[0] and noisy.background == clean.background  # the labelled sound unchanged
        assert extra.cls != main.cls and 0 <= extra.cls < 10
        assert extra.visible == [] and len(extra.audible) == 1
        on, off = extra.audible[0]
        assert 0 <= on < off <= 5
        image, _ = _scene("images", index, 1.0)  # images never get one
        assert len(image.sources) == 1


def test_the_background_probability_is_its_frequency():
    n = 2000
    count = sum(len(_scene("sounds", i, 0.3)[0].sources) == 2 for i in range(n))
    assert abs(count / n - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)  # 4 binomial standard deviations


def test_the_option_at_its_default_keeps_the_folder_parameters_of_format_4():
    cfg = SynthConfig(clips=8)
    assert cfg.params() == {k: v for k, v in asdict(cfg).items() if k not in LATER_DEFAULTS}
    assert SynthConfig(clips=8, sound_background=0.5).params()["sound_background"] == 0.5


def _wav(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def test_rendered_sounds_hold_the_background_and_a_folder_is_refused_for_another_probability(tmp_path):
    base = SynthConfig(clips=0, sound_clips=4, image_clips=0, num_classes=4, size=16, sample_rate=8000, seed=5)
    clean = generate(tmp_path / "clean", base, workers=1)
    mixed = generate(tmp_path / "mixed", SynthConfig(**{**asdict(base), "sound_background": 1.0}), workers=1)
    assert "sound_background" not in read_meta(clean)["config"]
    assert read_meta(mixed)["config"]["sound_background"] == 1.0
    files = sorted((clean / "ESC-50-master" / "audio").glob("*.wav"))
    assert len(files) == 4
    for path in files:  # same names (fold, index, class of the labelled sound), other waveforms
        assert not np.array_equal(_wav(path), _wav(mixed / "ESC-50-master" / "audio" / path.name))
    with pytest.raises(DataError, match="sound_background"):
        generate(tmp_path / "clean", SynthConfig(**{**asdict(base), "sound_background": 1.0}))
    with pytest.raises(DataError, match="sound_background must be in"):
        generate(tmp_path / "bad", SynthConfig(**{**asdict(base), "sound_background": 1.5}))
