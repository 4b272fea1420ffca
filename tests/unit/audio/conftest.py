"""Shared test signals for the audio feature tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def make_test_signal(sample_rate: int, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """A linear chirp from 100 Hz to 0.49 * sample_rate, a 1 kHz tone and white noise, with a second of digital
    silence from 3 s to 4 s; float32 in [-1, 1]."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f_end = 0.49 * sample_rate
    chirp = np.sin(2 * np.pi * (100 * t + (f_end - 100) / (2 * seconds) * t**2))
    noise = np.random.default_rng(seed).standard_normal(t.size)
    wave = 0.3 * chirp + 0.2 * np.sin(2 * np.pi * 1000 * t) + 0.05 * noise
    wave[int(3 * sample_rate) : int(4 * sample_rate)] = 0.0
    return wave.astype(np.float32)


@pytest.fixture(scope="session")
def make_signal() -> Callable[..., np.ndarray]:
    """The test-signal generator, ``make_signal(sample_rate, seconds=10.0, seed=0)``."""
    return make_test_signal


@pytest.fixture(scope="session")
def wave_16k() -> np.ndarray:
    """10 s of the test signal at 16 kHz."""
    return make_test_signal(16_000)
