"""``avlearn predict``: run a trained model on a real video file: the event timeline (AVE), a caption (caption) or
the answer to ``--question`` (qa_open)."""

from __future__ import annotations

import argparse

HELP = "run a trained run's model on a video file: event timeline (AVE), caption, or answer to --question"
DESCRIPTION = """\
Loads RUN/config.yaml and RUN/checkpoint (the best epoch of `avlearn train` / `avlearn demo`), decodes the
video exactly as the training data were decoded (one frame and one log-mel piece per one-second segment, over
10 seconds from --start), and prints each segment's predicted class with its probability, then the events
(consecutive segments of one class). The file must have an audio track and last at least --start + 10 s.

--out DIR also writes DIR/<video name>.timeline.json:
  {"video", "run", "epoch", "segments": [{"start", "end", "class", "label", "probability"}, ...],
   "events": [{"class", "label", "start", "end", "probability"}, ...]}      (seconds; class K = background)
and DIR/<video name>.timeline.png (the predicted classes as coloured bars, the probability as a line).

A caption run (task=caption) prints the generated caption instead; an open-QA run (task=qa_open) prints the
answer to --question "...". With --json either prints {"video", "caption"} or {"video", "question", "answer"}.

Examples:
  avlearn predict runs/demo/20261129-180000 clip.mp4
  avlearn predict runs/caption/20261207-020000 clip.mp4
  avlearn predict runs/qa_open/20261207-020000 clip.mp4 --question "How many instruments are sounding in the video?"
  avlearn predict runs/demo/20261129-180000 clip.mp4 --start 20 --out predictions/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder (holding config.yaml and checkpoint/)")
    parser.add_argument("video", help="a video file with audio (mp4, mkv, webm, ...)")
    parser.add_argument("--start", type=float, default=0.0, help="start of the 10-second window, seconds")
    parser.add_argument("--out", help="folder to write <video>.timeline.json and .png into")
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")
    parser.add_argument("--question", help="a question about the video (runs of task=qa_open)")


def _plot(timeline: dict, path, class_names: tuple[str, ...]) -> None:  # noqa: ANN001
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avlearn.files import atomic_write_bytes

    colours = plt.get_cmap("tab20" if len(class_names) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(9, 1.8))
    for seg in timeline["segments"]:
        background = seg["class"] == len(class_names)
        colour = (0.88, 0.88, 0.88, 1.0) if background else colours(seg["class"] % colours.N)
        ax.barh(0.5, 1, left=seg["start"], height=1, color=colour, edgecolor="white")
        ax.text(seg["start"] + 0.5, 0.5, "" if background else seg["label"], ha="center", va="center", fontsize=7)
    centres = [s["start"] + 0.5 for s in timeline["segments"]]
    ax.plot(centres, [s["probability"] for s in timeline["segments"]], "k.-", linewidth=1)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("probability")
    ax.set_xlabel("seconds")
    ax.set_title(timeline["video"], fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _print_text(task, cfg, args: argparse.Namespace) -> int:  # noqa: ANN001
    """Print the caption of the video, or the answer to ``--question``."""
    import json

    from avlearn.engine.infer import predict_text

    out = predict_text(task, cfg, args.video, args.start, args.question)
    print(json.dumps(out, indent=1) if args.json else out.get("answer", out.get("caption")))
    return 0


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from avlearn.engine.env import pick_device
    from avlearn.engine.infer import predict_timeline
    from avlearn.engine.trained import build_trained
    from avlearn.files import atomic_write_text

    cfg, task, meta = build_trained(args.run)
    task.to(pick_device(cfg.train.device))
    if args.question is not None or cfg.task.name == "caption":
        return _print_text(task, cfg, args)
    timeline = {**predict_timeline(task, cfg, args.video, args.start), "run": args.run, "epoch": meta["epoch"]}
    if args.json:
        print(json.dumps(timeline, indent=1))
    else:
        print(
            f"{args.video}: {len(timeline['segments'])} one-second segments; model {args.run} (epoch {meta['epoch']})"
        )
        for seg in timeline["segments"]:
            print(f"  {seg['start']:6.1f}-{seg['end']:<6.1f}s  {seg['label']:<28} {seg['probability']:.2f}")
        found = [f"{e['label']} {e['start']:g}-{e['end']:g} s" for e in timeline["events"]]
        print("events: " + ("; ".join(found) if found else "none (background throughout)"))
    if args.out:
        stem = Path(args.out) / f"{Path(args.video).stem}.timeline"
        atomic_write_text(f"{stem}.json", json.dumps(timeline, indent=1))
        _plot(timeline, f"{stem}.png", tuple(meta["class_names"]))
        print(f"wrote {stem}.json and {stem}.png")
    return 0
