"""Resampling against the exact answer and against soxr (librosa's default resampler, ``res_type='soxr_hq'``).

The signal is a sum of 12 sinusoids below 0.85 of the lower Nyquist frequency, so the ideal output is the same sum
evaluated at the new sampling instants. Away from the ends (5 ms, more than the kernel's half-width), ours must be
within 2e-5 of it (measured: at most 6.5e-6 over these rate pairs: the pass-band ripple of the Kaiser window) and
within 3e-4 of soxr's "HQ" output, which itself sits up to 1.5e-4 from the exact answer. Near the ends both see a
sinusoid switched on abruptly, which is not band-limited, so the resamplers legitimately differ there.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from avlearn.audio import resample

RATE_PAIRS = [(44_100, 16_000), (16_000, 48_000), (22_050, 16_000), (8_000, 44_100), (48_000, 32_000)]


def sinusoids(sample_rate: int, n: int, freqs: np.ndarray, phases: np.ndarray) -> np.ndarray:
    t = np.arange(n)[:, None] / sample_rate
    return np.sin(2 * np.pi * freqs * t + phases).mean(axis=1)


def band_limited_case(orig: int, new: int, seconds: float = 0.25) -> tuple[np.ndarray, np.ndarray, slice]:
    """Input at ``orig``, the exact output at ``new`` and the interior slice of the output to compare."""
    rng = np.random.default_rng(orig + new)
    freqs = rng.uniform(20.0, 0.85 * min(orig, new) / 2, 12)
    phases = rng.uniform(0.0, 2 * np.pi, 12)
    n = int(seconds * orig)
    n_out = -(-n * new // orig)
    margin = int(0.005 * new)
    return sinusoids(orig, n, freqs, phases), sinusoids(new, n_out, freqs, phases), slice(margin, n_out - margin)


@pytest.mark.parametrize(("orig", "new"), RATE_PAIRS)
def test_resample_matches_exact_band_limited_output(orig: int, new: int) -> None:
    wave, exact, interior = band_limited_case(orig, new)
    ours = resample(torch.from_numpy(wave.astype(np.float32)), orig, new)
    assert ours.shape == exact.shape and ours.dtype == torch.float32
    assert np.abs(ours.numpy()[interior] - exact[interior]).max() < 2e-5


@pytest.mark.parametrize(("orig", "new"), RATE_PAIRS[:3])
def test_resample_agrees_with_soxr(orig: int, new: int) -> None:
    soxr = pytest.importorskip("soxr")
    wave, _, interior = band_limited_case(orig, new)
    ours = resample(torch.from_numpy(wave), orig, new).numpy()
    reference = soxr.resample(wave, orig, new, quality="HQ")
    assert reference.shape == ours.shape
    assert np.abs(ours[interior] - reference[interior]).max() < 3e-4


def test_resample_rejects_aliases() -> None:
    """A 9 kHz tone cannot exist at 16 kHz: it must come out at least 80 dB down, not folded to 7 kHz."""
    t = torch.arange(44_100, dtype=torch.float64) / 44_100
    out = resample(torch.sin(2 * torch.pi * 9000 * t), 44_100, 16_000)[200:-200]
    assert out.abs().max() < 1e-4


def test_coprime_rates_use_the_direct_path_with_the_same_result() -> None:
    """44100 -> 16001 has no small polyphase kernel; forcing that path on 44100 -> 16000 must change nothing."""
    wave, exact, interior = band_limited_case(44_100, 16_001, seconds=0.1)
    assert np.abs(resample(torch.from_numpy(wave), 44_100, 16_001).numpy()[interior] - exact[interior]).max() < 2e-5
    module = importlib.import_module("avlearn.audio.resample")
    x = torch.from_numpy(wave)
    polyphase = resample(x, 44_100, 16_000)
    direct = module._direct(x.reshape(1, 1, -1), 441, 160, polyphase.shape[-1], (32, 0.945, 9.0))[0]
    torch.testing.assert_close(direct, polyphase, atol=1e-12, rtol=0)


def test_resample_is_batched_and_keeps_identity() -> None:
    waves = torch.randn(2, 3, 4410, dtype=torch.float64)
    out = resample(waves, 44_100, 16_000)
    assert out.shape == (2, 3, 1600)
    torch.testing.assert_close(out[1, 2], resample(waves[1, 2], 44_100, 16_000))
    assert resample(waves, 16_000, 16_000) is waves
    assert resample(torch.zeros(2, 0), 44_100, 16_001).shape == (2, 0)
    assert resample(torch.ones(1), 16_000, 48_000).shape == (3,)


def test_resample_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive integers"):
        resample(torch.zeros(100), 44_100.5, 16_000)
    with pytest.raises(ValueError, match="floating-point"):
        resample(torch.zeros(100, dtype=torch.int16), 44_100, 16_000)
