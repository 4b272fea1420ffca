"""``avlearn extract``: decode videos into a store of WebDataset tar shards: clips, or backbone features."""

from __future__ import annotations

import argparse
import os
from typing import Any

HELP = "decode videos into a store of tar shards: clips (frames + audio) or backbone features per second"
DESCRIPTION = """\
Decode videos into a store: WebDataset tar shards with an index for random access (avlearn.data.store.ClipStore)
and streaming. A clip store holds <key>.frames.npy (T,H,W,3) uint8, <key>.wave.npy (N,) float32 and <key>.json.
With --log-mel N_MELS,HOP_MS it also holds <key>.log_mel.npy (S,F,T) float32: the log-mel of the first --segments
seconds exactly as training computes it for data.n_mels=N_MELS data.hop_ms=HOP_MS (needs --duration >= --segments);
`avlearn train data.store=...` then reads it instead of computing it in every epoch (2-3x more clips per worker).

With --features, the store holds backbone features instead: each clip is cut into --segments one-second segments;
the visual backbone sees the frame at each segment's centre (a video backbone: its frames spread over the
segment), the audio backbone each segment's audio, each through its own preprocessing. Per clip it stores the
pooled embedding (S, C) (--pooled, the default) or the tokens (S, N, C) (--tokens) as <key>.visual.npy and/or
<key>.audio.npy, float32 or float16. The index records the backbones, their preprocess settings, the weights'
source and fingerprint; a store made with other settings is never continued. Backbones without --pretrained are
built at random under a fixed seed.

INPUT is a folder (searched recursively for video files), a glob pattern (quote it), a list file (.txt, .lst:
one path per line) or a video file. Keys are paths relative to a folder input, or file stems.

A video track that ends before its audio (a still image with music) holds its last frame; the count of such
clips is printed at the end. --short pad pads files that end before the window (audio with zeros).

Runs in parallel, shows clips/s and the time left, and resumes: running the same command again skips the clips
already stored and retries the ones that failed. Shards are written under a temporary name and renamed when
complete. Clips that cannot be decoded are listed with their reason in OUT/failures.jsonl; their count is
printed at the end and the exit status is 1 if there are any.

examples:
  avlearn extract data/videos --out stores/ave_1fps --fps 1 --size 224
  avlearn extract data/videos --out stores/ave_mel --fps 1 --size 224 --duration 10 --log-mel 64,20
  avlearn extract 'clips/**/*.mp4' list.txt --out store --fps 8 --size 112,160 --duration 10 --short pad
  avlearn extract data/videos --out stores/ave_clip --features visual=clip_vit_b16,audio=ast_base \\
      --pretrained visual=openai/clip-vit-base-patch16,audio=MIT/ast-finetuned-audioset-10-10-0.4593 \\
      --segments 10 --device cuda --batch-size 16 --dtype float16
"""
# Options of one store kind only: dest -> flag.
_CLIP_ONLY = {"fps": "--fps", "sample_rate": "--sample-rate", "duration": "--duration", "log_mel": "--log-mel"}
_FEATURE_ONLY = {
    "pretrained": "--pretrained",
    "segments": "--segments",
    "tokens": "--tokens/--pooled",
    "dtype": "--dtype",
    "device": "--device",
    "batch_size": "--batch-size",
}


