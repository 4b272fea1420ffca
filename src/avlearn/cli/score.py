"""``avlearn score``: score a prediction file against a benchmark's ground truth with the official metric."""

from __future__ import annotations

import argparse
import inspect
import json

from avlearn.errors import ConfigError

HELP = "score prediction files with a benchmark's official metric (AVE, AVVP, AVS, AVQA, retrieval ...)"
DESCRIPTION = """\
Score prediction files against ground-truth files with the official semantics of the benchmark.

TASK is one of: ave, avvp, avs, avqa, retrieval, caption, separation, classification
(`avlearn info` lists them). The file formats, with examples, are in docs/scoring.md:

  ave             --pred pred.tsv                  --gt testSet.txt
  avvp            --pred audio.csv visual.csv      --gt AVVP_eval_audio.csv AVVP_eval_visual.csv [AVVP_test_pd.csv]
  avs             --pred masks/ | probs.npz        --gt gt_masks/ | masks.npz
  avqa            --pred answers.json              --gt avqa-test.json
  retrieval       --pred scores.npz                --gt text_to_video.json
  caption         --pred captions.json             --gt annotations.json
  separation      --pred estimates.npz             --gt references.npz
  classification  --pred seed1.npz [seed2.npz ...] --gt labels.csv

Options of a scorer are given as -o KEY=VALUE, e.g.
  avlearn score avs --pred probs.npz --gt masks.npz -o with_background=true
  avlearn score retrieval --pred s.npz --gt t2v.json -o dual_softmax_temperature=0.01
  avlearn score classification --pred s1.npz s2.npz s3.npz --gt labels.csv -o multilabel=true

Percentages for accuracies, F-scores, IoU and recalls; dB for separation; ranks are 1-based.
A malformed, incomplete or NaN prediction fails with a message naming the file and the first bad id.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``avlearn score``."""
    parser.add_argument("task", help="scorer name (see `avlearn info`)")
    parser.add_argument("--pred", nargs="+", required=True, metavar="FILE", help="prediction file(s)")
    parser.add_argument("--gt", nargs="+", required=True, metavar="FILE", help="ground-truth file(s)")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="scorer option")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _value(text: str) -> bool | int | float | str:
    """``true``/``false``, an int, a float, else the string itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_options(items: list[str], scorer: object, task: str) -> dict[str, object]:
    """``["key=value", ...]`` -> keyword arguments, checked against the scorer's signature."""
    valid = [p for p in inspect.signature(scorer).parameters if p not in ("pred", "gt")]  # type: ignore[arg-type]
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in valid:
            raise ConfigError(f"bad option {item!r} for scorer '{task}'; valid: {', '.join(valid) or '(none)'}")
        options[key] = _value(value)
    return options


def run(args: argparse.Namespace) -> int:
    """Score and print the metrics."""
    import avlearn.metrics  # noqa: F401 - registers the scorers
    from avlearn.registry import SCORERS

    try:
        scorer = SCORERS.get(args.task)
    except KeyError as err:
        raise ConfigError(err.args[0]) from None
    metrics = scorer(args.pred, args.gt, **parse_options(args.option, scorer, args.task))
    if args.json:
        print(json.dumps(metrics))
        return 0
    width = max(map(len, metrics))
    for name, value in metrics.items():
        shown = "unavailable" if value is None else f"{value:.4f}"
        print(f"{name:<{width}}  {shown}")
    return 0
