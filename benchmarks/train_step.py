"""Training-step benchmark: samples/s, peak memory and model-FLOPs utilisation, eager vs compiled, fp32 vs bf16,
with or without activation checkpointing.

What is timed is the engine's own ``avlearn.engine.loop.train_step`` (forward under autocast, backward, gradient
clipping, AdamW step, schedule step) on one synthetic batch kept on the device, after warmup steps (the first one,
which compiles, is reported separately as ``first_step_s``). Two kinds of model:

- ``task``: a registered method + task built exactly as ``avlearn train`` builds it (``build_task`` on the composed
  config), fed an AVE batch (``frames (B, S, H, W, 3)`` uint8, ``audio (B, S, F, T)``, ``labels (B, S)``); a sample
  is a clip of S segments (``--segments``, default 10). Preset ``demo``: the baseline with the small CNNs of
  ``avlearn demo``.
- ``towers``: the two backbones alone on their own inputs (``dummy_inputs``), pooled, concatenated and classified;
  a sample is one image + one audio clip. Presets ``tiny`` (vit_tiny + ast_tiny, for CPUs) and ``base``
  (ViT-B/16 at 224 px + AST-base on 1024x128 fbank, the GPU target). The baseline method cannot feed AST (it
  passes a log-mel as ``input_features``), hence this mode for transformer pairs.

Preset ``dgsct`` (issue #7): DG-SCT at paper size (Swin-V2-L 192 px + HTS-AT, 12 pairs x 4 adapters, random init,
frozen backbones, CMBS head) with batch 2 clips, comparing eager fp32, eager bf16 + activation checkpointing
(``method.checkpointing=true``) and the same compiled; a clip is a whole AVE video of 10 one-second segments, as in
the paper (``--segments 1`` for a quick look: a CPU step then takes half a minute instead of four, but the fixed
parameter and optimizer memory dominates and the memory ratios mean little). Rows are ``--configs`` entries
``MODE-PRECISION[+ckpt]``; without it, every ``--modes`` x ``--precisions`` pair.

Preset ``deepavfusion`` (issue #21): one masked-autoencoding pretraining step of DeepAVFusion at paper size (two
ViT-B/16, 32 fusion tokens, factorized interactions at every layer with attention ratio 0.25 and MLP ratio 1, two
8-layer decoders; random init), on one batch of 224 px images and 128 x 192 log-mels. Each configuration row is
run for every ``--impls`` entry: ``avlearn`` (``avlearn.methods.deepavfusion``, additive pair attention), ``pairs``
(the same with the seed's pair form) and ``seed`` (the seed's ``AVMAE`` module, imported by the reference tier's
loader ``tests/reference/oracles.py`` from ``../shared/reference``, on timm 0.6.13; the seed pins 0.9.2, whose ViT
attention is fused). The seed's eager fp32 row is the baseline of ``speedup``. ``flops`` gives each implementation's
FLOPs per sample (forward + backward, and forward alone), counted on the meta device: torch's FLOP counter sees no
FLOPs in the CPU kernels of ``scaled_dot_product_attention`` (0 for a CPU call, the matmul count on meta), which
avlearn's blocks use. ``--flops-only`` times nothing. ``--size small`` narrows both sides to ViT-S widths (384, 6
heads) for CPUs.

Each configuration runs in a fresh process, so peak memory is that configuration's: ``torch.cuda.max_memory_allocated``
on a GPU, the process's peak RSS (``ru_maxrss``, imports included) on a CPU. On a CPU the workers run with glibc's mmap
threshold fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``, unless already set): with glibc's default dynamic threshold,
freed tensors of a few MB stay in the heap, so RSS kept about a gradient-set's worth (0.7-0.9 GB here) of freed memory
and measured the allocator as much as the model. ``base_mem_mb`` is the same measure once the model and batch are built
(before the first step), so ``peak - base`` is what training adds (activations, gradients, optimizer state). bf16 rows
store the frozen Linear/conv weights in bf16 as ``fit`` does (``train.frozen_bf16``; after ``base`` is measured, so
their base still counts them in fp32). ``*_per_sample`` divide by the batch. The baseline is eager fp32 measured in the
same run; every row has ``speedup``, ``mem_ratio`` (peak) and ``train_mem_ratio`` (peak - base) against it. FLOPs per
step are counted once with ``torch.utils.flop_counter`` (matmuls and convolutions, forward + backward); ``mfu`` =
achieved FLOP/s over the device's dense bf16 peak (``--peak-tflops``, or known for A100/H100/H200), also for fp32 rows,
so the rows compare on one scale.

CPU threads default to 1 (``--threads``): on a shared CPU an OpenMP team stalls whenever one of its threads is
descheduled, and compiled code runs many small parallel regions, so with 2 threads under load we measured compiled
steps 150x slower than with 1 (2 s vs 13 ms); one thread gives stable numbers. GPUs ignore it.

Preset ``valor_b`` (issue #22): VALOR's pretraining step (MGA over t-v, t-a, t-va + MGC, one decoder pass per group;
AdamW betas (0.9, 0.98), weight decay 0.01, gradient clipping at 5, as the seed) of avlearn's ``VALOR`` against the
seed's own model (``tests/reference/oracles.valor_seed``: its modules at the same widths, same random init moved by
no converter: each side its own draw; the seed's Python token masker included), in plain loops (not the engine's
``train_step``: the seed is no avlearn task). A sample is 4 frames at 224 px, one 5.12 s audio clip (64 x 512 fbank)
and a caption of up to 32 tokens. ``--valor-size small`` (the CPU default; say so when quoting): CLIP ViT 256 wide,
4 layers, 32 px patches; AST, BERT and decoder 256 wide, 4 layers; ``full``: CLIP ViT-L/14, AST-base, BERT-base (the
VALOR-L towers; VALOR-B's Video Swin is not built). Also timed: captioning a batch (encoders + beam 3, 30 tokens)
with avlearn's key/value cache, without it, and by the seed (which has none). Rows ``train-<impl>-<precision>`` and
``decode-<impl>``; ``speedup`` is against the seed's row of the same kind.

Run:  python benchmarks/train_step.py --preset tiny                       (CPU, about a minute per compiled row)
      python benchmarks/train_step.py --preset base --device cuda --batch 64
      python benchmarks/train_step.py --preset dgsct --configs eager-fp32,eager-bf16+ckpt --steps 1
                                            (CPU: ~30 min, fp32 peak ~20 GB RSS)
      python benchmarks/train_step.py --preset dgsct --device cuda
      python benchmarks/train_step.py --preset valor_b                    (CPU, small widths: a few minutes)
      python benchmarks/train_step.py --preset valor_b --device cuda --valor-size full --batch 32
      python benchmarks/train_step.py --preset deepavfusion --flops-only --impls avlearn,pairs,seed   (FLOPs only)
      python benchmarks/train_step.py --preset deepavfusion --size small --configs eager-fp32   (CPU, batch 2)
      python benchmarks/train_step.py --preset deepavfusion --device cuda --batch 64 --configs eager-fp32,eager-bf16
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
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
    "dgsct": {"model": "task", "method": "dgsct", "visual": "swinv2_large_192", "audio": "htsat_base",
              "overrides": ["backbone.freeze=all", "task.head=cmbs"], "batch": 2, "segments": 10, "steps": 2,
              "warmup": 0, "configs": "eager-fp32,eager-bf16+ckpt,compiled-bf16+ckpt"},
    "valor_b": {"model": "valor", "batch": 8, "steps": 3, "warmup": 1},
    "deepavfusion": {"model": "deepavfusion", "visual": "vit_mae_base", "audio": "vit_mae_audio_base", "batch": 2,
                     "steps": 2, "warmup": 1, "impls": "avlearn,seed"},
}  # fmt: skip
IMPLS = ("avlearn", "pairs", "seed")  # --model deepavfusion
DEFAULTS = {"method": "baseline", "overrides": [], "batch": 8, "segments": 10, "steps": 10, "warmup": 3,
            "impls": "avlearn"}  # fmt: skip
PEAK_BF16_TFLOPS = {"H200": 989.5, "H100": 989.5, "A100": 312.0}  # dense, SXM parts
CLASSES = 28
MMAP_THRESHOLD = 128 * 1024  # bytes; see the module docstring (CPU peak RSS)


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


class MAEStep(nn.Module):
    """A DeepAVFusion pretraining step's loss, the sum of the image and audio MAE losses: avlearn's method
    (``mae_losses``) or the seed's ``AVMAE`` (``forward``), on batch keys ``pixels`` and ``spec``."""

    def __init__(self, model: nn.Module, seed: bool) -> None:
        super().__init__()
        self.model, self.seed = model, seed

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.seed:
            loss_image, loss_audio, *_ = self.model(batch["pixels"], batch["spec"])
            return {"loss": loss_image + loss_audio}
        return {"loss": sum(self.model.mae_losses(batch["pixels"], batch["spec"])[0].values())}


