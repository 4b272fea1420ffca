"""Decode many videos in parallel into a store (``avlearn.data.store``): the engine of ``avlearn extract``.

``extract`` stores the decoded clips (frames and waveform); ``extract_features`` stores backbone features per
one-second segment (``avlearn.data.features``), computed in batches in this process while workers decode.

Inputs are folders (searched recursively for video files), glob patterns, list files (``.txt``/``.lst``/``.list``:
one path per line, relative to the list) or single files. Each video gets a key: its path relative to the folder
it was found in, or its file stem otherwise, without the suffix and with dots and unusual characters replaced by
``_``; two inputs with the same key are an error, so a clip is never stored under another's name.

A video track that ends before its audio (a still image with music) holds its last frame (``read_clip``); the
report counts such clips (``held``) instead of warning once per worker.

Re-running with the same output folder skips keys already stored (resume). Clips that fail (``MediaError`` or an
unexpected exception) are listed in ``failures.jsonl`` with their reason, are tried again by the next run, and
never leave a gap filled by another clip.
"""

from __future__ import annotations

import functools
import glob
import itertools
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avlearn.data.parallel import process_pool
from avlearn.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

    from avlearn.backbones.preprocess import AudioPreprocess
    from avlearn.data.features import FeatureSpec
    from avlearn.io import Clip

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
LIST_SUFFIXES = (".txt", ".lst", ".list")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-/]")


@dataclass(frozen=True)
class ClipSpec:
    """How each clip is decoded (the arguments of ``read_clip``); a store keeps the spec that made it."""

    fps: float = 1.0
    size: int | tuple[int, int] | None = 224
    sample_rate: int = 16000
    duration: float | None = None
    start: float = 0.0
    missing_audio: str = "error"
    short: str = "error"


@dataclass
class ExtractReport:
    """What one run did: counts, the failures (key, path, reason) and the wall time."""

    store: Path
    total: int
    written: int = 0
    skipped: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    held: int = 0  # clips whose video track ended before their audio (last frame held)


def find_videos(inputs: Sequence[str | Path]) -> dict[str, Path]:
    """{key: path} for every video named by ``inputs`` (folders, globs, list files or files), in sorted key order.

    Raises:
        ConfigError: an input matches nothing, or two videos get the same key.
    """
    found: dict[str, Path] = {}
    for item in inputs:
        pairs = list(_expand(str(item)))
        if not pairs:
            raise ConfigError(f"input {item!r} names no video (folders are searched for {', '.join(VIDEO_SUFFIXES)})")
        for key, path in pairs:
            if key in found and found[key] != path:
                raise ConfigError(
                    f"two videos get the key {key!r}: {found[key]} and {path}; pass their common folder instead "
                    "(keys are paths relative to a folder input, or file stems)"
                )
            found[key] = path
    return dict(sorted(found.items()))


def _expand(item: str) -> Iterator[tuple[str, Path]]:
    path = Path(item)
    if path.is_dir():
        for video in sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()):
            yield _key(video.relative_to(path)), video
    elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                video = (
                    (path.parent / line.strip()).resolve()
                    if not Path(line.strip()).is_absolute()
                    else Path(line.strip())
                )
                yield _key(Path(video.name)), video
    elif path.is_file():
        yield _key(Path(path.name)), path
    else:
        for match in sorted(glob.glob(item, recursive=True)):
            if Path(match).is_file():
                yield _key(Path(Path(match).name)), Path(match)


def _key(relative: Path) -> str:
    stem = relative.with_suffix("").as_posix()
    return _UNSAFE.sub("_", stem).strip("/") or "_"


