"""Clips -> per-segment model inputs: one frame and one log-mel patch for each one-second segment.

For segment s the frame is the one nearest to s + 0.5 s, and the audio is the log-mel of the whole clip cut into
S equal pieces (features over the whole clip avoid edge effects at segment borders). Small datasets (AVSynth, a
few thousand clips) are decoded once, in parallel, and held in memory as tensors (``decode_segments``); larger
ones are decoded one clip at a time in the DataLoader's workers (``LazySegments``), from the videos or from a clip
store written by ``avlearn extract``. ``segment_split`` picks one from the ``data`` config (``data.store``,
``data.preload``, ``data.preload_gb``: see ``avlearn.data.lazy``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.data.parallel import parallel_map
from avlearn.data.store import settings_diff
from avlearn.errors import DataError


@dataclass
class SegmentTensors:
    """Decoded clips: ``frames (N, S, H, W, 3)`` uint8, ``audio (N, S, F, T)`` float32, ``labels (N, S)``."""

    ids: list[str]
    frames: torch.Tensor
    audio: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "audio": self.audio[i], "labels": self.labels[i], "id": self.ids[i]}


def segment_log_mel(wave: torch.Tensor, segments: int, pre: AudioPreprocess) -> torch.Tensor:
    """Waveform (..., N) -> normalised log-mel (..., S, F, T) with T = ``pre.num_frames`` per segment; for
    ``pre.features == "waveform"`` the samples themselves, (..., S, 1, T) with T = ``pre.num_frames`` samples."""
    from avlearn.audio import log_mel_spectrogram

    if pre.features == "waveform":
        return wave[..., : segments * pre.num_frames].unflatten(-1, (segments, 1, pre.num_frames))  # (..., S, 1, T)

    mel = log_mel_spectrogram(
        wave,
        pre.sample_rate,
        n_fft=pre.n_fft,
        hop_length=pre.hop_length,
        n_mels=pre.num_mel_bins,
        f_min=pre.f_min,
        f_max=pre.f_max,
        win_length=pre.win_length,
    )  # (..., F, T_all)
    mel = mel[..., : segments * pre.num_frames]  # drop the centred extra frame
    mel = mel.unflatten(-1, (segments, pre.num_frames)).movedim(-2, -3)  # (..., S, F, T)
    return (mel - pre.norm_shift) / pre.norm_scale


def _decode(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    from avlearn.io import read_clip

    path, segments, frame_size, sample_rate = job
    clip = read_clip(path, timestamps=np.arange(segments) + 0.5, size=frame_size, sample_rate=sample_rate,
                     duration=float(segments))  # fmt: skip
    return clip.frames, clip.wave


def _tensors(
    items: Sequence[tuple[str, Path | None, np.ndarray]],
    decoded: Sequence[tuple[np.ndarray, np.ndarray]],
    audio: AudioPreprocess,
    segments: int,
) -> SegmentTensors:
    """Decoded ``(frames, wave)`` per item -> ``SegmentTensors`` (log-mels computed 64 clips at a time)."""
    frames = torch.from_numpy(np.stack([f for f, _ in decoded]))  # (N, S, H, W, 3)
    waves = torch.from_numpy(np.stack([w for _, w in decoded]))  # (N, samples)
    mels = torch.cat([segment_log_mel(chunk, segments, audio) for chunk in waves.split(64)])  # (N, S, F, T)
    labels = torch.from_numpy(np.stack([lab for _, _, lab in items]))  # (N, S)
    return SegmentTensors([vid for vid, _, _ in items], frames, mels, labels)


def decode_segments(
    items: Sequence[tuple[str, Path, np.ndarray]],
    frame_size: int,
    audio: AudioPreprocess,
    segments: int = 10,
    workers: int = 1,
    desc: str = "decoding",
) -> SegmentTensors:
    """Decode ``(id, video path, labels)`` items into ``SegmentTensors``, ``workers`` processes in parallel."""
    jobs = [(str(path), segments, frame_size, audio.sample_rate) for _, path, _ in items]
    return _tensors(items, parallel_map(_decode, jobs, workers, desc=desc), audio, segments)


class LazySegments(Dataset):
    """``decode_segments``'s items, decoded when asked for: from the videos, or from a clip store.

    Item ``i`` equals ``decode_segments(items, ...)[i]`` (the same frames, the same log-mel), but is decoded by
    whichever process asks for it (a DataLoader worker). From a store (``avlearn extract``), a clip's key is the
    item's id or its video's file stem (or the last part of a key, as readers match them); segment ``s`` takes the
    stored frame nearest ``s + 0.5`` s, which is the video frame nearest that time when the store holds frames at
    the segment centres (``--fps 2``; with ``--fps 1`` it is the frame at ``s`` s), and the first ``S`` seconds of
    the stored waveform. The store must have been made with ``--size`` = ``data.frame_size``, the audio rate of the
    audio backbone and ``--start 0``.

    Args:
        items: ``(id, video path, (S,) labels)`` per clip.
        frame_size: frame side (``data.frame_size``).
        audio: the audio backbone's one-second input (``build.audio_preprocess``).
        segments: one-second segments per clip.
        store: a clip store folder, or None to decode the videos.
    """

    def __init__(
        self,
        items: Sequence[tuple[str, Path | None, np.ndarray]],
        frame_size: int,
        audio: AudioPreprocess,
        segments: int = 10,
        store: str | Path | None = None,
    ) -> None:
        self.items, self.frame_size, self.audio, self.segments = list(items), frame_size, audio, segments
        self.store = _open_store(store, frame_size, audio.sample_rate) if store else None
        self.keys = _store_keys(self.store, self.items) if self.store else None
        self.stored_mel = self.store is not None and _stored_log_mel(self.store, audio, segments)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[str]:
        """The clip ids, in item order (as ``SegmentTensors.ids``)."""
        return [vid for vid, _, _ in self.items]

    @property
    def labels(self) -> torch.Tensor:
        """``(N, S)`` segment labels (as ``SegmentTensors.labels``: reports read them without decoding)."""
        return torch.from_numpy(np.stack([lab for _, _, lab in self.items]))

    def sample_bytes(self) -> int:
        """Bytes of one decoded item held in memory: frames (S, H, W, 3) uint8 and features (S, F, T) float32."""
        bins = 1 if self.audio.features == "waveform" else self.audio.num_mel_bins
        return self.segments * (3 * self.frame_size**2 + 4 * bins * self.audio.num_frames)

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``i``'s frames ``(S, H, W, 3)`` uint8 and waveform ``(S * rate,)`` float32."""
        if self.store is None:
            return _decode((str(self.items[i][1]), self.segments, self.frame_size, self.audio.sample_rate))
        return _from_store(self.store, self.keys[i], self.segments, self.audio.sample_rate, "wave")

    def inputs(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``i``'s frames ``(S, H, W, 3)`` uint8 and features ``(S, F, T)``: read when the store holds them
        (``avlearn extract --log-mel``), else computed from the waveform."""
        if self.stored_mel:
            frames, mel = _from_store(self.store, self.keys[i], self.segments, self.audio.sample_rate, "log_mel")
            return torch.from_numpy(frames), torch.from_numpy(mel)
        frames, wave = self.arrays(i)
        mel = segment_log_mel(torch.from_numpy(wave)[None], self.segments, self.audio)[0]  # (1, S, F, T) -> (S, F, T)
        return torch.from_numpy(frames), mel

    def __getitem__(self, i: int) -> dict:
        vid, _, labels = self.items[i]
        frames, mel = self.inputs(i)
        return {"frames": frames, "audio": mel, "labels": torch.from_numpy(labels), "id": vid}

    def to_memory(self, workers: int = 1, desc: str = "reading") -> SegmentTensors:
        """Every item decoded (from the videos with ``workers`` processes, or read from the store) into memory."""
        if self.store is None:
            return decode_segments(self.items, self.frame_size, self.audio, self.segments, workers, desc)
        if self.stored_mel:
            frames, mels = zip(*(self.inputs(i) for i in range(len(self))), strict=True)
            return SegmentTensors(self.ids, torch.stack(frames), torch.stack(mels), self.labels)  # (N, S, ...)
        return _tensors(self.items, [self.arrays(i) for i in range(len(self))], self.audio, self.segments)


def _open_store(root: str | Path, frame_size: int, sample_rate: int):  # noqa: ANN202 (ClipStore)
    from avlearn.data.store import ClipStore

    settings = {"size": frame_size, "sample_rate": sample_rate, "start": 0.0}
    return ClipStore(root, kind="clips", settings=settings)


def _store_keys(store, items: Sequence[tuple[str, Path | None, np.ndarray]]) -> list[str]:  # noqa: ANN001
    """Each item's key in ``store``: its id, its video's file stem, or a key whose last part is one of them."""
    tails: dict[str, str] = {}
    for key in store.keys():
        tails.setdefault(key.rsplit("/", 1)[-1], key)
    keys = []
    for vid, path, _ in items:
        names = [vid] + ([Path(path).stem] if path is not None else [])
        found = [name if name in store else tails.get(name) for name in names]
        key = next((k for k in found if k is not None), None)
        if key is None:
            raise DataError(f"data.store={store.root}: no clip {vid!r} (looked for the keys {names}); extract it")
        keys.append(key)
    return keys


def log_mel_settings(audio: AudioPreprocess, segments: int) -> dict[str, Any]:
    """What a clip store records of the log-mel it holds (``avlearn extract --log-mel``): the features of the first
    ``segments`` seconds of each clip as ``segment_log_mel(wave, segments, audio)`` computes them."""
    return {"segments": segments, **asdict(audio)}


def _stored_log_mel(store, audio: AudioPreprocess, segments: int) -> bool:  # noqa: ANN001
    """Whether ``store`` holds this task's log-mel per clip; warns when it holds one made with other settings."""
    stored = store.settings.get("log_mel")
    if stored is None:
        return False
    diff = settings_diff(stored, log_mel_settings(audio, segments))
    if diff:
        warnings.warn(
            f"data.store={store.root}: its log-mel was made with other settings than this task's audio input "
            f"(store vs task: {diff}); computing the log-mel from the waveform instead (this task's is stored by "
            f"--log-mel {audio.num_mel_bins},{audio.hop_length * 1000 // audio.sample_rate} --segments {segments})",
            stacklevel=3,
        )
    return not diff


def _from_store(store, key: str, segments: int, sample_rate: int, audio: str) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The frames nearest the segment centres ``(S, H, W, 3)`` and the stored ``audio`` array: the first ``S``
    seconds of the ``"wave"`` or the ``"log_mel"`` ``(S, F, T)``."""
    sample = store.read(key, ("frames", audio))
    times = np.asarray(sample["meta"]["frame_times"], dtype=np.float64)  # (T,)
    centres = np.arange(segments) + 0.5  # (S,)
    nearest = np.abs(times[None, :] - centres[:, None]).argmin(axis=1)  # (S, T) -> (S,)
    frames = sample["frames"]
    # consecutive frames (a store at 1 fps): a view of the buffer read, not a copy
    frames = frames[nearest[0] : nearest[0] + segments] if (np.diff(nearest) == 1).all() else frames[nearest]
    if audio == "log_mel":
        return frames, sample["log_mel"]
    length = segments * sample_rate
    if len(sample["wave"]) < length:
        raise DataError(
            f"data.store={store.root}: clip {key!r} holds {len(sample['wave']) / sample_rate:.2f} s of audio, the "
            f"task reads {segments} s; extract with --duration {segments} --short pad"
        )
    return frames, sample["wave"][:length]


def segment_split(
    items: Sequence[tuple[str, Path | None, np.ndarray]],
    data: Any,
    audio: AudioPreprocess,
    segments: int = 10,
    desc: str = "decoding",
    own_decoding: bool = False,
) -> SegmentTensors | LazySegments | None:
    """One split of the segment pipeline as the ``data`` config asks: in memory or lazy, from videos or a store.

    ``data.store`` (a clip store from ``avlearn extract``) replaces decoding the videos; ``data.preload`` (auto, on,
    off) and ``data.preload_gb`` decide whether the split is held in memory (``avlearn.data.lazy.wants_preload``);
    ``data.workers`` processes decode an in-memory split. ``own_decoding``: the pipeline decodes an in-memory split
    without a store itself (any media, frame folders included): None then.

    Raises:
        ConfigError: lazy samples without a store from media that are not video files (``items`` without a path).
    """
    from avlearn.data.lazy import wants_preload
    from avlearn.errors import ConfigError

    lazy = LazySegments(items, data.frame_size, audio, segments, data.get("store") or None)
    preload = wants_preload(data, len(lazy), lazy.sample_bytes())
    if own_decoding and lazy.store is None and preload:
        return None
    if not preload and lazy.store is None and any(path is None for _, path, _ in items):
        raise ConfigError(f"data.preload={data.get('preload')}: lazy samples decode video files and this "
                          "reader's media are not (frame folders?); extract a store, set data.store")  # fmt: skip
    return lazy.to_memory(data.workers, desc) if preload else lazy
