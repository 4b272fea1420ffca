"""Rendering AVSynth scenes: RGB frames and sounding-object masks (numpy), and the mono waveform.

Each object is drawn in its own coordinates (u, v in [-1, 1] across its radius), so its texture moves with it.
Each sound is a harmonic tone or a band of noise, gated by its audible seconds (with 15 ms fades) and by its
rhythm (pulses per second). Backgrounds are a smooth colour gradient with fixed per-clip grain, and the audio
has a low noise floor, so neither a blank frame nor digital silence gives a segment away.
"""

from __future__ import annotations

import functools

import numpy as np

from avlearn.data.synth.classes import COLOURS, PROFILES, ClassSpec
from avlearn.data.synth.scene import Scene, Source

FADE_S = 0.015


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r = np.hypot(u, v)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "triangle":
        return (v <= 0.8) & (v >= -1.0) & (np.abs(u) <= (v + 1.0) * 0.55)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        return ((np.abs(u) <= 0.33) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.33) & (np.abs(u) <= 1.0))
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "bar":
        return (np.abs(v) <= 0.42) & (np.abs(u) <= 1.0)
    if shape == "star":
        return r <= 0.55 + 0.45 * np.cos(5 * np.arctan2(v, u))
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 where the object shows its full colour, 0 where it shows the dark shade."""
    if texture == "solid":
        return np.ones_like(u)
    if texture == "striped":
        return (np.sin(u * np.pi * 2.5) > 0).astype(np.float32)
    if texture == "checked":
        return ((np.floor(u * 2.2) + np.floor(v * 2.2)) % 2 == 0).astype(np.float32)
    if texture == "dotted":
        fu, fv = (u * 2.0) % 1.0 - 0.5, (v * 2.0) % 1.0 - 0.5
        return (np.hypot(fu, fv) > 0.28).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}")


def _object_coords(src: Source, t: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    cx = np.clip(src.x + src.drift[0] * t, 0.1, 0.9)
    cy = np.clip(src.y + src.drift[1] * t, 0.1, 0.9)
    u = (grid[None, :] - cx) / src.scale  # (1, W)
    v = (grid[:, None] - cy) / src.scale  # (H, 1)
    return np.broadcast_to(u, (size, size)), np.broadcast_to(v, (size, size))


@functools.lru_cache(maxsize=4)
def _background(seed: int, size: int) -> np.ndarray:
    """(H, W, 3) float32, read-only: the clip's backdrop (cached: every frame of a clip shares it)."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(60, 150, size=3), rng.uniform(60, 150, size=3)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    mix = ramp[:, None, None] if rng.random() < 0.5 else ramp[None, :, None]  # vertical or horizontal gradient
    base = a * (1 - mix) + b * mix  # (H, W, 3) or broadcastable
    grain = rng.normal(0.0, 6.0, size=(size, size, 1))
    image = np.broadcast_to(base + grain, (size, size, 3)).astype(np.float32)
    image.flags.writeable = False
    return image


def render_frame(scene: Scene, classes: tuple[ClassSpec, ...], t: float, size: int) -> np.ndarray:
    """The frame at time ``t`` (seconds): (H, W, 3) uint8 with H = W = ``size``."""
    image = _background(scene.background, size).copy()
    second = int(np.floor(t))
    for src in scene.sources:
        if not src.seen_at(second):
            continue
        spec = classes[src.cls]
        u, v = _object_coords(src, t, size)
        inside = _shape_mask(spec.shape, u, v)
        shade = 0.3 + 0.7 * _texture(spec.texture, u, v)  # (H, W)
        colour = np.asarray(COLOURS[spec.colour], dtype=np.float32)
        image[inside] = (shade[..., None] * colour)[inside]
    return np.clip(image, 0, 255).astype(np.uint8)


def render_mask(scene: Scene, classes: tuple[ClassSpec, ...], t: float, size: int) -> np.ndarray:
    """Binary mask (H, W) bool of the objects that are both seen and heard at time ``t``."""
    mask = np.zeros((size, size), dtype=bool)
    second = int(np.floor(t))
    for src in scene.sources:
        if src.seen_at(second) and src.heard_at(second):
            u, v = _object_coords(src, t, size)
            mask |= _shape_mask(classes[src.cls].shape, u, v)
    return mask


def _gate(src: Source, n: int, sample_rate: int) -> np.ndarray:
    """(N,) amplitude envelope: 1 in audible seconds with short linear fades, 0 elsewhere."""
    gate = np.zeros(n, dtype=np.float32)
    fade = max(1, int(FADE_S * sample_rate))
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for on, off in src.audible:
        a, b = on * sample_rate, min(n, off * sample_rate)
        gate[a:b] = 1.0
        gate[a : a + fade] *= ramp[: b - a]
        gate[max(a, b - fade) : b] *= ramp[::-1][-(b - max(a, b - fade)) :]
    return gate


def _rhythm(rate: float, t: np.ndarray, phase: float) -> np.ndarray:
    if rate == 0:
        return np.ones_like(t)
    cycle = (t * rate + phase / (2 * np.pi)) % 1.0
    return np.where(cycle < 0.55, 1.0, 0.12).astype(np.float32)  # pulses with a quiet tail


def _timbre(spec: ClassSpec, src: Source, t: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    if spec.sound == "tone":
        f0 = spec.pitch * src.pitch_jitter
        wave = np.zeros_like(t)
        for h, amp in enumerate(PROFILES[spec.profile], start=1):
            if amp and h * f0 < sample_rate / 2:
                wave += amp * np.sin(2 * np.pi * h * f0 * t + h * src.phase)
        return wave / np.abs(wave).max()
    # Band of noise: white noise shaped by a Gaussian around the centre, one third of an octave wide.
    spectrum = np.fft.rfft(rng.normal(size=t.size))
    freqs = np.fft.rfftfreq(t.size, 1.0 / sample_rate)
    centre = spec.pitch * src.pitch_jitter
    width = centre * (2 ** (1 / 6) - 2 ** (-1 / 6))
    wave = np.fft.irfft(spectrum * np.exp(-0.5 * ((freqs - centre) / width) ** 2), n=t.size)
    return wave / np.abs(wave).max()


def render_audio(scene: Scene, classes: tuple[ClassSpec, ...], sample_rate: int, seed: int) -> np.ndarray:
    """The clip's mono waveform (N,) float32 in [-1, 1], N = seconds x sample_rate."""
    rng = np.random.default_rng(seed)
    n = scene.seconds * sample_rate
    t = np.arange(n, dtype=np.float64) / sample_rate
    mix = rng.normal(0.0, 1.0, n) * rng.uniform(0.01, 0.025)  # noise floor
    for src in scene.sources:
        if not src.audible:
            continue
        spec = classes[src.cls]
        envelope = _gate(src, n, sample_rate) * _rhythm(spec.rhythm, t, src.phase)
        mix += 0.3 * src.loudness * envelope * _timbre(spec, src, t, rng, sample_rate)
    return (mix / max(1.0, np.abs(mix).max() / 0.95)).astype(np.float32)
