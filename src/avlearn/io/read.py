"""Reading media with PyAV: a video file into a ``Clip`` (RGB frames + mono waveform), an audio file into ``Audio``.

One demuxing pass reads the video and audio packets in file order, decodes them single-threaded by default
(parallelism comes from running many readers, e.g. DataLoader workers or ``avlearn extract --workers``), and
stops as soon as the requested frames and samples are in. For a window that starts later than 0 s it seeks to
the keyframe before it first.

Time 0 is the container's start time (e.g. 0.025 s in an mp3 whose encoder delay is trimmed). Frames: see
``avlearn.io.frames`` (nearest frame by timestamp, display rotation applied, swscale bilinear resize). Audio:
see ``avlearn.io.sound`` (mean downmix, swresample, cut or zero-padded to exactly
``round(duration * sample_rate)`` samples).

Policies, each recorded in ``Clip.notes`` when applied:
- ``missing_audio``: ``"error"`` raises ``MediaError``; ``"silence"`` returns zeros with ``has_audio=False``.
- ``short`` (the file ends more than 0.1 s before ``start + duration``): ``"error"`` raises; ``"pad"`` repeats
  the last frame and pads audio with zeros. Gaps up to 0.1 s (an audio track a few ms shorter than the
  video) are always padded, and noted when longer than 1 ms.
- A video track that ends before an audio track that covers the window (a still image with music, the commonest
  upload) holds its last frame under either ``short`` policy; the first such file in a process also prints one
  warning line (``warnings.warn``), every one gets a ``held video ...`` note.
The hints in the messages name the ``avlearn extract`` / ``avlearn predict`` flags (``--short pad``,
``--missing-audio silence``, ``--duration``); the Python arguments have the same names with underscores.
Anything FFmpeg cannot open or decode (missing, empty, truncated, corrupt, not media) raises ``MediaError``.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from avlearn.io.errors import MediaError
from avlearn.io.frames import FramePicker, NonRefSkipper, Size, sample_times
from avlearn.io.sound import AudioCollector

if TYPE_CHECKING:
    import av
    from av.container import InputContainer

SHORT_TOLERANCE_S = 0.1  # a stream may end this much before the window without being "short"
HELD_NOTE = "held video"  # the note of a clip whose video ended before its audio (last frame held)
_NOTE_MIN_S = 1e-3  # padding below this (rounding) is not worth a note
Source = str | Path | BinaryIO


@dataclass
class Clip:
    """Decoded video: frames (T, H, W, 3) uint8 at ``frame_times`` (T,) s, and a mono (N,) float32 waveform.

    ``N == round(duration * sample_rate)`` exactly. ``notes`` lists the policies applied (padding, silence).
    """

    frames: np.ndarray
    frame_times: np.ndarray
    wave: np.ndarray
    sample_rate: int
    has_audio: bool
    duration: float
    path: str
    notes: tuple[str, ...] = ()


@dataclass
class Audio:
    """Decoded audio: a mono (N,) float32 waveform at ``sample_rate``, ``N == round(duration * sample_rate)``."""

    wave: np.ndarray
    sample_rate: int
    duration: float
    path: str
    notes: tuple[str, ...] = ()


@dataclass
class _Window:
    start: float
    duration: float
    sample_rate: int
    short: str
    origin: float  # the container's start time: clip time 0

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def length(self) -> int:
        return round(self.duration * self.sample_rate)


def read_clip(
    path: Source,
    *,
    timestamps: Sequence[float] | np.ndarray | None = None,
    fps: float | None = None,
    size: Size = None,
    sample_rate: int = 16000,
    duration: float | None = None,
    start: float = 0.0,
    missing_audio: str = "error",
    short: str = "error",
    threads: int = 1,
) -> Clip:
    """Decode frames and audio from a video file (a path, or a binary file object such as ``io.BytesIO``).

    Args:
        path: the video file.
        timestamps: seconds; each gets the frame nearest to it. Exclusive with ``fps``.
        fps: sample ``floor(duration * fps)`` frames at ``start + i / fps``. With neither, every frame in
            the window is returned at its own time.
        size: ``S`` scales the shorter side to S and centre-crops S x S; ``(H, W)`` scales to exactly H x W;
            None keeps the decoded size (after rotation).
        sample_rate: output audio rate in Hz.
        duration: seconds to keep from ``start``; default: the container's duration minus ``start``.
        start: window start in seconds.
        missing_audio: ``"error"`` or ``"silence"`` for a file without an audio track.
        short: ``"error"`` or ``"pad"`` for a file that ends before ``start + duration``.
        threads: FFmpeg decoding threads per call (1 suits many parallel readers).

    Raises:
        MediaError: the file cannot be read, or lacks audio / length under the ``"error"`` policies.
    """
    _check_choice("missing_audio", missing_audio, ("error", "silence"))
    _check_choice("short", short, ("error", "pad"))
    label = _label(path)
    with _open(path, label) as container:
        if not container.streams.video:
            raise MediaError(label, "no video stream (for an audio file use read_audio)")
        window = _window(container, label, start, duration, sample_rate, short)
        times = sample_times(window.start, window.duration, timestamps, fps)
        video = container.streams.video[0]
        if not container.streams.audio and missing_audio == "error":
            raise MediaError(label, "no audio track (--missing-audio silence reads it as silence)")
        may_drop = times is not None and threads == 1 and bool(video.time_base)
        picker, collector = _read_streams(container, label, window, times, size, threads, may_drop)
        if picker is None:  # a dropped frame was needed after all: decode every frame
            _rewind(container, label)
            picker, collector = _read_streams(container, label, window, times, size, threads, False)
    return _assemble(label, window, picker, collector)


def _read_streams(
    container: InputContainer,
    label: str,
    window: _Window,
    times: np.ndarray | None,
    size: Size,
    threads: int,
    may_drop: bool,
) -> tuple[FramePicker | None, AudioCollector | None]:
    """One decoding pass from the window's start; (None, None) if dropping frames spoiled the result."""
    video = container.streams.video[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    picker = FramePicker(times, window.start, window.end, size)
    collector = _collector(window, audio) if audio is not None else None
    skipper = NonRefSkipper(times, _frame_step(video), float(video.time_base), window.origin) if may_drop else None
    _decode(container, label, window, video, audio, picker, collector, threads, skipper)
    if skipper is not None and skipper.spoiled(picker):
        return None, None
    return picker, collector


def read_audio(
    path: Source,
    *,
    sample_rate: int = 16000,
    duration: float | None = None,
    start: float = 0.0,
    short: str = "error",
) -> Audio:
    """Decode the first audio track of a file (wav, flac, mp3, ogg, m4a, or a video) to mono at ``sample_rate``.

    ``duration``, ``start`` and ``short`` work as in ``read_clip``.

    Raises:
        MediaError: the file cannot be read, has no audio track, or is short under ``short="error"``.
    """
    _check_choice("short", short, ("error", "pad"))
    label = _label(path)
    with _open(path, label) as container:
        if not container.streams.audio:
            raise MediaError(label, "no audio track")
        window = _window(container, label, start, duration, sample_rate, short)
        collector = _collector(window, container.streams.audio[0])
        _decode(container, label, window, None, container.streams.audio[0], None, collector, 1)
    notes = []
    wave = _finish_audio(label, window, collector, notes)
    return Audio(wave, sample_rate, window.duration, label, tuple(notes))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _label(path: Source) -> str:
    return str(path) if isinstance(path, str | Path) else str(getattr(path, "name", "<file object>"))


def _open(path: Source, label: str) -> InputContainer:
    import av

    if isinstance(path, str | Path):
        if not os.path.exists(path):
            raise MediaError(label, "no such file")
        if os.path.isdir(path):
            raise MediaError(label, "is a directory, not a media file")
        if os.path.getsize(path) == 0:
            raise MediaError(label, "empty file (0 bytes)")
        source = str(path)
    else:
        source = path
        if isinstance(path, io.BytesIO) and not path.getbuffer().nbytes:
            raise MediaError(label, "empty file (0 bytes)")
    try:
        return av.open(source, mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise MediaError(label, f"not a readable media file ({_reason(err)})") from err


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _window(
    container: InputContainer, label: str, start: float, duration: float | None, sample_rate: int, short: str
) -> _Window:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if duration is None:
        total = _container_duration(container)
        if total is None:
            raise MediaError(label, "the container does not state its duration; set --duration")
        duration = total - start
    if not duration > 0:
        raise MediaError(label, f"nothing to read: window of {duration:.3f} s starting at {start:.3f} s")
    origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0  # AV_TIME_BASE
    return _Window(float(start), float(duration), int(sample_rate), short, origin)


def _container_duration(container: InputContainer) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    spans = [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
    return max(spans) if spans else None


def _decode(
    container: InputContainer,
    label: str,
    window: _Window,
    video: av.VideoStream | None,
    audio: av.AudioStream | None,
    picker: FramePicker | None,
    collector: AudioCollector | None,
    threads: int,
    skipper: NonRefSkipper | None = None,
) -> None:
    """Demux and decode until ``picker`` and ``collector`` are satisfied or the file ends."""
    import av

    streams = [s for s in (video, audio) if s is not None]
    if video is not None:
        if not video.codec_context.is_open:  # threading is fixed once the decoder opens (a second pass reuses it)
            video.thread_type = "AUTO" if threads != 1 else "SLICE"
            video.codec_context.thread_count = threads
        video.codec_context.skip_frame = "DEFAULT"
    frame_step = _frame_step(video) if video is not None else 0.0
    video_tb = float(video.time_base) if video is not None and video.time_base else 0.0
    try:
        if window.start > 0:
            container.seek(int((window.origin + window.start) * 1_000_000), backward=True)  # keyframe before
        skipping = False
        for packet in container.demux(*streams):
            if skipper is not None and packet.stream is video and skipper.may_skip(packet.pts) != skipping:
                skipping = not skipping
                video.codec_context.skip_frame = "NONREF" if skipping else "DEFAULT"
            for frame in packet.decode():
                time = None if frame.pts is None else frame.time - window.origin
                if isinstance(frame, av.VideoFrame):
                    if skipper is not None:
                        skipper.saw(frame.pts)
                    duration = frame.duration * video_tb if frame.duration else frame_step
                    picker.add(frame, time if time is not None else picker.frames_seen * frame_step, duration)
                else:
                    collector.add(frame, time)
            if (picker is None or picker.done) and (collector is None or collector.done):
                break
    except (av.FFmpegError, OSError, ValueError, MemoryError) as err:
        raise MediaError(label, f"cannot decode ({_reason(err)}): corrupt or truncated?") from err


def _rewind(container: InputContainer, label: str) -> None:
    import av

    try:
        container.seek(0)
    except av.FFmpegError as err:
        raise MediaError(label, f"cannot seek back to decode again ({_reason(err)})") from err


def _collector(window: _Window, audio: av.AudioStream) -> AudioCollector:
    """An ``AudioCollector`` for ``window`` that knows where ``audio`` declares its end (if it does)."""
    declared_end = None
    if audio.duration and audio.time_base:
        declared_end = float((audio.start_time or 0) * audio.time_base + audio.duration * audio.time_base)
        declared_end -= window.origin
    return AudioCollector(window.start, window.end, declared_end)


def _frame_step(video: av.VideoStream) -> float:
    rate = video.average_rate or video.guessed_rate or video.base_rate
    return float(1 / rate) if rate else 0.0


def _assemble(label: str, window: _Window, picker: FramePicker, collector: AudioCollector | None) -> Clip:
    if picker.frames_seen == 0:
        raise MediaError(label, "no video frame could be decoded")
    notes: list[str] = []
    video_gap = picker.shortfall()
    if video_gap > SHORT_TOLERANCE_S and _audio_covers(window, collector):
        ends = f"the video track ends at {picker.last_end:.3f} s"
        notes.append(f"{HELD_NOTE} {video_gap:.3f} s: {ends} (last frame held)")
        _warn_held_once(label, picker.last_end)
    elif video_gap > SHORT_TOLERANCE_S:
        _short(label, window, "video", picker.last_end)
        notes.append(f"padded video {video_gap:.3f} s (last frame repeated)")
    frames, frame_times = picker.finish()
    if collector is None:
        wave = np.zeros(window.length, np.float32)
        notes.append("no audio track: silence")
    else:
        wave = _finish_audio(label, window, collector, notes)
    return Clip(
        frames=frames,
        frame_times=frame_times,
        wave=wave,
        sample_rate=window.sample_rate,
        has_audio=collector is not None,
        duration=window.duration,
        path=label,
        notes=tuple(notes),
    )


def _audio_covers(window: _Window, collector: AudioCollector | None) -> bool:
    """Whether an audio track reaches the window's end (then a shorter video track holds its last frame)."""
    return collector is not None and window.end - collector.available_end <= SHORT_TOLERANCE_S


class HeldFrameWarning(UserWarning):
    """A video track ended before its audio and its last frame was held (said once per process)."""


_held_warned = False  # one warning line per process; every clip still gets its note


def _warn_held_once(label: str, video_end: float) -> None:
    global _held_warned
    if not _held_warned:
        _held_warned = True
        warnings.warn(
            f"{label}: the video track ends at {video_end:.3f} s, before its audio; holding its last frame "
            "(a still image with sound). Said once; each such clip is noted.",
            HeldFrameWarning,
            stacklevel=4,
        )


def _finish_audio(label: str, window: _Window, collector: AudioCollector, notes: list[str]) -> np.ndarray:
    """The collector's window as (N,) float32; applies the ``short`` policy and appends padding notes."""
    if window.end - collector.available_end > SHORT_TOLERANCE_S:
        _short(label, window, "audio", collector.available_end)
    wave, lead, tail = collector.finish(window.sample_rate, window.length)
    if lead > _NOTE_MIN_S:
        notes.append(f"padded audio {lead:.3f} s at the start (track starts late)")
    if tail > _NOTE_MIN_S:
        notes.append(f"padded audio {tail:.3f} s")
    return wave


def _short(label: str, window: _Window, what: str, ends_at: float) -> None:
    if window.short == "error":
        ends = "has no samples" if math.isinf(ends_at) else f"ends at {ends_at:.3f} s"
        raise MediaError(
            label,
            f"{what} {ends}, before the requested end {window.end:.3f} s (--short pad pads it; or set --duration)",
        )
