"""Training-step benchmark: samples/s, peak memory and model-FLOPs utilisation, eager vs compiled, fp32 vs bf16.

What is timed is the engine's own ``avlearn.engine.loop.train_step`` (forward under autocast, backward, gradient
clipping, AdamW step, schedule step) on one synthetic batch kept on the device, after warmup steps (the first one,
which compiles, is reported separately as ``first_step_s``). Two kinds of model:

- ``task``: a registered method + task built exactly as ``avlearn train`` builds it (``build_task`` on the composed
  config), fed an AVE batch (``frames (B, S, H, W, 3)`` uint8, ``audio (B, S, F, T)``, ``labels (B, S)``); a sample
  is a clip of S = 10 segments. Preset ``demo``: the baseline with the small CNNs of ``avlearn demo``.
- ``towers``: the two backbones alone on their own inputs (``dummy_inputs``), pooled, concatenated and classified;
  a sample is one image + one audio clip. Presets ``tiny`` (vit_tiny + ast_tiny, for CPUs) and ``base``
  (ViT-B/16 at 224 px + AST-base on 1024x128 fbank, the GPU target). The baseline method cannot feed AST (it
  passes a log-mel as ``input_features``), hence this mode for transformer pairs.

Each (mode, precision) runs in a fresh process, so peak memory is that configuration's: ``torch.cuda
.max_memory_allocated`` on a GPU, the process's peak RSS (``ru_maxrss``, imports included) on a CPU. The baseline
is eager fp32 measured in the same run; every row has ``speedup`` against it. FLOPs per step are counted once
with ``torch.utils.flop_counter`` (matmuls and convolutions, forward + backward); ``mfu`` = achieved FLOP/s over
the device's dense bf16 peak (``--peak-tflops``, or known for A100/H100/H200), also for fp32 rows, so the rows
compare on one scale.

CPU threads default to 1 (``--threads``): on a shared CPU an OpenMP team stalls whenever one of its threads is
descheduled, and compiled code runs many small parallel regions, so with 2 threads under load we measured compiled
steps 150x slower than with 1 (2 s vs 13 ms); one thread gives stable numbers. GPUs ignore it.

Run:  python benchmarks/train_step.py --preset tiny                       (CPU, about a minute per compiled row)
      python benchmarks/train_step.py --preset base --device cuda --batch 64
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch
import torch.nn.functional as F
from torch import nn

PRESETS = {
    "demo": {"model": "task", "visual": "cnn_visual_small", "audio": "cnn_audio_small"},
    "tiny": {"model": "towers", "visual": "vit_tiny", "audio": "ast_tiny"},
    "base": {"model": "towers", "visual": "vit_base_patch16", "audio": "ast_base"},
}
PEAK_BF16_TFLOPS = {"H200": 989.5, "H100": 989.5, "A100": 312.0}  # dense, SXM parts
CLASSES = 28


class Towers(nn.Module):
    """Two backbones on their own inputs (batch keys ``visual.<input>``, ``audio.<input>``) and a linear classifier."""

    def __init__(self, visual: nn.Module, audio: nn.Module) -> None:
        super().__init__()
        self.visual, self.audio = visual, audio
        self.head = nn.Linear(visual.num_features + audio.num_features, CLASSES)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = {
            t: {k[len(t) + 1 :]: v for k, v in batch.items() if k.startswith(f"{t}.")} for t in ("visual", "audio")
        }
        pooled = torch.cat([self.visual(**inputs["visual"]), self.audio(**inputs["audio"])], dim=-1)  # (B, Cv + Ca)
        return {"loss": F.cross_entropy(self.head(pooled), batch["labels"])}


def build(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The model and one batch of ``args.batch`` samples on ``device``."""
    from avlearn import register_all
    from avlearn.registry import BACKBONES

    register_all()
    torch.manual_seed(0)
    if args.model == "towers":
        visual, audio = BACKBONES.get(args.visual)(), BACKBONES.get(args.audio)()
        batch = {f"visual.{k}": v for k, v in visual.dummy_inputs(args.batch).items()}
        batch |= {f"audio.{k}": v for k, v in audio.dummy_inputs(args.batch).items()}
        batch["labels"] = torch.randint(0, CLASSES, (args.batch,))
        return Towers(visual, audio).to(device), {k: v.to(device) for k, v in batch.items()}
    return _task(args, device)


