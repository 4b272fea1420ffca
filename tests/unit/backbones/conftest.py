"""Backbone tests run their tiny models on one CPU thread.

The tiny models take milliseconds; with two intra-op threads on a busy 2-core machine, OpenMP's spinning threads made
the same calls take seconds. The previous thread count is restored after the package.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def one_thread() -> Iterator[None]:
    """``torch.set_num_threads(1)`` for the duration of the backbone tests."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
