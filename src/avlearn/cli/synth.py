"""``avlearn synth``: write AVSynth, the embedded synthetic dataset, to a folder."""

from __future__ import annotations

import argparse

HELP = "write AVSynth (mp4 clips + AVE/LLP/AVSBench/MUSIC-AVQA/VGGSound/caption annotations)"
DESCRIPTION = """\
Renders AVSynth into OUT: H.264 + AAC mp4 clips under OUT/videos and each benchmark's annotations in its
published format (OUT/AVE, OUT/LLP, OUT/AVSBench, OUT/MUSIC-AVQA, OUT/VGGSound, OUT/captions), plus
OUT/avsynth.json (parameters, class table, counts). The same parameters give identical files.

--clips sets the event clips (AVE, LLP, VGGSound, captions); the AVSBench S4 and MS3 and the MUSIC-AVQA subsets get
a quarter of that each unless --avs-clips / --avqa-clips say otherwise. Re-running with the same parameters
reuses OUT; other parameters on an existing OUT are an error (nothing is overwritten).

Example:  avlearn synth data/avsynth --clips 400 --seed 0
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (created; must not hold other data)")
    parser.add_argument("--clips", type=int, default=400, help="event clips (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--classes", type=int, default=10, help="object classes, 2..28 (default 10)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels, even (default 64)")
    parser.add_argument("--seconds", type=int, default=10, help="clip length of event/AVQA clips (default 10)")
    parser.add_argument("--fps", type=int, default=4, help="video frame rate (default 4)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="audio rate in Hz (default 16000)")
    parser.add_argument("--avs-clips", type=int, default=-1, help="clips per AVSBench subset (default clips/4)")
    parser.add_argument("--avqa-clips", type=int, default=-1, help="MUSIC-AVQA clips (default clips/4)")
    parser.add_argument(
        "--event-distractors", choices=("half", "both"), default="half",
        help="event clips' single-modality distractors: half (one in half the clips, default) or both (a seen-only "
        "and a heard-only one in every clip, so one modality alone is right half the time)",
    )  # fmt: skip
    parser.add_argument(
        "--extra-test-clips", type=int, default=0,
        help="event clips after the --clips ones, all in the test split (the first --clips keep their 80/10/10 "
        "splits; default 0)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, help="render processes (default: CPU count, max 8)")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from tqdm import tqdm

    from avlearn.data.synth import FLAVOURS, SynthConfig, check_existing, generate, read_meta

    cfg = SynthConfig(
        clips=args.clips, seed=args.seed, num_classes=args.classes, size=args.size, seconds=args.seconds,
        fps=args.fps, sample_rate=args.sample_rate, avs_clips=args.avs_clips, avqa_clips=args.avqa_clips,
        event_distractors=args.event_distractors, extra_test_clips=args.extra_test_clips,
    )  # fmt: skip
    cfg.validate()
    start, root = time.perf_counter(), Path(args.out).expanduser().absolute()
    if check_existing(root, cfg):
        print(f"{root} already holds AVSynth made with these parameters; reusing it")
    else:
        total = sum(cfg.count(f) for f in FLAVOURS)
        with tqdm(total=total, desc="AVSynth", unit="clip", dynamic_ncols=True) as bar:
            generate(root, cfg, workers=args.workers or None, progress=bar.update)
    counts = read_meta(root)["counts"]
    print(f"AVSynth in {root} ({time.perf_counter() - start:.1f}s)")
    for flavour, per_split in counts.items():
        print(f"  {flavour:<7} " + "  ".join(f"{s} {n}" for s, n in per_split.items()))
    return 0