def add_media_arguments(parser: argparse.ArgumentParser) -> None:
    """The media policies shared by ``avlearn extract`` and ``avlearn predict`` (``read_clip``'s arguments)."""
    parser.add_argument("--start", type=float, default=0.0, help="window start in seconds (default 0)")
    parser.add_argument(
        "--missing-audio", choices=("error", "silence"), default="error", help="a file without audio track"
    )
    parser.add_argument(
        "--short",
        choices=("error", "pad"),
        default="error",
        help="a file that ends before the window (a video track ending before its audio always holds its last frame)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``avlearn extract``."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="folder, glob, list file or video")
    parser.add_argument("--out", "-o", required=True, help="store folder (created, or continued)")
    parser.add_argument("--fps", type=float, help="clips: frames per second to keep (default 1)")
    parser.add_argument(
        "--size", help="S (short side to S, centre crop SxS), H,W or none (default: clips 224, features none)"
    )
    parser.add_argument("--sample-rate", type=int, help="clips: audio rate in Hz (default 16000)")
    parser.add_argument("--duration", type=float, help="clips: seconds per clip (default: each file's)")
    parser.add_argument(
        "--log-mel",
        metavar="N_MELS,HOP_MS",
        help="clips: also store the log-mel of --segments seconds as training computes it for data.n_mels, "
        "data.hop_ms (e.g. 64,20), so that training reads it instead",
    )
    add_media_arguments(parser)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    parser.add_argument("--shard-size", type=int, default=256, help="clips per tar shard (default 256)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    features = parser.add_argument_group("backbone features")
    features.add_argument("--features", metavar="visual=NAME,audio=NAME", help="store these backbones' features")
    features.add_argument("--pretrained", metavar="visual=SRC,audio=SRC", help="weights: folder or cached HF id")
    features.add_argument("--segments", type=int, help="one-second segments per clip (default 10)")
    output = features.add_mutually_exclusive_group()
    output.add_argument("--pooled", dest="tokens", action="store_false", default=None, help="(S, C) (default)")
    output.add_argument("--tokens", dest="tokens", action="store_true", default=None, help="(S, N, C) tokens")
    features.add_argument("--dtype", choices=("float32", "float16"), help="stored precision (default float32)")
    features.add_argument("--device", help="cpu (default), cuda or cuda:N")
    features.add_argument("--batch-size", type=int, help="clips per forward pass (default 8)")


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


def _log_mel(text: str | None, sample_rate: int) -> Any:
    """``--log-mel N_MELS,HOP_MS`` -> the one-second log-mel input of a task with those data settings (or None)."""
    from avlearn.backbones.cnn import log_mel_input
    from avlearn.errors import ConfigError

    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--log-mel {text!r}: expected N_MELS,HOP_MS (data.n_mels, data.hop_ms), e.g. 64,20")
    return log_mel_input(sample_rate, int(parts[0]), int(parts[1]))


def _pairs(text: str | None, option: str) -> dict[str, str]:
    """``"visual=A,audio=B"`` -> ``{"visual": "A", "audio": "B"}`` (None -> ``{}``)."""
    from avlearn.errors import ConfigError

    pairs: dict[str, str] = {}
    for part in text.split(",") if text is not None else ():
        slot, _, value = part.partition("=")
        if slot.strip() not in ("visual", "audio") or not value.strip() or slot.strip() in pairs:
            raise ConfigError(f"{option} {text!r}: expected visual=NAME and/or audio=NAME, comma-separated, once each")
        pairs[slot.strip()] = value.strip()
    return pairs


def _check_options(args: argparse.Namespace) -> None:
    from avlearn.errors import ConfigError

    wrong = _CLIP_ONLY if args.features else _FEATURE_ONLY
    given = [flag for dest, flag in wrong.items() if getattr(args, dest) is not None]
    if args.log_mel is not None and "--segments" in given:
        given.remove("--segments")  # the seconds of the stored log-mel
    if given:
        where = "clip stores, not with --features" if args.features else "--features"
        raise ConfigError(f"{', '.join(given)}: only for {where}")


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _spec(args: argparse.Namespace) -> Any:
    """The ``ClipSpec`` or (with ``--features``) the ``FeatureSpec`` the options describe."""
    _check_options(args)
    policies = {"start": args.start, "missing_audio": args.missing_audio, "short": args.short}
    if not args.features:
        from avlearn.data.extract import ClipSpec

        size = _size(_or(args.size, "224"))
        return ClipSpec(_or(args.fps, 1.0), size, _or(args.sample_rate, 16000), args.duration, **policies)
    from avlearn.data.features import FeatureSpec

    names, weights = _pairs(args.features, "--features"), _pairs(args.pretrained, "--pretrained")
    return FeatureSpec(
        names.get("visual"),
        names.get("audio"),
        weights.get("visual"),
        weights.get("audio"),
        segments=_or(args.segments, 10),
        tokens=bool(args.tokens),
        dtype=_or(args.dtype, "float32"),
        size=_size(_or(args.size, "none")),
        **policies,
    )


def run(args: argparse.Namespace) -> int:
    """Extract, print the counts and the failures; 1 if any clip failed."""
    from tqdm import tqdm

    from avlearn.data.extract import extract, extract_features, find_videos

    spec = _spec(args)
    videos = find_videos(args.inputs)
    bar = tqdm(total=len(videos), unit="clips", disable=args.no_progress, dynamic_ncols=True, smoothing=0.1)

    def progress(done: int, todo: int, failed: int) -> None:
        if bar.total != todo:
            bar.reset(total=todo)  # clips already in the store do not count towards clips/s and the ETA
        bar.set_postfix(failed=failed, refresh=False)
        bar.update(done - bar.n)

    common = (videos, args.out, spec, args.workers, args.shard_size, progress)
    try:
        if args.features:
            report = extract_features(*common, _or(args.device, "cpu"), _or(args.batch_size, 8))
        else:
            report = extract(*common, _log_mel(args.log_mel, spec.sample_rate), _or(args.segments, 10))
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
    if report.held:
        print(f"{report.held} clips: the video track ends before the audio; their last frame is held")
    if report.failures:
        print(f"failure manifest: {os.path.join(args.out, 'failures.jsonl')}")
    return 1 if report.failures else 0
