"""Tasks: one file per task (batch contract, head, loss, predict, score). Importing registers them all."""

from avlearn.registry import register_package
from avlearn.tasks.base import DatasetInfo

register_package(__name__, __path__)

__all__ = ["DatasetInfo"]