def _deepavfusion(args: argparse.Namespace) -> MAEStep:
    """The pretraining model of ``args.impl`` (random init) with the seed's VGGSound settings, at ViT-B (``--size
    base``, the paper) or ViT-S widths (``small``: 384 wide, 6 heads, both sides; the seed's ``vit_small``)."""
    from avlearn.methods.deepavfusion import DeepAVFusion, DeepAVFusionConfig
    from avlearn.registry import BACKBONES

    width, heads = (768, 12) if args.size == "base" else (384, 6)
    if args.impl != "seed":
        narrow = {} if args.size == "base" else {"hidden_size": 384, "num_attention_heads": 6,
                                                 "intermediate_size": 1536}  # fmt: skip
        towers = BACKBONES.build(args.visual, **narrow), BACKBONES.build(args.audio, **narrow)
        method = DeepAVFusion(DeepAVFusionConfig(pretrain=True, fusion_heads=heads), *towers)
        for block in method.fusion_blocks.values():
            block.pairs = args.impl == "pairs"
        return MAEStep(method, seed=False)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reference"))
    import oracles  # the reference tier's loader of the seed's modules

    _, deepavfusion, avmae = oracles.deepavfusion_modules()
    arch, none = ("vit_base", "") if args.size == "base" else ("vit_small", False)  # how each says "no weights"
    encoder = deepavfusion.DeepAVFusion(image_arch=arch, image_pretrained=none, audio_arch=arch, audio_pretrained=none,
                                        num_fusion_tkns=(16, 8, 8), fusion_num_heads=heads)  # fmt: skip
    model = avmae.AVMAE(encoder, width, image_norm_loss=True, audio_norm_loss=True)
    return MAEStep(model, seed=True)


