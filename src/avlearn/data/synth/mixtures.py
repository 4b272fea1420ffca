"""The 2-source mixture lists of visually guided separation for AVSynth, in DeepAVFusion's VGGSound-Music layout.

DeepAVFusion (Mo and Morgado, CVPR 2024) trains separation on VGGSound-Music clips mixed on the fly with a random
other clip and evaluates on fixed pairs. Its two files, written here under ``<root>/VGGSound-Music/`` for AVSynth's
event clips (the clips of its VGGSound part):

- ``vggmusic_train.txt``: the training clips, headerless ``<clip id>_<start:06d>,<class>`` rows.
- ``vggmusic_eval_ss.csv``: the test mixtures, header ``source_1,source_2,class_1,class_2,sep_type``, sources as
  ``<clip id>_<start:06d>``; ``sep_type`` is ``Easy`` (two classes) or ``Hard`` (one class twice).
- ``vggmusic_val_ss.csv``: the same for the validation clips (the published protocol has no validation split).

Every clip of a split is the first source of one mixture; its second source is another clip of the same split,
drawn by a generator seeded by the AVSynth seed, so the lists of a folder never change. The clips, classes and
splits are read from the AVE annotation files of the folder (``AVE/Annotations.txt`` and the split lists).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avlearn.errors import DataError
from avlearn.files import atomic_write_text

FOLDER = "VGGSound-Music"
TRAIN_LIST = "vggmusic_train.txt"
EVAL_LISTS = {"val": "vggmusic_val_ss.csv", "test": "vggmusic_eval_ss.csv"}
HEADER = "source_1,source_2,class_1,class_2,sep_type"
_AVE_SPLITS = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}


def _clips(root: Path) -> dict[str, list[tuple[str, str]]]:
    """split -> ``(clip id, class name)`` of AVSynth's event clips, from the AVE split lists."""
    out = {}
    for split, name in _AVE_SPLITS.items():
        path = root / "AVE" / name
        if not path.is_file():
            raise DataError(f"{path}: missing; the mixture lists are made from an AVSynth folder with event clips")
        rows = [line.split("&") for line in path.read_text().splitlines() if line.strip()]
        out[split] = [(cells[1], cells[0]) for cells in rows]
    return out


def _pairs(clips: list[tuple[str, str]], rng: np.random.Generator, split: str) -> list[str]:
    """One mixture row per clip: the clip first, another clip of the split second."""
    if len(clips) < 2:
        raise DataError(f"AVSynth split {split!r} has {len(clips)} event clip(s); a mixture needs 2 (raise data.clips)")
    rows = []
    for i, (first, cls1) in enumerate(clips):
        j = int(rng.integers(len(clips) - 1))
        second, cls2 = clips[j + (j >= i)]  # any clip but the first
        rows.append(f"{first}_000000,{second}_000000,{cls1},{cls2},{'Hard' if cls1 == cls2 else 'Easy'}")
    return rows


def write_mixtures(root: str | Path) -> Path:
    """Write the mixture lists into the AVSynth folder ``root`` unless they are there; returns their folder."""
    root = Path(root)
    folder = root / FOLDER
    if all((folder / name).is_file() for name in (TRAIN_LIST, *EVAL_LISTS.values())):
        return folder
    meta = root / "avsynth.json"
    if not meta.is_file():
        raise DataError(f"{root}: not an AVSynth folder (no avsynth.json); mixture lists are written for AVSynth only")
    seed = json.loads(meta.read_text())["config"]["seed"]
    clips = _clips(root)
    rng = np.random.default_rng([seed, 11])
    for split, name in EVAL_LISTS.items():
        atomic_write_text(folder / name, "\n".join([HEADER, *_pairs(clips[split], rng, split)]) + "\n")
    atomic_write_text(folder / TRAIN_LIST, "".join(f"{clip}_000000,{cls}\n" for clip, cls in clips["train"]))
    return folder
