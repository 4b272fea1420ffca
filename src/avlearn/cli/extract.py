"""``avlearn extract``: decode videos into a store of WebDataset tar shards (frames uint8 + 16 kHz audio)."""

from __future__ import annotations

import argparse
import os

HELP = "decode videos into a store of tar shards (frames at a fixed fps and size, audio at a fixed rate)"
DESCRIPTION = """\
Decode videos into a clip store: WebDataset tar shards (<key>.frames.npy (T,H,W,3) uint8, <key>.wave.npy (N,)
float32, <key>.json) with an index for random access (avlearn.data.store.ClipStore) and streaming.

INPUT is a folder (searched recursively for video files), a glob pattern (quote it), a list file (.txt, .lst:
one path per line) or a video file. Keys are paths relative to a folder input, or file stems.

Runs in parallel, shows clips/s and the time left, and resumes: running the same command again skips the clips
already stored and retries the ones that failed. Shards are written under a temporary name and renamed when
complete. Clips that cannot be decoded are listed with their reason in OUT/failures.jsonl; their count is
printed at the end and the exit status is 1 if there are any.

examples:
  avlearn extract data/videos --out stores/ave_1fps --fps 1 --size 224
  avlearn extract 'clips/**/*.mp4' list.txt --out store --fps 8 --size 112,160 --duration 10 --short pad
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``avlearn extract``."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="folder, glob, list file or video")
    parser.add_argument("--out", "-o", required=True, help="store folder (created, or continued)")
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second to keep (default 1)")
    parser.add_argument("--size", default="224", help="S (short side to S, centre crop SxS) or H,W (default 224)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="audio rate in Hz (default 16000)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per clip (default: each file's)")
    parser.add_argument("--start", type=float, default=0.0, help="window start in seconds (default 0)")
    parser.add_argument("--missing-audio", choices=("error", "silence"), default="error")
    parser.add_argument("--short", choices=("error", "pad"), default="error", help="clips shorter than --duration")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    parser.add_argument("--shard-size", type=int, default=256, help="clips per tar shard (default 256)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _size(text: str) -> int | tuple[int, int] | None:
    from avlearn.errors import ConfigError

    try:
        parts = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if text == "none":
        return None
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise ConfigError(f"--size {text!r}: expected S, H,W or none")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def run(args: argparse.Namespace) -> int:
    """Extract, print the counts and the failures; 1 if any clip failed."""
    from tqdm import tqdm

    from avlearn.io.extract import ClipSpec, extract, find_videos

    spec = ClipSpec(
        args.fps, _size(args.size), args.sample_rate, args.duration, args.start, args.missing_audio, args.short
    )
    videos = find_videos(args.inputs)
    bar = tqdm(total=len(videos), unit="clips", disable=args.no_progress, dynamic_ncols=True, smoothing=0.1)

    def progress(done: int, todo: int, failed: int) -> None:
        if bar.total != todo:
            bar.reset(total=todo)  # clips already in the store do not count towards clips/s and the ETA
        bar.set_postfix(failed=failed, refresh=False)
        bar.update(done - bar.n)

    try:
        report = extract(videos, args.out, spec, args.workers, args.shard_size, progress)
    finally:
        bar.close()
    rate = report.written / report.seconds if report.seconds else 0.0
    print(
        f"{args.out}: {report.written} written, {report.skipped} already there, "
        f"{len(report.failures)} failed ({report.seconds:.1f} s, {rate:.1f} clips/s)"
    )
    for row in report.failures[:20]:
        print(f"  failed: {row['path']}: {row['reason']}")
    if len(report.failures) > 20:
        print(f"  ... {len(report.failures) - 20} more")
    if report.failures:
        print(f"failure manifest: {os.path.join(args.out, 'failures.jsonl')}")
    return 1 if report.failures else 0
