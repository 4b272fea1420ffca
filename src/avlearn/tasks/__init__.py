"""Tasks: one file per task (batch contract, head, loss, predict, score). Importing registers them all."""

from avlearn.tasks import ave, avqa, avs, avvp, fewshot, zeroshot  # noqa: F401
from avlearn.tasks.base import DatasetInfo

__all__ = ["DatasetInfo"]
