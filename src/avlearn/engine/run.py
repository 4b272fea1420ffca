"""One supervised run, end to end: run folder, config, data, model, training, test scores, summary, plots.

``avlearn train`` and ``avlearn demo`` call ``run_supervised`` once per configuration, in every process that
torchrun started. The run folder (made by rank 0; removed again when the run fails before its first optimizer
step, unless it is a resumed run) holds ``config.yaml`` (the resolved config),
``metrics.jsonl`` (steps, validations and epochs), ``checkpoint/`` (the selected model: best on the validation
split, or the last state), ``last/`` (the resumable state), ``metrics.json`` (final scores, the task's primary
metric and its chance levels; no test scores with ``train.test=false``) and the task's
plot (``avlearn.viz.reports``: ``timeline.png`` for AVE and AVVP, ``masks.png`` for AVS, ``grounding.png``
for AVQA). ``resume=true`` continues the newest run of ``out/name`` from ``last/``; its config must be the same.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from avlearn.engine.env import Env, barrier, broadcast_object, seed_everything, setup
from avlearn.errors import AvlearnError, ConfigError
from avlearn.files import atomic_write_text
from avlearn.registry import TASKS

__all__ = ["run_supervised", "make_run_dir", "find_resumable"]

# Keys that may differ between a run and its resumption (they do not change what is computed: where and how fast it
# runs, and whether its splits are held in memory).
RESUMABLE_CHANGES = ("resume", "train.device", "train.threads", "train.loader_workers", "data.workers", "data.preload",
                     "data.preload_gb")  # fmt: skip


def make_run_dir(out: str, name: str) -> Path:
    """A new, empty folder ``out/name/<timestamp>``; an unwritable ``out`` is a one-line error."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out).expanduser() / name
    for k in range(100):
        run_dir = base / (stamp if k == 0 else f"{stamp}-{k}")
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            continue
        except OSError as err:
            raise AvlearnError(
                f"cannot create the run folder under {out!r}: {err.strerror}; set out=<a writable folder>"
            ) from None
    raise AvlearnError(f"too many runs named {name!r} started this second under {out!r}")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def find_resumable(cfg: DictConfig, name: str) -> Path:
    """The run folder that ``cfg.resume`` names, checked: it has ``last/`` and was made with the same config."""
    if cfg.resume.lower() in ("true", "latest"):
        runs = sorted(
            (Path(cfg.out).expanduser() / name).glob("*/last/checkpoint.json"), key=lambda p: p.stat().st_mtime
        )
        if not runs:
            raise ConfigError(f"resume={cfg.resume}: no run under {Path(cfg.out) / name} has a last/ checkpoint")
        run_dir = runs[-1].parent.parent
    else:
        run_dir = Path(cfg.resume).expanduser()
        if not (run_dir / "last" / "checkpoint.json").is_file():
            raise ConfigError(f"resume={cfg.resume}: {run_dir} has no last/ checkpoint to continue from")
    saved = _flat(OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True))
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        raise ConfigError(
            f"resume: the config differs from {run_dir / 'config.yaml'} in {', '.join(changed)}; "
            "resume with the run's own settings (repeat its overrides and add resume=true)"
        )
    return run_dir


def _summary(cfg: DictConfig, scores: dict, chance: dict, seconds: float, run_dir: Path, metric: str) -> str:
    selected = f"best epoch {scores['best_epoch']}" if cfg.train.select == "best" else "last state"
    lines = [
        "",
        f"summary  task={cfg.task.name} method={cfg.method.name} backbone={cfg.backbone.name} data={cfg.data.name}",
        *([f"  test {metric:<18} {scores['test'][metric]:.2f}"] if "test" in scores else []),
        f"  val  {metric:<18} {scores['val'][metric]:.2f}  ({selected})",
        "  chance: " + (", ".join(f"{k} {v:.2f}" for k, v in chance.items()) or "-"),
        f"  time {seconds:.1f}s   run folder {run_dir}",
    ]
    return "\n".join(lines)


def _run_dir(cfg: DictConfig, env: Env) -> Path:
    """The run folder on every rank: rank 0 makes a new one or finds the one ``resume=`` names."""
    name = cfg.name or f"{cfg.task.name}-{cfg.method.name}"
    run_dir = None
    if env.is_main:
        run_dir = find_resumable(cfg, name) if cfg.resume else make_run_dir(cfg.out, name)
    return broadcast_object(run_dir, env)


