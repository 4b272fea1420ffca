"""``avlearn train``: train a task with a method on a dataset, selecting on the validation split."""

from __future__ import annotations

import argparse

from avlearn.cli.common import OVERRIDES_HELP, add_override_arguments, run_configs

HELP = "train a task with a method (Hydra overrides; -m sweeps)"
DESCRIPTION = f"""\
Train, select the best epoch on the validation split, score the test split with the task's official scorer,
and write a run folder (config.yaml, metrics.jsonl, metrics.json, checkpoint/, plots).

Examples:
  avlearn train                                   # AVE on AVSynth with the baseline, default recipe
  avlearn train train.epochs=30 method.dim=256 out=runs
  avlearn train -m seed=1,2,3 shots=2,4           # 6 runs, then mean ± std

Multi-process training: torchrun --nproc_per_node=N -m avlearn train ...  (the engine issue adds DDP).

{OVERRIDES_HELP}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_override_arguments(parser)


def run(args: argparse.Namespace) -> int:
    run_configs(args.overrides, args.multirun)
    return 0
