"""Clip views: what a task reads of each clip, declared once, and sampled per item (train: random; eval: fixed).

A task (or its pipeline) declares a ``ClipView``:

- ``frames`` frames per clip, ``"uniform"`` (the middle of ``frames`` equal parts of the window: the segment centres
  of AVE) or ``"jitter"`` (training: a uniform random time inside each part, TSN-style; evaluation: the middle);
- ``windows`` audio windows of ``window_seconds`` each (None: the whole window): in training each window's centre
  is drawn uniformly inside its part of the clip (one part: anywhere the window fits), in evaluation it is the
  part's middle; windows are clipped into the clip;
- ``waveform``: the item keeps the raw waveform of each window (separation, a model's own front end) rather than
  only features computed from it;
- ``visual_segments`` / ``audio_segments``: how many segments each modality is cut into (they may differ; the
  method's ``AVFeatures`` carries both counts).

``view.sample(frames, frame_times, wave, sample_rate, duration, rng)`` turns decoded arrays (a ``Clip``, a store
sample, or ``Media.load``'s output with ``Decode.times`` as its frame times) into ``{"frames": (N, H, W, 3),
"wave": (K, L)}``: each requested time gets the nearest decoded frame, so decode more frames than the view asks for
(a store at 2-4 fps) when it jitters. ``rng=None`` is evaluation (centred, deterministic). For exact resumption
the training randomness must not come from a worker's state: ``item_rng(seed, epoch, index)`` gives the generator
of one item in one epoch (``LazyRecords`` passes it to its ``make`` function).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avlearn.errors import ConfigError

FRAME_SAMPLING = ("uniform", "jitter")


@dataclass(frozen=True)
class ClipView:
    """What a task reads of each clip (see the module docstring).

    Attributes:
        frames: Frames per clip (0: no video).
        sampling: ``"uniform"`` or ``"jitter"`` (random inside each part in training).
        windows: Audio windows per clip (0: no audio).
        window_seconds: Length of each audio window in seconds (None: the whole clip window).
        waveform: Keep each window's waveform in the item.
        visual_segments: Segments the frames are grouped into (0: ``frames``).
        audio_segments: Segments each audio window is cut into (0: ``windows``).
    """

    frames: int = 10
    sampling: str = "uniform"
    windows: int = 1
    window_seconds: float | None = None
    waveform: bool = False
    visual_segments: int = 0
    audio_segments: int = 0

    def __post_init__(self) -> None:
        if self.sampling not in FRAME_SAMPLING:
            raise ConfigError(f"ClipView.sampling={self.sampling!r}: expected one of {', '.join(FRAME_SAMPLING)}")
        if self.frames < 0 or self.windows < 0 or self.visual_segments < 0 or self.audio_segments < 0:
            raise ConfigError(f"ClipView counts must be >= 0, got {self}")
        if self.window_seconds is not None and not self.window_seconds > 0:
            raise ConfigError(f"ClipView.window_seconds={self.window_seconds}: expected seconds > 0 or None")
        if self.visual_segments and self.frames % self.visual_segments:
            raise ConfigError(f"ClipView: {self.frames} frames do not split into {self.visual_segments} segments")

    def frame_times(self, duration: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """``(N,)`` seconds of the frames in a clip of ``duration`` s (``rng`` given and ``jitter``: random)."""
        part = duration / self.frames
        offset = rng.uniform(0.0, 1.0, self.frames) if rng is not None and self.sampling == "jitter" else 0.5
        return (np.arange(self.frames) + offset) * part  # (N,)

    def window_starts(self, duration: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """``(K,)`` start seconds of the audio windows (``rng`` given: random centres; None: centred)."""
        length = self.window_length(duration)
        part = duration / self.windows
        offset = rng.uniform(0.0, 1.0, self.windows) if rng is not None else 0.5
        centres = (np.arange(self.windows) + offset) * part  # (K,)
        return np.clip(centres - length / 2, 0.0, duration - length)

    def window_length(self, duration: float) -> float:
        """Seconds per audio window (at most the clip's ``duration``)."""
        return duration if self.window_seconds is None else min(self.window_seconds, duration)

    def sample(
        self,
        frames: np.ndarray,
        frame_times: np.ndarray,
        wave: np.ndarray,
        sample_rate: int,
        duration: float,
        rng: np.random.Generator | None = None,
    ) -> dict[str, np.ndarray]:
        """Decoded arrays -> the view: ``frames (N, H, W, 3)`` and ``wave (K, L)``, ``L = window * rate`` samples.

        Args:
            frames: ``(T, H, W, 3)`` decoded frames at ``frame_times (T,)`` seconds.
            wave: ``(M,)`` waveform at ``sample_rate`` from time 0.
            duration: the clip window in seconds.
            rng: training randomness (``item_rng``); None for evaluation.
        """
        out: dict[str, np.ndarray] = {}
        if self.frames:
            times = self.frame_times(duration, rng)  # (N,)
            nearest = np.abs(np.asarray(frame_times)[None, :] - times[:, None]).argmin(axis=1)  # (N, T) -> (N,)
            out["frames"] = frames[nearest]  # (N, H, W, 3)
        if self.windows:
            length = round(self.window_length(duration) * sample_rate)
            starts = np.round(self.window_starts(duration, rng) * sample_rate).astype(int)  # (K,)
            padded = np.pad(wave, (0, max(0, int(starts.max()) + length - len(wave))))  # a short track: zeros
            out["wave"] = np.stack([padded[s : s + length] for s in starts])  # (K, L)
        return out


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random source of item ``index`` in ``epoch``: the same in any worker and after a resume."""
    return np.random.default_rng([seed, epoch, index])
