"""Cross-Modal Adaptation's hyper-parameter grid: all configurations at once vs one run after another.

One few-shot split of AVSynth's size on random cached features (``--classes`` 10 classes, ``--dim`` 512-d features as
CLIP ViT-B/16's, ``--shots`` 16 images per class plus their mirrored views, ``--templates`` 4 text templates
per class (with one, the seed's strict batch-size rule drops batch size 32 for 10 classes, as it does for EuroSAT),
min(shots, 4) validation images per class, 50 test images per class), the seed's linear-probe grid (learning rate
1e-3 / 1e-4 x weight decay 0 / 1e-2 / 1e-4 x batch size 8 / 32: 12 configurations), cross-modal, zero-shot init,
``--iters`` steps with validation every 100. ``batched``: ``avlearn.methods.cma.train_grid`` (one stacked computation);
``sequential``: ``avlearn.methods.cma.training.train_run`` for each configuration (a plain ``torch.optim.AdamW`` loop
on one head, already lighter than the seed's loop of two DataLoaders per run). Both are timed in this process, with
``--threads`` torch threads (default 1), ``--repeats`` times each, alternated, as wall-clock seconds and as this
process's CPU seconds (``*_cpu_s``); the fastest of each is reported (``all_s``: every [wall, cpu] pair), since on a
shared machine other jobs only ever add time. The JSON also says whether both selected the same configuration and the
largest difference of their best validation accuracies.

Run:  python benchmarks/cma_grid.py                       (CPU, about a minute; --iters 12800 is the seed's full run)
      python benchmarks/cma_grid.py --device cuda         (the grid computes on the features' device; not yet run on
                                                           a GPU)
Prints one JSON object (``--out`` also writes it to a file).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from avlearn.methods.cma import FewShotFeatures, GridConfig, HeadConfig, ScheduleConfig, train_grid
from avlearn.methods.cma.training import train_run, valid_batch_sizes

T = TypeVar("T")


def split(classes: int, dim: int, shots: int, templates: int, device: str = "cpu", seed: int = 0) -> FewShotFeatures:
    """Random features around class prototypes: 2 x shots x C training images (two views), templates x C texts,
    min(shots, 4) x C validation and 50 x C test images."""
    g = torch.Generator().manual_seed(seed)
    proto = torch.randn(classes, dim, generator=g)

    def sample(n: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes  # (n,)
        return (proto[y] + noise * torch.randn(n, dim, generator=g)).to(device), y.to(device)

    image, text = sample(2 * shots * classes, 8.0), sample(templates * classes, 4.0)
    val, test = sample(min(shots, 4) * classes, 8.0), sample(50 * classes, 8.0)
    return FewShotFeatures(*image, *text, *val, classes, *test)


def timed(work: Callable[[], T]) -> tuple[T, tuple[float, float]]:
    """``work()`` and the (wall-clock, process CPU) seconds it took."""
    start, cpu = time.perf_counter(), time.process_time()
    out = work()
    return out, (time.perf_counter() - start, time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--templates", type=int, default=4)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = split(args.classes, args.dim, args.shots, args.templates, args.device)
    head, grid = HeadConfig(), GridConfig()
    sched = ScheduleConfig(iters=args.iters)
    times: dict[str, list[tuple[float, float]]] = {"batched": [], "sequential": []}
    sizes = valid_batch_sizes(grid.batch_sizes, head.modality, len(data.image), len(data.text))
    configs = [(lr, wd, bs) for lr in grid.lrs for wd in grid.wds for bs in sizes]  # the grid's order
    for _ in range(args.repeats):  # alternated, so that both see the same load on a shared machine
        batched, seconds = timed(lambda: train_grid(data, head, sched, grid, seed=1))
        times["batched"].append(seconds)
        runs, seconds = timed(lambda: [train_run(data, head, sched, *config, seed=1) for config in configs])
        times["sequential"].append(seconds)
    best = [r.best_acc for r in runs]
    wall = {k: min(w for w, _ in v) for k, v in times.items()}
    cpu = {k: min(c for _, c in v) for k, v in times.items()}
    report = {
        "benchmark": "cma_grid",
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "device": args.device,
        "classes": args.classes,
        "dim": args.dim,
        "shots": args.shots,
        "templates": args.templates,
        "iters": args.iters,
        "configurations": len(batched.configs),
        "repeats": args.repeats,
        "batched_s": round(wall["batched"], 3),
        "sequential_s": round(wall["sequential"], 3),
        "speedup": round(wall["sequential"] / wall["batched"], 1),
        "batched_cpu_s": round(cpu["batched"], 3),
        "sequential_cpu_s": round(cpu["sequential"], 3),
        "cpu_speedup": round(cpu["sequential"] / cpu["batched"], 1),
        "all_s": {k: [[round(w, 3), round(c, 3)] for w, c in v] for k, v in times.items()},
        "same_selection": batched.selected == max(range(len(best)), key=lambda k: (best[k], -k)),
        "max_best_acc_difference": max(abs(a - b) for a, b in zip(batched.best_acc.tolist(), best, strict=True)),
        "selected": batched.configs[batched.selected],
        "selected_val_acc": batched.best_acc[batched.selected].item(),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