def extract(
    inputs: Sequence[str | Path] | dict[str, Path],
    out: str | Path,
    spec: ClipSpec,
    workers: int = 1,
    shard_size: int = 256,
    progress: Callable[[int, int, int], None] | None = None,
    log_mel: AudioPreprocess | None = None,
    segments: int = 10,
) -> ExtractReport:
    """Decode every input video with ``spec`` into the clip store ``out``; skip keys already there.

    Args:
        inputs: folders, globs, list files or files (see ``find_videos``), or a ready {key: path} mapping.
        out: the store folder (created, or continued if it holds a store made with the same ``spec``).
        spec: how to decode each clip.
        workers: decoding processes (1: decode in this process).
        shard_size: clips per tar shard.
        progress: called as ``progress(done, to_do, failed)`` (counts in this run) before the first clip and after
            each one is stored or has failed.
        log_mel: also store each clip's log-mel ``(S, F, T)`` as a task whose audio input is ``log_mel`` computes
            it (``avlearn.data.segments.segment_log_mel`` of the first ``segments`` seconds), so that training
            reads it instead of computing it in every epoch; None: frames and waveform only.
        segments: the one-second segments of that log-mel.

    Returns:
        The report; its failures are also written to ``out/failures.jsonl``.
    """
    settings, encode = asdict(spec), _clip_arrays
    if log_mel is not None:
        from avlearn.data.segments import log_mel_settings

        _check_log_mel(spec, log_mel, segments)
        settings["log_mel"] = log_mel_settings(log_mel, segments)
        encode = functools.partial(_clip_arrays_with_log_mel, log_mel, segments)
    plan = _Plan("clips", settings, asdict(spec), encode, batch_size=1)
    return _extract(inputs, out, plan, workers, shard_size, progress)


def _check_log_mel(spec: ClipSpec, log_mel: AudioPreprocess, segments: int) -> None:
    """A stored log-mel needs log-mel settings at the store's audio rate and ``segments`` whole seconds per clip."""
    if log_mel.features != "log_mel":
        raise ConfigError(f"log_mel.features={log_mel.features!r}: only a log_mel input is stored")
    if log_mel.sample_rate != spec.sample_rate:
        raise ConfigError(f"log_mel.sample_rate={log_mel.sample_rate}: expected the clips' --sample-rate "
                          f"{spec.sample_rate}")  # fmt: skip
    if segments < 1 or spec.duration is None or spec.duration < segments:
        raise ConfigError(f"--log-mel with --segments {segments}: expected --duration >= {max(segments, 1)} "
                          f"(got {spec.duration}), so that every clip holds the segments' audio")  # fmt: skip


def extract_features(
    inputs: Sequence[str | Path] | dict[str, Path],
    out: str | Path,
    spec: FeatureSpec,
    workers: int = 1,
    shard_size: int = 256,
    progress: Callable[[int, int, int], None] | None = None,
    device: str = "cpu",
    batch_size: int = 8,
) -> ExtractReport:
    """Decode every input video into one-second segments and store backbone features (``avlearn.data.features``).

    Arguments as ``extract``, plus:
        spec: the backbones and the segments (see ``FeatureSpec``).
        device: where the backbones run (``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...).
        batch_size: clips per forward pass (each clip is ``spec.segments`` inputs).

    The store's index records the backbones, their preprocess settings, the weights' source and fingerprint; a run
    with other settings is refused, and so is a reader that expects others (``ClipStore(out, settings=...)``).
    """
    from avlearn.data.features import FeatureExtractor

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    videos = inputs if isinstance(inputs, dict) else find_videos(inputs)  # before loading models: fail fast
    extractor = FeatureExtractor(spec, device)
    plan = _Plan("features", extractor.settings(), extractor.read_args(), extractor.encode, batch_size)
    return _extract(videos, out, plan, workers, shard_size, progress)


@dataclass(frozen=True)
class _Plan:
    """What a run stores: the store kind and settings, ``read_clip``'s arguments, and decoded clips -> arrays."""

    kind: str
    settings: dict[str, Any]
    read_args: dict[str, Any]
    encode: Callable[[list[Clip]], list[dict[str, np.ndarray]]]
    batch_size: int


