"""``avlearn train``: train a task with a method on a dataset, selecting on the validation split."""

from __future__ import annotations

import argparse
import textwrap

from avlearn.cli.common import OVERRIDES_HELP, add_override_arguments, compose_runs, run_configs

TASKS_HERE = "{TASKS}"  # where the registered tasks go in DESCRIPTION

HELP = "train a task with a method (Hydra overrides; -m sweeps)"
DESCRIPTION = f"""\
Train, select the best epoch on the validation split, score the test split with the task's official scorer,
and write a run folder out/<name>/<timestamp>/: config.yaml, metrics.jsonl (steps and epochs), metrics.json,
checkpoint/ (best epoch: model.safetensors + checkpoint.json), last/ (resumable: model, optimizer, schedule,
RNG and data position), tensorboard/ (if the tensorboard package is installed) and the task's plot.

Tasks (task=), by the AVSynth part they read (only that part is rendered; data.clips clips):
{TASKS_HERE}

Examples:
  avlearn train task=ave method=baseline backbone=small_cnn data=avsynth
  avlearn train recipe=dgsct_ave_tiny                          # a whole recipe (config/recipe/); overrides win
  avlearn train recipe=dgsct_ave_paper data.root=AVE --dry-run  # print the config and parameter groups, then exit
  avlearn train task=avvp train.lr=3e-4 train.batch_size=8 train.epochs=40 train.weight_decay=0
  avlearn train task=ave method=dgsct_tiny backbone=dgsct_tiny train.lr=1e-3
  avlearn train train.epochs=30 method.dim=256 out=runs
  avlearn train train.precision=bf16 train.compile=true train.ema=0.999
  avlearn train train.batch_size=64 train.grad_accum=4       # global batch 64, 16 samples per forward
  avlearn train name=long train.save_every=200                # ... killed? then the same command + resume=true
  avlearn train -m seed=1,2,3 shots=2,4                      # 6 runs, then mean ± std

Several processes (DDP; train.strategy=fsdp shards large models), same results as one process with the same
global train.batch_size:
  torchrun --nproc_per_node=8 -m avlearn train train.device=cuda ...
  torchrun --nnodes=2 --node_rank=R --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
      -m avlearn train ...
  torchrun --nproc_per_node=2 -m avlearn train train.device=cpu ...       (gloo, on CPU cores)
See docs/training.md.

{OVERRIDES_HELP}"""


def task_list() -> str:
    """The registered tasks, grouped by the AVSynth part they read, one indented line (or more) per part."""
    from avlearn import register_all
    from avlearn.registry import TASKS

    register_all()
    parts: dict[str, list[str]] = {}
    for name in TASKS.names():
        parts.setdefault(TASKS.spec(name).part(), []).append(name)
    lines = [f"{part}: {', '.join(names)}" for part, names in sorted(parts.items())]
    return "\n".join(textwrap.fill(line, 110, initial_indent="  ", subsequent_indent="    ") for line in lines)


class _HelpWithTasks(argparse.RawDescriptionHelpFormatter):
    """Fills the task list in when the help is printed (registering every task takes seconds, parsing must not)."""

    def add_text(self, text: str | None) -> None:
        super().add_text(text.replace(TASKS_HERE, task_list()) if text and TASKS_HERE in text else text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = _HelpWithTasks
    add_override_arguments(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config and the parameter groups, then exit (no data is read, nothing is trained)",
    )


def run(args: argparse.Namespace) -> int:
    if args.dry_run:
        from avlearn.cli.cma import dry_run_cma
        from avlearn.cli.dry_run import dry_run

        runs = compose_runs(args.overrides, args.multirun)
        for i, (combo, cfg) in enumerate(runs, start=1):
            if len(runs) > 1:
                print(f"\n=== run {i}/{len(runs)}: {' '.join(combo)}")
            print(dry_run_cma(cfg) if cfg.task.name == "cma" else dry_run(cfg), flush=True)
        return 0
    run_configs(args.overrides, args.multirun)
    return 0
