"""The shard store: writer -> random-access reader and WebDataset streaming; atomic shards; resume; refusals."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from avlearn.data.store import ClipStore, ShardWriter, write_failures
from avlearn.errors import ConfigError, DataError

SETTINGS = {"fps": 1.0, "size": [8, 8]}


def _sample(i: int) -> tuple[dict[str, np.ndarray], dict]:
    frames = np.full((2, 8, 8, 3), i, np.uint8)  # (T, H, W, 3)
    wave = np.linspace(-1, 1, 100 + i, dtype=np.float32)
    meta = {"path": f"/v/{i}.mp4", "frame_times": [0.0, 1.0], "sample_rate": 100, "has_audio": True, "duration": 1.0}
    return {"frames": frames, "wave": wave}, {**meta, "notes": [f"note {i}"]}


def _fill(root: Path, count: int, shard_size: int = 2) -> None:
    with ShardWriter(root, "clips", SETTINGS, shard_size) as writer:
        for i in range(count):
            writer.write(f"dir/clip{i}", *_sample(i))


def test_written_samples_read_back_exactly(tmp_path: Path) -> None:
    _fill(tmp_path, 5)
    store = ClipStore(tmp_path)
    assert len(store) == 5 and store.keys() == [f"dir/clip{i}" for i in range(5)]
    assert [p.name for p in store.shard_paths()] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert store.settings == SETTINGS
    for i in (4, 0, 2):  # any order
        arrays, meta = _sample(i)
        sample = store[f"dir/clip{i}"]
        np.testing.assert_array_equal(sample["frames"], arrays["frames"])
        np.testing.assert_array_equal(sample["wave"], arrays["wave"])
        assert sample["wave"].dtype == np.float32 and sample["meta"] == meta
    clip = store.clip("dir/clip3")
    assert clip.frames.shape == (2, 8, 8, 3) and clip.notes == ("note 3",) and clip.path == "/v/3.mp4"


def test_shards_stream_with_webdataset(tmp_path: Path) -> None:
    import webdataset as wds

    _fill(tmp_path, 3)
    urls = [str(p) for p in ClipStore(tmp_path).shard_paths()]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert [s["__key__"] for s in samples] == ["dir/clip0", "dir/clip1", "dir/clip2"]
    np.testing.assert_array_equal(samples[1]["frames.npy"], _sample(1)[0]["frames"])
    assert samples[2]["json"]["notes"] == ["note 2"]


def test_interrupted_shard_is_dropped_and_the_run_resumes(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), ShardWriter(tmp_path, "clips", SETTINGS, 2) as writer:
        for i in range(3):
            writer.write(f"dir/clip{i}", *_sample(i))
        raise KeyboardInterrupt  # clip2 sits in an unfinished shard
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", "shard-000000.idx.json", "shard-000000.tar"]
    (tmp_path / ".shard-000001.tar.tmp").write_bytes(b"half a shard")  # as a killed process would leave it
    writer = ShardWriter(tmp_path, "clips", SETTINGS, 2)
    assert writer.done == {"dir/clip0", "dir/clip1"} and not (tmp_path / ".shard-000001.tar.tmp").exists()
    with writer:
        writer.write("dir/clip2", *_sample(2))
    assert ClipStore(tmp_path).keys() == ["dir/clip0", "dir/clip1", "dir/clip2"]


def test_a_lost_shard_index_is_rebuilt_from_the_tar(tmp_path: Path) -> None:
    _fill(tmp_path, 4)
    original = json.loads((tmp_path / "shard-000001.idx.json").read_text())
    (tmp_path / "shard-000001.idx.json").unlink()
    assert ShardWriter(tmp_path, "clips", SETTINGS).done == {f"dir/clip{i}" for i in range(4)}
    assert json.loads((tmp_path / "shard-000001.idx.json").read_text()) == original


def test_other_settings_or_a_foreign_folder_are_refused(tmp_path: Path) -> None:
    _fill(tmp_path / "store", 1)
    with pytest.raises(ConfigError, match=r"'fps': \(1.0, 2.0\)"):
        ShardWriter(tmp_path / "store", "clips", {**SETTINGS, "fps": 2.0})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.pdf").write_text("x")
    with pytest.raises(ConfigError, match="holds no store"):
        ShardWriter(tmp_path / "other", "clips", SETTINGS)
    with pytest.raises(DataError, match="not a store"):
        ClipStore(tmp_path / "other")


def test_keys_are_checked(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, "clips", SETTINGS) as writer:
        writer.write("a", *_sample(0))
        with pytest.raises(ValueError, match="already in the store"):
            writer.write("a", *_sample(1))
        with pytest.raises(ValueError, match="without dots"):
            writer.write("a.b", *_sample(1))


def test_a_missing_key_is_an_error_naming_the_failure_never_another_sample(tmp_path: Path) -> None:
    _fill(tmp_path, 2)
    write_failures(tmp_path, [{"key": "dir/bad", "path": "/v/bad.mp4", "reason": "empty file (0 bytes)"}])
    store = ClipStore(tmp_path)
    with pytest.raises(DataError, match=r"no sample 'dir/bad'.*/v/bad.mp4: empty file \(0 bytes\)"):
        store["dir/bad"]
    assert "dir/bad" not in store and len(store) == 2


def test_reader_survives_pickling_for_dataloader_workers(tmp_path: Path) -> None:
    _fill(tmp_path, 2)
    store = ClipStore(tmp_path)
    store["dir/clip0"]  # opens a descriptor
    copy = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(copy["dir/clip1"]["frames"], _sample(1)[0]["frames"])


def test_read_gives_only_the_named_arrays_in_writable_buffers(tmp_path: Path) -> None:
    _fill(tmp_path, 2)
    store = ClipStore(tmp_path)
    sample = store.read("dir/clip1", ("wave",))
    assert set(sample) == {"wave", "meta"} and sample["meta"] == _sample(1)[1]
    np.testing.assert_array_equal(sample["wave"], _sample(1)[0]["wave"])
    sample["wave"][0] = 5.0  # a buffer of its own: the next read is unchanged
    assert sample["wave"].flags.writeable and store["dir/clip1"]["wave"][0] == -1.0
    with pytest.raises(DataError, match=r"sample 'dir/clip0' has no array 'log_mel'"):
        store.read("dir/clip0", ("frames", "log_mel"))
