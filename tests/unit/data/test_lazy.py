"""Lazy samples: the preload policy, per-rank reading, segment items equal to the in-memory ones, store checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.data.lazy import LazyRecords, preload_mode, wants_preload
from avlearn.data.segments import LazySegments, decode_segments, segment_split
from avlearn.engine.batches import MicroBatches
from avlearn.engine.env import Env
from avlearn.errors import ConfigError, DataError
from avlearn.io import write_video

PRE = AudioPreprocess(8000, "log_mel", 16, 50, 256, 160, 256)  # 8 kHz, 16 mel bins, 50 frames a segment


def test_preload_modes_and_the_memory_budget() -> None:
    assert [preload_mode(v) for v in ("auto", True, "false", "ON", "off")] == ["auto", "on", "off", "on", "off"]
    with pytest.raises(ConfigError, match="data.preload='sometimes'"):
        preload_mode("sometimes")
    data = OmegaConf.create({"preload": "auto", "preload_gb": 1.0})
    assert wants_preload(data, 1024, 1 << 20) and not wants_preload(data, 1025, 1 << 20)  # 1 GiB fits, not more
    assert wants_preload(OmegaConf.create({"preload": "on", "preload_gb": 0.0}), 10**9, 1 << 20)
    assert not wants_preload(OmegaConf.create({"preload": False, "preload_gb": 100.0}), 1, 1)


class CountingMedia:
    """Media whose ``load`` records the records it decoded (in this process)."""

    def __init__(self) -> None:
        self.loaded: list[int] = []

    def load(self, record: int, decode: object) -> dict:
        self.loaded.append(record)
        return {"wave": np.full(4, record, np.float32)}


def _make(record: int, arrays: dict, rng: np.random.Generator | None) -> dict:
    return {"x": torch.from_numpy(arrays["wave"]), "noise": float(rng.uniform()) if rng is not None else -1.0}


def test_each_rank_decodes_only_its_own_micro_batches() -> None:
    decoded = []
    for rank in range(2):
        media = CountingMedia()
        data = LazyRecords(media, list(range(23)), None, _make)
        sampler = MicroBatches(len(data), 8, Env(rank=rank, world_size=2), accum=2, seed=4, epoch=1)
        for _ in DataLoader(data, batch_sampler=sampler):
            pass
        decoded.append(media.loaded)
    # 23 samples in global batches of 8, 8, 7: over the two ranks every sample is decoded exactly once, none by both
    assert sorted(decoded[0] + decoded[1]) == list(range(23)) and not set(decoded[0]) & set(decoded[1])
    assert (len(decoded[0]), len(decoded[1])) == (12, 11)  # the 7-batch in quarters 2, 2, 2, 1: rank 0 gets 2 + 2


def test_training_randomness_depends_on_seed_epoch_and_index_only() -> None:
    data = LazyRecords(CountingMedia(), list(range(5)), None, _make, train=True, seed=7)
    first = [data[i]["noise"] for i in range(5)]
    again = LazyRecords(CountingMedia(), list(range(5)), None, _make, train=True, seed=7)
    assert [again[i]["noise"] for i in reversed(range(5))] == first[::-1]  # any order, any process: same draws
    data.set_epoch(1)
    assert [data[i]["noise"] for i in range(5)] != first
    assert LazyRecords(CountingMedia(), [0], None, _make)[0]["noise"] == -1.0  # evaluation: no randomness


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path, np.ndarray]]:
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    items = []
    for i in range(3):
        frames = rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)  # 4 fps, 2 s
        write_video(folder / f"c{i}.mp4", frames, 4, rng.uniform(-0.5, 0.5, 16000).astype(np.float32), 8000)
        items.append((f"c{i}", folder / f"c{i}.mp4", np.array([i, 0])))
    return items


def test_lazy_segments_equal_the_decoded_tensors(clips: list) -> None:
    memory = decode_segments(clips, 16, PRE, segments=2)
    lazy = LazySegments(clips, 16, PRE, segments=2)
    assert lazy.sample_bytes() == 2 * (3 * 16 * 16 + 4 * 16 * 50) and lazy.ids == memory.ids
    assert torch.equal(lazy.labels, memory.labels)
    for i in range(len(clips)):
        for key in ("frames", "audio", "labels"):
            assert torch.equal(lazy[i][key], memory[i][key]), key
    data = OmegaConf.create({"frame_size": 16, "workers": 1, "store": None, "preload": "auto", "preload_gb": 1e-6})
    assert isinstance(segment_split(clips, data, PRE, segments=2), LazySegments)  # 3 clips of 19 KB > 1 KiB


def test_store_items_equal_decoded_ones_and_a_missing_clip_is_a_data_error(clips: list, tmp_path: Path) -> None:
    from avlearn.data.extract import ClipSpec, extract

    extract({"c0": clips[0][1]}, tmp_path / "store", ClipSpec(fps=2, size=16, sample_rate=8000))
    lazy = LazySegments(clips[:1], 16, PRE, segments=2, store=tmp_path / "store")
    preloaded = lazy.to_memory()  # data.preload with a store: read into memory, no decoding
    for key in ("frames", "audio"):
        assert torch.equal(lazy[0][key], LazySegments(clips[:1], 16, PRE, segments=2)[0][key]), key
        assert torch.equal(preloaded[0][key], lazy[0][key]), key
    with pytest.raises(DataError, match="no clip 'c1'"):
        LazySegments(clips[:2], 16, PRE, segments=2, store=tmp_path / "store")
    with pytest.raises(DataError, match="other settings"):
        LazySegments(clips[:1], 32, PRE, segments=2, store=tmp_path / "store")


def test_a_stored_log_mel_is_read_not_computed_and_equals_the_computed_one(
    clips: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import avlearn.data.segments as segments
    from avlearn.data.extract import ClipSpec, extract

    spec = ClipSpec(fps=2, size=16, sample_rate=8000, duration=2)  # frames at the segment centres
    extract({c[0]: c[1] for c in clips}, tmp_path / "store", spec, log_mel=PRE, segments=2)
    direct = decode_segments(clips, 16, PRE, segments=2)  # the in-memory path, 64 clips per log-mel call
    computing = segments.segment_log_mel
    monkeypatch.setattr(segments, "segment_log_mel", None)  # reading a stored log-mel computes none
    lazy = LazySegments(clips, 16, PRE, segments=2, store=tmp_path / "store")
    assert lazy.stored_mel
    preloaded = lazy.to_memory()
    for i in range(len(clips)):
        for key in ("frames", "audio"):
            assert torch.equal(lazy[i][key], direct[i][key]) and torch.equal(preloaded[i][key], direct[i][key]), key
    monkeypatch.setattr(segments, "segment_log_mel", computing)
    other = AudioPreprocess(8000, "log_mel", 8, 50, 256, 160, 256)  # another task's audio input: 8 mel bins
    with pytest.warns(UserWarning, match=r"audio input .*'num_mel_bins': \(16, 8\).* --log-mel 8,20 --segments 2\)$"):
        lazy = LazySegments(clips, 16, other, segments=2, store=tmp_path / "store")
    assert not lazy.stored_mel and torch.equal(lazy[1]["audio"], decode_segments(clips, 16, other, 2)[1]["audio"])


def test_a_log_mel_is_stored_only_for_whole_segments_at_the_clips_rate(clips: list, tmp_path: Path) -> None:
    from avlearn.cli.main import main
    from avlearn.data.extract import ClipSpec, extract
    from avlearn.data.segments import log_mel_settings
    from avlearn.data.store import ClipStore

    videos = {c[0]: c[1] for c in clips[:1]}
    with pytest.raises(ConfigError, match=r"--segments 2: expected --duration >= 2 \(got 1.5\)"):
        extract(videos, tmp_path / "a", ClipSpec(size=16, sample_rate=8000, duration=1.5), log_mel=PRE, segments=2)
    with pytest.raises(ConfigError, match="log_mel.sample_rate=8000: expected the clips' --sample-rate 16000"):
        extract(videos, tmp_path / "b", ClipSpec(size=16, duration=2), log_mel=PRE, segments=2)
    args = ["extract", str(clips[0][1]), "--out", str(tmp_path / "c"), "--size", "16", "--sample-rate", "8000",
            "--duration", "2", "--segments", "2", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main([*args, "--log-mel", "16"]) == 2  # N_MELS,HOP_MS expected
    assert main([*args, "--log-mel", "16,20"]) == 0
    from avlearn.backbones.cnn import log_mel_input

    store = ClipStore(tmp_path / "c")
    assert store.settings["log_mel"] == log_mel_settings(log_mel_input(8000, 16, 20), 2)
    assert store.read("c0", ("log_mel",))["log_mel"].shape == (2, 16, 50)  # (S, F, T): 20 ms hops
    lazy = LazySegments(clips[:1], 16, log_mel_input(8000, 16, 20), segments=2, store=tmp_path / "c")
    assert lazy.stored_mel  # 1 fps: the frames at 0 and 1 s, read without a copy
    assert torch.equal(lazy[0]["frames"], torch.from_numpy(store.read("c0", ("frames",))["frames"]))


def test_segment_split_can_leave_in_memory_decoding_to_the_pipeline(clips: list, tmp_path: Path) -> None:
    from avlearn.data.extract import ClipSpec, extract
    from avlearn.data.segments import SegmentTensors

    data = OmegaConf.create({"frame_size": 16, "workers": 1, "store": None, "preload": "auto", "preload_gb": 1.0})
    assert segment_split(clips, data, PRE, 2, own_decoding=True) is None  # fits in memory: the pipeline decodes it
    data.preload = False
    assert isinstance(segment_split(clips, data, PRE, 2, own_decoding=True), LazySegments)
    frame_folders = [(vid, None, labels) for vid, _, labels in clips]  # media that are not video files
    with pytest.raises(ConfigError, match="data.preload=False: lazy samples decode video files"):
        segment_split(frame_folders, data, PRE, 2, own_decoding=True)
    extract({c[0]: c[1] for c in clips}, tmp_path / "store", ClipSpec(fps=2, size=16, sample_rate=8000))
    data.store, data.preload = str(tmp_path / "store"), "auto"  # a store: read, in memory when it fits
    read = segment_split(frame_folders, data, PRE, 2, own_decoding=True)
    assert isinstance(read, SegmentTensors) and torch.equal(read.audio, decode_segments(clips, 16, PRE, 2).audio)


def test_a_store_the_task_does_not_read_is_refused_before_its_pipeline_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import avlearn.build as build
    from avlearn.registry import TaskSpec

    def pipeline(cfg, pre):  # the pipeline itself never sees a refused store
        calls.append(cfg.task.name)
        return "splits"

    calls: list[str] = []
    cfg = OmegaConf.create({"task": {"name": "toy"}, "data": {"store": "/some/store", "preload": "auto"},
                            "backbone": {"visual": "small", "audio": "small"}})  # fmt: skip
    spec = TaskSpec(pipeline)
    monkeypatch.setattr(build.TASKS, "spec", lambda name: spec)
    readers = {"clips": ["ave", "retrieve"], "features": ["ave"]}
    monkeypatch.setattr(build.TASKS, "reading", lambda store: readers[store])
    with pytest.raises(ConfigError, match=r"^data.store='/some/store': task=toy's pipeline does not read a clip "
                                          r"store \(these tasks do: ave, retrieve\); drop data.store$"):  # fmt: skip
        build.build_splits(cfg, None)
    cfg.backbone.audio = "features"
    spec = TaskSpec(pipeline, stores=("clips",))
    with pytest.raises(ConfigError, match=r"^backbone.audio=features: .* \(these tasks can: ave\)$"):
        build.build_splits(cfg, None)
    assert calls == []
    spec = TaskSpec(pipeline, stores=("clips", "features"))
    assert build.build_splits(cfg, None) == "splits" and calls == ["toy"]
    cfg.data.preload = "maybe"
    with pytest.raises(ConfigError, match="data.preload='maybe'"):
        build.build_splits(cfg, None)


def test_store_capabilities_are_registered_per_task_and_checked() -> None:
    from avlearn import register_all
    from avlearn.registry import TASKS

    register_all()
    assert TASKS.reading("clips") == ["ave", "ave_cls", "avqa", "avs_ms3", "avs_s4", "avvp", "fewshot",
                                      "fewshot_ave_cls", "fewshot_llp_cls", "pretrain_captions", "pretrain_segments",
                                      "retrieve", "zeroshot", "zeroshot_ave", "zeroshot_ave_cls", "zeroshot_cls",
                                      "zeroshot_llp_cls"]  # fmt: skip
    assert TASKS.reading("features") == ["ave", "ave_cls"]
    with pytest.raises(ValueError, match="unknown stores"):
        TASKS.register("bad_store_task", stores=("tapes",))


def test_the_retrieval_figure_reads_the_frames_of_a_lazy_split(clips: list, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from avlearn.viz.retrieval import _retrieve_plot

    lazy = LazySegments(clips, 16, PRE, segments=2)  # read lazily: no frames tensor

    class CaptionSplit(list):  # what the figure reads of a caption split: its length and its clips
        pass

    split = CaptionSplit(range(3))
    split.clips = lazy
    preds = {"text": torch.eye(3), "clip": torch.eye(3)}  # (3, C) each: query i ranks clip i first
    splits = SimpleNamespace(test=split, root=tmp_path)
    path = _retrieve_plot(splits, {"preds": preds}, tmp_path / "retrieval.png")
    assert path.stat().st_size > 0
