"""``avlearn eval``: score a trained run's best checkpoint on a split with the task's official scorer."""

from __future__ import annotations

import argparse

HELP = "score a run's checkpoint on a split (val or test) with the task's official scorer"
DESCRIPTION = """\
Loads RUN/config.yaml and RUN/checkpoint (written by `avlearn train` / `avlearn demo`), rebuilds the model,
decodes the split and prints the task's official scores (--json for JSON).

Example:  avlearn eval runs/demo/20261129-180000 --split test
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder (holding config.yaml and checkpoint/)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to score")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from avlearn.build import audio_preprocess, build_splits
    from avlearn.engine.env import setup
    from avlearn.engine.loop import evaluate
    from avlearn.engine.trained import build_trained

    cfg, task, meta = build_trained(args.run)
    env = setup(cfg.train.device, cfg.train.threads, cfg.seed)
    splits = build_splits(cfg, audio_preprocess(cfg))
    scores, _ = evaluate(
        task.to(env.device), getattr(splits, args.split), cfg.train.batch_size, env, cfg.train.precision
    )
    if args.json:
        print(json.dumps({"split": args.split, "epoch": meta["epoch"], **scores}))
    else:
        print(
            f"{args.run} (epoch {meta['epoch']}), {args.split}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
        )
    return 0