def _extract(
    inputs: Sequence[str | Path] | dict[str, Path],
    out: str | Path,
    plan: _Plan,
    workers: int,
    shard_size: int,
    progress: Callable[[int, int, int], None] | None,
) -> ExtractReport:
    """Decode the clips not yet stored, encode them ``plan.batch_size`` at a time, write them; list the failures."""
    from avlearn.data.store import ShardWriter, write_failures
    from avlearn.io import HELD_NOTE

    videos = inputs if isinstance(inputs, dict) else find_videos(inputs)
    started = time.perf_counter()
    with ShardWriter(out, plan.kind, plan.settings, shard_size) as writer:
        todo = [(key, str(path), plan.read_args) for key, path in videos.items() if key not in writer.done]
        report = ExtractReport(Path(out), total=len(videos), skipped=len(videos) - len(todo))
        batch: list[tuple[str, Clip]] = []

        def step() -> None:
            if progress:
                progress(report.written + len(report.failures), len(todo), len(report.failures))

        def flush() -> None:
            for (key, clip), arrays in zip(batch, plan.encode([clip for _, clip in batch]), strict=True):
                writer.write(key, arrays, _clip_meta(clip))
                report.written += 1
                report.held += any(note.startswith(HELD_NOTE) for note in clip.notes)
                step()
            batch.clear()

        try:
            step()
            for key, path, result in _decode_all(todo, workers):
                if isinstance(result, str):
                    report.failures.append({"key": key, "path": path, "reason": result})
                    step()
                    continue
                batch.append((key, result))
                if len(batch) >= plan.batch_size:
                    flush()
            if batch:
                flush()
        finally:
            report.seconds = time.perf_counter() - started
            write_failures(out, report.failures)
    return report


def _clip_arrays(clips: list[Clip]) -> list[dict[str, np.ndarray]]:
    return [{"frames": clip.frames, "wave": clip.wave} for clip in clips]


def _clip_arrays_with_log_mel(
    log_mel: AudioPreprocess, segments: int, clips: list[Clip]
) -> list[dict[str, np.ndarray]]:
    """Frames, waveform and the log-mel ``(S, F, T)`` of the first ``segments`` seconds, as the reader computes it."""
    import torch

    from avlearn.data.segments import segment_log_mel

    out = _clip_arrays(clips)
    for arrays, clip in zip(out, clips, strict=True):
        wave = torch.from_numpy(clip.wave[: segments * log_mel.sample_rate])  # (S * rate,)
        arrays["log_mel"] = segment_log_mel(wave[None], segments, log_mel)[0].numpy()  # (1, S, F, T) -> (S, F, T)
    return out


def _clip_meta(clip: Clip) -> dict[str, Any]:
    return {
        "path": os.path.abspath(clip.path),
        "frame_times": clip.frame_times.tolist(),
        "sample_rate": clip.sample_rate,
        "has_audio": clip.has_audio,
        "duration": clip.duration,
        "notes": list(clip.notes),
    }


def _decode_all(todo: list[tuple[str, str, dict[str, Any]]], workers: int) -> Iterator[tuple[str, str, object]]:
    """Yield ``_decode_one`` results as they finish, with at most ``4 * workers`` clips in flight."""
    if workers <= 1 or len(todo) <= 1:
        yield from map(_decode_one, todo)
        return
    jobs = iter(todo)
    with process_pool(min(workers, len(todo))) as pool:  # its workers die with this process
        pending = {pool.submit(_decode_one, job): job for job in itertools.islice(jobs, 4 * workers)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool as err:
                    in_flight = ", ".join(sorted([job[1]] + [j[1] for j in pending.values()]))
                    raise DataError(
                        f"a decoding process died (a crash inside FFmpeg?) on one of: {in_flight}; "
                        "finished shards are kept: rerun with --workers 1 to find the file"
                    ) from err
            pending.update({pool.submit(_decode_one, job): job for job in itertools.islice(jobs, len(finished))})


def _decode_one(job: tuple[str, str, dict[str, Any]]) -> tuple[str, str, Clip | str]:
    """(key, path, clip) for a decoded clip, or (key, path, reason) for one that failed."""
    from avlearn.io.errors import MediaError
    from avlearn.io.read import HeldFrameWarning, read_clip

    key, path, read_args = job
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HeldFrameWarning)  # counted in the report and said once at the end
            return key, path, read_clip(path, **read_args)
    except MediaError as err:
        return key, path, err.reason
    except Exception as err:  # one bad file must not stop a long run; the manifest names it
        return key, path, f"unexpected {type(err).__name__}: {err}"
