"""Video frames for ``read_clip``: which times to sample, which decoded frame serves each time, and RGB output.

Frame choice: each requested time gets the decoded frame whose presentation time is nearest to it (ties go
to the earlier frame). This follows the frame timestamps, so variable-frame-rate files are sampled by time,
not by frame index. Times past the last frame get the last frame; ``read_clip`` decides (its ``short``
policy) whether that is allowed.

Geometry: the display rotation stored in the file (the display matrix, counter-clockwise degrees, as
``VideoFrame.rotation`` reports it) is applied, so frames come out the way a player shows them. Mirror
flips in the matrix and non-square pixels (sample aspect ratio) are not applied. Resizing and the
YUV -> RGB conversion are one FFmpeg swscale call with bilinear interpolation (swscale widens the filter
when it shrinks, so downscaling is anti-aliased); no torchvision.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

Size = int | tuple[int, int] | None


def sample_times(
    start: float, duration: float, timestamps: Sequence[float] | np.ndarray | None, fps: float | None
) -> np.ndarray | None:
    """Requested times in seconds: ``timestamps`` as given, ``fps`` frames a second from ``start``, or None (all).

    With ``fps``, frame ``i`` is at ``start + i / fps`` for ``i < floor(duration * fps)`` (at least one frame).
    """
    if timestamps is not None and fps is not None:
        raise ValueError("pass either timestamps or fps, not both")
    if timestamps is not None:
        times = np.asarray(timestamps, dtype=np.float64).reshape(-1)  # (T,)
        if times.size == 0 or not np.all(np.isfinite(times)):
            raise ValueError(f"timestamps must be a non-empty list of finite seconds, got {timestamps!r}")
        return times
    if fps is not None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        count = max(1, math.floor(duration * fps + 1e-6))
        return start + np.arange(count, dtype=np.float64) / fps  # (T,)
    return None


def target_size(height: int, width: int, size: Size) -> tuple[tuple[int, int], tuple[int, int]]:
    """(resized H, W) and (cropped H, W) for a display-oriented ``height`` x ``width`` image.

    ``size=S`` scales the shorter side to S (keeping the aspect ratio) and then centre-crops to S x S;
    ``size=(H, W)`` scales to exactly H x W (no crop); ``None`` keeps the frame as it is.
    """
    if size is None:
        return (height, width), (height, width)
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"size must be > 0, got {size}")
        scale = size / min(height, width)
        scaled = (max(size, round(height * scale)), max(size, round(width * scale)))
        return scaled, (size, size)
    out_h, out_w = (int(v) for v in size)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return (out_h, out_w), (out_h, out_w)


def to_rgb(frame: av.VideoFrame, size: Size, reformatter: av.video.reformatter.VideoReformatter) -> np.ndarray:
    """One decoded frame as (H, W, 3) uint8 RGB, rotated for display, resized and centre-cropped per ``size``.

    ``reformatter`` keeps FFmpeg's scaler between frames (a fresh one per frame costs more than the conversion).
    """
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    height, width = frame.height, frame.width
    if quarter_turns % 2:
        height, width = width, height  # display orientation
    (scaled_h, scaled_w), (crop_h, crop_w) = target_size(height, width, size)
    store_h, store_w = (scaled_w, scaled_h) if quarter_turns % 2 else (scaled_h, scaled_w)
    image = reformatter.reformat(
        frame, width=store_w, height=store_h, format="rgb24", interpolation="BILINEAR", threads=1
    ).to_ndarray()  # (H, W, 3)
    if quarter_turns:
        image = np.rot90(image, k=quarter_turns)  # counter-clockwise, like the display matrix
    top, left = (scaled_h - crop_h) // 2, (scaled_w - crop_w) // 2
    return np.ascontiguousarray(image[top : top + crop_h, left : left + crop_w])  # (H, W, 3)


class FramePicker:
    """Fed decoded frames in presentation order; keeps, for each requested time, the nearest frame as RGB.

    With ``times=None`` it keeps every frame in ``[start, end)`` instead.
    """

    def __init__(self, times: np.ndarray | None, start: float, end: float, size: Size) -> None:
        self.times = times
        self.start, self.end, self.size = start, end, size
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()
        self._order = None if times is None else np.argsort(times, kind="stable")
        self._next = 0  # index into _order of the first unresolved time
        self._chosen: list[np.ndarray | None] = [] if times is None else [None] * len(times)
        self._kept_times: list[float] = []
        self._chosen_times = np.full(0 if times is None else len(times), np.inf)
        self._prev: tuple[float, av.VideoFrame] | None = None  # (time, frame) of the last frame seen
        self._prev_rgb: tuple[float, np.ndarray] | None = None
        self.frames_seen = 0
        self.last_end = -math.inf  # presentation end of the last frame seen, in seconds

    @property
    def done(self) -> bool:
        """True once every requested time is resolved (or, keeping all, once a frame at or past ``end`` came)."""
        if self.times is None:
            return self._prev is not None and self._prev[0] >= self.end - 1e-9
        return self._next >= len(self._order)

    def add(self, frame: av.VideoFrame, time: float, frame_duration: float) -> None:
        """Offer the next decoded frame, shown from ``time`` for ``frame_duration`` seconds."""
        self.frames_seen += 1
        self.last_end = time + frame_duration
        if self.times is None:
            if self.start - 1e-9 <= time < self.end - 1e-9:
                self._chosen.append(to_rgb(frame, self.size, self._reformatter))
                self._kept_times.append(time)
        else:
            while self._next < len(self._order) and self.times[self._order[self._next]] <= time:
                target = self.times[self._order[self._next]]
                use_prev = self._prev is not None and target - self._prev[0] <= time - target
                self._resolve(*(self._prev if use_prev else (time, frame)))
        self._prev = (time, frame)

    def shortfall(self) -> float:
        """Seconds by which the requested span (the last requested time, or ``end``) outlasts the frames seen."""
        wanted = self.end if self.times is None else float(self.times.max())
        return max(0.0, wanted - self.last_end)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, H, W, 3) uint8 and their times (T,): the requested times, or the kept frames' own times."""
        if self.times is not None:
            while self._next < len(self._order) and self._prev is not None:
                self._resolve(*self._prev)  # past the last frame: the last frame
            return np.stack(self._chosen), self.times
        return np.stack(self._chosen), np.asarray(self._kept_times, dtype=np.float64)

    def chosen_times(self) -> np.ndarray:
        """(T,) presentation time of the frame each requested time got so far (the last frame for the rest)."""
        chosen = self._chosen_times.copy()
        chosen[self._order[self._next :]] = self._prev[0] if self._prev is not None else np.inf
        return chosen

    def _resolve(self, time: float, frame: av.VideoFrame) -> None:
        if self._prev_rgb is None or self._prev_rgb[0] != time:
            self._prev_rgb = (time, to_rgb(frame, self.size, self._reformatter))
        self._chosen[self._order[self._next]] = self._prev_rgb[1]
        self._chosen_times[self._order[self._next]] = time
        self._next += 1


