"""Real-world media: a still image with music, hints that name CLI flags, an empty store reused with other settings."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from io_media import chirp, index_frames

import avlearn.io.read as read_module
from avlearn.cli.main import main
from avlearn.data.extract import ClipSpec, extract
from avlearn.data.store import ClipStore
from avlearn.io import HeldFrameWarning, MediaError, read_clip, write_video

STILL_SECONDS = 12.0


@pytest.fixture(scope="module")
def still_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A still image with music as uploads make it: 2 frames at 25 fps (0.08 s of video) and 12 s of AAC."""
    path = tmp_path_factory.mktemp("still") / "still.mp4"
    write_video(path, index_frames(2, 32, 32), 25, chirp(STILL_SECONDS, 16000), 16000)
    return path


def test_a_still_image_with_music_holds_its_last_frame_and_warns_once(still_mp4: Path, monkeypatch) -> None:
    monkeypatch.setattr(read_module, "_held_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clip = read_clip(still_mp4, fps=1)  # default policies
        again = read_clip(still_mp4, timestamps=[0.5, 5.5, 11.5])
    assert clip.frames.shape == (12, 32, 32, 3) and clip.wave.shape == (round(STILL_SECONDS * 16000),)
    np.testing.assert_array_equal(clip.frames[1:], np.broadcast_to(clip.frames[-1], clip.frames[1:].shape))
    assert clip.wave[-16000:].std() > 0.1  # the music runs to the end
    for decoded in (clip, again):  # every clip is noted, the warning is said once
        assert [n for n in decoded.notes if n.startswith("held video")] == [decoded.notes[0]]
        assert "ends at 0.080 s" in decoded.notes[0]
    held = [w for w in caught if issubclass(w.category, HeldFrameWarning)]
    assert len(held) == 1 and "last frame" in str(held[0].message)


def test_a_file_short_in_both_tracks_names_the_cli_flags(still_mp4: Path) -> None:
    with pytest.raises(MediaError, match=r"--short pad pads it; or set --duration") as err:
        read_clip(still_mp4, fps=1, duration=14.0)
    assert "short='pad'" not in str(err.value) and "duration=" not in str(err.value)


def test_still_image_goes_through_extract_with_default_options(still_mp4: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "store"
    assert main(["extract", str(still_mp4), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert "1 clips: the video track ends before the audio; their last frame is held" in capsys.readouterr().out
    clip = ClipStore(out).clip("still")
    assert clip.frames.shape[0] == 12 and clip.wave.shape == (round(STILL_SECONDS * 16000),)


def test_an_empty_store_is_reused_with_other_settings(still_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    first = extract([broken], out, ClipSpec(fps=1, size=16))  # every clip fails: the store holds no clip
    assert first.written == 0 and len(first.failures) == 1
    second = extract([still_mp4], out, ClipSpec(fps=2, size=16, short="pad"))
    assert second.written == 1 and ClipStore(out).settings["fps"] == 2
    with pytest.raises(Exception, match="other settings"):  # a store holding a clip is never continued otherwise
        extract([still_mp4], out, ClipSpec(fps=1, size=16))
