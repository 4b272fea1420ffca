"""Where a reader finds the media of a record, and how it decodes them.

Three kinds of media, each answering ``has(record)``, ``describe()`` and ``load(record, decode)``:

- ``FileMedia``: media files (video; audio or images for audio-only or image benchmarks) located by templates such as
  ``"videos/{media}.mp4"``, filled with the record's ``media`` key and ``fields``; the first existing one wins.
- ``FrameMedia``: media already extracted as one folder of images per clip (``frames/<media>/*.jpg``) plus one
  audio file per clip (``wave/<media>.wav``), the layout DG-SCT and AVSBench use. The images are taken to span
  the clip evenly (frame i of n covers [i, i + 1) * seconds / n); each requested time gets the image covering it.
- ``StoreMedia``: an avlearn clip store (``avlearn extract``). A record's key is its media key, or the file name
  (without suffix) one of the reader's templates gives, matched against the last part of the store's keys.

``open_media`` picks one: the reader's templates under the dataset root by default, or what ``media=`` names (a
store folder, a folder holding ``frames/``, or a folder of media files). Decoding never substitutes a sample: a
file that cannot be read raises ``avlearn.io.MediaError`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from avlearn.data.schema import Record
from avlearn.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


@dataclass(frozen=True)
class Decode:
    """How a reader decodes one sample.

    Attributes:
        frames: Frames per clip, at the middle of ``frames`` equal parts of the window (0: no video).
        seconds: Window length from the clip start (None: the whole file).
        size: Frame side: the shorter side is scaled to it and the centre is cropped square (None: as decoded).
        sample_rate: Audio rate in Hz.
        audio: Whether to decode audio.
    """

    frames: int = 10
    seconds: float | None = 10.0
    size: int | None = 224
    sample_rate: int = 16000
    audio: bool = True

    def times(self, duration: float) -> np.ndarray:
        """(T,) seconds: the middle of each of ``frames`` equal parts of ``[0, duration)``."""
        return (np.arange(self.frames) + 0.5) * duration / self.frames


class Media(Protocol):
    """What every kind of media answers."""

    def has(self, record: Record) -> bool: ...

    def describe(self) -> str: ...

    def load(self, record: Record, decode: Decode) -> dict[str, Any]: ...


def _fill(template: str, record: Record) -> str:
    return template.format(media=record.media, id=record.id, split=record.split, **record.fields)


class FileMedia:
    """Media files under ``base`` located by templates (relative to ``base``), tried in order."""

    def __init__(self, base: Path, templates: Sequence[str]) -> None:
        self.base = Path(base)
        self.templates = tuple(templates)

    def path(self, record: Record) -> Path | None:
        """The first existing file for ``record``, or None."""
        for template in self.templates:
            path = self.base / _fill(template, record)
            if path.is_file():
                return path
        return None

    def has(self, record: Record) -> bool:
        return self.path(record) is not None

    def describe(self) -> str:
        return f"files {', '.join(str(self.base / t) for t in self.templates)}"

    def load(self, record: Record, decode: Decode) -> dict[str, Any]:
        from avlearn.io import read_audio, read_clip

        path = self.path(record)
        if path is None:
            raise DataError(f"{record.source}: no media for {record.id!r} ({self.describe()})")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return {"frames": load_image(path, decode.size)[None]}  # (1, H, W, 3)
        if decode.frames == 0 or path.suffix.lower() in AUDIO_SUFFIXES:
            audio = read_audio(path, sample_rate=decode.sample_rate, duration=decode.seconds, short="pad")
            return {"wave": audio.wave}
        duration = decode.seconds if decode.seconds is not None else _duration(path)
        policy = "error" if decode.audio else "silence"
        clip = read_clip(path, timestamps=decode.times(duration), size=decode.size, sample_rate=decode.sample_rate,
                         duration=duration, short="pad", missing_audio=policy)  # fmt: skip
        return {"frames": clip.frames, "wave": clip.wave} if decode.audio else {"frames": clip.frames}


def _duration(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        return float(container.duration or 0) / 1e6


def load_image(path: Path, size: int | None) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (``size``: shorter side scaled to it, centre crop square)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        return np.asarray(_square(rgb, size, Image.Resampling.BILINEAR))


def _square(image: Any, size: int | None, resample: int) -> Any:
    if size is None:
        return image
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), resample)
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_mask(path: Path, size: int | None) -> np.ndarray:
    """A ground-truth mask image as (H, W) bool (non-zero = foreground), resized with nearest neighbour."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(_square(image.convert("L"), size, Image.Resampling.NEAREST)) > 0


