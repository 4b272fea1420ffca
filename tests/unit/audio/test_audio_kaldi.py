"""Kaldi fbank against three oracles, since torchaudio itself cannot be installed next to avlearn's torch.

1. torchaudio's own output: ``tests/fixtures/audio/kaldi_fbank_reference.npz`` holds what
   ``torchaudio.compliance.kaldi.fbank`` (torchaudio 2.11.0's pure-Python ``kaldi.py``, run on torch 2.13 by
   ``make_kaldi_reference.py`` in that folder) returns for a 0.6 s waveform in five settings (AST, VALOR at 22.05 kHz,
   torchaudio's defaults, non-default band edges and frame sizes, no pre-emphasis or DC removal). Compared in float32
   to an absolute 1e-5 in log units; the implementation reproduces torchaudio's float32 arithmetic and is in fact
   bit-exact on this machine.
2. transformers' numpy Kaldi path (``audio_utils.spectrogram`` with ``mel_scale='kaldi'``, as ``ASTFeatureExtractor``
   uses without torchaudio), on a 3 s signal: within 3e-3 in log units. That path builds the mel banks in float64
   while Kaldi and torchaudio use float32 (up to 1.4e-5 apart), and its spectrum is complex64; torchaudio's own output
   differs from it by up to 2.2e-3 (``dependencies.md`` §5).
3. Properties that follow from Kaldi's definition, in float64: the frame count, invariance to a DC offset, the
   int16-scale shift of ``2 ln 32768``, the empty 4th band at 128 bins, and a tone landing in its band.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.audio import fbank

REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "audio" / "kaldi_fbank_reference.npz"
_TORCHAUDIO_NAMES = {"sample_frequency": "sample_rate"}
_IGNORED = {"htk_compat", "use_energy"}  # htk_compat only moves the energy column, which use_energy=False drops


def ours_from_torchaudio_kwargs(wave: torch.Tensor, kwargs: dict) -> torch.Tensor:
    return fbank(wave, **{_TORCHAUDIO_NAMES.get(k, k): v for k, v in kwargs.items() if k not in _IGNORED})


@pytest.mark.parametrize("case", ["ast", "valor_22k", "defaults", "options", "plain"])
def test_fbank_matches_torchaudio_output(case: str) -> None:
    reference = np.load(REFERENCE)
    kwargs = json.loads(str(reference[f"{case}/kwargs"]))
    ours = ours_from_torchaudio_kwargs(torch.from_numpy(reference["wave"]), kwargs)
    expected = reference[f"{case}/fbank"]
    assert ours.shape == expected.shape
    assert np.abs(ours.numpy() - expected).max() <= 1e-5


def test_fbank_matches_transformers_numpy_kaldi(wave_16k: np.ndarray) -> None:
    audio_utils = pytest.importorskip("transformers.audio_utils")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "At least one mel filter has all zero values": band 3, as in Kaldi
        banks = audio_utils.mel_filter_bank(
            num_frequency_bins=257,
            num_mel_filters=128,
            min_frequency=20,
            max_frequency=8000,
            sampling_rate=16000,
            norm=None,
            mel_scale="kaldi",
            triangularize_in_mel_space=True,
        )
    wave = wave_16k[16_000:64_000]  # 3 s, with the silent second
    expected = audio_utils.spectrogram(
        wave,
        audio_utils.window_function(400, "hann", periodic=False),
        frame_length=400,
        hop_length=160,
        fft_length=512,
        power=2.0,
        center=False,
        preemphasis=0.97,
        mel_filters=banks,
        log_mel="log",
        mel_floor=float(np.finfo(np.float32).eps),
        remove_dc_offset=True,
    ).T  # (T, F)
    ours = fbank(torch.from_numpy(wave), 16_000, 128, window_type="hanning")
    assert ours.shape == expected.shape == (298, 128)
    assert np.abs(ours.numpy() - expected).max() < 3e-3


def test_fbank_kaldi_properties(wave_16k: np.ndarray) -> None:
    wave = torch.from_numpy(wave_16k[:16_000].astype(np.float64))
    out = fbank(wave, 16_000, 128, window_type="hanning")
    assert out.shape == (1 + (16_000 - 400) // 160, 128)
    # Each frame loses its mean before anything else, so a constant offset changes nothing.
    torch.testing.assert_close(fbank(wave + 0.3, 16_000, 128, window_type="hanning"), out, atol=1e-9, rtol=0)
    # int16-scaled input multiplies every energy by 32768 ** 2.
    loud = fbank(wave * 32768, 16_000, 128, window_type="hanning")
    floored = out <= np.log(np.finfo(np.float32).eps) + 1e-6
    torch.testing.assert_close(loud[~floored] - out[~floored], torch.full_like(out[~floored], 2 * np.log(32768.0)))
    # At 128 bands the 4th triangle falls between two FFT bins: constant at ln(float32 eps).
    assert torch.all(out[:, 3] == np.log(float(np.finfo(np.float32).eps)))


def test_fbank_tone_lands_in_its_band() -> None:
    t = torch.arange(16_000, dtype=torch.float64) / 16_000
    out = fbank(torch.sin(2 * torch.pi * 2000.0 * t), 16_000, 40, window_type="hanning")
    mel = 1127 * np.log(1 + np.array([20.0, 2000.0, 8000.0]) / 700)
    centre_band = round((mel[1] - mel[0]) / ((mel[2] - mel[0]) / 41)) - 1  # band whose peak is nearest 2 kHz
    assert torch.all(out.argmax(dim=-1) == centre_band)


def test_fbank_is_batched_and_handles_short_input(wave_16k: np.ndarray) -> None:
    wave = torch.from_numpy(wave_16k[:8000])
    batch = torch.stack([wave, 0.5 * wave, wave.flip(0)]).reshape(3, 1, -1)  # (3, 1, N)
    out = fbank(batch, 16_000, 64, window_type="povey")
    assert out.shape == (3, 1, 48, 64)
    torch.testing.assert_close(out[2, 0], fbank(wave.flip(0), 16_000, 64, window_type="povey"))
    assert fbank(torch.zeros(2, 399), 16_000, 64).shape == (2, 0, 64)
    with pytest.raises(ValueError, match="window_type"):
        fbank(wave, window_type="blackman")
