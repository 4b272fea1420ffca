"""``avlearn extract``: inputs -> keys, parallel decoding into a store, failures, resume, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from io_media import chirp, index_frames, mux

from avlearn.cli.main import main
from avlearn.data.extract import ClipSpec, extract, find_videos
from avlearn.data.store import ClipStore
from avlearn.errors import ConfigError
from avlearn.io import read_clip, write_video

SPEC = ClipSpec(fps=2, size=16, sample_rate=8000)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four good clips (two in a subfolder), one empty file and one without audio."""
    root = tmp_path_factory.mktemp("videos")
    (root / "sub").mkdir()
    for i, name in enumerate(["a.mp4", "b.mp4", "sub/c.mp4", "sub/d.v2.mp4"]):
        write_video(root / name, index_frames(8, 16, 16) // (i + 1), 4, chirp(2.0, 16000) * (i + 1) / 4, 16000)
    (root / "empty.mp4").write_bytes(b"")
    mux(root / "mute.mp4", frames=index_frames(8, 16, 16), fps=4)
    (root / "readme.txt").write_text("not a video, and not picked up from a folder")
    return root


def test_keys_from_folders_lists_globs_and_files(videos: Path, tmp_path: Path) -> None:
    assert list(find_videos([videos])) == ["a", "b", "empty", "mute", "sub/c", "sub/d_v2"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two clips\n{videos / 'a.mp4'}\n\n{videos / 'sub' / 'c.mp4'}\n")
    assert find_videos([listing, str(videos / "b.*")]) == {
        "a": videos / "a.mp4",
        "b": videos / "b.mp4",
        "c": videos / "sub" / "c.mp4",
    }
    write_video(tmp_path / "a.mp4", index_frames(2, 16, 16), 4)
    with pytest.raises(ConfigError, match="two videos get the key 'a'"):
        find_videos([videos / "a.mp4", tmp_path / "a.mp4"])
    with pytest.raises(ConfigError, match="names no video"):
        find_videos([str(tmp_path / "nothing*.mp4")])


def test_extract_stores_good_clips_lists_failures_and_resumes(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    report = extract([videos], out, SPEC, workers=2, shard_size=3)
    assert (report.total, report.written, report.skipped) == (6, 4, 0)
    failures = {row["key"]: row["reason"] for row in report.failures}
    assert failures == {"empty": "empty file (0 bytes)", "mute": failures["mute"]} and "no audio" in failures["mute"]
    manifest = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {row["key"] for row in manifest} == {"empty", "mute"}

    store = ClipStore(out)
    assert sorted(store.keys()) == ["a", "b", "sub/c", "sub/d_v2"]
    for key, name in [("a", "a.mp4"), ("sub/d_v2", "sub/d.v2.mp4")]:  # each key holds its own clip
        direct = read_clip(videos / name, fps=2, size=16, sample_rate=8000)
        stored = store.clip(key)
        assert stored.path == str(videos / name)
        np.testing.assert_array_equal(stored.frames, direct.frames)
        np.testing.assert_array_equal(stored.wave, direct.wave)

    again = extract([videos], out, SPEC, workers=1)
    assert (again.written, again.skipped, len(again.failures)) == (0, 4, 2)
    assert len(ClipStore(out)) == 4


def test_interrupted_extract_keeps_finished_shards(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    good = {k: v for k, v in find_videos([videos]).items() if k not in ("empty", "mute")}

    def interrupt_after_three(done: int, todo: int, failed: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(good, out, SPEC, shard_size=2, progress=interrupt_after_three)
    assert len(ClipStore(out)) == 2  # the finished shard; the third clip's shard was dropped
    resumed = extract(good, out, SPEC, shard_size=2)
    assert (resumed.written, resumed.skipped) == (2, 2) and len(ClipStore(out)) == 4


def test_cli_prints_counts_and_failures(videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "store"
    args = ["extract", str(videos / "a.mp4"), str(videos / "empty.mp4"), "--out", str(out)]
    status = main([*args, "--fps", "2", "--size", "16,12", "--workers", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert status == 1
    assert "1 written, 0 already there, 1 failed" in printed and "empty.mp4: empty file (0 bytes)" in printed
    assert ClipStore(out).clip("a").frames.shape == (4, 16, 12, 3)
    assert main(["extract", str(videos), "--out", str(out), "--size", "big"]) == 2
    assert "--size 'big'" in capsys.readouterr().err
