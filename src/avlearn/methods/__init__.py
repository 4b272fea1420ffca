"""Methods: one file per paper (plus the baseline). Importing this package registers them all."""

from avlearn.methods import baseline, dgsct  # noqa: F401
from avlearn.methods.base import AVFeatures, Method, check_pairing

__all__ = ["AVFeatures", "Method", "check_pairing"]
