"""What the config-driven subcommands (train, demo) share: override arguments and sweeps."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig

OVERRIDES_HELP = """\
Configuration (Hydra): groups task/ method/ backbone/ data/ train/ recipe/ and top-level keys seed, shots, out, name.
  pick a group option      method=baseline  train=demo
  a whole recipe           recipe=dgsct_ave_paper         (task, method, backbone, data and train of a paper run)
  set a key                train.epochs=5  data.clips=200  method.dim=64  seed=3
  sweep (with -m)          -m seed=1,2,3 shots=1,2,4     (one run per combination)
Overrides win over the recipe; a key given twice on the command line is a warning (the last value wins).
An unknown key or option is an error that lists the valid ones. Each run prints its resolved config and saves
it as config.yaml in its run folder (out/<name>/<timestamp>/).
"""


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """``key=value`` overrides and ``-m/--multirun``."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (see below)")
    parser.add_argument("-m", "--multirun", action="store_true", help="run every combination of comma-separated values")


def compose_runs(
    overrides: Sequence[str], multirun: bool, preset: Sequence[str] = ()
) -> list[tuple[list[str], DictConfig]]:
    """Each sweep combination's overrides and its composed config, all composed first (a bad one fails fast).

    A key that the command line gives twice is a warning on stderr (rank 0 only); ``preset`` (the subcommand's own
    overrides, e.g. the demo's) is not compared with the command line: the command line overrides it.
    """
    from avlearn.config import compose_run, expand_sweep
    from avlearn.config.compose import repeated_keys
    from avlearn.engine.env import process_rank

    combos = expand_sweep(list(overrides), multirun)  # checks the syntax first
    if process_rank() == 0:
        for line in repeated_keys(overrides):
            print(f"avlearn: warning: {line}", file=sys.stderr)
    return [(combo, compose_run([*preset, *combo])) for combo in combos]


def run_configs(overrides: Sequence[str], multirun: bool, preset: Sequence[str] = ()) -> list[dict]:
    """Compose and run one supervised run per sweep combination; prints a table when there are several.

    Under torchrun every process runs this; only rank 0 prints (the others' stdout is discarded).
    """
    import contextlib
    import io

    from avlearn.engine.env import process_rank, teardown

    runs = compose_runs(overrides, multirun, preset)
    results = []
    quiet = contextlib.redirect_stdout(io.StringIO()) if process_rank() else contextlib.nullcontext()
    with quiet:
        try:
            for i, (combo, cfg) in enumerate(runs, start=1):
                if len(runs) > 1:
                    print(f"\n=== run {i}/{len(runs)}: {' '.join(combo)}", flush=True)
                results.append({"overrides": combo, **_run_one(cfg)})
        except BaseException:
            teardown(wait=False)
            raise
        teardown()
        if len(results) > 1:
            _print_sweep(results)
    return results


def _run_one(cfg: DictConfig) -> dict:
    """One configuration: the engine's supervised run, or Cross-Modal Adaptation's protocol (``task=cma``: few-shot
    heads on a frozen encoder's embeddings, ``avlearn.cli.cma``)."""
    if cfg.task.name == "cma":
        from avlearn.cli.cma import run_cma

        return run_cma(cfg)
    from avlearn.engine.run import run_supervised

    return run_supervised(cfg)


def _print_sweep(results: list[dict]) -> None:
    """Each run's test score, then the mean ± sample standard deviation (n - 1): over all runs, or per group of runs
    that differ only in their ``seed=`` override (e.g. per ``shots=`` of a few-shot grid) when there are such groups;
    a group is named by its overrides that not every run shares.
    """
    metric = next(iter(results[0]["test"]))
    print(f"\nsweep: {len(results)} runs, test {metric}")
    shared = set.intersection(*(set(r["overrides"]) for r in results))
    groups: dict[str, list[float]] = {}
    for r in results:
        print(f"  {' '.join(r['overrides']):<40} {r['test'][metric]:.4f}")
        key = " ".join(o for o in r["overrides"] if not o.startswith("seed=") and o not in shared) or "(none)"
        groups.setdefault(key, []).append(r["test"][metric])
    if len(groups) > 1 and any(len(scores) > 1 for scores in groups.values()):
        print("  per group of runs that differ only in seed= (mean ± sample std):")
        for key, scores in groups.items():
            print(f"    {key:<38} {_mean_std(scores)}  (n={len(scores)})")
    else:
        print(f"  mean ± std over runs: {_mean_std([r['test'][metric] for r in results])}")


def _mean_std(scores: list[float]) -> str:
    """``mean ± std`` with the sample standard deviation (n - 1; 0 for one score)."""
    import numpy as np

    values = np.array(scores)
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"