def build(
    args: argparse.Namespace, device: torch.device, checkpointing: bool = False
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The model (with ``method.checkpointing`` if asked) and one batch of ``args.batch`` samples on ``device``."""
    from avlearn import register_all
    from avlearn.registry import BACKBONES

    register_all()
    torch.manual_seed(0)
    if args.model == "deepavfusion":
        if checkpointing:
            raise SystemExit("activation checkpointing (+ckpt) is not available for --model deepavfusion")
        batch = {"pixels": torch.randn(args.batch, 3, 224, 224), "spec": torch.randn(args.batch, 1, 128, 192) - 3.0}
        return _deepavfusion(args).to(device), {k: v.to(device) for k, v in batch.items()}
    if args.model == "towers":
        if checkpointing:
            raise SystemExit("activation checkpointing (+ckpt) is a method option: use --model task")
        visual, audio = BACKBONES.get(args.visual)(), BACKBONES.get(args.audio)()
        batch = {f"visual.{k}": v for k, v in visual.dummy_inputs(args.batch).items()}
        batch |= {f"audio.{k}": v for k, v in audio.dummy_inputs(args.batch).items()}
        batch["labels"] = torch.randint(0, CLASSES, (args.batch,))
        return Towers(visual, audio).to(device), {k: v.to(device) for k, v in batch.items()}
    return _task(args, device, checkpointing)


def _task(
    args: argparse.Namespace, device: torch.device, checkpointing: bool
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from avlearn.build import audio_preprocess, build_task
    from avlearn.config import compose_run
    from avlearn.tasks.base import DatasetInfo

    cfg = compose_run([f"task={args.task}", f"method={args.method}", f"backbone.visual={args.visual}",
                       f"backbone.audio={args.audio}", *args.overrides,
                       *(["method.checkpointing=true"] if checkpointing else [])])  # fmt: skip
    if cfg.task.name != "ave":
        raise SystemExit(f"--model task knows the AVE batch only, not task {cfg.task.name!r}")
    info = DatasetInfo(tuple(f"class{k}" for k in range(CLASSES)), segments=args.segments)
    pre, size, s = audio_preprocess(cfg), cfg.data.frame_size, info.segments
    frames = pre.num_frames // cfg.method.get("audio_tile", 1)  # DG-SCT: a one-second log-mel, tiled by the method
    batch = {
        "frames": torch.randint(0, 256, (args.batch, s, size, size, 3), dtype=torch.uint8),  # (B, S, H, W, 3)
        "audio": torch.randn(args.batch, s, pre.num_mel_bins, frames),  # (B, S, F, T)
        "labels": torch.randint(0, CLASSES + 1, (args.batch, s)),  # (B, S)
    }
    return build_task(cfg, info).to(device), {k: v.to(device) for k, v in batch.items()}


def count_flops(args: argparse.Namespace) -> dict[str, float]:
    """FLOPs of one forward + backward and of the forward alone (eager fp32), and the parameter counts."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = args.flops_only or args.model == "deepavfusion"  # the counter sees no FLOPs in CPU SDPA kernels
    device = torch.device("meta" if meta else args.device)
    with device if meta else contextlib.nullcontext():  # meta: shapes only, no memory
        model, batch = build(args, device)
    with FlopCounterMode(display=False) as counter:
        loss = model(batch)["loss"]
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params = sum(p.numel() for p in model.parameters())
    return {"flops_per_step": forward + counter.get_total_flops(), "forward_flops_per_step": forward,
            "params_m": params / 1e6, "trainable_params_m": trainable / 1e6}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory(device: torch.device) -> float:
    """Peak memory so far in bytes: allocated on a GPU, resident on a CPU (Linux reports KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(args: argparse.Namespace, mode: str, precision: str, checkpointing: bool) -> dict[str, float | str]:
    """Time ``args.steps`` engine steps of one configuration (runs in a fresh process), or report that it took
    longer than ``--row-timeout`` seconds in all (build, first step, warmup and timed steps)."""
    row = {"mode": mode, "precision": precision, "checkpointing": checkpointing}
    if args.row_timeout:
        signal.signal(signal.SIGALRM, _out_of_time)
        signal.alarm(args.row_timeout)
    try:
        return row | _measure(args, mode, precision, checkpointing)
    except TimeoutError:
        return row | {"timed_out_s": args.row_timeout}
    finally:
        signal.alarm(0)


def _out_of_time(signum: int, frame: object) -> None:
    raise TimeoutError


def _measure(args: argparse.Namespace, mode: str, precision: str, checkpointing: bool) -> dict[str, float]:
    from avlearn.config.schema import TrainConfig
    from avlearn.engine.env import Env
    from avlearn.engine.log import MetricsLog
    from avlearn.engine.loop import Training, frozen_weights_in_bf16, train_step, wrap
    from avlearn.engine.state import TrainState

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, batch = build(args, device, checkpointing)
    base = _memory(device)
    cfg = TrainConfig(batch_size=args.batch, precision=precision, compile=mode == "compiled", device=args.device)
    env = Env(device=device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with frozen_weights_in_bf16(model, precision == "bf16"):  # as ``fit`` does (train.frozen_bf16)
        t = Training(model, wrap(model, cfg, env), optimizer, schedule, None, TrainState(), MetricsLog(None, False))
        started = time.perf_counter()
        train_step(t, [batch], args.batch, cfg, env)
        _sync(device)
        first = time.perf_counter() - started
        for _ in range(args.warmup):
            train_step(t, [batch], args.batch, cfg, env)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)  # steady-state peak; base (params, batch) is still allocated
        _sync(device)
        started = time.perf_counter()
        for _ in range(args.steps):
            loss = train_step(t, [batch], args.batch, cfg, env)["loss"]
        _sync(device)
        seconds = (time.perf_counter() - started) / args.steps
        peak = _memory(device)
    mb = 2**20
    return {"samples_per_s": args.batch / seconds, "step_ms": 1e3 * seconds, "first_step_s": first,
            "peak_mem_mb": peak / mb, "base_mem_mb": base / mb, "peak_mem_mb_per_sample": peak / mb / args.batch,
            "train_mem_mb_per_sample": (peak - base) / mb / args.batch, "final_loss": float(loss)}  # fmt: skip


def _rows(args: argparse.Namespace) -> list[tuple[str, str, bool]]:
    """(mode, precision, checkpointing) per row, from ``--configs`` or the ``--modes`` x ``--precisions`` grid."""
    if not args.configs:
        return [(m, p, False) for m in args.modes.split(",") for p in args.precisions.split(",")]
    rows = []
    for entry in args.configs.split(","):
        name, _, extra = entry.partition("+")
        mode, _, precision = name.partition("-")
        if mode not in ("eager", "compiled") or precision not in ("fp32", "bf16") or extra not in ("", "ckpt"):
            raise SystemExit(f"--configs entry {entry!r}: expected MODE-PRECISION[+ckpt], e.g. compiled-bf16+ckpt")
        rows.append((mode, precision, extra == "ckpt"))
    return rows


def _fresh(fn, *args: object) -> dict:  # noqa: ANN001
    """``fn(*args)`` in a fresh process: its own peak memory, and nothing left behind in this one (the process
    inherits ``MALLOC_MMAP_THRESHOLD_``, read by glibc at start-up)."""
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


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
    parser.add_argument(
        "--model", choices=("task", "towers", "valor", "deepavfusion"), help="override the preset's kind of model"
    )
    parser.add_argument("--valor-size", choices=sorted(VALOR_SIZES), default="small", help="--model valor widths")
    parser.add_argument("--visual", help="registered visual backbone (overrides the preset)")
    parser.add_argument("--audio", help="registered audio backbone (overrides the preset)")
    parser.add_argument("--method", help="registered method (--model task; default baseline)")
    parser.add_argument("--task", default="ave", help="registered task (--model task)")
    parser.add_argument("--override", action="append", dest="overrides", help="extra config override (--model task)")
    parser.add_argument("--batch", type=int, help="samples per step (default 8)")
    parser.add_argument("--segments", type=int, help="segments per clip (--model task; default 10)")
    parser.add_argument("--steps", type=int, help="timed steps per configuration (default 10)")
    parser.add_argument("--warmup", type=int, help="untimed steps after the first (compiling) one (default 3)")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--row-timeout", type=int, default=0, help="seconds per configuration (0: no limit)")
    parser.add_argument("--configs", help="rows MODE-PRECISION[+ckpt], comma-separated (overrides modes/precisions)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default); see above")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, for the MFU")
    parser.add_argument("--impls", help=f"--model deepavfusion: implementations, comma-separated, of {IMPLS}")
    parser.add_argument("--size", choices=("base", "small"), default="base", help="--model deepavfusion: widths")
    parser.add_argument("--flops-only", action="store_true", help="count FLOPs (on the meta device), time nothing")
    args = parser.parse_args()
    for key, value in {**DEFAULTS, **PRESETS[args.preset]}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    if args.model == "valor":
        print(json.dumps(valor_benchmark(args), indent=1))
        return
    impls = args.impls.split(",") if args.model == "deepavfusion" else [None]
    if not set(impls) <= {*IMPLS, None}:
        raise SystemExit(f"--impls {args.impls!r}: expected a comma-separated subset of {', '.join(IMPLS)}")
    runs = {impl: argparse.Namespace(**vars(args), impl=impl) for impl in impls}
    flops = {impl: _fresh(count_flops, run) for impl, run in runs.items()}
    rows = [] if args.flops_only else [{"impl": impl, **_fresh(measure, run, *row)} for impl, run in runs.items()
                                       for row in _rows(args)]  # fmt: skip
    timed = [r for r in rows if "samples_per_s" in r]
    eager_fp32 = [r for r in timed if (r["mode"], r["precision"], r["checkpointing"]) == ("eager", "fp32", False)]
    baseline = next((r for r in eager_fp32 if r["impl"] == "seed"), eager_fp32[0] if eager_fp32 else None)
    baseline = baseline or (timed[0] if timed else None)
    peak = _peak_tflops(args)
    for r in timed:
        r["speedup"] = r["samples_per_s"] / baseline["samples_per_s"]
        r["mem_ratio"] = r["peak_mem_mb"] / baseline["peak_mem_mb"]
        r["train_mem_ratio"] = r["train_mem_mb_per_sample"] / baseline["train_mem_mb_per_sample"]
        achieved = flops[r["impl"]]["flops_per_step"] * r["samples_per_s"] / args.batch
        r["tflops"] = achieved / 1e12
        r["mfu"] = achieved / (peak * 1e12) if peak else None
    if args.model == "deepavfusion":
        info = {"flops": {impl: {"gflops_per_sample": f["flops_per_step"] / args.batch / 1e9,
                                 "forward_gflops_per_sample": f["forward_flops_per_step"] / args.batch / 1e9,
                                 "params_m": f["params_m"]} for impl, f in flops.items()}}  # fmt: skip
    else:
        info, rows = flops[None], [{k: v for k, v in r.items() if k != "impl"} for r in rows]
    device = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "cpu"
    task_keys = ("method", "task", "segments", "overrides") if args.model == "task" else ()
    print(json.dumps({"benchmark": "train_step", "device": device, "torch": torch.__version__,
                      "threads": args.threads if device == "cpu" else None,
                      "malloc_mmap_threshold": os.environ["MALLOC_MMAP_THRESHOLD_"] if device == "cpu" else None,
                      **{k: getattr(args, k) for k in ("preset", "model", "visual", "audio", "batch", "steps", "warmup",
                                                       *task_keys)},
                      **({"size": args.size} if args.model == "deepavfusion" else {}), **info,
                      "peak_bf16_tflops": peak, "baseline": _baseline_name(baseline),
                      "results": rows}, indent=1))  # fmt: skip


def _baseline_name(row: dict | None) -> str | None:
    if row is None:
        return None
    name = f"{row['mode']} {row['precision']}" + (" +ckpt" if row["checkpointing"] else "")
    return f"{row['impl']} {name}" if row.get("impl") else name


# ---- VALOR (preset valor_b)
VALOR_SIZES = {
    "small": {"image": 224, "patch": 32, "visual_width": 256, "visual_layers": 4, "width": 256, "layers": 4,
              "heads": 4, "contra": 256, "mel_bins": 64, "audio_frames": 512},
    "full": {"image": 224, "patch": 14, "visual_width": 1024, "visual_layers": 24, "width": 768, "layers": 12,
             "heads": 12, "contra": 512, "mel_bins": 64, "audio_frames": 512},
}  # fmt: skip
VALOR_FRAMES, VALOR_TEXT = 4, 32
VALOR_TASK = "pt_contra%tva%tv%ta_caption%tva%tv%ta"  # the seed's VALOR-1M pretraining task string


def _valor_models(args: argparse.Namespace, impl: str) -> tuple[nn.Module, dict, object]:
    """avlearn's or the seed's VALOR on ``args.device`` and its batch (the same media for both)."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reference"))
    import oracles

    device = torch.device(args.device)
    size = oracles.ValorSize(**VALOR_SIZES[args.valor_size])
    torch.manual_seed(0)
    ours = oracles.valor_ours(size) if impl == "avlearn" else None
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (args.batch, VALOR_FRAMES, size.image, size.image, 3), dtype=torch.uint8,
                           generator=g)  # fmt: skip
    audio = torch.randn(args.batch, 1, size.mel_bins, size.audio_frames, generator=g)  # one 5.12 s clip
    lengths = torch.randint(8, VALOR_TEXT - 1, (args.batch, 1), generator=g)
    ids = torch.randint(1000, 30000, (args.batch, VALOR_TEXT), generator=g)
    position = torch.arange(VALOR_TEXT)[None]
    ids = torch.where(position == 0, 101, torch.where(position == lengths, 102, ids)) * (position <= lengths)
    if impl == "avlearn":
        batch = {"frames": frames, "audio": audio, "text_ids": ids, "text_mask": (ids != 0).long()}
        return ours.to(device), {k: v.to(device) for k, v in batch.items()}, None
    seed, pretrain = oracles.valor_seed(size)
    pretrain.ddp_allgather_with_grads, pretrain.ddp_allgather = SimpleNamespace(apply=lambda x: x), lambda x: x
    if device.type == "cpu":
        torch.Tensor.cuda = lambda self, *a, **k: self  # the seed moves its masks with .cuda() (fresh process)
    from avlearn.backbones.preprocess import CLIP_MEAN, CLIP_STD, ImagePreprocess

    pixels = ImagePreprocess((size.image, size.image), CLIP_MEAN, CLIP_STD)(frames.flatten(0, 1))
    batch = {"txt_tokens": {"bert_tokens": ids.to(device)}, "audio_spectrograms": audio.to(device),
             "video_pixels": pixels.unflatten(0, frames.shape[:2]).to(device)}  # fmt: skip
    return seed.to(device), batch, pretrain


