"""Paths shared by the dataset reader tests: the excerpt fixtures and ../shared/data (beside the checkout, as in CI)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "datasets"
SHARED = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "AVE" / "Annotations.txt").is_file(), reason="../shared/data is absent")
