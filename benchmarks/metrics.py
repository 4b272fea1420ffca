"""Scoring speed: AVVP on the full LLP test set and BSS Eval on two-source mixtures, against baselines.

    python benchmarks/metrics.py                       # 1 thread, 100 mixtures of 10 s at 16 kHz
    python benchmarks/metrics.py --mixtures 10 --threads 2

Prints one JSON object. AVVP: ``avlearn score avvp`` end to end (parsing included) on the 1200 test
videos of ../shared/data/LLP, predictions = the ground truth shifted by one second; the baseline is the
reference evaluation's per-video, per-class loop over the same arrays. Separation: avlearn's batched
``bss_eval_sources`` against ``mir_eval.separation.bss_eval_sources`` (compute_permutation=False) on the
same random mixtures, with the largest difference in dB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

LLP = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "LLP"


def _best_of(fn, repeats: int) -> tuple[float, object]:
    """Smallest wall time of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def _loop_f(pred, gt, events: bool) -> float:
    """One video, one stream: the reference's class loop (segment or event level)."""
    import numpy as np

    def runs(row):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        return list(zip(edges[0::2], edges[1::2], strict=True))

    def hit(a, b) -> bool:
        inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
        return inter >= 0.5 * (a[1] - a[0] + b[1] - b[0] - inter)

    scores = []
    for p, g in zip(pred, gt, strict=True):
        if events:
            pr, gr = runs(p), runs(g)
            tp = sum(any(hit(a, b) for b in gr) for a in pr)
            fp, fn = len(pr) - tp, sum(not any(hit(b, a) for a in pr) for b in gr)
        else:
            tp, fp, fn = int((p & g).sum()), int((p & ~g).sum()), int((~p & g).sum())
        if tp + fp or tp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 1.0


def bench_avvp(repeats: int) -> dict:
    """avlearn's AVVP scorer (files to metrics) vs the per-video loop on the decoded arrays."""
    from avlearn.metrics.avvp import events_to_segments, read_event_file, score_avvp, write_event_file

    gt = [LLP / "AVVP_eval_audio.csv", LLP / "AVVP_eval_visual.csv", LLP / "AVVP_test_pd.csv"]
    ids = [line.split("\t")[0] for line in gt[2].read_text().splitlines()[1:]]
    keep = set(ids)
    with tempfile.TemporaryDirectory() as tmp:
        pred = []
        for src in gt[:2]:
            rows = [(v, min(a + 1, 10), min(b + 1, 10), c) for v, a, b, c in read_event_file(src) if v in keep]
            write_event_file(Path(tmp) / src.name, rows)
            pred.append(Path(tmp) / src.name)
        ours, result = _best_of(lambda: score_avvp(pred, gt), repeats)
        arrays = [events_to_segments([r for r in read_event_file(p) if r[0] in keep], ids) for p in (*pred, *gt[:2])]
    pa, pv, ga, gv = arrays

    def loop() -> list[float]:
        streams = ((pa, ga), (pv, gv))
        return [_loop_f(p[b], g[b], e) for e in (False, True) for p, g in streams for b in range(len(ids))]

    baseline, _ = _best_of(loop, 1)
    speed = {"videos": len(ids), "avlearn_s": ours, "loop_baseline_s": baseline, "speedup": baseline / ours}
    return speed | {k: result[k] for k in ("segment_type_at_av", "event_type_at_av")}


def bench_separation(mixtures: int, seconds: float, sample_rate: int) -> dict:
    """avlearn's batched BSS Eval vs mir_eval on random coloured two-source mixtures."""
    import mir_eval
    import numpy as np

    from avlearn.metrics.separation import bss_eval_sources

    rng = np.random.default_rng(0)
    length = int(seconds * sample_rate)
    refs = np.cumsum(rng.standard_normal((mixtures, 2, length)), axis=-1) * 0.01 + rng.standard_normal(
        (mixtures, 2, length)
    )
    ests = 0.8 * refs + 0.2 * refs[:, ::-1] + 0.1 * rng.standard_normal(refs.shape)
    bss_eval_sources(refs[:1], ests[:1])  # warm-up: torch import and kernels
    ours, result = _best_of(lambda: bss_eval_sources(refs, ests), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in mir_eval 0.8
        start = time.perf_counter()
        want = [
            mir_eval.separation.bss_eval_sources(r, e, compute_permutation=False)
            for r, e in zip(refs, ests, strict=True)
        ]
        baseline = time.perf_counter() - start
    diff = max(
        float(np.abs(result[k] - np.stack([w[i] for w in want])).max()) for i, k in enumerate(("sdr", "sir", "sar"))
    )
    return {"mixtures": mixtures, "seconds": seconds, "sample_rate": sample_rate, "avlearn_s": ours,
            "mir_eval_s": baseline, "speedup": baseline / ours, "max_abs_diff_db": diff,
            "mean_sdr": float(result["sdr"].mean())}  # fmt: skip


def main() -> None:
    """Parse options, pin the thread count, run both benchmarks and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixtures", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    out = {"threads": args.threads}
    out["avvp"] = (
        bench_avvp(args.repeats) if (LLP / "AVVP_eval_audio.csv").exists() else "skipped: no ../shared/data/LLP"
    )
    out["separation"] = bench_separation(args.mixtures, args.seconds, args.sample_rate)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
