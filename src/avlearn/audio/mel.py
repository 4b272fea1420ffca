"""Mel filterbanks, STFT power spectrograms and log-mel spectrograms in torch, batched, on any device.

Follows librosa (``librosa.filters.mel``, ``librosa.feature.melspectrogram``, ``librosa.power_to_db``): a periodic
Hann window, frames centred on ``t * hop_length`` with zero padding (librosa >= 0.10's ``pad_mode='constant'``),
the power spectrum, a triangular mel filterbank and ``10 * log10(max(power, eps))``. The same filterbank builder
also gives torchaudio's ``melscale_fbanks`` (``mel_scale='htk', norm=None``) and, with triangles drawn on the mel
axis, VGGish's bank (:mod:`avlearn.audio.presets`); :mod:`avlearn.audio.kaldi` reuses its triangle builder.

What differs from librosa: everything runs in torch on batched ``(..., N)`` tensors, the ``top_db`` clipping of
``librosa.power_to_db`` is not applied (it depends on the loudest bin of each call, so a batch would not equal its
items), and filterbanks and windows are cached per (settings, device, dtype). Cached tensors are shared: never
modify them in place.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch

MelScale = Literal["slaney", "htk"]
MelNorm = Literal["slaney"] | None

_SLANEY_HZ_PER_MEL = 200.0 / 3.0  # linear part of the Slaney scale, below 1 kHz
_SLANEY_LOG_START_HZ = 1000.0
_SLANEY_LOG_STEP = math.log(6.4) / 27.0  # 27 mels per factor 6.4 above 1 kHz


def hz_to_mel(freq: torch.Tensor, mel_scale: MelScale = "slaney") -> torch.Tensor:
    """Hz to mels: Slaney's Auditory Toolbox scale (librosa's default) or HTK's ``2595 log10(1 + f / 700)``."""
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    log_start = _SLANEY_LOG_START_HZ / _SLANEY_HZ_PER_MEL
    above = log_start + torch.log(freq.clamp(min=_SLANEY_LOG_START_HZ) / _SLANEY_LOG_START_HZ) / _SLANEY_LOG_STEP
    return torch.where(freq >= _SLANEY_LOG_START_HZ, above, freq / _SLANEY_HZ_PER_MEL)


def mel_to_hz(mel: torch.Tensor, mel_scale: MelScale = "slaney") -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    log_start = _SLANEY_LOG_START_HZ / _SLANEY_HZ_PER_MEL
    above = _SLANEY_LOG_START_HZ * torch.exp(_SLANEY_LOG_STEP * (mel - log_start))
    return torch.where(mel >= log_start, above, mel * _SLANEY_HZ_PER_MEL)


def mel_filterbank(
    n_fft: int,
    sample_rate: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    *,
    mel_scale: MelScale = "slaney",
    norm: MelNorm = "slaney",
    triangles_in_mel: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Triangular mel filterbank, cached per (settings, device, dtype); do not modify the result in place.

    Band edges are ``n_mels + 2`` points equally spaced in mels from ``f_min`` to ``f_max``. Each filter rises
    linearly from its lower edge to its centre and falls to its upper edge, with slopes measured in Hz (librosa,
    torchaudio) or, when ``triangles_in_mel`` is set, in mels (Kaldi, VGGish).

    Args:
        n_fft: FFT size; the filterbank has ``n_fft // 2 + 1`` columns, bin ``k`` at ``k * sample_rate / n_fft`` Hz.
        sample_rate: Sampling rate in Hz.
        n_mels: Number of filters.
        f_min: Lower edge of the first filter in Hz.
        f_max: Upper edge of the last filter in Hz; ``None`` is the Nyquist frequency.
        mel_scale: ``"slaney"`` (librosa's default) or ``"htk"`` (torchaudio's default, Kaldi, VGGish).
        norm: ``"slaney"`` divides each filter by half its width in Hz (constant energy per band); ``None`` keeps
            peaks at 1.
        triangles_in_mel: Draw the triangles on the mel axis instead of the Hz axis.
        device: Device of the result.
        dtype: Floating dtype of the result; the weights are computed in float64 and cast.

    Returns:
        Weights ``(F, K)`` with ``F = n_mels`` and ``K = n_fft // 2 + 1``: ``mel = weights @ power``.
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"mel filterbank needs 0 <= f_min < f_max <= {sample_rate / 2} Hz, got {f_min}, {f_max}")
    device = torch.device(device or "cpu")
    return _cached_filterbank(
        n_fft, sample_rate, n_mels, float(f_min), f_max, mel_scale, norm, triangles_in_mel, device, dtype
    )


