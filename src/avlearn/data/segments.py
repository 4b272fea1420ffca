"""Clips -> per-segment model inputs: one frame and one log-mel patch for each one-second segment.

For segment s the frame is the one nearest to s + 0.5 s, and the audio is the log-mel of the whole clip cut into
S equal pieces (features over the whole clip avoid edge effects at segment borders). Small datasets (AVSynth, a
few thousand clips) are decoded once, in parallel, and held in memory as tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.data.parallel import parallel_map


@dataclass
class SegmentTensors:
    """Decoded clips: ``frames (N, S, H, W, 3)`` uint8, ``audio (N, S, F, T)`` float32, ``labels (N, S)``."""

    ids: list[str]
    frames: torch.Tensor
    audio: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "audio": self.audio[i], "labels": self.labels[i], "id": self.ids[i]}


def segment_log_mel(wave: torch.Tensor, segments: int, pre: AudioPreprocess) -> torch.Tensor:
    """Waveform (..., N) -> normalised log-mel (..., S, F, T) with T = ``pre.num_frames`` per segment; for
    ``pre.features == "waveform"`` the samples themselves, (..., S, 1, T) with T = ``pre.num_frames`` samples."""
    from avlearn.audio import log_mel_spectrogram

    if pre.features == "waveform":
        return wave[..., : segments * pre.num_frames].unflatten(-1, (segments, 1, pre.num_frames))  # (..., S, 1, T)

    mel = log_mel_spectrogram(
        wave,
        pre.sample_rate,
        n_fft=pre.n_fft,
        hop_length=pre.hop_length,
        n_mels=pre.num_mel_bins,
        f_min=pre.f_min,
        f_max=pre.f_max,
        win_length=pre.win_length,
    )  # (..., F, T_all)
    mel = mel[..., : segments * pre.num_frames]  # drop the centred extra frame
    mel = mel.unflatten(-1, (segments, pre.num_frames)).movedim(-2, -3)  # (..., S, F, T)
    return (mel - pre.norm_shift) / pre.norm_scale


def _decode(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    from avlearn.io import read_clip

    path, segments, frame_size, sample_rate = job
    clip = read_clip(path, timestamps=np.arange(segments) + 0.5, size=frame_size, sample_rate=sample_rate,
                     duration=float(segments))  # fmt: skip
    return clip.frames, clip.wave


def decode_segments(
    items: Sequence[tuple[str, Path, np.ndarray]],
    frame_size: int,
    audio: AudioPreprocess,
    segments: int = 10,
    workers: int = 1,
    desc: str = "decoding",
) -> SegmentTensors:
    """Decode ``(id, video path, labels)`` items into ``SegmentTensors``, ``workers`` processes in parallel."""
    jobs = [(str(path), segments, frame_size, audio.sample_rate) for _, path, _ in items]
    decoded = parallel_map(_decode, jobs, workers, desc=desc)
    frames = torch.from_numpy(np.stack([f for f, _ in decoded]))  # (N, S, H, W, 3)
    waves = torch.from_numpy(np.stack([w for _, w in decoded]))  # (N, samples)
    mels = torch.cat([segment_log_mel(chunk, segments, audio) for chunk in waves.split(64)])  # (N, S, F, T)
    labels = torch.from_numpy(np.stack([lab for _, _, lab in items]))  # (N, S)
    return SegmentTensors([vid for vid, _, _ in items], frames, mels, labels)
