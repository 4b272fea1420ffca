"""The two-process spawner of the distributed tests turns a rank that never exits into a failure, not a hang."""

from __future__ import annotations

import time

import pytest

from two_processes import spawn_two


def _sleeper(rank: int, port: int, seconds: float) -> None:
    time.sleep(seconds if rank == 1 else 0.0)


def test_a_rank_past_the_deadline_fails_the_test_and_is_killed():
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"rank\(s\) \[1\] of the two gloo processes still running"):
        spawn_two(_sleeper, 120.0, timeout=5.0)
    assert time.monotonic() - start < 60  # killed, not waited for


def test_ranks_that_finish_in_time_pass():
    spawn_two(_sleeper, 0.0, timeout=120.0)
