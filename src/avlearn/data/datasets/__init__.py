"""Dataset readers, one file per benchmark, each reading the published layout. Importing registers them."""

from avlearn.data.datasets import ave  # noqa: F401
