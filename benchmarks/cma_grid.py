"""Cross-Modal Adaptation's hyper-parameter grid: the whole AVSynth grid at once vs one run after another.

The whole grid of the ``cma_avsynth_tiny`` protocol (docs/methods/cma.md) on random cached features of its shapes:
``--classes`` 10 classes, ``--dim`` 384-d embeddings (the MiniLM text space of its encoder), 480 train / 60 val / 60
test clips around class prototypes (``NOISE``), one prompt per class as the extra (text) samples; ``--shots`` 1, 2, 4,
8, 16 x ``--seeds`` 1-5 few-shot splits (K train and min(K, 4) val clips per class, the protocol's own draw); per split
the seed's linear-probe grid (learning rate 1e-3 / 1e-4 x weight decay 0 / 1e-2 / 1e-4 x batch size 8 / 32; with one
prompt per class batch size 32's 16 text samples do not fit 10, so 6 configurations a split, as in the protocol's
runs), cross-modal, zero-shot init, ``--iters`` steps with validation every ``--eval-every``. Three ways, all in this
process with ``--threads`` torch threads (default 1):

* ``all_batched``: ``avlearn.methods.cma.train_grids``: every configuration of every split in one stack;
* ``split_batched``: ``avlearn.methods.cma.train_grid`` per split (one split's configurations at once);
* ``sequential``: ``avlearn.methods.cma.training.train_run`` per configuration and split (a plain
  ``torch.optim.AdamW`` loop on one head, already lighter than the seed's loop of two DataLoaders per run).

Each is timed ``--repeats`` times, alternated, as wall-clock seconds and this process's CPU seconds; the fastest of
each is reported (``all_s``: every [wall, cpu] pair), since on a shared machine other jobs only ever add time. The
JSON also says whether every split's selection is the same three ways and the largest difference of the selected
configurations' validation and test accuracies (``max_selected_acc_difference``).

Run:  python benchmarks/cma_grid.py                     (CPU, about 10 minutes on a loaded 2-core machine, most of
                                                         it sequential)
      python benchmarks/cma_grid.py --device cuda       (the grid computes on the features' device; not yet run on
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

from avlearn.methods.cma import GRIDS, HeadConfig, ScheduleConfig, train_grid, train_grids
from avlearn.methods.cma.protocol import ProtocolConfig, ProtocolFeatures, SplitFeatures, few_shot_features
from avlearn.methods.cma.training import FewShotFeatures, score_test, train_run, valid_batch_sizes

T = TypeVar("T")
CLIPS = (480, 60, 60)  # train, val, test clips of cma_avsynth_tiny's target set
# Clip noise around the class prototypes (prompts: 1): a prompt classifies about 84 % of the clips, one clip per
# class about 30 %, so the selections are not all ties
NOISE = 5.0


def features(classes: int, dim: int, device: str, seed: int = 0) -> ProtocolFeatures:
    """Random clip embeddings of the protocol's sizes around class prototypes (visual only) and one prompt per
    class, on ``device``."""
    g = torch.Generator().manual_seed(seed)
    proto = torch.randn(classes, dim, generator=g)
    parts = []
    for clips in CLIPS:
        y = torch.arange(clips) % classes  # (n,)
        parts += [(proto[y] + NOISE * torch.randn(clips, dim, generator=g)).to(device), y.to(device)]
    text = (proto + torch.randn(classes, dim, generator=g)).to(device)
    names = tuple(f"class{k}" for k in range(classes))
    return ProtocolFeatures({"visual": SplitFeatures(*parts)}, text, torch.arange(classes, device=device), names)


def timed(work: Callable[[], T]) -> tuple[T, tuple[float, float]]:
    """``work()`` and the (wall-clock, process CPU) seconds it took."""
    start, cpu = time.perf_counter(), time.process_time()
    out = work()
    return out, (time.perf_counter() - start, time.process_time() - cpu)


def sequential(splits: list[tuple[FewShotFeatures, int]], head: HeadConfig, sched: ScheduleConfig) -> list[list]:
    """Per split, ``train_run`` of each configuration (the grid's order, the batch sizes the split allows)."""
    out = []
    for data, seed in splits:
        configs = train_grid_configs(data, head)
        out.append([(config, train_run(data, head, sched, *config, seed=seed)) for config in configs])
    return out


def train_grid_configs(data: FewShotFeatures, head: HeadConfig) -> list[tuple[float, float, int]]:
    """The configurations of the linear grid a split allows, in the seed's order."""
    grid = GRIDS["linear"]
    sizes = valid_batch_sizes(grid.batch_sizes, head.modality, len(data.image), len(data.text))
    return [(lr, wd, bs) for lr in grid.lrs for wd in grid.wds for bs in sizes]


def compare(
    splits: list[tuple[FewShotFeatures, int]], head: HeadConfig, out: dict[str, list]
) -> dict[str, bool | float]:
    """Whether every split selects the same configuration the three ways (sequential: the first maximum, the seed's
    rule), and the largest difference of the selected configuration's validation and test accuracies between the
    whole-grid stack and the other two."""
    same, diff = True, 0.0
    for (data, _), grid, alone, runs in zip(splits, out["all_batched"], out["split_batched"], out["sequential"],
                                            strict=True):  # fmt: skip
        best = [run.best_acc for _, run in runs]
        k = grid.selected
        same &= k == alone.selected == max(range(len(best)), key=lambda i: (best[i], -i))
        test = score_test(runs[k][1].state, head, data)
        accs = [(grid.best_acc[k].item(), alone.best_acc[k].item(), best[k]),
                (grid.test_acc[k].item(), alone.test_acc[k].item(), test)]  # fmt: skip
        diff = max(diff, *(abs(a[0] - b) for a in accs for b in a[1:]))
    return {"same_selection": same, "max_selected_acc_difference": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    feats, protocol = features(args.classes, args.dim, args.device), ProtocolConfig(shots=args.shots, seeds=args.seeds)
    splits = [(few_shot_features(feats, protocol, k, seed), seed) for k in args.shots for seed in args.seeds]
    head, grid = HeadConfig(), GRIDS["linear"]
    sched = ScheduleConfig(iters=args.iters, eval_every=args.eval_every)
    work = {
        "all_batched": lambda: train_grids(splits, head, sched, grid),
        "split_batched": lambda: [train_grid(data, head, sched, grid, seed) for data, seed in splits],
        "sequential": lambda: sequential(splits, head, sched),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in work}
    out: dict[str, list] = {}
    for _ in range(args.repeats):  # alternated, so that all see the same load on a shared machine
        for name, job in work.items():
            out[name], seconds = timed(job)
            times[name].append(seconds)
    wall = {k: min(w for w, _ in v) for k, v in times.items()}
    cpu = {k: min(c for _, c in v) for k, v in times.items()}
    report = {
        "benchmark": "cma_grid (the whole cma_avsynth_tiny grid)",
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "device": args.device,
        "classes": args.classes,
        "dim": args.dim,
        "shots": args.shots,
        "seeds": args.seeds,
        "iters": args.iters,
        "eval_every": args.eval_every,
        "splits": len(splits),
        "configurations": sum(len(r.configs) for r in out["all_batched"]),
        "repeats": args.repeats,
        **{f"{k}_s": round(v, 3) for k, v in wall.items()},
        **{f"{k}_cpu_s": round(v, 3) for k, v in cpu.items()},
        "speedup": round(wall["sequential"] / wall["all_batched"], 1),
        "cpu_speedup": round(cpu["sequential"] / cpu["all_batched"], 1),
        "speedup_per_split_batching": round(wall["sequential"] / wall["split_batched"], 1),
        "all_s": {k: [[round(w, 3), round(c, 3)] for w, c in v] for k, v in times.items()},
        **compare(splits, head, out),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
