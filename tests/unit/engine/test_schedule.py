"""Warmup + cosine learning-rate factor."""

from __future__ import annotations

import pytest

from avlearn.engine.loop import warmup_cosine


def test_linear_warmup_then_cosine_to_zero():
    assert [warmup_cosine(s, total=100, warmup=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(4, 100, 4) == pytest.approx(1.0)
    assert warmup_cosine(52, 100, 4) == pytest.approx(0.5)  # half way through the decay
    assert warmup_cosine(100, 100, 4) == pytest.approx(0.0) and warmup_cosine(150, 100, 4) == pytest.approx(0.0)
