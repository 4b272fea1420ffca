"""Audio for ``read_clip`` and ``read_audio``: decoded frames -> one mono float32 waveform at a target rate.

Downmix: the mean of all channels (stereo, 5.1 with its LFE, ...), as librosa's ``to_mono`` does. We do not use
FFmpeg's own downmix because for float output it sums channels with gains (L+R)/sqrt(2) that can exceed 1.
Resampling: FFmpeg's swresample (PyAV ``AudioResampler``) on the mono signal, so the cost does not grow with
the channel count. Any input sample format (integer or float, planar or packed) and any rate is accepted.

Length: decoders return more than the stream holds (AAC pads its last frame, e.g. 160768 samples for a
10 s, 16 kHz track). Decoded samples past the stream's declared end are dropped when they overhang it by at
most ``CODEC_PADDING_S`` (a larger overhang means the declared duration is the wrong one, e.g. an mp3's
bitrate estimate, and the samples are kept). The waveform is then cut to the requested window and padded with
zeros where the track starts late or ends early; ``read_clip`` records padding in ``Clip.notes``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

CODEC_PADDING_S = 0.1  # decoded audio overhanging the declared end by up to this is codec padding


_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32, "dbl": np.float64}


def frame_samples(frame: av.AudioFrame) -> list[np.ndarray]:
    """Views of one decoded frame's samples in its own dtype: one (n,) array per channel if planar, else one (n*C,)."""
    dtype = _DTYPES[frame.format.packed.name]
    samples, channels = frame.samples, frame.layout.nb_channels
    if frame.format.is_planar:  # planes may carry padding past ``samples``
        return [np.frombuffer(plane, dtype, count=samples) for plane in frame.planes[:channels]]
    return [np.frombuffer(frame.planes[0], dtype, count=samples * channels)]


def to_mono_float(chunks: list[list[np.ndarray]], planar: bool, channels: int) -> np.ndarray:
    """Join ``frame_samples`` outputs into one (n,) float32 mono signal in [-1, 1] (mean over channels)."""
    if planar:
        data = np.stack([np.concatenate([chunk[c] for chunk in chunks]) for c in range(channels)])  # (C, n)
    else:
        data = np.concatenate([chunk[0] for chunk in chunks]).reshape(-1, channels).T  # (n*C,) -> (C, n)
    if data.dtype == np.uint8:
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    return (data[0] if channels == 1 else data.mean(axis=0)).astype(np.float32, copy=False)  # (n,)


class AudioCollector:
    """Fed decoded audio frames in order; keeps the samples from the window's ``start`` on, as mono at the end."""

    def __init__(self, start: float, end: float, declared_end: float | None = None) -> None:
        self.start, self.end, self.declared_end = start, end, declared_end
        self.rate: int | None = None
        self.first_time: float | None = None  # time of the first kept sample
        self._layout: tuple[str, int, bool] | None = None  # (sample format, channels, planar) of the first frame
        self._chunks: list[list[np.ndarray]] = []
        self._samples = 0

    @property
    def done(self) -> bool:
        """True once the kept samples reach ``end``."""
        return self.first_time is not None and self.first_time + self._samples / self.rate >= self.end

    @property
    def available_end(self) -> float:
        """Time in seconds where the audio stops (``-inf`` before any frame), codec padding excluded."""
        if self.first_time is None:
            return -math.inf
        decoded_end = self.first_time + self._samples / self.rate
        if self.declared_end is not None and 0 < decoded_end - self.declared_end <= CODEC_PADDING_S:
            return self.declared_end
        return decoded_end

    def add(self, frame: av.AudioFrame, time: float | None) -> None:
        """Offer the next decoded frame; ``time`` is its start in seconds (None: right after the previous one)."""
        layout = (frame.format.name, frame.layout.nb_channels, frame.format.is_planar)
        if self.rate is None:
            self.rate, self._layout = frame.sample_rate, layout
        if (frame.sample_rate, layout) != (self.rate, self._layout):
            raise ValueError(
                f"audio changes mid-stream ({self.rate} Hz {self._layout} -> {frame.sample_rate} Hz {layout})"
            )
        if self.first_time is None:
            if time is not None and time + frame.samples / self.rate <= self.start:
                return  # entirely before the window (after a seek)
            self.first_time = 0.0 if time is None else time
        self._chunks.append(frame_samples(frame))
        self._samples += frame.samples

    def finish(self, sample_rate: int, length: int) -> tuple[np.ndarray, float, float]:
        """The window as (length,) float32 at ``sample_rate``, and the seconds padded at its start and its end."""
        if self.first_time is None:
            return np.zeros(length, np.float32), 0.0, length / sample_rate
        _, channels, planar = self._layout
        mono = to_mono_float(self._chunks, planar, channels)  # (n,) at the file's rate
        mono = resample(mono, self.rate, sample_rate)  # (n',)
        mono = mono[: max(0, round((self.available_end - self.first_time) * sample_rate))]  # drop codec padding
        offset = round((self.start - self.first_time) * sample_rate)  # window start inside ``mono``
        lead = max(0, -offset)
        body = mono[max(0, offset) : max(0, offset) + length - lead]
        tail = length - lead - len(body)
        wave = np.concatenate([np.zeros(lead, np.float32), body, np.zeros(tail, np.float32)])  # (length,)
        return wave, lead / sample_rate, tail / sample_rate


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample a mono (n,) float32 signal from ``rate`` to ``target`` Hz with swresample (aligned, no delay)."""
    if rate == target or wave.size == 0:
        return wave.astype(np.float32, copy=False)
    import av

    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None], np.float32), format="fltp", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=target)
    pieces = [out.to_ndarray()[0] for out in resampler.resample(frame)]
    pieces += [out.to_ndarray()[0] for out in resampler.resample(None)]  # flush the filter's delay line
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
