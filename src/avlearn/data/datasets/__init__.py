"""Dataset readers, one file per benchmark, each reading the published layout. Importing registers them.

Every reader takes ``(root, split, missing="error", media=None, decode=None)`` (plus its own options), gives
``records`` (``avlearn.data.schema.Record``), the label space ``classes`` and ``info``, and decodes samples by
index; ``base.py`` has the shared machinery, ``media.py`` the media kinds (files, frame folders, clip stores) and
``avlearn.data.textfiles`` the annotation-file helpers (shared with the scorers).
"""

from avlearn.data.datasets import (  # noqa: F401
    audioset,
    ave,
    avsbench,
    coop,
    esc50,
    imagenet_esc,
    llp,
    msrvtt,
    music_avqa,
    ucf101,
    valor32k,
    vggsound,
    vggsound_avel40k,
)
