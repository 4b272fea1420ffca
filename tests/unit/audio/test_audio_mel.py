"""Log-mel spectrograms and mel filterbanks against librosa 0.11 (the oracle) on the same settings.

Compared: ``avlearn.audio.log_mel_spectrogram`` (float32, torch) with
``librosa.power_to_db(librosa.feature.melspectrogram(...), ref=1.0, amin=1e-10, top_db=None)`` on a 10 s chirp +
tone + noise signal with a second of digital silence; max abs error below 1e-3 dB over every bin. Filterbanks are
compared with ``librosa.filters.mel`` to 1e-6 relative to the largest weight.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avlearn.audio import log_mel_spectrogram, mel_filterbank, power_spectrogram

librosa = pytest.importorskip("librosa")


def librosa_log_mel(wave: np.ndarray, sr: int, **kwargs) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=wave, sr=sr, center=True, **kwargs)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)


@pytest.mark.parametrize(
    ("n_fft", "hop", "n_mels", "f_min", "f_max"),
    [(1024, 160, 64, 0.0, None), (400, 160, 80, 0.0, None), (2048, 512, 128, 50.0, 7000.0)],
)
def test_log_mel_matches_librosa(wave_16k: np.ndarray, n_fft: int, hop: int, n_mels: int, f_min: float, f_max) -> None:
    ours = log_mel_spectrogram(torch.from_numpy(wave_16k), 16_000, n_fft, hop, n_mels, f_min, f_max)
    ref = librosa_log_mel(wave_16k, 16_000, n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmin=f_min, fmax=f_max)
    assert ours.shape == ref.shape == (n_mels, 1 + wave_16k.size // hop)
    assert ours.dtype == torch.float32
    assert np.abs(ours.numpy() - ref).max() < 1e-3


def test_log_mel_options_match_librosa(wave_16k: np.ndarray) -> None:
    """Reflect padding, a window shorter than the FFT and the HTK scale without normalisation."""
    wave = wave_16k[:32_000]
    ours = log_mel_spectrogram(
        torch.from_numpy(wave),
        16_000,
        512,
        160,
        40,
        125.0,
        7500.0,
        win_length=400,
        pad_mode="reflect",
        mel_scale="htk",
        norm=None,
    )
    ref = librosa_log_mel(
        wave,
        16_000,
        n_fft=512,
        hop_length=160,
        win_length=400,
        n_mels=40,
        fmin=125.0,
        fmax=7500.0,
        pad_mode="reflect",
        htk=True,
        norm=None,
    )
    assert np.abs(ours.numpy() - ref).max() < 1e-3


def test_log_mel_is_batched_and_floors_silence(wave_16k: np.ndarray) -> None:
    waves = torch.from_numpy(wave_16k[:16_000]).repeat(2, 3, 1) * torch.tensor([1.0, 0.5, 0.0])[:, None]  # (2, 3, N)
    out = log_mel_spectrogram(waves, 16_000)
    assert out.shape == (2, 3, 64, 101)
    single = log_mel_spectrogram(waves[1, 1], 16_000)
    torch.testing.assert_close(out[1, 1], single, atol=1e-4, rtol=0)
    # Halving the amplitude lowers every (non-floored) bin by 20 log10(2) dB; silence sits at 10 log10(eps).
    torch.testing.assert_close(out[0, 0] - out[0, 1], torch.full_like(single, 20 * np.log10(2)), atol=2e-3, rtol=0)
    assert torch.all(out[:, 2] == -100.0)


@pytest.mark.parametrize(("htk", "norm"), [(False, "slaney"), (True, None)])
def test_filterbank_matches_librosa(htk: bool, norm) -> None:
    ours = mel_filterbank(1024, 48_000, 64, 50.0, 14_000.0, mel_scale="htk" if htk else "slaney", norm=norm)
    ref = librosa.filters.mel(sr=48_000, n_fft=1024, n_mels=64, fmin=50.0, fmax=14_000.0, htk=htk, norm=norm)
    assert ours.shape == ref.shape == (64, 513)
    assert np.abs(ours.numpy() - ref).max() < 1e-6 * ref.max()


def test_filterbank_is_cached_per_settings_and_dtype() -> None:
    first = mel_filterbank(512, 16_000, 32)
    assert mel_filterbank(512, 16_000, 32) is first
    assert mel_filterbank(512, 16_000, 32, dtype=torch.float64).dtype == torch.float64
    assert mel_filterbank(512, 16_000, 33) is not first
    assert mel_filterbank(512, 16_000, 32, device="meta").device.type == "meta"


def test_power_spectrogram_of_a_bin_centred_tone() -> None:
    """A cosine at FFT bin 32 with amplitude 1 has |X_32| = sum(window) / 2 = n_fft / 4 for a periodic Hann window."""
    n = torch.arange(4096, dtype=torch.float64)
    spec = power_spectrogram(torch.cos(2 * torch.pi * 32 * n / 512), 512, 128, center=False, power=1.0)  # (257, T)
    assert spec.shape == (257, 1 + (4096 - 512) // 128)
    torch.testing.assert_close(spec[32], torch.full_like(spec[32], 128.0))
    assert spec[[0, 30, 34, 100]].max() < 1e-9


def test_invalid_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        log_mel_spectrogram(torch.zeros(1000, dtype=torch.int16), 16_000)
    with pytest.raises(ValueError, match="too short"):
        log_mel_spectrogram(torch.zeros(100), 16_000, pad_mode="reflect")
    with pytest.raises(ValueError, match="f_max"):
        log_mel_spectrogram(torch.zeros(1000), 16_000, f_max=9000.0)
