"""Fixtures of the dataset reader tests."""

from pathlib import Path

import pytest
from dataset_paths import FIXTURES


@pytest.fixture
def fixtures() -> Path:
    """tests/fixtures/datasets: small excerpts of the real annotation files."""
    return FIXTURES