class NonRefSkipper:
    """Lets the decoder drop unneeded non-reference frames (FFmpeg ``skip_frame=NONREF``), then checks the result.

    A video packet far (more than one frame step) from every requested time is decoded with ``NONREF``: if nothing
    references its frame, the decoder drops it (88 of the 250 frames of a 10 s x264 AVSynth clip; about 13% less
    CPU for a 1 fps read in ``benchmarks/decode.py``'s setting). Frames are not evenly spaced in every file, so
    afterwards ``spoiled`` tells whether a dropped frame would have been nearer to a requested time than the frame
    chosen; ``read_clip`` then decodes again without skipping, so the result always equals a full decode.
    """

    def __init__(self, times: np.ndarray, step: float, time_base: float, origin: float) -> None:
        self._times = sorted(float(t) for t in times)  # plain floats: this runs once per packet
        self._step, self._time_base, self._origin = step, time_base, origin
        self._offered: set[int] = set()  # pts of packets decoded with NONREF
        self._seen: set[int] = set()  # pts of frames that came out

    def may_skip(self, pts: int | None) -> bool:
        """Whether the packet with this pts is far enough from every requested time to be dropped if non-reference."""
        if pts is None or self._step <= 0:
            return False
        time = pts * self._time_base - self._origin
        i = bisect.bisect_left(self._times, time)
        if (i > 0 and time - self._times[i - 1] <= self._step) or (
            i < len(self._times) and self._times[i] - time <= self._step
        ):
            return False
        self._offered.add(pts)
        return True

    def saw(self, pts: int | None) -> None:
        """Record a decoded frame's pts."""
        self._seen.add(pts)

    def spoiled(self, picker: FramePicker) -> bool:
        """True if a dropped frame is at least as near to some requested time as the frame that time got."""
        dropped = np.sort([p * self._time_base - self._origin for p in self._offered - self._seen])
        if dropped.size == 0:
            return False
        targets = picker.times
        i = np.clip(np.searchsorted(dropped, targets), 1, max(1, dropped.size - 1))
        nearest = np.minimum(
            np.abs(dropped[i - 1] - targets), np.abs(dropped[np.minimum(i, dropped.size - 1)] - targets)
        )
        return bool(np.any(nearest <= np.abs(picker.chosen_times() - targets) + 1e-9))
