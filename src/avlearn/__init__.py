"""avlearn: one toolkit for audio-visual(-language) deep learning.

Importing ``avlearn`` is cheap; ``register_all()`` imports every component package so that the registries
(``avlearn.registry``) are complete — the CLI and the config system call it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_COMPONENT_PACKAGES = (
    "avlearn.backbones",
    "avlearn.methods",
    "avlearn.tasks",
    "avlearn.data.datasets",
    "avlearn.metrics",
)


def register_all() -> None:
    """Import every component package (their decorators fill the registries)."""
    for name in _COMPONENT_PACKAGES:
        importlib.import_module(name)