def _task(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from avlearn.build import audio_preprocess, build_task
    from avlearn.config import compose_run
    from avlearn.tasks.base import DatasetInfo

    cfg = compose_run([f"task={args.task}", f"method={args.method}", f"backbone.visual={args.visual}",
                       f"backbone.audio={args.audio}"])  # fmt: skip
    if cfg.task.name != "ave":
        raise SystemExit(f"--model task knows the AVE batch only, not task {cfg.task.name!r}")
    info = DatasetInfo(tuple(f"class{k}" for k in range(CLASSES)))
    pre, size, s = audio_preprocess(cfg), cfg.data.frame_size, info.segments
    batch = {
        "frames": torch.randint(0, 256, (args.batch, s, size, size, 3), dtype=torch.uint8),  # (B, S, H, W, 3)
        "audio": torch.randn(args.batch, s, pre.num_mel_bins, pre.num_frames),  # (B, S, F, T)
        "labels": torch.randint(0, CLASSES + 1, (args.batch, s)),  # (B, S)
    }
    return build_task(cfg, info).to(device), {k: v.to(device) for k, v in batch.items()}


def count_flops(args: argparse.Namespace) -> dict[str, float]:
    """FLOPs of one forward + backward (eager fp32), and the parameter counts."""
    from torch.utils.flop_counter import FlopCounterMode

    model, batch = build(args, torch.device(args.device))
    with FlopCounterMode(display=False) as counter:
        model(batch)["loss"].backward()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"flops_per_step": counter.get_total_flops(), "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "trainable_params_m": trainable / 1e6}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, mode: str, precision: str) -> dict[str, float | str]:
    """Time ``args.steps`` engine steps of one configuration (runs in a fresh process)."""
    from avlearn.config.schema import TrainConfig
    from avlearn.engine.env import Env
    from avlearn.engine.log import MetricsLog
    from avlearn.engine.loop import Training, train_step, wrap
    from avlearn.engine.state import TrainState

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, batch = build(args, device)
    cfg = TrainConfig(batch_size=args.batch, precision=precision, compile=mode == "compiled", device=args.device)
    env = Env(device=device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    t = Training(model, wrap(model, cfg, env), optimizer, schedule, None, TrainState(), MetricsLog(None, False))
    started = time.perf_counter()
    train_step(t, [batch], args.batch, cfg, env)
    _sync(device)
    first = time.perf_counter() - started
    for _ in range(args.warmup):
        train_step(t, [batch], args.batch, cfg, env)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = train_step(t, [batch], args.batch, cfg, env)["loss"]
    _sync(device)
    seconds = (time.perf_counter() - started) / args.steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"mode": mode, "precision": precision, "samples_per_s": args.batch / seconds, "step_ms": 1e3 * seconds,
            "first_step_s": first, "peak_mem_mb": peak / 2**20, "final_loss": float(loss)}  # fmt: skip


def _peak_tflops(args: argparse.Namespace) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if torch.device(args.device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(torch.device(args.device))
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--model", choices=("task", "towers"), help="override the preset's kind of model")
    parser.add_argument("--visual", help="registered visual backbone (overrides the preset)")
    parser.add_argument("--audio", help="registered audio backbone (overrides the preset)")
    parser.add_argument("--method", default="baseline", help="registered method (--model task)")
    parser.add_argument("--task", default="ave", help="registered task (--model task)")
    parser.add_argument("--batch", type=int, default=8, help="samples per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first (compiling) one")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default); see above")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, for the MFU")
    args = parser.parse_args()
    for key, value in PRESETS[args.preset].items():
        setattr(args, key, getattr(args, key) or value)

    info = count_flops(args)
    rows = []
    for mode in args.modes.split(","):
        for precision in args.precisions.split(","):
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:  # fresh process: its own peak memory
                rows.append(pool.submit(measure, args, mode, precision).result())
    baseline = next((r for r in rows if (r["mode"], r["precision"]) == ("eager", "fp32")), rows[0])
    peak = _peak_tflops(args)
    for r in rows:
        r["speedup"] = r["samples_per_s"] / baseline["samples_per_s"]
        achieved = info["flops_per_step"] * r["samples_per_s"] / args.batch
        r["tflops"] = achieved / 1e12
        r["mfu"] = achieved / (peak * 1e12) if peak else None
    device = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "cpu"
    print(json.dumps({"benchmark": "train_step", "device": device, "torch": torch.__version__,
                      **{k: getattr(args, k) for k in ("preset", "model", "visual", "audio", "batch", "steps")},
                      **({"method": args.method, "task": args.task} if args.model == "task" else {}), **info,
                      "peak_bf16_tflops": peak, "baseline": "eager fp32", "results": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
