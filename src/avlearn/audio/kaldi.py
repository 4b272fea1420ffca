"""Kaldi-compatible log mel filterbank ("fbank") in torch, batched, as AST, CAV-MAE, AudioMAE and VALOR compute it.

Follows ``torchaudio.compliance.kaldi.fbank`` (itself Kaldi's ``compute-fbank-feats``) with ``snip_edges=True``,
``dither=0``, ``use_energy=False``, ``use_log_fbank=True``, ``use_power=True`` and no VTLN: frames of
``frame_length`` ms every ``frame_shift`` ms with no padding, and per frame DC removal, pre-emphasis (the first
sample is its own predecessor), a window, a power spectrum of the frame zero-padded to the next power of two, Kaldi
mel banks (``1127 ln(1 + f / 700)``, triangles drawn in mels, no normalisation, nothing at the Nyquist bin) and
``ln(max(energy, float32 eps))``.

Why not ``torch.stft``: it cannot remove the DC offset or pre-emphasise each frame on its own, and matching the
frame positions needs padding tricks; the result differs by up to 5 log units in the lowest band
(``dependencies.md`` §5). Frames come from ``Tensor.unfold`` and go through ``torch.fft.rfft`` instead.

Differences from torchaudio: inputs are batched ``(..., N)`` instead of ``(channels, N)`` (torchaudio keeps only
channel 0); a clip shorter than one frame gives zero frames (torchaudio asserts); dithering, energy, VTLN and
``snip_edges=False`` are not implemented (none of the ported models use them). On the cases in
``tests/fixtures/audio`` the output is bit-identical to torchaudio 2.11's, in float32 and float64.

The scale convention matters: AST's normalisation statistics assume float input in [-1, 1]; Kaldi's own int16 scale
adds ``2 ln 32768 = 20.79`` to every value.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch

from avlearn.audio.mel import triangular_filters

KaldiWindow = Literal["povey", "hanning", "hamming", "rectangular"]

FLOAT32_EPS = torch.finfo(torch.float32).eps  # Kaldi's floor before the log, whatever the input dtype


def fbank(
    wave: torch.Tensor,
    sample_rate: int = 16_000,
    num_mel_bins: int = 23,
    *,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    preemphasis_coefficient: float = 0.97,
    remove_dc_offset: bool = True,
    window_type: KaldiWindow = "povey",
) -> torch.Tensor:
    """Kaldi log mel filterbank energies; defaults are torchaudio's (so ``window_type`` is ``"povey"``).

    AST, CAV-MAE and VALOR call torchaudio with ``htk_compat=True, use_energy=False, window_type='hanning',
    dither=0.0, frame_shift=10``; the equivalent here is ``fbank(wave, sr, num_mel_bins, window_type="hanning")``
    (``htk_compat`` only moves the energy coefficient, which is off). See :func:`avlearn.audio.ast_input`.

    Args:
        wave: Waveforms ``(..., N)``, floating point in [-1, 1] (not int16-scaled), any device.
        sample_rate: Sampling rate in Hz.
        num_mel_bins: Number of mel bands ``F``. With a 512-point FFT at 16 kHz, 128 bands leave band 3 empty: that
            channel is constant at ``ln(eps)``, as in Kaldi.
        frame_length: Frame length in milliseconds (``int(sample_rate * frame_length / 1000)`` samples).
        frame_shift: Frame shift in milliseconds.
        low_freq: Lower edge of the first band in Hz.
        high_freq: Upper edge of the last band in Hz; ``<= 0`` means the Nyquist frequency plus ``high_freq``.
        preemphasis_coefficient: Pre-emphasis ``x[n] - c x[n - 1]`` within each frame; 0 disables it.
        remove_dc_offset: Subtract each frame's mean first.
        window_type: ``"povey"`` (Kaldi's default, a Hann window to the power 0.85), ``"hanning"``, ``"hamming"`` or
            ``"rectangular"``; all symmetric, as Kaldi's.

    Returns:
        Log energies ``(..., T, F)`` (time first, as torchaudio and AST) with
        ``T = 1 + (N - frame_samples) // shift_samples``, or ``T = 0`` when ``N < frame_samples``.
    """
    if not torch.is_floating_point(wave) or wave.ndim == 0:
        raise ValueError(f"expected a floating-point waveform (..., N), got {wave.dtype} of shape {tuple(wave.shape)}")
    win = int(sample_rate * frame_length * 0.001)
    shift = int(sample_rate * frame_shift * 0.001)
    n_fft = 1 << (win - 1).bit_length()  # next power of two
    bank = kaldi_mel_banks(num_mel_bins, n_fft, sample_rate, low_freq, high_freq, wave.device, wave.dtype)  # (F, K)
    if wave.shape[-1] < win:
        return wave.new_empty(*wave.shape[:-1], 0, num_mel_bins)
    frames = wave.unfold(-1, win, shift)  # (..., T, W)
    if remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    if preemphasis_coefficient != 0.0:
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # (..., T, W)
        frames = frames - preemphasis_coefficient * previous
    frames = frames * kaldi_window(window_type, win, wave.device, wave.dtype)
    power = torch.fft.rfft(frames, n=n_fft).abs().square()  # (..., T, K)
    energies = torch.matmul(power, bank.T)  # (..., T, F)
    return energies.clamp(min=FLOAT32_EPS).log()


@functools.lru_cache(maxsize=32)
def kaldi_mel_banks(
    num_bins: int,
    n_fft: int,
    sample_rate: int,
    low_freq: float,
    high_freq: float,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Kaldi's mel banks ``(F, n_fft // 2 + 1)``, cached per (settings, device, dtype); do not modify in place.

    Built in float32 whatever ``dtype`` is, with the same expressions as Kaldi and torchaudio: their banks carry
    float32 rounding (up to 1.4e-5 absolute), which shifts log energies by up to 3e-4 where a band has only small
    weights. Building them in float64 (as transformers' numpy path does) would not match them that closely.
    """
    nyquist = sample_rate / 2
    high_freq = high_freq if high_freq > 0 else nyquist + high_freq
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"Kaldi mel banks need 0 <= low_freq < high_freq <= {nyquist} Hz, got {low_freq}, {high_freq}")
    mel_low, mel_high = (1127.0 * math.log(1.0 + f / 700.0) for f in (low_freq, high_freq))
    step = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + torch.arange(num_bins + 2, dtype=torch.float32) * step  # (F + 2,)
    bin_hz = (sample_rate / n_fft) * torch.arange(n_fft // 2, dtype=torch.float32)  # (K - 1,)
    bins = 1127.0 * (1.0 + bin_hz / 700.0).log()  # (K - 1,)
    banks = torch.nn.functional.pad(triangular_filters(bins, edges), (0, 1))  # (F, K): Kaldi skips the Nyquist bin
    return banks.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=32)
def kaldi_window(window_type: KaldiWindow, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Kaldi's symmetric analysis windows (``feature-window.cc``), computed in ``dtype`` as torchaudio does; cached."""
    if window_type == "hanning":
        return torch.hann_window(length, periodic=False, device=device, dtype=dtype)
    if window_type == "povey":
        return torch.hann_window(length, periodic=False, device=device, dtype=dtype).pow(0.85)
    if window_type == "hamming":
        return torch.hamming_window(length, periodic=False, device=device, dtype=dtype)
    if window_type == "rectangular":
        return torch.ones(length, device=device, dtype=dtype)
    raise ValueError(f"unknown Kaldi window_type {window_type!r}: expected povey, hanning, hamming or rectangular")
