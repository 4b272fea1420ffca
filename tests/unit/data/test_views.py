"""Clip views: frame times and audio windows, in training (random, in bounds) and evaluation (centred)."""

from __future__ import annotations

import numpy as np
import pytest

from avlearn.data.views import ClipView, item_rng
from avlearn.errors import ConfigError


def test_uniform_frames_are_the_part_centres_and_jitter_stays_in_its_part() -> None:
    view = ClipView(frames=8, sampling="jitter")
    np.testing.assert_allclose(view.frame_times(10.0), (np.arange(8) + 0.5) * 1.25)  # evaluation: centred
    for seed in range(20):
        times = view.frame_times(10.0, item_rng(seed, 0, 0))
        part = np.floor(times / 1.25)
        np.testing.assert_array_equal(part, np.arange(8))
    uniform = ClipView(frames=8)
    np.testing.assert_allclose(uniform.frame_times(10.0, item_rng(0, 0, 0)), uniform.frame_times(10.0))


def test_audio_windows_centred_in_eval_random_in_training_and_inside_the_clip() -> None:
    view = ClipView(frames=0, windows=2, window_seconds=3.0)
    np.testing.assert_allclose(view.window_starts(10.0), [2.5 - 1.5, 7.5 - 1.5])
    for seed in range(50):
        starts = view.window_starts(10.0, item_rng(seed, 1, 3))
        assert (starts >= 0).all() and (starts + 3.0 <= 10.0 + 1e-9).all()
    assert item_rng(1, 2, 3).uniform() == item_rng(1, 2, 3).uniform() != item_rng(1, 3, 3).uniform()


def test_sample_cuts_frames_and_windows_from_decoded_arrays() -> None:
    frames = np.arange(40)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)  # frame i has value i, 4 fps
    times = np.arange(40) / 4
    wave = np.arange(10 * 100, dtype=np.float32)  # 100 Hz, sample value = index
    view = ClipView(frames=5, windows=1, window_seconds=2.0, waveform=True)
    out = view.sample(frames, times, wave, 100, 10.0)
    np.testing.assert_array_equal(out["frames"][:, 0, 0, 0], [4, 12, 20, 28, 36])  # nearest to 1, 3, 5, 7, 9 s
    np.testing.assert_array_equal(out["wave"], wave[None, 400:600])  # centred 2 s window: 4 s .. 6 s


def test_invalid_views_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="sampling"):
        ClipView(sampling="random")
    with pytest.raises(ConfigError, match="window_seconds"):
        ClipView(window_seconds=0)
    with pytest.raises(ConfigError, match="segments"):
        ClipView(frames=10, visual_segments=3)