def _valor_loss(impl: str, model: nn.Module, batch: dict) -> torch.Tensor:
    if impl == "avlearn":
        return sum(model(batch).losses.values())
    return sum(model.forward_pt(batch, VALOR_TASK).values())


def _valor_train(args: argparse.Namespace, impl: str, precision: str) -> dict[str, float | str]:
    """Pretraining steps of one implementation (runs in a fresh process)."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model, batch, _ = _valor_models(args, impl)
    model.train()
    base = _memory(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.98), weight_decay=0.01)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=precision == "bf16"):
            loss = _valor_loss(impl, model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        return float(loss)

    started = time.perf_counter()
    step()
    first = time.perf_counter() - started
    for _ in range(args.warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    _sync(device)
    seconds = (time.perf_counter() - started) / args.steps
    mb = 2**20
    return {"row": f"train-{impl}-{precision}", "samples_per_s": args.batch / seconds, "step_ms": 1e3 * seconds,
            "first_step_s": first, "peak_mem_mb": _memory(device) / mb, "base_mem_mb": base / mb,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "final_loss": loss}  # fmt: skip


@torch.no_grad()
def _valor_decode(args: argparse.Namespace, impl: str) -> dict[str, float | str]:
    """Captions of the batch (encoders + beam 3, 30 tokens, the t-va group), timed once after one warm-up run;
    ``impl`` is ``avlearn-cached``, ``avlearn-uncached`` or ``seed``."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model, batch, _ = _valor_models(args, impl.split("-")[0])
    model.eval()

    def run() -> None:
        if impl == "seed":
            model.beam_size = 3
            model.generate_cap(dict(batch), ["tva"])
        else:
            memory = model.memory(model.encode_visual(batch["frames"]), model.encode_audio(batch["audio"]))["tva"]
            model.generate(memory, 30, beam_size=3, use_cache=impl == "avlearn-cached")

    run()
    _sync(device)
    started = time.perf_counter()
    run()
    _sync(device)
    seconds = time.perf_counter() - started
    return {"row": f"decode-{impl}", "captions_per_s": args.batch / seconds, "batch_s": seconds}


