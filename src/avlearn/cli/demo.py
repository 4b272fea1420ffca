"""``avlearn demo``: the main job on the embedded default — AVE on AVSynth, from random init, on a CPU."""

from __future__ import annotations

import argparse

from avlearn.cli.common import OVERRIDES_HELP, add_override_arguments, run_configs

HELP = "generate AVSynth, train a small AV model on AVE from scratch, and report test accuracy"
DESCRIPTION = f"""\
Generates (or reuses) AVSynth in the cache ($AVLEARN_CACHE or ~/.cache/avlearn), trains the baseline
audio-visual model on AVE (a label for each one-second segment: which event is both seen and heard, or
background) from random initialisation, selects the best epoch on the validation split, and prints the test
segment accuracy with the chance level. The run folder holds the config, metrics, checkpoint and timeline.png
(true vs predicted events for a few test clips). About a minute on two CPU cores after the data is made.

Same as `avlearn train train=demo`; any override works, e.g. `avlearn demo train.epochs=20 data.clips=800`.

{OVERRIDES_HELP}"""

PRESET = ("train=demo", "name=demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_override_arguments(parser)


def run(args: argparse.Namespace) -> int:
    results = run_configs(args.overrides, args.multirun, preset=PRESET)
    last = results[-1]
    metric = last["primary_metric"]
    chance = ", ".join(f"{name.replace('_', ' ')} {value:.2f}%" for name, value in last["chance"].items())
    print(f"\n{last['task'].upper()} {metric.replace('_', ' ')} on the AVSynth test split: "
          f"{last['test'][metric]:.2f}% (chance: {chance or '-'})")  # fmt: skip
    if last["plot"]:
        print(f"plot of test clips: {last['run_dir']}/{last['plot']}")
    return 0
