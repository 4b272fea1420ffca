"""``avlearn predict``: run a trained model on a real video file: the event timeline (AVE), top classes (classify),
ranked clips (retrieve), separated sources (separate), a caption (caption) or the answer to ``--question`` (qa_open)."""

from __future__ import annotations

import argparse

HELP = "run a trained model on a video: events, classes (--top), queries (--query), sources (--mix), caption, answer"
DESCRIPTION = """\
Loads RUN/config.yaml and RUN/checkpoint (the best epoch of `avlearn train` / `avlearn demo`), decodes the
video exactly as the training data were decoded (one frame and one log-mel piece per one-second segment, over
10 seconds from --start), and prints each segment's predicted class with its probability, then the events
(consecutive segments of one class). The media options are those of `avlearn extract`: a file without audio is
an error unless --missing-audio silence, a file shorter than --start + 10 s unless --short pad; a video track
that ends before its audio (a still image with music) holds its last frame.

--out DIR also writes DIR/<video name>.timeline.json:
  {"video", "run", "epoch", "segments": [{"start", "end", "class", "label", "probability"}, ...],
   "events": [{"class", "label", "start", "end", "probability"}, ...]}      (seconds; class K = background)
and DIR/<video name>.timeline.png (the predicted classes as coloured bars, the probability as a line).

Clip-level tasks: --top K prints the K most probable classes of a clip classifier (task=classify); --query TEXT
(repeatable) ranks the clips of the folder VIDEO for each text with a retrieval model (task=retrieve), and --out DIR
writes DIR/retrieval.html (each query's best clips with their frames).

A `separate` run takes a second video, --mix OTHER: the first 10 seconds of both soundtracks are summed and each
source is separated from the mixture by its own frames. It writes <out>/<video>+<other>.mixture.wav,
.estimate1.wav, .estimate2.wav and .png (spectrograms of mixture, sources and estimates) and prints the SDRs.

A caption run (task=caption) prints the generated caption instead; an open-QA run (task=qa_open) prints the
answer to --question "...". With --json either prints {"video", "caption"} or {"video", "question", "answer"}.

Examples:
  avlearn predict runs/demo/20261129-180000 clip.mp4
  avlearn predict runs/caption/20261207-020000 clip.mp4
  avlearn predict runs/qa_open/20261207-020000 clip.mp4 --question "How many instruments are sounding in the video?"
  avlearn predict runs/demo/20261129-180000 clip.mp4 --start 20 --out predictions/
  avlearn predict runs/classify-baseline/20261207-013135 clip.mp4 --top 5
  avlearn predict runs/retrieve-baseline/20261207-015003 clips/ --query "a gong on the left" --out pages/
  avlearn predict runs/separate/20261207-020000 a.mp4 --mix b.mp4 --out separated/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from avlearn.cli.extract import add_media_arguments

    parser.add_argument("run", help="a run folder (holding config.yaml and checkpoint/)")
    parser.add_argument("video", help="a video file with audio (mp4, mkv, webm, ...)")
    add_media_arguments(parser)  # --start, --missing-audio, --short: as for `avlearn extract`
    parser.add_argument("--out", help="folder to write <video>.timeline.json and .png into")
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")
    parser.add_argument("--top", type=int, default=0, help="clip classifiers (task=classify): the K best classes")
    query = "retrieval (task=retrieve): a text query, repeatable; VIDEO is then a folder of clips"
    parser.add_argument("--query", action="append", default=[], help=query)
    parser.add_argument("--mix", help="separate runs: a second video whose sound is mixed with the first's")
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
    if cfg.task.name == "separate":
        return _separate(args, cfg, task)
    if args.top or args.query:
        return _clip_level(args, cfg, task)
    if args.question is not None or cfg.task.name == "caption":
        return _print_text(task, cfg, args)
    media = {"start": args.start, "missing_audio": args.missing_audio, "short": args.short}
    timeline = {**predict_timeline(task, cfg, args.video, **media), "run": args.run, "epoch": meta["epoch"]}
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


def _clip_level(args: argparse.Namespace, cfg, task) -> int:  # noqa: ANN001 (DictConfig, nn.Module)
    """``--top``: a video's best classes; ``--query``: the queries ranked over a folder of clips (``--out``: an HTML
    page of the ranked clips' frames)."""
    import json
    from pathlib import Path

    from avlearn.engine.clips import rank_clips, top_classes
    from avlearn.viz.retrieval import write_ranking_html

    if not args.query:
        result = top_classes(task, cfg, args.video, args.start, args.top)
        lines = [f"{c['label']:<28} {c['probability']:.3f}" for c in result["classes"]]
        print(json.dumps(result, indent=1) if args.json else "\n".join([f"{args.video}:", *lines]))
        return 0
    result = rank_clips(task, cfg, args.video, args.query, args.top or 5)
    frames, ranked = result.pop("frames"), result["queries"]
    if args.json:
        print(json.dumps(ranked, indent=1))
    for q in [] if args.json else ranked:
        print(
            f"{q['query']}:\n"
            + "\n".join(f"  {i + 1}. {c['file']:<32} {c['score']:.3f}" for i, c in enumerate(q["clips"]))
        )
    if args.out:
        shown = [[(c["file"], c["score"], frames[c["file"]][::3]) for c in q["clips"]] for q in ranked]
        page = write_ranking_html(Path(args.out) / "retrieval.html", args.query, shown)
        print(f"wrote {page}")
    return 0


def _separate(args: argparse.Namespace, cfg, task) -> int:  # noqa: ANN001 (DictConfig, SeparateTask)
    """Mix the two videos' sounds, separate both and write the wav files and the plot."""
    from pathlib import Path

    from torch.utils.data import default_collate

    from avlearn.build import audio_preprocess
    from avlearn.data.pipelines.separation import Mixtures, decode_clips
    from avlearn.errors import ConfigError
    from avlearn.tasks.separate import write_separation

    if not args.mix:
        raise ConfigError("a separate run separates a mixture of two videos: pass --mix OTHER_VIDEO")
    pre, rate = audio_preprocess(cfg), cfg.task.sample_rate
    clips = decode_clips({"1": Path(args.video), "2": Path(args.mix)}, cfg.data.frame_size, pre, rate, 1)
    item = Mixtures(clips, pre, rate, [(0, 1, False)])[0]
    device = next(task.parameters()).device
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in default_collate([item]).items()}
    estimates = task.predict(batch)["estimates"][0].float().cpu().numpy()  # (2, N)
    stem = Path(args.out or ".") / f"{Path(args.video).stem}+{Path(args.mix).stem}"
    written = write_separation(stem, item["sources"].numpy(), estimates, rate)
    for video, sdr in zip((args.video, args.mix), written["sdr"], strict=True):
        print(f"{video}: separated at SDR {sdr:.1f} dB (against its own soundtrack)")
    print("wrote " + ", ".join(str(p) for p in written["files"]))
    return 0
