"""Building blocks shared by several task heads (and methods): ``nn.Module``s and the functions that feed them.

A block used by one task stays in that task's file; a block a second task needs moves here, so that no task file
imports another (tests/unit/core/test_layering.py).
"""

from avlearn.layers.prompts import embed_prompts
from avlearn.layers.temporal import GatedTemporalEncoder

__all__ = ["GatedTemporalEncoder", "embed_prompts"]
