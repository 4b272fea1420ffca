"""Shared paths for the scorer tests."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"


@pytest.fixture
def fixtures() -> Path:
    """tests/fixtures/metrics."""
    return FIXTURES
