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
    from pathlib import Path

    from omegaconf import OmegaConf

    from avlearn.build import audio_preprocess, build_splits, build_task
    from avlearn.engine.checkpoint import load_checkpoint
    from avlearn.engine.loop import evaluate
    from avlearn.engine.run import pick_device
    from avlearn.errors import AvlearnError

    run_dir = Path(args.run)
    if not (run_dir / "config.yaml").is_file():
        raise AvlearnError(f"{run_dir}: no config.yaml; pass a run folder made by `avlearn train` or `avlearn demo`")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    state, meta = load_checkpoint(run_dir / "checkpoint")
    splits = build_splits(cfg, audio_preprocess(cfg))
    device = pick_device(cfg.train.device)
    task = build_task(cfg, splits.info).to(device)
    task.load_state_dict(state)
    scores = evaluate(task, getattr(splits, args.split), cfg.train.batch_size, device, cfg.train)
    if args.json:
        print(json.dumps({"split": args.split, "epoch": meta["epoch"], **scores}))
    else:
        print(
            f"{run_dir} (epoch {meta['epoch']}), {args.split}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
        )
    return 0
