"""Worker processes: mapping a function over jobs in order with a progress bar, and tying workers to their parent.

Pools start their workers by ``spawn`` (see ``process_pool``). ``die_with_parent`` is the initialiser of every
worker process avlearn starts (``parallel_map``, ``avlearn extract``'s decoders, the engine's DataLoader workers):
on Linux it asks the kernel to kill the worker when the process that started it dies (``prctl(PR_SET_PDEATHSIG,
SIGKILL)``), so a ``kill -9`` of ``avlearn extract`` or ``avlearn train`` leaves no decoder behind, blocked on a
pipe nobody reads. Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int, *_: object) -> None:
    """Kill this process with SIGKILL when its parent dies; exit now if ``parent`` (a pid) is already gone.

    Extra positional arguments are ignored, so ``functools.partial(die_with_parent, os.getpid())`` also serves as
    a DataLoader ``worker_init_fn`` (called with the worker id).
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # not fatal: the worker only loses the guarantee
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def worker_init() -> Callable[..., None]:
    """A picklable initialiser for workers started by this process (see ``die_with_parent``)."""
    return functools.partial(die_with_parent, os.getpid())


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` whose workers die with this process, started by ``spawn``: a forked worker inherits
    locks held by this process's other threads (swscale's slice threads, OpenMP, tokenizers) and can block on one
    forever (seen: an AVSynth writer stuck in swscale's slice-thread teardown)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init())


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
            with process_pool(workers) as pool:
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