@functools.lru_cache(maxsize=64)
def _cached_filterbank(
    n_fft: int,
    sample_rate: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    mel_scale: MelScale,
    norm: MelNorm,
    triangles_in_mel: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    bin_hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # (K,)
    mel_min, mel_max = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64), mel_scale).tolist()
    edge_mel = torch.linspace(mel_min, mel_max, n_mels + 2, dtype=torch.float64)  # (F + 2,)
    edge_hz = mel_to_hz(edge_mel, mel_scale)  # (F + 2,)
    bins, edges = (hz_to_mel(bin_hz, mel_scale), edge_mel) if triangles_in_mel else (bin_hz, edge_hz)
    weights = triangular_filters(bins, edges)  # (F, K)
    if norm == "slaney":
        weights = weights * (2.0 / (edge_hz[2:] - edge_hz[:-2]))[:, None]
    return weights.to(device=device, dtype=dtype)


def triangular_filters(bins: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Triangles over ``bins (K,)``, filter ``f`` spanning ``edges[f] .. edges[f + 2]`` and peaking at ``edges[f + 1]``.

    Returns:
        Weights ``(F, K)`` in [0, 1] with ``F = len(edges) - 2``.
    """
    gaps = edges.diff()  # (F + 1,)
    offsets = edges[:, None] - bins[None, :]  # (F + 2, K)
    rising = -offsets[:-2] / gaps[:-1, None]  # (F, K)
    falling = offsets[2:] / gaps[1:, None]  # (F, K)
    return torch.minimum(rising, falling).clamp(min=0.0)


@functools.lru_cache(maxsize=64)
def hann_window(length: int, periodic: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Hann window, cached per (length, periodic, device, dtype); do not modify the result in place."""
    return torch.hann_window(length, periodic=periodic, dtype=torch.float64).to(device=device, dtype=dtype)


def power_spectrogram(
    wave: torch.Tensor,
    n_fft: int,
    hop_length: int,
    *,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: Literal["constant", "reflect"] = "constant",
    power: float = 2.0,
) -> torch.Tensor:
    """Magnitude (``power=1``) or power (``power=2``) spectrogram with a periodic Hann window, as ``librosa.stft``.

    Args:
        wave: Waveforms ``(..., N)``, floating point.
        n_fft: FFT size.
        hop_length: Frame step in samples.
        win_length: Window length (``<= n_fft``, zero-padded on both sides to ``n_fft``); ``None`` is ``n_fft``.
        center: Pad ``n_fft // 2`` samples on both sides so that frame ``t`` is centred on sample ``t * hop_length``.
        pad_mode: ``"constant"`` (zeros; librosa >= 0.10) or ``"reflect"`` (torch's and torchaudio's default).
        power: Exponent of the magnitude.

    Returns:
        Spectrogram ``(..., K, T)`` with ``K = n_fft // 2 + 1`` and ``T = 1 + N // hop_length`` when centred.
    """
    if not center:
        _check_wave(wave, n_fft)  # one whole frame
    else:
        _check_wave(wave, n_fft // 2 + 1 if pad_mode == "reflect" else 1)  # reflection needs more than the padding
    window = hann_window(win_length or n_fft, True, wave.device, wave.dtype)
    flat = wave.reshape(-1, wave.shape[-1])  # (B, N)
    spec = torch.stft(
        flat,
        n_fft,
        hop_length,
        win_length=win_length or n_fft,
        window=window,
        center=center,
        pad_mode=pad_mode,
        return_complex=True,
    )  # (B, K, T)
    magnitude = spec.abs()
    out = magnitude.square() if power == 2.0 else magnitude.pow(power)
    return out.reshape(*wave.shape[:-1], *out.shape[-2:])  # (..., K, T)


def mel_spectrogram(
    wave: torch.Tensor,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 160,
    n_mels: int = 64,
    f_min: float = 0.0,
    f_max: float | None = None,
    *,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: Literal["constant", "reflect"] = "constant",
    power: float = 2.0,
    mel_scale: MelScale = "slaney",
    norm: MelNorm = "slaney",
) -> torch.Tensor:
    """Mel spectrogram (linear power), as ``librosa.feature.melspectrogram`` with the same settings.

    Args:
        wave: Waveforms ``(..., N)``, floating point, any device.
        sample_rate: Sampling rate of ``wave`` in Hz.
        n_fft, hop_length, win_length, center, pad_mode, power: as in :func:`power_spectrogram`.
        n_mels, f_min, f_max, mel_scale, norm: as in :func:`mel_filterbank`.

    Returns:
        Mel power ``(..., F, T)``.
    """
    spec = power_spectrogram(
        wave, n_fft, hop_length, win_length=win_length, center=center, pad_mode=pad_mode, power=power
    )  # (..., K, T)
    weights = mel_filterbank(
        n_fft, sample_rate, n_mels, f_min, f_max, mel_scale=mel_scale, norm=norm, device=wave.device, dtype=wave.dtype
    )  # (F, K)
    return torch.matmul(weights, spec)  # (..., F, T)


def power_to_db(power: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """``10 * log10(max(power, eps))``: decibels relative to 1, no ``top_db`` clipping."""
    return 10.0 * torch.log10(power.clamp(min=eps))


def log_mel_spectrogram(
    wave: torch.Tensor,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 160,
    n_mels: int = 64,
    f_min: float = 0.0,
    f_max: float | None = None,
    eps: float = 1e-10,
    *,
    win_length: int | None = None,
    pad_mode: Literal["constant", "reflect"] = "constant",
    mel_scale: MelScale = "slaney",
    norm: MelNorm = "slaney",
) -> torch.Tensor:
    """Log-mel spectrogram in dB, equal to ``librosa.power_to_db(melspectrogram(...), ref=1, amin=eps, top_db=None)``.

    A periodic Hann window of ``win_length`` (default ``n_fft``), centred frames with ``pad_mode`` padding, the
    power spectrum, a mel filterbank (Slaney scale and area normalisation by default, as librosa) and
    ``10 * log10(max(power, eps))``.

    Args:
        wave: Waveforms ``(..., N)``, floating point, any device.
        sample_rate: Sampling rate of ``wave`` in Hz.
        n_fft: FFT size.
        hop_length: Frame step in samples.
        n_mels: Number of mel bands.
        f_min: Lowest filter edge in Hz.
        f_max: Highest filter edge in Hz; ``None`` is the Nyquist frequency.
        eps: Floor applied to the mel power before the logarithm (-100 dB for 1e-10).
        win_length: Window length, ``<= n_fft``.
        pad_mode: Padding at both ends: ``"constant"`` (zeros, librosa) or ``"reflect"`` (torchaudio, torchlibrosa).
        mel_scale: ``"slaney"`` or ``"htk"``.
        norm: ``"slaney"`` or ``None``.

    Returns:
        Log-mel ``(..., F, T)`` in dB with ``F = n_mels`` and ``T = 1 + N // hop_length``.
    """
    mel = mel_spectrogram(
        wave,
        sample_rate,
        n_fft,
        hop_length,
        n_mels,
        f_min,
        f_max,
        win_length=win_length,
        pad_mode=pad_mode,
        mel_scale=mel_scale,
        norm=norm,
    )  # (..., F, T)
    return power_to_db(mel, eps)


def _check_wave(wave: torch.Tensor, min_samples: int) -> None:
    if not torch.is_floating_point(wave) or wave.ndim == 0:
        raise ValueError(f"expected a floating-point waveform (..., N), got {wave.dtype} of shape {tuple(wave.shape)}")
    if wave.shape[-1] < min_samples:
        raise ValueError(f"waveform of {wave.shape[-1]} samples is too short: at least {min_samples} are needed")