@contextmanager
def _removed_if_unstarted(run: Any, env: Env) -> Iterator[None]:
    """On an error before ``run`` did its first optimizer step, rank 0 removes the new (not resumed) run folder."""
    try:
        yield
    except BaseException:
        if env.is_main and not run.resume and not run.started:
            shutil.rmtree(run.dir, ignore_errors=True)
        raise


def _prepare(cfg: DictConfig, env: Env, run_dir: Path) -> tuple[Any, torch.nn.Module]:
    """Config file, decoded splits (rank 0 first: it may generate AVSynth), task."""
    from avlearn.build import audio_preprocess, build_splits, build_task
    from avlearn.config import save_config

    if env.is_main:
        print(OmegaConf.to_yaml(cfg), flush=True)
        if not cfg.resume:
            save_config(cfg, run_dir)
        splits = build_splits(cfg, audio_preprocess(cfg))
        print(f"data: {splits.root}  train {len(splits.train)}  val {len(splits.val)}  test {len(splits.test)} clips")
    barrier(env)
    if not env.is_main:
        splits = build_splits(cfg, audio_preprocess(cfg))
    task = build_task(cfg, splits.info).to(env.device)
    if cfg.train.init_from:
        _init_from(task, cfg.train.init_from, cfg.train.init_only)
    return splits, task


def _init_from(task: torch.nn.Module, source: str, only: str = "") -> None:
    """Load starting weights (never unpickling); a key mismatch is a one-line error naming a few keys. ``only``: the
    weights of that sub-module alone (``method``: a method trained by another task, under a new head)."""
    from avlearn.engine.checkpoint import CheckpointError, load_weights

    weights, target = load_weights(source), task
    if only:
        if only not in dict(task.named_modules()):
            raise ConfigError(f"train.init_only={only!r}: the task has no such sub-module (e.g. method)")
        target = task.get_submodule(only)
        weights = {k[len(only) + 1 :]: v for k, v in weights.items() if k.startswith(f"{only}.")}
    missing, unexpected = target.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"train.init_from={source}: the weights do not fit this model (missing: {', '.join(missing[:3]) or '-'}"
            f"; unexpected: {', '.join(unexpected[:3]) or '-'})"
        )


def run_supervised(cfg: DictConfig) -> dict:
    """Train and test one configuration; returns the final scores (rank 0 also writes ``metrics.json``)."""
    from avlearn.engine.loop import RunInfo, evaluate, fit
    from avlearn.engine.resume import load_model

    started = time.perf_counter()
    env = setup(cfg.train.device, cfg.train.threads, cfg.seed, cfg.train.deterministic)
    run = RunInfo(_run_dir(cfg, env), cfg.seed, resume=bool(cfg.resume))
    with _removed_if_unstarted(run, env):
        splits, task = _prepare(cfg, env, run.dir)
        seed_everything(cfg.seed + env.rank)  # the same initial weights everywhere, then a dropout stream per rank
        run.meta = {"config": OmegaConf.to_container(cfg, resolve=True), "class_names": list(splits.info.class_names)}
        state = fit(task, splits.train, splits.val, cfg.train, env, run)
    run_dir = run.dir
    if cfg.train.checkpoint:
        load_model(run_dir / "checkpoint", task, env)
    val_scores, _ = evaluate(task, splits.val, cfg.train.batch_size, env, cfg.train.precision)
    scores = {"val": val_scores, "best_epoch": state.best_epoch}
    report = TASKS.spec(cfg.task.name).report if cfg.train.test else None  # chance levels and plot read the test split
    if cfg.train.test:
        scores["test"], test_out = evaluate(task, splits.test, cfg.train.batch_size, env, cfg.train.precision)
    chance = report.chance(splits, task, test_out) if report else {}
    plot = report.plot_name if report else None
    result = {**scores, "task": cfg.task.name, "primary_metric": task.primary_metric, "chance": chance, "plot": plot,
              "seconds": time.perf_counter() - started, "run_dir": str(run_dir)}  # fmt: skip
    if env.is_main:
        atomic_write_text(run_dir / "metrics.json", json.dumps(result, indent=1))
        if plot:
            report.plot(splits, test_out, run_dir / plot)
        print(_summary(cfg, scores, chance, result["seconds"], run_dir, task.primary_metric), flush=True)
    return result
