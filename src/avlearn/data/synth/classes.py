"""The AVSynth class table: each class has a visual identity and a sound identity.

Identities are combinations of shared attributes, so no single attribute names a class: several classes share
a colour, a shape or a texture, and several share a fundamental frequency, a harmonic profile or a rhythm. A
model has to combine attributes (shape x colour x texture, pitch x timbre x rhythm) to tell classes apart — one
pixel or one FFT bin is not enough.

The table depends only on the number of classes (never on the dataset seed), so datasets made with different
seeds share their classes; that is what pretraining and zero-shot transfer across AVSynth sets rely on.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

NAMES = (
    "chime", "drum", "flute", "horn", "bell", "buzzer", "whistle", "organ", "gong", "harp",
    "siren", "rattle", "violin", "trumpet", "cello", "banjo", "piano", "tuba", "clarinet", "guitar",
    "xylophone", "bagpipe", "accordion", "ukulele", "saxophone", "erhu", "pipa", "congas",
)  # fmt: skip
MAX_CLASSES = len(NAMES)

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "bar", "star")
COLOURS = {
    "red": (215, 50, 45),
    "green": (50, 170, 70),
    "blue": (55, 95, 225),
    "yellow": (235, 200, 35),
    "purple": (160, 60, 200),
}
TEXTURES = ("solid", "striped", "checked", "dotted")
# Harmonic amplitude profiles (amplitude of harmonic 1, 2, 3 ...).
PROFILES = {
    "pure": (1.0,),
    "hollow": (1.0, 0.0, 0.45, 0.0, 0.25),
    "rich": (1.0, 0.6, 0.45, 0.35, 0.25, 0.2),
    "bright": (0.35, 1.0, 0.8, 0.6),
}
PITCHES = (196.0, 294.0, 440.0, 660.0, 990.0)
NOISE_BANDS = (600.0, 1500.0, 3200.0, 5200.0)
RHYTHMS = (0.0, 2.0, 4.0, 6.0)  # pulses per second; 0 = steady tone


@dataclass(frozen=True)
class ClassSpec:
    """One AVSynth class: a name, how it looks and how it sounds."""

    name: str
    shape: str
    colour: str
    texture: str
    sound: str  # "tone" (harmonic) or "noise" (band-limited)
    pitch: float  # fundamental (tone) or band centre (noise), Hz
    profile: str  # harmonic profile for tones, "band" for noise
    rhythm: float  # pulses per second, 0 = steady

    def describe(self) -> str:
        """Short visual description used in captions, e.g. ``'red striped circle'``."""
        texture = "" if self.texture == "solid" else f"{self.texture} "
        return f"{self.colour} {texture}{self.shape}"


def class_table(num_classes: int) -> tuple[ClassSpec, ...]:
    """The first ``num_classes`` classes; class ``k`` is the same for every ``num_classes > k``."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in [2, {MAX_CLASSES}], got {num_classes}")
    rng = np.random.default_rng(20240607)  # fixed: identities never depend on the dataset seed
    looks = list(itertools.product(SHAPES, COLOURS, TEXTURES))
    tones = [("tone", p, prof, r) for p in PITCHES for prof in PROFILES for r in RHYTHMS]
    noises = [("noise", b, "band", r) for b in NOISE_BANDS for r in RHYTHMS]
    look_order = rng.permutation(len(looks))
    sound_pool = tones + noises
    sound_order = rng.permutation(len(sound_pool))
    table = []
    for k in range(MAX_CLASSES):
        shape, colour, texture = looks[look_order[k]]
        sound, pitch, profile, rhythm = sound_pool[sound_order[k]]
        table.append(ClassSpec(NAMES[k], shape, colour, texture, sound, pitch, profile, rhythm))
    return tuple(table[:num_classes])


def class_table_json(num_classes: int) -> list[dict]:
    """The class table as JSON-able dicts (written to ``avsynth.json``)."""
    return [asdict(c) for c in class_table(num_classes)]
