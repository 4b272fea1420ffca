"""Model inputs from waveforms, in torch and batched: AST / CAV-MAE fbank, CLAP / HTS-AT log-mel, VGGish patches.

Each function takes waveforms ``(..., N)`` at any sampling rate, resamples them to the model's rate with
:func:`avlearn.audio.resample` and returns exactly what the model's reference pipeline feeds it:

- :func:`ast_input`: the Audio Spectrogram Transformer's (Gong et al., Interspeech 2021; ``YuanGongND/ast``)
  ``dataloader.py``: Kaldi fbank at 16 kHz, 25 ms Hann frames every 10 ms, 128 bands, zero-padded or cut to 1024
  frames, then ``(x - mean) / (2 std)`` with AudioSet statistics. transformers' ``ASTFeatureExtractor`` does the
  same without subtracting the waveform mean (``subtract_wave_mean=False``). CAV-MAE uses other statistics.
- :func:`clap_input`: LAION-CLAP's HTS-AT input as transformers' ``ClapFeatureExtractor`` computes it: 48 kHz,
  1024-point STFT every 480 samples with reflect padding, 64 mel bands from 50 Hz to 14 kHz, dB; 10 s clips by
  ``"rand_trunc"`` (a random crop, Slaney mel) or ``"fusion"`` (a squeezed global view plus three random crops, HTK
  mel). Differences: random crops come from a ``torch.Generator`` instead of numpy's global state, and a fusion batch
  of short clips is not given one random ``is_longer=True`` item (a training trick of the original code).
- :func:`htsat_input`: the original HTS-AT's (Chen et al., ICASSP 2022; ``RetroCirce/HTS-Audio-Transformer``, the
  AudioSet checkpoint DG-SCT uses) torchlibrosa front end: 32 kHz, 1024-point STFT every 320 samples with reflect
  padding, 64 Slaney mel bands from 50 Hz to 14 kHz, ``10 log10(max(x, 1e-10))``; torchlibrosa reproduces
  librosa, which is the oracle. :func:`htsat_segment_input` is DG-SCT's use of it: each one-second segment tiled
  ten times (the seed's ``dataloader.py``), so that HTS-AT sees its native ten-second input (1001 frames).
- :func:`vggish_input`: VGGish's ``vggish_input.waveform_to_examples`` (Hershey et al., ICASSP 2017;
  ``tensorflow/models`` ``research/audioset/vggish``): 16 kHz, 25 ms periodic-Hann frames every 10 ms, magnitude
  spectrum (512-point FFT), 64 HTK mel bands (triangles in mels) from 125 Hz to 7.5 kHz, ``log(x + 0.01)``, cut
  into non-overlapping 0.96 s examples of 96 frames. VGGish resamples with resampy; here :func:`resample` is used.
- :func:`deepavfusion_input`: DeepAVFusion's (Mo & Morgado, CVPR 2024; ``stoneMo/DeepAVFusion`` ``train.py`` and
  ``util/audio_transforms.py``) torchaudio front end: 16 kHz, 3 s (a shorter clip is extended by appending its
  time-reversed self), ``MelSpectrogram(n_fft=800, hop_length=250, n_mels=128)`` with torchaudio's defaults
  (periodic Hann window of 800, reflect-padded centred frames, power, HTK mel from 0 to 8 kHz, no area
  normalisation), ``log10(x + 1e-7)`` and the last of the 193 frames dropped: ``(..., 128, 192)``, frequency first,
  not normalised. The seed's training-time random gain (+-6 dB, then clipping) is augmentation, not done here.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from avlearn.audio.kaldi import fbank
from avlearn.audio.mel import log_mel_spectrogram, mel_filterbank, mel_spectrogram, power_spectrogram
from avlearn.audio.resample import resample

AUDIOSET_FBANK_MEAN = -4.2677393  # AST's AudioSet statistics of 128-band fbank at 16 kHz (also used by VALOR)
AUDIOSET_FBANK_STD = 4.5689974

HTSAT_SAMPLE_RATE = 32_000
HTSAT_SEGMENT_TILE = 10  # DG-SCT tiles each one-second segment to HTS-AT's ten-second input
CLAP_SAMPLE_RATE = 48_000
CLAP_HOP = 480
DEEPAVFUSION_SAMPLE_RATE = 16_000
DEEPAVFUSION_SECONDS = 3.0
VGGISH_SAMPLE_RATE = 16_000
VGGISH_EXAMPLE_FRAMES = 96  # 0.96 s at a 10 ms hop
_VGGISH_WINDOW, _VGGISH_HOP, _VGGISH_FFT = 400, 160, 512


def ast_input(
    wave: torch.Tensor,
    sample_rate: int,
    num_mel_bins: int = 128,
    target_frames: int = 1024,
    mean: float = AUDIOSET_FBANK_MEAN,
    std: float = AUDIOSET_FBANK_STD,
    *,
    subtract_wave_mean: bool = True,
) -> torch.Tensor:
    """AST input: normalised Kaldi fbank at 16 kHz, zero-padded (before normalising) or cut to ``target_frames``.

    Args:
        wave: Waveforms ``(..., N)`` in [-1, 1].
        sample_rate: Sampling rate of ``wave``; resampled to 16 kHz.
        num_mel_bins: Number of mel bands ``F``.
        target_frames: Number of frames ``T`` (10 ms each).
        mean: Normalisation mean (AST's AudioSet value by default).
        std: Normalisation standard deviation; the result is divided by ``2 * std``, as AST does.
        subtract_wave_mean: Remove each waveform's mean first (AST's code does; transformers does not).

    Returns:
        Normalised fbank ``(..., T, F)``.
    """
    wave = resample(wave, sample_rate, 16_000)
    if subtract_wave_mean:
        wave = wave - wave.mean(dim=-1, keepdim=True)
    feats = fbank(wave, 16_000, num_mel_bins, window_type="hanning")  # (..., T', F)
    missing = target_frames - feats.shape[-2]
    feats = F.pad(feats, (0, 0, 0, missing)) if missing > 0 else feats[..., :target_frames, :]  # (..., T, F)
    return (feats - mean) / (2 * std)


def htsat_input(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """HTS-AT (AudioSet, 32 kHz) input: log-mel in dB, ``(..., T, F)`` with ``T = 1 + N32k // 320`` and ``F = 64``.

    Args:
        wave: Waveforms ``(..., N)`` in [-1, 1]; DG-SCT feeds 10 s clips (``T = 1001``).
        sample_rate: Sampling rate of ``wave``; resampled to 32 kHz.
    """
    wave = resample(wave, sample_rate, HTSAT_SAMPLE_RATE)
    mel = log_mel_spectrogram(wave, HTSAT_SAMPLE_RATE, 1024, 320, 64, 50.0, 14_000.0, pad_mode="reflect")
    return mel.transpose(-1, -2)  # (..., T, F)


def htsat_segment_input(segments: torch.Tensor, sample_rate: int, tile: int = HTSAT_SEGMENT_TILE) -> torch.Tensor:
    """DG-SCT's HTS-AT input for one-second segments: each waveform tiled ``tile`` times, then :func:`htsat_input`.

    Args:
        segments: Waveforms ``(..., N)``, one segment each (DG-SCT: one second).
        sample_rate: Sampling rate of ``segments``; resampled to 32 kHz before tiling.
        tile: Copies of each segment laid end to end (10 in every DG-SCT task but AVS, which uses 5).

    Returns:
        Log-mel in dB ``(..., T, 64)`` with ``T = 1 + tile * N32k // 320`` (1001 for one-second segments).
    """
    wave = resample(segments, sample_rate, HTSAT_SAMPLE_RATE)
    return htsat_input(wave.repeat(*[1] * (wave.ndim - 1), tile), HTSAT_SAMPLE_RATE)  # (..., tile * N) -> (..., T, F)


def clap_input(
    wave: torch.Tensor,
    sample_rate: int,
    truncation: Literal["rand_trunc", "fusion"] = "rand_trunc",
    padding: Literal["repeatpad", "repeat", "pad"] = "repeatpad",
    *,
    max_seconds: float = 10.0,
    f_min: float = 50.0,
    f_max: float = 14_000.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CLAP / HTS-AT input, as ``ClapFeatureExtractor(frequency_min=50, frequency_max=14000)``.

    Clips no longer than ``max_seconds`` are padded (``padding``) to exactly that length. Longer clips are cropped at
    a random offset (``"rand_trunc"``) or, for ``"fusion"``, described by four channels: the whole log-mel squeezed
    to ``T`` frames (bilinear), then random ``T``-frame crops from the first, middle and last thirds of the offsets.
    ``is_longer`` says which clips were longer (for fusion: which have more than ``T`` frames).

    Args:
        wave: Waveforms ``(..., N)``; all items share ``N``, so they are all cropped or all padded.
        sample_rate: Sampling rate of ``wave``; resampled to 48 kHz.
        truncation: ``"rand_trunc"`` (1 channel, Slaney mel) or ``"fusion"`` (4 channels, HTK mel).
        padding: ``"repeatpad"`` (tile whole copies, then zeros), ``"repeat"`` (tile and cut) or ``"pad"`` (zeros).
        max_seconds: Clip length; ``T = max_seconds * 100 + 1`` frames (1001 for 10 s).
        f_min: Lowest mel edge in Hz (50 in the LAION checkpoints' preprocessor configs).
        f_max: Highest mel edge in Hz.
        generator: CPU random source for the crops of long clips.

    Returns:
        ``features (..., C, T, F)`` in dB with ``C`` 1 or 4 and ``F = 64``, and ``is_longer (...,)`` bool.
    """
    if truncation not in ("rand_trunc", "fusion") or padding not in ("repeatpad", "repeat", "pad"):
        raise ValueError(f"unknown CLAP truncation {truncation!r} or padding {padding!r}")
    if wave.shape[-1] == 0:
        raise ValueError("clap_input needs at least one sample per clip")
    wave = resample(wave, sample_rate, CLAP_SAMPLE_RATE)
    flat = wave.reshape(-1, wave.shape[-1])  # (B, N)
    max_samples = int(max_seconds * CLAP_SAMPLE_RATE)
    longer = flat.shape[-1] > max_samples
    if longer and truncation == "rand_trunc":
        starts = torch.randint(0, flat.shape[-1] - max_samples + 1, (flat.shape[0],), generator=generator).tolist()
        flat = torch.stack([item[s : s + max_samples] for item, s in zip(flat, starts, strict=True)])  # (B, max)
    elif not longer:
        flat = _pad_clip(flat, max_samples, padding)  # (B, max)
    scale = (
        {"mel_scale": "slaney", "norm": "slaney"} if truncation == "rand_trunc" else {"mel_scale": "htk", "norm": None}
    )
    mel = log_mel_spectrogram(flat, CLAP_SAMPLE_RATE, 1024, CLAP_HOP, 64, f_min, f_max, pad_mode="reflect", **scale)
    mel = mel.transpose(-1, -2)  # (B, T', F)
    chunk = max_samples // CLAP_HOP + 1
    if truncation == "rand_trunc":
        features, is_longer = mel[:, None], longer  # (B, 1, T, F)
    elif mel.shape[1] == chunk:
        features, is_longer = mel[:, None].expand(-1, 4, -1, -1), False  # (B, 4, T, F)
    else:
        features, is_longer = _fusion_views(mel, chunk, generator), True  # (B, 4, T, F)
    is_longer = torch.full(wave.shape[:-1], is_longer, device=wave.device)
    return features.reshape(*wave.shape[:-1], *features.shape[1:]), is_longer


