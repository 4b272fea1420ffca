"""Spawn the two gloo processes of a distributed test, with a deadline instead of an unbounded join.

Imported by the tests as ``two_processes`` (``tests/`` holds the root conftest, so it is on ``sys.path`` under pytest
and in the processes spawned from it). A rank that never exits (seen once: a gloo process group outliving its
test at interpreter exit) becomes a test failure naming the rank, with both processes killed, not a hung suite.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_two(worker: Callable, *args: object, timeout: float = 300.0) -> None:
    """Run ``worker(rank, port, *args)`` in two spawned processes; fail the test if they are not done in ``timeout`` s.

    A worker's exception is re-raised here (``ProcessRaisedException``), as ``mp.spawn(join=True)`` does.
    """
    context = mp.start_processes(worker, args=(free_port(), *args), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=max(0.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            alive = [rank for rank, p in enumerate(context.processes) if p.is_alive()]
            for p in context.processes:
                p.kill()
            pytest.fail(f"rank(s) {alive} of the two gloo processes still running after {timeout:.0f} s; killed")
