"""Random AVSynth scenes: which sources a clip holds, where they are, and when each is seen and heard.

A scene is pure data (no pixels, no samples); ``render.py`` turns it into frames, masks and audio, and
``formats.py`` turns it into the benchmarks' annotation files. Times are whole seconds, so every one-second
segment is unambiguously on or off for each source and modality.

Flavours:
- ``events`` (AVE, LLP/AVVP, VGGSound, captions): one audio-visual event of class c over [start, end) — c both
  visible and audible there and nowhere else together — possibly preceded or followed by c seen but silent or
  heard but unseen, plus, sometimes, a distractor of another class that is only seen or only heard; optionally
  (``event_distractors="both"``) always two: an object of a second class only seen and a sound of a third class
  only heard, timed as c is seen and heard, so that only both modalities together name c.
- ``s4`` (AVSBench single-source): one source sounding throughout, sometimes a silent second object.
- ``ms3`` (AVSBench multi-source): two or three visible sources, each sounding in some seconds.
- ``avqa`` (MUSIC-AVQA): two or three sources at distinct horizontal positions with distinct onsets, sometimes an
  off-screen sound (the "voiceover").
- ``sounds`` (ESC-50, ImageNet-ESC audio): one class heard throughout, nothing seen (rendered as audio only);
  optionally (``sound_background``) a background sound of another class heard over part of it.
- ``images`` (CoOp image sets): one object of one class, seen, silent (rendered as one image).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FLAVOURS = ("events", "s4", "ms3", "avqa", "sounds", "images")  # new flavours go last: seeds follow the index

Interval = tuple[int, int]  # [on, off) in whole seconds


@dataclass
class Source:
    """One object/sound of class ``cls`` in a clip.

    ``x``, ``y`` are the centre in [0, 1] image coordinates at t = 0, ``drift`` its displacement per second,
    ``scale`` its radius as a fraction of the frame side. Empty ``visible`` means an off-screen sound; empty
    ``audible`` a silent object.
    """

    cls: int
    visible: list[Interval] = field(default_factory=list)
    audible: list[Interval] = field(default_factory=list)
    x: float = 0.5
    y: float = 0.5
    drift: tuple[float, float] = (0.0, 0.0)
    scale: float = 0.2
    loudness: float = 1.0
    pitch_jitter: float = 1.0
    phase: float = 0.0

    def seen_at(self, second: int) -> bool:
        return any(a <= second < b for a, b in self.visible)

    def heard_at(self, second: int) -> bool:
        return any(a <= second < b for a, b in self.audible)

    @property
    def side(self) -> str:
        """``left``, ``middle`` or ``right`` by the horizontal position."""
        return "left" if self.x < 0.4 else "right" if self.x > 0.6 else "middle"


@dataclass
class Scene:
    """A clip: its id, flavour, length in seconds and sources; ``event`` is the AVE event (class, on, off)."""

    clip_id: str
    flavour: str
    seconds: int
    sources: list[Source]
    event: tuple[int, int, int] | None = None
    background: int = 0  # seed of the background texture and noise

    def av_labels(self) -> np.ndarray:
        """(S,) int: the class seen AND heard in each second, -1 where none (AVE background)."""
        labels = np.full(self.seconds, -1, dtype=np.int64)
        for s in range(self.seconds):
            both = [src.cls for src in self.sources if src.seen_at(s) and src.heard_at(s)]
            if both:
                labels[s] = both[0]
        return labels


def _interval(rng: np.random.Generator, seconds: int, min_len: int = 1) -> Interval:
    length = int(rng.integers(min_len, seconds + 1))
    start = int(rng.integers(0, seconds - length + 1))
    return start, start + length


def _positions(rng: np.random.Generator, count: int) -> list[float]:
    """``count`` horizontal centres in distinct thirds (or halves for two), left to right."""
    if count == 1:
        return [float(rng.uniform(0.3, 0.7))]
    bins = [(0.2, 0.3), (0.7, 0.8)] if count == 2 else [(0.15, 0.22), (0.45, 0.55), (0.78, 0.85)]
    return [float(rng.uniform(lo, hi)) for lo, hi in bins[:count]]


def _source(rng: np.random.Generator, cls: int, x: float, visible: list, audible: list) -> Source:
    return Source(
        cls=cls,
        visible=visible,
        audible=audible,
        x=x,
        y=float(rng.uniform(0.35, 0.65)),
        drift=(float(rng.uniform(-0.006, 0.006)), float(rng.uniform(-0.006, 0.006))),
        scale=float(rng.uniform(0.16, 0.22)),
        loudness=float(rng.uniform(0.6, 1.0)),
        pitch_jitter=float(rng.uniform(0.97, 1.03)),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def _events(rng: np.random.Generator, clip_id: str, seconds: int, num_classes: int, distractors: str) -> Scene:
    cls = int(rng.integers(num_classes))
    start, end = _interval(rng, seconds, min_len=max(1, seconds // 5))
    seen, heard = [start, end], [start, end]
    # Extend one modality before the event and one after it; the other stays at the event's edge, so the
    # intersection of seen and heard is exactly [start, end).
    if start > 0 and rng.random() < 0.35:
        (seen if rng.random() < 0.5 else heard)[0] = int(rng.integers(0, start))
    if end < seconds and rng.random() < 0.35:
        (seen if rng.random() < 0.5 else heard)[1] = int(rng.integers(end + 1, seconds + 1))
    xs = _positions(rng, 2)
    main_left = rng.random() < 0.5
    sources = [_source(rng, cls, xs[0] if main_left else xs[1], [tuple(seen)], [tuple(heard)])]
    x_other = xs[1] if main_left else xs[0]
    if distractors == "both":
        sources += _paired_distractors(rng, sources[0], x_other, num_classes)
    elif rng.random() < 0.5:
        other = int((cls + rng.integers(1, num_classes)) % num_classes)
        span = [_interval(rng, seconds)]
        visual_only = rng.random() < 0.5
        sources.append(_source(rng, other, x_other, span if visual_only else [], [] if visual_only else span))
    return Scene(clip_id, "events", seconds, sources, event=(cls, start, end), background=int(rng.integers(2**31)))


def _paired_distractors(rng: np.random.Generator, main: Source, x: float, num_classes: int) -> list[Source]:
    """``event_distractors="both"``: an object of a second class seen exactly when ``main`` is seen (never heard),
    at ``x``, and a sound of a third class heard exactly when ``main`` is heard (never seen). Each modality alone
    then holds two candidates with the same timing, drawn alike, so it names the class in half the clips at best;
    only the class both seen and heard is the label."""
    seen_cls, heard_cls = ((main.cls + 1 + rng.choice(num_classes - 1, size=2, replace=False)) % num_classes).tolist()
    seen_only = _source(rng, seen_cls, x, list(main.visible), [])
    heard_only = _source(rng, heard_cls, 0.5, [], list(main.audible))
    return [seen_only, heard_only]


def _s4(rng: np.random.Generator, clip_id: str, seconds: int, num_classes: int) -> Scene:
    cls = int(rng.integers(num_classes))
    xs = _positions(rng, 2)
    main_left = rng.random() < 0.5
    full = [(0, seconds)]
    sources = [_source(rng, cls, xs[0] if main_left else xs[1], full, full)]
    if rng.random() < 0.5:
        other = int((cls + rng.integers(1, num_classes)) % num_classes)
        sources.append(_source(rng, other, xs[1] if main_left else xs[0], full, []))
    return Scene(clip_id, "s4", seconds, sources, background=int(rng.integers(2**31)))


def _multi(rng: np.random.Generator, clip_id: str, flavour: str, seconds: int, num_classes: int) -> Scene:
    count = min(int(rng.integers(2, 4)), num_classes)
    classes = [int(c) for c in rng.choice(num_classes, size=count, replace=False)]
    onsets = sorted(int(o) for o in rng.choice(seconds - 1, size=count, replace=False))  # distinct onsets
    rng.shuffle(onsets)
    sources = []
    for cls, x, onset in zip(classes, _positions(rng, count), onsets, strict=True):
        offset = int(rng.integers(onset + 1, seconds + 1))
        sources.append(_source(rng, cls, x, [(0, seconds)], [(onset, offset)]))
    remaining = [c for c in range(num_classes) if c not in classes]
    if flavour == "avqa" and rng.random() < 0.3 and remaining:
        sources.append(_source(rng, int(rng.choice(remaining)), 0.5, [], [_interval(rng, seconds)]))
    return Scene(clip_id, flavour, seconds, sources, background=int(rng.integers(2**31)))


def _single(
    rng: np.random.Generator, clip_id: str, flavour: str, seconds: int, cls: int, num_classes: int, background: float
) -> Scene:
    """One source of class ``cls``: heard throughout (``sounds``) or seen throughout (``images``); a sound, with
    probability ``background`` (no draw when 0), also a background sound of another class heard over a random
    interval."""
    full = [(0, seconds)]
    seen, heard = ([], full) if flavour == "sounds" else (full, [])
    x = float(rng.uniform(0.3, 0.7))
    sources = [_source(rng, cls, x, seen, heard)]
    scene_seed = int(rng.integers(2**31))
    if flavour == "sounds" and background > 0 and rng.random() < background:
        other = int((cls + rng.integers(1, num_classes)) % num_classes)
        sources.append(_source(rng, other, 0.5, [], [_interval(rng, seconds)]))
    return Scene(clip_id, flavour, seconds, sources, background=scene_seed)


def sample_scene(
    flavour: str,
    clip_id: str,
    rng: np.random.Generator,
    seconds: int,
    num_classes: int,
    index: int = 0,
    sound_background: float = 0.0,
    event_distractors: str = "half",
) -> Scene:
    """A random scene of ``flavour`` (see the module docstring), drawn from ``rng`` only; ``sounds`` and ``images``
    take the class ``index % num_classes`` instead, so that their sets are balanced (as ESC-50 and CoOp's sets);
    ``sound_background``: the probability of a sound's background sound (``_single``); ``event_distractors``:
    ``half`` (one single-modality distractor in half the event clips) or ``both`` (every event clip holds a
    seen-only and a heard-only one, ``_paired_distractors``)."""
    if flavour == "events":
        return _events(rng, clip_id, seconds, num_classes, event_distractors)
    if flavour == "s4":
        return _s4(rng, clip_id, seconds, num_classes)
    if flavour in ("ms3", "avqa"):
        return _multi(rng, clip_id, flavour, seconds, num_classes)
    if flavour in ("sounds", "images"):
        return _single(rng, clip_id, flavour, seconds, index % num_classes, num_classes, sound_background)
    raise ValueError(f"unknown AVSynth flavour {flavour!r}; expected one of {FLAVOURS}")