def _pad_clip(flat: torch.Tensor, length: int, padding: str) -> torch.Tensor:
    """``(B, N) -> (B, length)`` for ``N <= length``, by CLAP's padding rules."""
    copies = length // flat.shape[-1]
    if padding == "repeat":
        return flat.repeat(1, copies + 1)[:, :length]
    if padding == "repeatpad":
        flat = flat.repeat(1, copies)
    return F.pad(flat, (0, length - flat.shape[-1]))


def _fusion_views(mel: torch.Tensor, chunk: int, generator: torch.Generator | None) -> torch.Tensor:
    """``(B, T', F) -> (B, 4, T, F)``: the squeezed whole, then crops from the three thirds of the offsets."""
    n_offsets = mel.shape[1] - chunk + 1
    size, extra = divmod(n_offsets, 3)
    sizes = torch.tensor([size + (k < extra) for k in range(3)])  # numpy.array_split's part sizes
    firsts = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)[:-1]])  # (3,)
    draws = (torch.rand(mel.shape[0], 3, generator=generator) * sizes).long()  # (B, 3)
    starts = torch.where(sizes > 0, firsts + draws, 0)  # an empty third crops at offset 0, as the original
    squeezed = F.interpolate(mel[:, None], size=(chunk, mel.shape[-1]), mode="bilinear", align_corners=False)
    crops = [torch.stack([m[s : s + chunk] for s in row]) for m, row in zip(mel, starts.tolist(), strict=True)]
    return torch.cat([squeezed, torch.stack(crops)], dim=1)  # (B, 1 + 3, T, F)


