"""The reference tier: parity with the seeds' own modules (``make test-reference``; skipped without
``../shared/reference``). Every test here is marked ``reference`` and excluded from the default run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the oracle helpers (oracles.py) import as a plain module


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reference)
