"""Fixtures for the ``avlearn.io`` tests: a session folder and media shared by several tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from io_media import chirp, index_frames


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder for media shared by several tests."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def plain_mp4(media_dir: Path) -> Path:
    """5 s, 8 fps, 32x32 index frames + 16 kHz mono chirp, written by ``avlearn.io.write_video``."""
    from avlearn.io import write_video

    path = media_dir / "plain.mp4"
    write_video(path, index_frames(40), 8, chirp(5.0, 16000), 16000)
    return path