def vggish_input(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """VGGish input: 0.96 s log-mel examples ``(..., S, 96, 64)`` (frames, bands), as ``waveform_to_examples``.

    Args:
        wave: Mono waveforms ``(..., N)`` in [-1, 1] (average channels first, as VGGish does).
        sample_rate: Sampling rate of ``wave``; resampled to 16 kHz.

    Returns:
        ``log(mel + 0.01)`` examples ``(..., S, 96, 64)`` with ``S = T // 96`` for ``T = 1 + (N16k - 400) // 160``
        frames (``S = 0`` for clips under 0.985 s). Frames past the last whole example are dropped.
    """
    wave = resample(wave, sample_rate, VGGISH_SAMPLE_RATE)
    edge = (_VGGISH_FFT - _VGGISH_WINDOW) // 2  # torch.stft centres a short window in the FFT frame
    if wave.shape[-1] < _VGGISH_WINDOW + (VGGISH_EXAMPLE_FRAMES - 1) * _VGGISH_HOP:
        return wave.new_empty(*wave.shape[:-1], 0, VGGISH_EXAMPLE_FRAMES, 64)
    magnitude = power_spectrogram(
        F.pad(wave, (edge, edge)), _VGGISH_FFT, _VGGISH_HOP, win_length=_VGGISH_WINDOW, center=False, power=1.0
    )  # (..., K, T): frame t covers wave[160 t : 160 t + 400]
    bank = mel_filterbank(
        _VGGISH_FFT,
        VGGISH_SAMPLE_RATE,
        64,
        125.0,
        7500.0,
        mel_scale="htk",
        norm=None,
        triangles_in_mel=True,
        device=wave.device,
        dtype=wave.dtype,
    )  # (F, K)
    log_mel = torch.log(torch.matmul(bank, magnitude) + 0.01).transpose(-1, -2)  # (..., T, F)
    n_examples = log_mel.shape[-2] // VGGISH_EXAMPLE_FRAMES
    kept = log_mel[..., : n_examples * VGGISH_EXAMPLE_FRAMES, :]  # (..., S * 96, F)
    return kept.reshape(*wave.shape[:-1], n_examples, VGGISH_EXAMPLE_FRAMES, 64)  # (..., S, 96, F)


def deepavfusion_input(wave: torch.Tensor, sample_rate: int, seconds: float = DEEPAVFUSION_SECONDS) -> torch.Tensor:
    """DeepAVFusion input: ``log10`` HTK mel power ``(..., 128, T)`` (frequency first), ``T = 64 * seconds``.

    Args:
        wave: Mono waveforms ``(..., N)`` in [-1, 1].
        sample_rate: Sampling rate of ``wave``; resampled to 16 kHz.
        seconds: Clip length; shorter clips are extended by appending their time-reversed self (repeatedly), longer
            ones cut, as the seed's ``Pad``.
    """
    wave = resample(wave, sample_rate, DEEPAVFUSION_SAMPLE_RATE)
    samples = int(seconds * DEEPAVFUSION_SAMPLE_RATE)
    if wave.shape[-1] == 0:
        raise ValueError("deepavfusion_input needs at least one sample per clip")
    while wave.shape[-1] < samples:
        wave = torch.cat([wave, wave.flip(-1)], dim=-1)  # (..., 2N)
    mel = mel_spectrogram(
        wave[..., :samples],
        DEEPAVFUSION_SAMPLE_RATE,
        n_fft=800,
        hop_length=250,
        n_mels=128,
        pad_mode="reflect",
        mel_scale="htk",
        norm=None,
    )  # (..., 128, 1 + samples // 250)
    return torch.log10(mel + 1e-7)[..., :-1]  # (..., 128, T)
