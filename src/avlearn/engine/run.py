"""One supervised run, end to end: run folder, config, data, model, training, test scores, summary, plots.

``avlearn train`` and ``avlearn demo`` both call ``run_supervised``. The run folder holds ``config.yaml`` (the
resolved config), ``metrics.jsonl`` (one line per epoch), ``checkpoint/`` (the best epoch on the validation
split), ``metrics.json`` (final scores) and ``timeline.png`` (AVE: predicted vs true events of test clips).
"""

from __future__ import annotations

import json
import random
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from avlearn.engine.files import atomic_write_text
from avlearn.errors import AvlearnError

__all__ = ["run_supervised", "make_run_dir", "seed_everything", "pick_device"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def _chance(train_labels: torch.Tensor, test_labels: torch.Tensor, num_outputs: int) -> dict[str, float]:
    """Chance levels in percent: a uniform guess, and always the most frequent training label."""
    majority = int(torch.bincount(train_labels.flatten(), minlength=num_outputs).argmax())
    return {"uniform": 100.0 / num_outputs, "majority": 100.0 * float((test_labels == majority).float().mean())}


def _save_best(task, run_dir: Path, cfg: DictConfig, info) -> callable:  # noqa: ANN001
    from avlearn.engine.checkpoint import save_checkpoint

    def on_best(epoch: int, scores: dict) -> None:
        if cfg.train.checkpoint:
            meta = {"epoch": epoch, "val": scores, "config": OmegaConf.to_container(cfg, resolve=True),
                    "class_names": list(info.class_names), "format": 1}  # fmt: skip
            save_checkpoint(run_dir / "checkpoint", task, meta)

    return on_best


def _summary(cfg: DictConfig, scores: dict, chance: dict, seconds: float, run_dir: Path, metric: str) -> str:
    lines = [
        "",
        f"summary  task={cfg.task.name} method={cfg.method.name} backbone={cfg.backbone.name} data={cfg.data.name}",
        f"  test {metric:<18} {scores['test'][metric]:.2f}",
        f"  val  {metric:<18} {scores['val'][metric]:.2f}  (best epoch {scores['best_epoch']})",
        f"  chance: uniform {chance['uniform']:.2f}, always the majority class {chance['majority']:.2f}",
        f"  time {seconds:.1f}s   run folder {run_dir}",
    ]
    return "\n".join(lines)


def run_supervised(cfg: DictConfig) -> dict:
    """Train and test one configuration; returns the final scores (also written to ``metrics.json``)."""
    from avlearn.build import audio_preprocess, build_splits, build_task
    from avlearn.config import save_config
    from avlearn.engine.checkpoint import load_checkpoint
    from avlearn.engine.loop import evaluate, fit, predict_all

    started = time.perf_counter()
    name = cfg.name or f"{cfg.task.name}-{cfg.method.name}"
    run_dir = make_run_dir(cfg.out, name)
    print(OmegaConf.to_yaml(cfg), flush=True)
    save_config(cfg, run_dir)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.train.device)
    splits = build_splits(cfg, audio_preprocess(cfg))
    print(f"data: {splits.root}  train {len(splits.train)}  val {len(splits.val)}  test {len(splits.test)} clips")
    task = build_task(cfg, splits.info).to(device)
    history = fit(task, splits.train, splits.val, cfg.train, device, run_dir / "metrics.jsonl",
                  _save_best(task, run_dir, cfg, splits.info), seed=cfg.seed)  # fmt: skip
    if cfg.train.checkpoint:
        state, meta = load_checkpoint(run_dir / "checkpoint")
        task.load_state_dict(state)
    best = max(history, key=lambda r: r[f"val_{task.primary_metric}"])
    scores = {
        "val": evaluate(task, splits.val, cfg.train.batch_size, device, cfg.train),
        "test": evaluate(task, splits.test, cfg.train.batch_size, device, cfg.train),
        "best_epoch": best["epoch"],
    }
    chance = _chance(splits.train.labels, splits.test.labels, splits.info.num_classes + 1)
    result = {**scores, "chance": chance, "seconds": time.perf_counter() - started, "run_dir": str(run_dir)}
    atomic_write_text(run_dir / "metrics.json", json.dumps(result, indent=1))
    _plot_timeline(task, splits, cfg, device, run_dir / "timeline.png", predict_all)
    print(_summary(cfg, scores, chance, result["seconds"], run_dir, task.primary_metric), flush=True)
    return result


def _plot_timeline(task, splits, cfg, device, path: Path, predict_all) -> None:  # noqa: ANN001
    from avlearn.viz.timeline import plot_timelines

    few = torch.utils.data.Subset(splits.test, range(min(6, len(splits.test))))
    out = predict_all(task, few, 6, device, cfg.train)
    plot_timelines(
        path,
        out["targets"]["id"],
        out["targets"]["labels"].numpy(),
        out["preds"]["segment_labels"].numpy(),
        splits.info.class_names,
    )
