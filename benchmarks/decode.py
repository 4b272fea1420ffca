"""Decode benchmark: clips/s per core for 10 frames (1 fps) + 10 s of 16 kHz mono audio from 10 s 224p H.264 clips.

Clips come from AVSynth (``SynthConfig(size=224, seconds=10, fps=--source-fps)``; H.264 + AAC, one keyframe per
clip, as x264 writes a 10 s file). Each method reads every clip once per round; rounds interleave the methods so
that load from other processes hits all of them alike, and the median round is reported. Everything runs in this
one process with decoder threads set to 1, so ``clips_per_cpu_s`` (clips per second of this process's CPU time)
is the rate of one core; ``clips_per_wall_s`` is also given (it drops when the machine is shared).

Methods:
- ``pyav_naive`` (baseline): PyAV decoding every frame to RGB with ``to_ndarray``, audio per frame through an
  ``AudioResampler``, as a first implementation would.
- ``avlearn_direct``: ``avlearn.io.read_clip(path, fps=1, size=224)``.
- ``avlearn_store``: ``ClipStore.clip(key)`` on a store written by ``avlearn.data.extract`` (random access).
- ``decord`` (``VideoReader.get_batch`` + ``AudioReader``) and ``torchcodec`` (``VideoDecoder(seek_mode="exact")
  .get_frames_played_at`` + ``AudioDecoder``), when installed; otherwise reported as unavailable with the reason.
They are not dependencies of avlearn: ``pip install decord torchcodec==0.13.0`` (torchcodec also needs the
system FFmpeg libraries, e.g. ``apt-get install ffmpeg``).

Run: ``python benchmarks/decode.py [--clips 8] [--source-fps 25] [--rounds 5]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SECONDS, SIZE, SAMPLE_RATE = 10, 224, 16000
TIMES = np.arange(SECONDS, dtype=np.float64)  # 1 fps: frames at 0, 1, ..., 9 s


def _naive_pyav(path: str) -> tuple[np.ndarray, np.ndarray]:
    import av

    with av.open(path) as container:
        container.streams.video[0].codec_context.thread_count = 1
        images, times = [], []
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="rgb24"))
            times.append(frame.time)
        container.seek(0)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pieces = [out.to_ndarray()[0] for f in container.decode(audio=0) for out in resampler.resample(f)]
    nearest = np.abs(np.asarray(times)[None] - TIMES[:, None]).argmin(axis=1)
    return np.stack([images[i] for i in nearest]), np.concatenate(pieces)[: SECONDS * SAMPLE_RATE]


def _direct(path: str) -> tuple[np.ndarray, np.ndarray]:
    from avlearn.io import read_clip

    clip = read_clip(path, fps=1, size=SIZE, sample_rate=SAMPLE_RATE, duration=SECONDS)
    return clip.frames, clip.wave


def _decord(path: str) -> tuple[np.ndarray, np.ndarray]:
    import decord

    video = decord.VideoReader(path, num_threads=1)
    indices = np.round(TIMES * video.get_avg_fps()).astype(int).tolist()
    frames = video.get_batch(indices).asnumpy()
    audio = decord.AudioReader(path, sample_rate=SAMPLE_RATE, mono=True)[:].asnumpy()[0]
    return frames, audio[: SECONDS * SAMPLE_RATE]


def _torchcodec(path: str) -> tuple[np.ndarray, np.ndarray]:
    from torchcodec.decoders import AudioDecoder, VideoDecoder

    video = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=1)
    frames = video.get_frames_played_at(seconds=TIMES.tolist()).data.permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
    audio = AudioDecoder(path, sample_rate=SAMPLE_RATE, num_channels=1).get_all_samples().data[0].numpy()
    return frames, audio[: SECONDS * SAMPLE_RATE]


def _available(name: str) -> str | None:
    """None if the optional decoder works here, else why not."""
    try:
        if name == "decord":
            import decord  # noqa: F401
        else:
            import torch

            torch.set_num_threads(1)
            from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as err:  # an ImportError, or torchcodec's RuntimeError when FFmpeg libraries are missing
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]
    return None


def _make_clips(work: Path, clips: int, source_fps: int) -> list[str]:
    from avlearn.data.synth import SynthConfig, generate

    cfg = SynthConfig(clips=clips, size=SIZE, seconds=SECONDS, fps=source_fps, avs_clips=0, avqa_clips=0)
    root = generate(work / "avsynth", cfg)
    return sorted(str(p) for p in (root / "videos").glob("*.mp4"))


def _time_round(read: Callable[[str], object], items: list[str]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for item in items:
        read(item)
    return time.process_time() - cpu, time.perf_counter() - wall


def _agreement(paths: list[str], readers: dict[str, Callable]) -> dict[str, dict[str, float]]:
    """Per method, against avlearn_direct on the first clip: mean |frame difference| and audio correlation."""
    frames, wave = _direct(paths[0])
    out = {}
    for name, read in readers.items():
        other_frames, other_wave = read(paths[0])
        n = min(len(wave), len(other_wave))
        out[name] = {
            "frame_mean_abs_diff": float(np.abs(frames.astype(float) - np.asarray(other_frames, float)).mean()),
            "audio_correlation": float(np.corrcoef(wave[:n], other_wave[:n])[0, 1]),
        }
    return out


def run(clips: int, source_fps: int, rounds: int, work: Path) -> dict:
    """Build the clips and the store, time every method, and return the report."""
    from avlearn.data.extract import ClipSpec, extract
    from avlearn.data.store import ClipStore

    started = time.perf_counter()
    paths = _make_clips(work, clips, source_fps)
    generate_s = time.perf_counter() - started
    spec = ClipSpec(fps=1, size=SIZE, sample_rate=SAMPLE_RATE, duration=SECONDS)
    cpu, wall = time.process_time(), time.perf_counter()
    extract([Path(p).parent for p in paths[:1]], work / "store", spec, workers=1)
    extract_cpu, extract_wall = time.process_time() - cpu, time.perf_counter() - wall
    store = ClipStore(work / "store")

    readers: dict[str, tuple[Callable, list[str]]] = {
        "pyav_naive": (_naive_pyav, paths),
        "avlearn_direct": (_direct, paths),
        "avlearn_store": (lambda key: store.clip(key).frames.sum(), store.keys()),  # sum: touch every byte
    }
    unavailable = {}
    for name, read in (("decord", _decord), ("torchcodec", _torchcodec)):
        reason = _available(name)
        if reason is None:
            readers[name] = (read, paths)
        else:
            unavailable[name] = reason
    for read, items in readers.values():
        read(items[0])  # warm-up: imports, page cache
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in readers}
    for _ in range(rounds):
        for name, (read, items) in readers.items():
            timings[name].append(_time_round(read, items))

    methods = {}
    for name, runs in timings.items():
        cpu_s, wall_s = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        n = len(readers[name][1])
        methods[name] = {"clips_per_cpu_s": round(n / cpu_s, 1), "clips_per_wall_s": round(n / wall_s, 1)}
    rate = {name: m["clips_per_cpu_s"] for name, m in methods.items()}
    return {
        "benchmark": "decode",
        "task": f"{SECONDS} frames at 1 fps, {SIZE}x{SIZE} RGB uint8 + {SECONDS} s of {SAMPLE_RATE} Hz mono float32",
        "clips": f"AVSynth, {len(paths)} x {SECONDS} s, {SIZE}x{SIZE}, {source_fps} fps H.264 + AAC 16 kHz mono",
        "rounds": rounds,
        "methods": methods,
        "unavailable": unavailable,
        "ratios": {
            "direct_vs_naive_pyav": round(rate["avlearn_direct"] / rate["pyav_naive"], 2),
            "store_vs_direct": round(rate["avlearn_store"] / rate["avlearn_direct"], 1),
            **{
                f"direct_vs_{k}": round(rate["avlearn_direct"] / rate[k], 2)
                for k in ("decord", "torchcodec")
                if k in rate
            },
        },
        "goals_met": {
            "direct_ge_15_per_core": rate["avlearn_direct"] >= 15,
            "store_ge_10x_direct": rate["avlearn_store"] >= 10 * rate["avlearn_direct"],
            "direct_ge_decord": rate["avlearn_direct"] >= rate["decord"] if "decord" in rate else None,
        },
        "agreement_with_direct": _agreement(
            paths, {k: readers[k][0] for k in readers if k not in ("avlearn_direct", "avlearn_store")}
        ),
        "store": {
            "extract_clips_per_cpu_s": round(len(paths) / extract_cpu, 1),
            "extract_clips_per_wall_s": round(len(paths) / extract_wall, 1),
            "bytes_per_clip": sum(p.stat().st_size for p in store.shard_paths()) // len(store),
        },
        "setup_s": {"avsynth_generate": round(generate_s, 1)},
        "load_average_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }


def main() -> None:
    """Parse the options, run, print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="AVSynth clips to decode (default 8)")
    parser.add_argument("--source-fps", type=int, default=25, help="frame rate of the clips (default 25)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per method (default 5)")
    parser.add_argument("--work", default=None, help="folder for clips and store (default: a temporary one)")
    args = parser.parse_args()
    if args.work:
        report = run(args.clips, args.source_fps, args.rounds, Path(args.work))
    else:
        with tempfile.TemporaryDirectory(prefix="avlearn-decode-") as work:
            report = run(args.clips, args.source_fps, args.rounds, Path(work))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
