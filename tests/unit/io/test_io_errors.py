"""Files that are not readable media raise ``MediaError(path, reason)``, never a PyAV traceback or a stand-in."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from io_media import index_frames, mux

from avlearn.errors import AvlearnError
from avlearn.io import MediaError, read_audio, read_clip


def _expect(path: Path, reason: str) -> MediaError:
    with pytest.raises(MediaError, match=reason) as info:
        read_clip(path, fps=1)
    assert info.value.path == str(path) and str(info.value).startswith(f"{path}: ")
    return info.value


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.mp4", "no such file")
    _expect(tmp_path, "is a directory")


def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    _expect(path, r"empty file \(0 bytes\)")
    with pytest.raises(MediaError, match="empty file"):
        read_audio(path)


def test_not_media(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is a text file, not a video\n" * 20)
    _expect(path, "not a readable media file")


def test_truncated(plain_mp4: Path, tmp_path: Path) -> None:
    path = tmp_path / "half.mp4"
    path.write_bytes(plain_mp4.read_bytes()[: plain_mp4.stat().st_size // 2])  # the index (moov) is at the end
    _expect(path, "not a readable media file")


def test_truncated_stream_whose_header_survives(tmp_path: Path) -> None:
    full = mux(tmp_path / "full.mkv", frames=np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), np.uint8))
    path = tmp_path / "cut.mkv"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MediaError, match=r"video ends at \d\.\d+ s, before the requested end 5\.000 s"):
        read_clip(path, fps=1, duration=5.0, missing_audio="silence")


def test_corrupt_payload(plain_mp4: Path, tmp_path: Path) -> None:
    noisy = mux(tmp_path / "noisy.mp4", frames=np.random.default_rng(1).integers(0, 255, (16, 64, 64, 3), np.uint8))
    data = bytearray(noisy.read_bytes())
    start = data.find(b"mdat") + 2000
    data[start : start + 3000] = np.random.default_rng(2).integers(0, 255, 3000, np.uint8).tobytes()
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(MediaError, match="cannot decode"):
        read_clip(path, fps=8, missing_audio="silence")


def test_video_without_audio_given_to_read_audio(tmp_path: Path) -> None:
    path = mux(tmp_path / "silent.mp4", frames=index_frames(4), fps=4)
    with pytest.raises(MediaError, match="no audio track"):
        read_audio(path)


def test_media_error_is_a_user_error_and_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(MediaError("a/b.mp4", "empty file (0 bytes)")))
    assert isinstance(err, AvlearnError)
    assert (err.path, err.reason, str(err)) == ("a/b.mp4", "empty file (0 bytes)", "a/b.mp4: empty file (0 bytes)")


def test_bad_arguments_are_value_errors(plain_mp4: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        read_clip(plain_mp4, fps=1, timestamps=[0.0])
    with pytest.raises(ValueError, match="short must be one of"):
        read_clip(plain_mp4, fps=1, short="loop")
