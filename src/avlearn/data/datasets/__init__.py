"""Dataset readers, one file per benchmark, each reading the published layout. Importing registers them.

Every reader takes ``(root, split, missing="error", media=None, decode=None)`` (plus its own options), gives
``records`` (``avlearn.data.schema.Record``), the label space ``classes`` and ``info``, and decodes samples by
index; ``base.py`` has the shared machinery, ``media.py`` the media kinds (files, frame folders, clip stores) and
``avlearn.data.textfiles`` the annotation-file helpers (shared with the scorers).
"""

from avlearn.registry import register_package

register_package(__name__, __path__)
