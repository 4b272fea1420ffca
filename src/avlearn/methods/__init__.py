"""Methods: one file per paper (plus the baseline). Importing this package registers them all."""

from avlearn.methods.base import AVFeatures, Method, check_pairing
from avlearn.registry import register_package

register_package(__name__, __path__)

__all__ = ["AVFeatures", "Method", "check_pairing"]
