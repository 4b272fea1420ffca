"""Loader benchmark: clips/s delivered to a training step by the lazy segment dataset, from a store and from videos.

A clip is what the AVE pipeline feeds a model: 10 frames at 224 x 224 (uint8) and the log-mel of 10 s of 16 kHz
audio cut into 10 one-second pieces (64 mel bins, 10 ms hop: ``(10, 64, 100)`` float32), with its labels. Clips
come from AVSynth (``SynthConfig(size=224, seconds=10, fps=--source-fps)``, H.264 + AAC) and are extracted into two
clip stores (``avlearn.data.extract``, ``--fps 1 --size 224 --duration 10``): one that also holds each clip's log-mel
(``log_mel=AUDIO``, what ``avlearn extract --log-mel`` stores) and one without. Each row iterates a
``torch.utils.data.DataLoader`` over ``avlearn.data.segments.LazySegments`` (the dataset ``avlearn train
data.store=... data.preload=false`` trains from) with the engine's worker initialiser, in batches of ``--batch``,
the consumer doing nothing (an infinitely fast training step):

- ``store_w1``, ``store_w2``: from the store with the log-mel, 1 and 2 loader workers (nothing is computed: the
  worker reads frames and log-mel, and batches them);
- ``store_mel_computed_w1``: from the store without the log-mel: the worker computes it from the waveform (the
  log-mel of 10 s is most of the worker's CPU time);
- ``direct_w1``, ``direct_w2``: decoding the videos (``read_clip``) in 1 and 2 workers;
- ``store_raw_w1``: frames + waveform from the store without the log-mel, what a model that computes its
  features on the device in batches would be fed (the training process's cost of that log-mel is not counted).

``clips_per_s`` counts the clips after the first batch (worker start-up excluded; ``first_batch_s`` is reported
apart), ``per_worker`` divides it by the workers; ``clips_per_worker_cpu_s`` divides all clips by the CPU time the
workers used (start-up included), the figure that does not depend on how loaded the machine is. The store rows read
each clip ``--repeat`` times (random order), the direct rows each video 3 times. The machine's load average is
reported: on a shared machine the 2-worker rows cannot double the 1-worker ones.

Run: ``python benchmarks/loader.py [--clips 16] [--repeat 20] [--source-fps 25]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.data.extract import ClipSpec, extract
from avlearn.data.parallel import worker_init
from avlearn.data.segments import LazySegments

SECONDS, SIZE, SAMPLE_RATE = 10, 224, 16000
AUDIO = AudioPreprocess(SAMPLE_RATE, "log_mel", 64, 100, 512, 160, 400)  # (S, 64, 100) per clip


def _videos(work: Path, clips: int, source_fps: int) -> list[Path]:
    from avlearn.data.synth import SynthConfig, generate

    cfg = SynthConfig(clips=clips, size=SIZE, seconds=SECONDS, fps=source_fps, avs_clips=0, avqa_clips=0)
    root = generate(work / "avsynth", cfg, workers=2)
    return sorted((root / "videos").glob("*.mp4"))


class RawSegments(Dataset):
    """The store's clips without audio features: frames ``(S, H, W, 3)`` and the waveform, as a model computing its
    log-mel on the device (batched) would take them."""

    def __init__(self, data: LazySegments) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        frames, wave = self.data.arrays(i)
        return {"frames": torch.from_numpy(frames), "wave": torch.from_numpy(wave), "id": self.data.items[i][0]}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _rate(data: Dataset, order: list[int], workers: int, batch: int) -> dict[str, float]:
    """Iterate ``data`` in ``order`` with ``workers`` loader workers; clips/s after the first batch, and clips per
    CPU-second of the workers (start-up included; they are joined when the loader ends)."""
    loader = DataLoader(Subset(data, order), batch_size=batch, num_workers=workers, worker_init_fn=worker_init())
    cpu, started = _children_cpu(), time.perf_counter()
    count, first = 0, None
    for item in loader:
        if first is None:
            first = time.perf_counter()
        else:
            count += len(item["id"])
    seconds = time.perf_counter() - first
    del loader  # joins the workers, so that their CPU time is counted
    return {
        "workers": workers,
        "clips": count,
        "clips_per_s": round(count / seconds, 1),
        "per_worker": round(count / seconds / workers, 1),
        "clips_per_worker_cpu_s": round(len(order) / (_children_cpu() - cpu), 1),
        "first_batch_s": round(first - started, 2),
    }


def run(clips: int, repeat: int, source_fps: int, batch: int) -> dict:
    """Make the clips and the two stores, then time each row."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        videos = {p.stem: p for p in _videos(work, clips, source_fps)}
        spec = ClipSpec(fps=1, size=SIZE, sample_rate=SAMPLE_RATE, duration=SECONDS)
        extract(videos, work / "store", spec, workers=2, log_mel=AUDIO, segments=SECONDS)
        extract(videos, work / "store_wave", spec, workers=2)
        setup_s = time.perf_counter() - started
        items = [(key, path, np.zeros(SECONDS, np.int64)) for key, path in videos.items()]
        store = LazySegments(items, SIZE, AUDIO, SECONDS, store=work / "store")
        computing = LazySegments(items, SIZE, AUDIO, SECONDS, store=work / "store_wave")
        direct = LazySegments(items, SIZE, AUDIO, SECONDS)
        order = torch.randperm(len(items) * repeat, generator=torch.Generator().manual_seed(0)) % len(items)
        again = (torch.arange(len(items) * 3) % len(items)).tolist()  # 3 reads of each video
        rows = {}
        for workers in (1, 2):
            rows[f"store_w{workers}"] = _rate(store, order.tolist(), workers, batch)
            rows[f"direct_w{workers}"] = _rate(direct, again, workers, batch)
        rows["store_mel_computed_w1"] = _rate(computing, order.tolist(), 1, batch)
        rows["store_raw_w1"] = _rate(RawSegments(computing), order.tolist(), 1, batch)
        store_bytes = sum(f.stat().st_size for f in (work / "store").glob("*.tar"))
        wave_bytes = sum(f.stat().st_size for f in (work / "store_wave").glob("*.tar"))
    return {
        "clip": {"frames": [SECONDS, SIZE, SIZE, 3], "audio": [SECONDS, AUDIO.num_mel_bins, AUDIO.num_frames]},
        "rows": rows,
        "store_mb_per_clip": round(store_bytes / len(items) / 2**20, 2),
        "store_without_log_mel_mb_per_clip": round(wave_bytes / len(items) / 2**20, 2),
        "batch": batch,
        "setup_s": round(setup_s, 1),
        "load_average_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }


def main() -> None:
    """Parse the options, run, print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16, help="AVSynth clips (default 16)")
    parser.add_argument("--repeat", type=int, default=20, help="reads of each clip in the store rows (default 20)")
    parser.add_argument("--source-fps", type=int, default=25, help="frame rate of the source videos (default 25)")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch (default 8)")
    args = parser.parse_args()
    print(json.dumps(run(args.clips, args.repeat, args.source_fps, args.batch), indent=1))


if __name__ == "__main__":
    main()
