"""The one error of the media layer: a file that cannot be read as asked, named with the reason."""

from __future__ import annotations

from pathlib import Path

from avlearn.errors import AvlearnError


class MediaError(AvlearnError):
    """A media file that is missing, empty, corrupt, truncated, not media, or lacks what was asked for.

    The message is ``"<path>: <reason>"``; ``path`` and ``reason`` are kept as attributes so that
    ``avlearn extract`` can write them to its failure manifest.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[MediaError], tuple[str, str]]:
        # Pickling (to and from worker processes) rebuilds the error from both fields.
        return (type(self), (self.path, self.reason))