def valor_benchmark(args: argparse.Namespace) -> dict:
    """The ``valor_b`` JSON: training rows (each in a fresh process) and decoding rows, with speedups against the
    seed's row of the same kind."""
    precisions = ["fp32", "bf16"] if args.device.startswith("cuda") else ["fp32"]
    train = [_fresh(_valor_train, args, "avlearn", p) for p in precisions] + [
        _fresh(_valor_train, args, "seed", "fp32")
    ]
    decode = [_fresh(_valor_decode, args, impl) for impl in ("avlearn-cached", "avlearn-uncached", "seed")]
    for rows, key in ((train, "samples_per_s"), (decode, "captions_per_s")):
        for r in rows:
            r["speedup_vs_seed"] = r[key] / rows[-1][key]
    device = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "cpu"
    return {"benchmark": "train_step", "preset": args.preset, "device": device, "torch": torch.__version__,
            "threads": args.threads if device == "cpu" else None, "valor_size": args.valor_size,
            "sizes": VALOR_SIZES[args.valor_size], "batch": args.batch, "frames": VALOR_FRAMES, "audio_clips": 1,
            "text_tokens": VALOR_TEXT, "steps": args.steps, "warmup": args.warmup, "train": train,
            "decode": decode}  # fmt: skip


if __name__ == "__main__":
    main()
