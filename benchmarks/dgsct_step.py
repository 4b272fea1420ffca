"""DG-SCT training-step speed and memory at paper size (Swin-V2-L 192 + HTS-AT, 12 pairs x 4 adapters), with CMBS.

    python benchmarks/dgsct_step.py                         # batch 2, 10 segments, 2 timed steps, CPU
    python benchmarks/dgsct_step.py --segments 2 --steps 1  # smaller, for a 2-core machine with 24 GB

Prints one JSON object: seconds per optimizer step (forward, backward, AdamW on the adapters and the head; backbones
frozen, random init), peak resident memory, parameter counts, and the baseline measured in the same run: the same
frozen backbones run without adapters (forward only, since nothing inside them trains) plus the same head.
Written as its own file because ``benchmarks/train_step.py`` did not exist yet; same JSON shape as the other
benchmarks (one object, ``baseline`` inside).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _batch(batch: int, segments: int) -> dict[str, torch.Tensor]:
    frames = torch.randint(0, 256, (batch, segments, 192, 192, 3), dtype=torch.uint8)
    mel = torch.randn(batch, segments, 64, 100)  # one-second HTS-AT log-mel (32 kHz, hop 320), tiled 10x
    labels = torch.randint(0, 29, (batch, segments))
    return {"frames": frames, "audio": mel, "labels": labels}


def _time_steps(step, steps: int) -> float:  # noqa: ANN001
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import avlearn.backbones  # noqa: F401
    from avlearn.methods.base import AVFeatures
    from avlearn.methods.dgsct import DGSCT, DGSCTConfig
    from avlearn.registry import BACKBONES
    from avlearn.tasks.ave import AVEConfig, AVETask
    from avlearn.tasks.base import DatasetInfo

    visual = BACKBONES.build("swinv2_large_192").freeze("all")
    audio = BACKBONES.build("htsat_base").freeze("all")
    method = DGSCT(DGSCTConfig(), visual, audio)
    info = DatasetInfo(tuple(f"c{i}" for i in range(28)))
    task = AVETask(AVEConfig(head="cmbs"), method, info).train()
    batch = _batch(args.batch, args.segments)
    trainable = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-4)

    def dgsct_step() -> None:
        task(batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    dgsct_seconds = _time_steps(dgsct_step, args.steps)
    dgsct_peak = _rss_gb()

    class _Plain(torch.nn.Module):
        """The frozen backbones without adapters, mean-pooled: the baseline's features."""

        out_dim, audio_dim = visual.num_features, audio.num_features

        def forward(self, b: dict) -> AVFeatures:
            n, s = b["frames"].shape[:2]
            with torch.no_grad():
                v = visual.forward_features(pixel_values=visual.preprocess(b["frames"].flatten(0, 1)))
                spec = b["audio"].flatten(0, 1).repeat(1, 1, 10).transpose(1, 2)  # (B*S, 10 T, F)
                a = audio.forward_features(spectrogram=spec)
            return AVFeatures(audio_pooled=a.mean(1).unflatten(0, (n, s)), visual_pooled=v.mean(1).unflatten(0, (n, s)))

    plain = AVETask(AVEConfig(head="cmbs"), _Plain(), info).train()
    plain_opt = torch.optim.AdamW(plain.head.parameters(), lr=5e-4)

    def plain_step() -> None:
        plain(batch)["loss"].backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    plain_seconds = _time_steps(plain_step, args.steps)
    print(json.dumps({
        "benchmark": "dgsct_step", "device": "cpu", "threads": torch.get_num_threads(), "batch": args.batch,
        "segments": args.segments, "steps": args.steps,
        "params_total_m": round(sum(p.numel() for p in task.parameters()) / 1e6, 1),
        "params_trainable_m": round(sum(p.numel() for p in trainable) / 1e6, 1),
        "seconds_per_step": round(dgsct_seconds, 2), "peak_rss_gb": round(dgsct_peak, 2),
        "baseline": {"name": "frozen backbones without adapters + CMBS head",
                     "seconds_per_step": round(plain_seconds, 2)},
        "slowdown_vs_baseline": round(dgsct_seconds / plain_seconds, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
