"""CMG pretraining-step benchmark (issue #20): avlearn's CMG vs the seed's own modules, same batch, paper sizes.

Both run one AVT pretraining step as their training loops do, on the same random batch of pre-extracted features
(audio 10 x 128, video 10 x 7 x 7 x 512, text 10 x 768 token embeddings):

- ``seed``: the seed's modules (``haihuangcode/CMG``, imported from ``../shared/reference`` through
  ``tests/reference/cmg_seed.py``) in float64 as shipped (``--seed-dtype``): encoder forward with the EMA update and
  dead-code loops inside, 5 Adam steps of each CLUB net, the losses, per-module clipping, Adam.
- ``avlearn``: ``avlearn.methods.cmg.CMG`` (the seed's sizes) in fp32 or bf16 autocast (``--precisions``): the
  CLUB inner steps through the engine's ``auxiliary_steps`` (which recompute the encoder features without gradients,
  as ``prepare``), the forward (vectorised codebook update), backward, the same clipping and Adam.

Reported per row: wall seconds per step (median of ``--steps`` after ``--warmup``), samples/s, and ``speedup`` =
samples/s over the seed's; on a CPU also the process CPU seconds (``cpu_s_per_step``, ``samples_per_cpu_s``,
``cpu_speedup``), steadier than wall time on a shared machine. CPU threads default to 1 (``--threads``; shared
machines give unstable numbers with more).

Run: ``PYTHONPATH=src python benchmarks/cmg_step.py [--batch 2] [--device cpu] [--out benchmarks/results/x.json]``;
on a GPU: ``--device cuda --batch 80 --precisions fp32,bf16``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reference"))
import cmg_seed  # noqa: E402  (the seed's step; needs ../shared/reference)

from avlearn.backbones.features import FeatureTower  # noqa: E402
from avlearn.methods.cmg import CMG, CMGConfig  # noqa: E402

T, GRID = 10, 7


class _PromptTokens(nn.Module):
    """The text tower slot: its width only (the batch carries the prompts' token embeddings, ``text_features``)."""

    num_features = 768


def _features(batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"audio": torch.randn(batch, T, 128, generator=generator),  # (B, T, C)
            "visual": torch.randn(batch, T, GRID, GRID, 512, generator=generator).relu(),  # (B, T, H, W, C)
            "text": torch.randn(batch, T, 768, generator=generator)}  # (B, L, C)  # fmt: skip


def _timed(step: Callable[[], None], warmup: int, steps: int, device: torch.device) -> dict[str, float]:
    """Median wall and process-CPU seconds per call of ``step`` after ``warmup`` calls (on a shared CPU the CPU time
    of one thread is the steadier measure)."""
    wall, cpu = [], []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return {"s_per_step": statistics.median(wall), "cpu_s_per_step": statistics.median(cpu)}


def _seed_row(args: argparse.Namespace, features: dict, device: torch.device) -> dict[str, float | str]:
    dtype = getattr(torch, args.seed_dtype)
    seed = cmg_seed.build(cmg_seed.sizes())
    for module in cmg_seed.parts(seed):
        module.to(device, dtype).train()
    inputs = {k: v.to(device, dtype) for k, v in features.items()}
    opt = cmg_seed.optimizers(seed)
    with contextlib.ExitStack() as stack:
        if device.type == "cpu":  # the seed moves every tensor with .cuda()
            stack.enter_context(_tensor_cuda_is_identity())
        seconds = _timed(lambda: cmg_seed.step(seed, inputs, opt), args.warmup, args.steps, device)
    return {"model": "seed", "precision": args.seed_dtype, **seconds}


@contextlib.contextmanager
def _tensor_cuda_is_identity():  # noqa: ANN202
    real = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = real


def _avlearn_row(args: argparse.Namespace, features: dict, device: torch.device, precision: str) -> dict:
    torch.manual_seed(0)
    model = CMG(CMGConfig(), FeatureTower("visual", 512, True), FeatureTower("audio", 128, False), _PromptTokens())
    model.to(device).train()
    b = features["audio"].shape[0]
    batch = {"audio_features": features["audio"].to(device),
             "visual_features": features["visual"].reshape(b, T, GRID * GRID, 512).to(device),  # (B, T, N, C)
             "text_features": features["text"].to(device)}  # fmt: skip
    training = cmg_seed.avlearn_training(model)
    if precision == "bf16":
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        autocast = contextlib.nullcontext
    seconds = _timed(lambda: cmg_seed.avlearn_step(model, batch, training, autocast), args.warmup, args.steps, device)
    return {"model": "avlearn", "precision": precision, **seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32", help="avlearn's rows: fp32, bf16 (comma-separated)")
    parser.add_argument("--seed-dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    features = _features(args.batch, device)
    rows = [_seed_row(args, features, device)]
    rows += [_avlearn_row(args, features, device, p) for p in args.precisions.split(",")]
    for row in rows:
        row["samples_per_s"] = args.batch / row["s_per_step"]
        row["speedup"] = row["samples_per_s"] / rows[0]["samples_per_s"]
        if device.type == "cpu":
            row["samples_per_cpu_s"] = args.batch / row["cpu_s_per_step"]
            row["cpu_speedup"] = rows[0]["cpu_s_per_step"] / row["cpu_s_per_step"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"benchmark": "cmg_step", "device": name, "torch": torch.__version__, "threads": args.threads,
              "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "baseline": f"seed {args.seed_dtype}",
              "results": rows}  # fmt: skip
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
