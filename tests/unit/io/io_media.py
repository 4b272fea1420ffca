"""Odd media made with PyAV for the ``avlearn.io`` tests: any codec, layout, rate, rotation or frame timing."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

LEVEL_STEP = 5  # frame i is flat grey at level 16 + i * LEVEL_STEP (i < 48), so its index survives lossy coding


def index_frames(count: int, height: int = 32, width: int = 32) -> np.ndarray:
    """(T, H, W, 3) uint8 flat frames whose grey level encodes their index."""
    levels = 16 + LEVEL_STEP * np.arange(count)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).astype(np.uint8)


def frame_indices(frames: np.ndarray) -> np.ndarray:
    """Recover the indices of ``index_frames`` frames from decoded (T, H, W, 3) pixels."""
    return np.round((frames.reshape(len(frames), -1).mean(axis=1) - 16) / LEVEL_STEP).astype(int)


def chirp(seconds: float, rate: int) -> np.ndarray:
    """A 100 Hz -> 3 kHz linear chirp sampled at ``rate``: (N,) float32; not periodic, so lags are unambiguous."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * (100 * t + (3000 - 100) / (2 * seconds) * t**2))).astype(np.float32)


def best_lag(wave: np.ndarray, reference: np.ndarray, max_lag: int = 64) -> int:
    """The shift (samples) of ``wave`` against ``reference`` that correlates best, within +-``max_lag``."""
    n = min(len(wave), len(reference)) - 2 * max_lag
    scores = [
        np.dot(wave[max_lag + lag : max_lag + lag + n], reference[max_lag : max_lag + n])
        for lag in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(scores)) - max_lag


def correlation(wave: np.ndarray, reference: np.ndarray) -> float:
    """Pearson correlation over the common length."""
    n = min(len(wave), len(reference))
    return float(np.corrcoef(wave[:n], reference[:n])[0, 1])


def mux(
    path: Path,
    *,
    frames: np.ndarray | None = None,
    fps: int = 8,
    times_ms: list[int] | None = None,
    rotation: int = 0,
    audio: np.ndarray | None = None,
    rate: int = 16000,
    layout: str = "mono",
    codec: str = "aac",
    fmt: str | None = None,
) -> Path:
    """Write ``frames`` (H.264, at ``fps`` or at explicit ``times_ms``) and/or ``audio`` (C, N) float to ``path``."""
    with av.open(str(path), mode="w", format=fmt) as container:
        video = _video_stream(container, frames, fps, times_ms, rotation) if frames is not None else None
        sound = container.add_stream(codec, rate=rate, layout=layout) if audio is not None else None
        if video is not None:
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                if times_ms is not None:
                    frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
                container.mux(video.encode(frame))
            container.mux(video.encode(None))
        if sound is not None:
            _encode_audio(container, sound, audio, rate, layout)
    return path


def _video_stream(
    container: av.container.OutputContainer, frames: np.ndarray, fps: int, times_ms: list[int] | None, rotation: int
) -> av.VideoStream:
    stream = container.add_stream("libx264", rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    stream.codec_context.thread_count = 1
    if times_ms is not None:  # millisecond timing in the encoder too, or it rounds pts to 1 / fps
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
    if rotation:
        stream.set_display_rotation(rotation)
    return stream


def _encode_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, audio: np.ndarray, rate: int, layout: str
) -> None:
    sample_format = stream.codec_context.format.name
    step = stream.codec_context.frame_size or 1024
    resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
    for start in range(0, audio.shape[1], step):
        piece = np.ascontiguousarray(audio[:, start : start + step], dtype=np.float32)  # (C, <=step)
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for converted in resampler.resample(frame):
            container.mux(stream.encode(converted))
    container.mux(stream.encode(None))
