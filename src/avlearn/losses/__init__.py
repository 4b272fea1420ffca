"""Loss functions shared by several tasks (and methods): plain functions of tensors, no parameters."""

from avlearn.losses.contrastive import info_nce, symmetric_nce

__all__ = ["info_nce", "symmetric_nce"]
