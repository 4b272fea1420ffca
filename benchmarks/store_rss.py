"""Peak memory of training from a clip store vs holding the split in memory, for N and 10 N clips.

For each size, AVSynth's event part (``data.clips`` = N, 64 px) is generated, its videos are extracted into a clip
store (``avlearn extract --fps 2 --size 64 --duration 10``), and ``avlearn train`` (AVE, baseline method, small
CNNs, ``--steps`` optimizer steps of batch 8, no validation, no test, no checkpoint) runs in a fresh process twice:
from the store with ``data.preload=false`` (lazy samples) and with ``data.preload=true`` (the split decoded into
memory). The peak RSS of each training process (``wait4``'s ``ru_maxrss``, imports and the model included) is
reported; the store path should stay flat when the store grows tenfold, the in-memory path grows with it.

Run: ``python benchmarks/store_rss.py [--clips 40] [--steps 8]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

COMMON = ["task=ave", "method=baseline", "backbone=small_cnn", "data.workers=1", "train.batch_size=8",
          "train.val_every=-1", "train.select=last", "train.test=false", "train.checkpoint=false",
          "train.loader_workers=0"]  # fmt: skip


def _peak_rss_mb(cmd: list[str], env: dict[str, str]) -> float:
    """Run ``cmd`` to completion and return its peak RSS in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return round(usage.ru_maxrss / 1024, 1)


def measure(clips: int, steps: int, work: Path) -> dict[str, float]:
    """Peak RSS of the store and in-memory training runs on ``clips`` AVSynth clips."""
    env = {**os.environ, "AVLEARN_CACHE": str(work / f"cache{clips}")}
    avlearn = [sys.executable, "-m", "avlearn"]
    sized = [*COMMON, f"data.clips={clips}", f"train.steps={steps}", f"out={work / 'runs'}"]
    # A one-step run generates AVSynth in the cache.
    subprocess.run([*avlearn, "train", *sized, "train.steps=1", "data.preload=false"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    videos = next(p for p in (work / f"cache{clips}").iterdir() if p.is_dir()) / "videos"
    store = work / f"store{clips}"
    subprocess.run([*avlearn, "extract", str(videos), "--out", str(store), "--fps", "2", "--size", "64",
                    "--duration", "10", "--workers", "2", "--no-progress"], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return {
        "store_mb": _peak_rss_mb([*avlearn, "train", *sized, f"data.store={store}", "data.preload=false"], env),
        "in_memory_mb": _peak_rss_mb([*avlearn, "train", *sized, "data.preload=true"], env),
    }


def main() -> None:
    """Parse the options, measure both sizes, print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40, help="the smaller size N (default 40)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (default 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {n: measure(n, args.steps, Path(tmp)) for n in (args.clips, 10 * args.clips)}
    print(json.dumps({"peak_rss_mb": {str(n): v for n, v in sizes.items()}, "steps": args.steps}, indent=1))


if __name__ == "__main__":
    main()
