"""The backbone zoo: one file per family on ``transformers`` model classes, registered in ``BACKBONES``.

``BACKBONES.build("clip_vit_b16", pretrained="openai/clip-vit-base-patch16")`` returns a :class:`Backbone` (contract
in :mod:`avlearn.backbones.base`); every family also registers a ``<family>_tiny`` size for tests. Importing this
package registers them all.
"""

from avlearn.backbones import ast, bert, clap, clip, cnn, features, swinv2, video_swin, videomae, vit, vit_mae
from avlearn.backbones.base import FREEZE_POLICIES, Backbone, Hidden, WeightsNotFoundError
from avlearn.backbones.preprocess import AudioPreprocess, ImagePreprocess, TextPreprocess

__all__ = [
    "FREEZE_POLICIES",
    "AudioPreprocess",
    "Backbone",
    "Hidden",
    "ImagePreprocess",
    "TextPreprocess",
    "WeightsNotFoundError",
    "ast",
    "bert",
    "clap",
    "clip",
    "cnn",
    "features",
    "swinv2",
    "video_swin",
    "videomae",
    "vit",
    "vit_mae",
]
