"""Mapping a function over jobs in worker processes, in order, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def parallel_map(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    workers: int = 1,
    desc: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> list[Any]:
    """``[fn(job) for job in jobs]``, over ``workers`` processes when > 1 (``fn`` must be picklable).

    Progress: a tqdm bar titled ``desc`` (clips/s and ETA), or, without ``desc``, ``progress(1)`` after each job.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="clip", leave=False, dynamic_ncols=True) if desc else None
    step = bar.update if bar is not None else progress
    out: list[Any] = []
    try:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(fn, jobs, chunksize=8):
                    out.append(result)
                    if step:
                        step(1)
        else:
            for job in jobs:
                out.append(fn(job))
                if step:
                    step(1)
    finally:
        if bar is not None:
            bar.close()
    return out