class FrameMedia:
    """Pre-extracted frames (``frames/<media>/`` images) and audio (``<audio folder>/<media>.wav``)."""

    def __init__(self, frames: Path, audio: Path | None) -> None:
        self.frames = Path(frames)
        self.audio = Path(audio) if audio else None

    def _images(self, record: Record) -> list[Path]:
        folder = self.frames / record.media
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []

    def _wave(self, record: Record) -> Path | None:
        found = [self.audio / f"{record.media}{s}" for s in AUDIO_SUFFIXES] if self.audio else []
        return next((p for p in found if p.is_file()), None)

    def has(self, record: Record) -> bool:
        return bool(self._images(record)) and (self.audio is None or self._wave(record) is not None)

    def describe(self) -> str:
        return f"frame folders {self.frames}/<id>/ and audio {self.audio}/<id>.wav"

    def load(self, record: Record, decode: Decode) -> dict[str, Any]:
        from avlearn.io import read_audio

        images = self._images(record)
        if not images:
            raise DataError(f"{record.source}: no frames for {record.id!r} in {self.frames / record.media}")
        out: dict[str, Any] = {}
        if decode.frames:
            picks = np.minimum((np.arange(decode.frames) + 0.5) * len(images) / decode.frames, len(images) - 1)
            out["frames"] = np.stack([load_image(images[int(i)], decode.size) for i in picks])  # (T, H, W, 3)
        if decode.audio:
            wave = self._wave(record)
            if wave is None:
                raise DataError(f"{record.source}: no audio for {record.id!r} in {self.audio}")
            out["wave"] = read_audio(wave, sample_rate=decode.sample_rate, duration=decode.seconds, short="pad").wave
        return out


class StoreMedia:
    """Clips in an avlearn clip store, matched by key (or the last part of the key)."""

    def __init__(self, root: Path, templates: Sequence[str]) -> None:
        from avlearn.data.store import ClipStore

        self.store = ClipStore(root)
        self.templates = tuple(templates)
        self.by_name: dict[str, str] = {}
        for key in self.store.keys():
            self.by_name.setdefault(key.rsplit("/", 1)[-1], key)

    def key(self, record: Record) -> str | None:
        """The store key of ``record``, or None."""
        names = [record.media, record.id, *(Path(_fill(t, record)).stem for t in self.templates)]
        for name in names:
            if name in self.store:
                return name
            if name in self.by_name:
                return self.by_name[name]
        return None

    def has(self, record: Record) -> bool:
        return self.key(record) is not None

    def describe(self) -> str:
        return f"clip store {self.store.root} ({len(self.store)} clips)"

    def load(self, record: Record, decode: Decode) -> dict[str, Any]:
        key = self.key(record)
        if key is None:
            raise DataError(f"{record.source}: {record.id!r} is not in the {self.describe()}")
        clip = self.store.clip(key)
        if decode.audio and clip.sample_rate != decode.sample_rate:
            raise DataError(
                f"{self.store.root}: clips are stored at {clip.sample_rate} Hz, the reader asks for "
                f"{decode.sample_rate} Hz; extract again with that rate or set the reader's sample_rate"
            )
        duration = decode.seconds if decode.seconds is not None else clip.duration
        out: dict[str, Any] = {}
        if decode.frames:
            nearest = np.abs(clip.frame_times[None, :] - decode.times(duration)[:, None]).argmin(axis=1)  # (T,)
            out["frames"] = clip.frames[nearest]
        if decode.audio:
            length = round(duration * clip.sample_rate)
            out["wave"] = np.pad(clip.wave[:length], (0, max(0, length - len(clip.wave))))
        return out


def open_media(root: Path, media: str | Path | None, templates: Sequence[str]) -> Media:
    """The media of a reader: its ``templates`` under ``root``, or what ``media`` names.

    ``media`` may be a clip store (a folder with ``index.json``), a folder with ``frames/`` (and ``wave/`` or
    ``audio/``) inside, or a folder of media files (the templates are tried in it, then their file names alone).
    """
    if media is None:
        return FileMedia(root, templates)
    folder = Path(media)
    if not folder.is_dir():
        raise DataError(f"media={folder}: not a folder (expected a clip store, a frames/ folder or media files)")
    if (folder / "index.json").is_file():
        return StoreMedia(folder, templates)
    if (folder / "frames").is_dir():
        audio = next((folder / n for n in ("wave", "audio", "audio_wav") if (folder / n).is_dir()), None)
        return FrameMedia(folder / "frames", audio)
    names = tuple(dict.fromkeys([*templates, *(Path(t).name for t in templates)]))
    return FileMedia(folder, names)
