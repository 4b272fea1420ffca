"""``avlearn data check``: read a dataset as its reader would and report what is there and what is wrong."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from typing import Any

HELP = "check a dataset on disk: counts per split and class, media found and missing, label statistics, problems"
DESCRIPTION = """\
Read a benchmark from its published layout with avlearn's reader and report, per split: the number of samples,
how many have their media (video files, frame folders + wav, or a clip store given with --media), the samples
per class and label statistics, and the first problems found (a malformed row is reported with file:line).

NAME is a registered dataset (`avlearn info` lists them): ave, llp, avsbench_s4, avsbench_ms3, music_avqa,
vggsound, vggsound_avel40k, audioset, esc50, ucf101, imagenet_esc, coop; in VALOR's layout (docs/methods/valor.md):
msrvtt, valor32k, valor1m, didemo, activitynet, lsmdc, vatex, msvd, audiocaps, clotho, and the QA sets valor_qa,
msrvtt_qa, msvd_qa, tgif_qa, activitynet_qa, music_avqa_valor.

Examples:
  avlearn data check ave --root ~/data             # ~/data/AVE/{Annotations.txt, trainSet.txt, ..., *.mp4}
  avlearn data check llp --root ~/data --split test --json
  avlearn data check vggsound --root ~/data --media ~/stores/vggsound    # media from an `avlearn extract` store
  avlearn data check music_avqa --root ../shared/data --annotations-only  # annotation files without media

Exit status: 0 when every split checked parses and has usable samples (media missing for some samples is
reported; readers can drop them with missing='drop'); 1 when a split cannot be used (a malformed file, no
sample, or no media at all unless --annotations-only); 2 for a bad command line.
"""
TOP_CLASSES = 5  # classes shown at each end of the per-class counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``avlearn data``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="check one dataset", description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    check.add_argument("name", help="registered dataset name (see `avlearn info`)")
    check.add_argument("--root", required=True, help="the dataset folder (annotations, and media by default)")
    check.add_argument("--split", nargs="+", help="splits to check (default: the benchmark's official splits)")
    check.add_argument("--media", help="media elsewhere: a clip store, a folder with frames/ + wave/, or media files")
    check.add_argument("--annotations-only", action="store_true", help="do not count missing media as a problem")
    check.add_argument("--json", action="store_true", help="print one JSON object")


def check_split(reader: Any, root: str, split: str, media: str | None) -> dict[str, Any]:
    """Statistics and problems of one split (a parse error becomes the only problem)."""
    from avlearn.errors import AvlearnError

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the "kept without media" note: reported below instead
            dataset = reader(root, split, missing="keep", media=media)
    except AvlearnError as err:
        return {"usable": False, "problems": [str(err)]}
    stats = dataset.stats()
    stats["media_found"] = stats["samples"] - stats["media_missing"]
    problems = []
    if dataset.missing:
        problems.append(f"{len(dataset.missing)} sample(s) have no media (first: {', '.join(dataset.missing[:5])})"
                        f"; looked in {dataset.media.describe()}")  # fmt: skip
    if not stats["samples"]:
        problems.append("no samples")
    return {**stats, "usable": bool(stats["samples"]), "problems": problems}


def _show(key: str, value: Any) -> str:
    return f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"


def _class_line(per_class: dict[str, int]) -> str:
    if not per_class:
        return ""
    ranked = sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ranked if len(ranked) <= 2 * TOP_CLASSES else [*ranked[:TOP_CLASSES], ("...", -1), *ranked[-TOP_CLASSES:]]
    return "    per class: " + ", ".join(name if n < 0 else f"{name} {n}" for name, n in shown)


def _print_report(report: dict[str, Any]) -> None:
    print(f"{report['dataset']} in {report['root']}")
    for split, info in report["splits"].items():
        if "samples" not in info:
            print(f"  {split}: cannot be read")
        else:
            print(f"  {split}: {info['samples']} samples, media {info['media_found']} found / "
                  f"{info['media_missing']} missing, {info['classes']} classes")  # fmt: skip
            extra = {k: v for k, v in info.items() if k not in _SHOWN and not isinstance(v, dict)}
            if extra:
                print(
                    "    " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items())
                )
            for key, value in info.items():
                if isinstance(value, dict) and key != "per_class":
                    print(f"    {key}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
            line = _class_line(info["per_class"])
            if line:
                print(line)
        for problem in info["problems"]:
            print(f"    problem: {problem}")
    print("usable" if report["usable"] else "NOT usable: see the problems above")


_SHOWN = {"samples", "media_missing", "media_found", "classes", "per_class", "usable", "problems"}


def run(args: argparse.Namespace) -> int:
    """Check the dataset and print the report; 1 when some split cannot be used."""
    import avlearn.data.datasets  # noqa: F401 - registers the readers
    from avlearn.registry import DATASETS

    reader = DATASETS.get(args.name)
    splits = args.split or list(reader.official_splits())
    report = {"dataset": args.name, "root": args.root, "splits": {}}
    for split in splits:
        info = check_split(reader, args.root, split, args.media)
        if info.get("media_missing") and not args.annotations_only and not info.get("media_found"):
            info["usable"] = False
        report["splits"][split] = info
    report["usable"] = all(info["usable"] for info in report["splits"].values())
    if args.json:
        print(json.dumps(report))
    else:
        _print_report(report)
    return 0 if report["usable"] else 1
