"""AVS (AVSBench S4 / MS3) read lazily or from a clip store: the items and the training of the in-memory path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from avlearn.data.pipelines.avs import AVSTensors, LazyAVS, avs_splits
from avlearn.registry import BACKBONES

SIZE = 32
KEYS = ("frames", "audio", "masks", "mask_valid", "id")


def _pre():  # noqa: ANN202 (AudioPreprocess)
    return BACKBONES.build("cnn_audio_tiny").preprocess


def _data(**over: object):  # noqa: ANN202 (DictConfig)
    return OmegaConf.create({"workers": 1, "store": None, "preload": "auto", "preload_gb": 4.0, **over})


def _same_items(a, b, seed: int = 0) -> None:  # noqa: ANN001
    """Every item of ``a`` equals ``b``'s, each drawn after ``torch.manual_seed(seed + i)`` (the flip's draw)."""
    assert len(a) == len(b) > 0
    for i in range(len(a)):
        torch.manual_seed(seed + i)
        x = a[i]
        torch.manual_seed(seed + i)
        y = b[i]
        for key in KEYS:
            assert x[key] == y[key] if key == "id" else torch.equal(x[key], y[key]), (i, key)


@pytest.fixture(scope="module")
def avs_store(small_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The S4 and MS3 videos of the small AVSynth in a clip store: 2 frames a second (the segment centres), 5 s."""
    from avlearn.cli.main import main

    store = tmp_path_factory.mktemp("avs_store") / "store"
    videos = [str(p) for p in sorted((small_synth / "videos").glob("*.mp4")) if p.stem[:2] in ("s4", "ms")]
    args = ["extract", *videos, "--out", str(store), "--fps", "2", "--size", str(SIZE), "--duration", "5",
            "--sample-rate", str(_pre().sample_rate), "--workers", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    return store


@pytest.mark.parametrize("flavour", ["s4", "ms3"])
def test_lazy_items_equal_the_decoded_ones_flip_included(small_synth: Path, flavour: str) -> None:
    memory = avs_splits(small_synth, flavour, SIZE, _pre(), flip=True)
    lazy = avs_splits(small_synth, flavour, SIZE, _pre(), flip=True, data=_data(preload="off"))
    for split in ("train", "val", "test"):
        assert isinstance(memory[split], AVSTensors) and isinstance(lazy[split], LazyAVS)
        assert lazy[split].ids == memory[split].ids and lazy[split].flip == (split == "train")
        _same_items(lazy[split], memory[split])
    flips = set()
    for i in range(8):  # the flip is drawn: both ways occur among eight draws
        torch.manual_seed(i)
        flips.add(torch.equal(lazy["train"][0]["frames"], memory["train"].frames[0]))
    assert flips == {True, False}
    auto = avs_splits(small_synth, flavour, SIZE, _pre(), data=_data(preload_gb=1e-6))  # 4 clips > 1 KiB: lazy
    assert isinstance(auto["test"], LazyAVS) and auto["test"].sample_bytes() == 5 * (4 * 32 * 50 + 4 * SIZE * SIZE)


def test_store_items_equal_the_store_read_into_memory_with_the_readers_masks(small_synth: Path, avs_store: Path):
    memory = avs_splits(small_synth, "s4", SIZE, _pre())
    lazy = avs_splits(small_synth, "s4", SIZE, _pre(), data=_data(store=str(avs_store), preload="off"))
    read = avs_splits(small_synth, "s4", SIZE, _pre(), data=_data(store=str(avs_store), preload="on"))
    for split in ("train", "test"):
        assert lazy[split].store is not None and isinstance(read[split], AVSTensors)
        _same_items(lazy[split], read[split])
        # the store holds the same clips, from their videos (H.264 frames, AAC audio): the masks are the reader's
        assert torch.equal(read[split].masks, memory[split].masks) and read[split].ids == memory[split].ids
        assert torch.equal(read[split].mask_valid, memory[split].mask_valid)
        assert (read[split].frames.float() - memory[split].frames.float()).abs().mean() < 8  # 4.5-5.8 here
        assert (read[split].audio - memory[split].audio).abs().mean() < 0.1 * memory[split].audio.abs().mean()  # ~4%


def _fit(splits: dict, run: Path, workers: int, resume: bool = False) -> tuple[dict, dict, bytes]:
    """Two epochs of the baseline AVS model on ``splits`` (seed 0): step losses, test scores and the report's
    figure of test masks (``masks.png``, drawn from the test split's items)."""
    from types import SimpleNamespace

    from avlearn.config.schema import TrainConfig
    from avlearn.engine.env import seed_everything, setup
    from avlearn.engine.loop import RunInfo, evaluate, fit
    from avlearn.methods.baseline import Baseline, BaselineConfig
    from avlearn.tasks.avs import AVSConfig, AVSTask
    from avlearn.tasks.base import DatasetInfo
    from avlearn.viz.reports import AVS

    env = setup("cpu", 0, 0)
    seed_everything(0)
    method = Baseline(BaselineConfig(dim=16), BACKBONES.build("cnn_visual_tiny", size=SIZE),
                      BACKBONES.build("cnn_audio_tiny"))  # fmt: skip
    task = AVSTask(AVSConfig(name="avs_ms3", dim=16), method, DatasetInfo(()))
    cfg = TrainConfig(epochs=2, batch_size=1, lr=1e-3, log_every=1, loader_workers=workers, select="last",
                      save_every=1)  # fmt: skip
    fit(task, splits["train"], splits["val"], cfg, env, RunInfo(run, 0, resume=resume))
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r["loss"] for r in lines if r["kind"] == "step"}
    scores, out = evaluate(task, splits["test"], 2, env, workers=workers)
    figure = AVS.plot(SimpleNamespace(test=splits["test"]), out, run / "masks.png")
    return steps, scores, figure.read_bytes()


def test_training_from_the_store_or_lazily_gives_the_in_memory_metrics(
    small_synth: Path, avs_store: Path, tmp_path: Path
) -> None:
    """MS3 with flips: lazy samples == in memory; store read lazily == store read into memory. Flips are drawn by
    the process that reads an item (here one loader worker in every run), so equal ``train.loader_workers`` give
    equal runs."""
    memory = _fit(avs_splits(small_synth, "ms3", SIZE, _pre(), flip=True), tmp_path / "memory", 1)
    lazy_splits = avs_splits(small_synth, "ms3", SIZE, _pre(), flip=True, data=_data(preload="off"))
    assert _fit(lazy_splits, tmp_path / "lazy", 1) == memory and len(memory[0]) == 4  # 2 clips, 2 epochs
    stored = {p: _data(store=str(avs_store), preload=p) for p in ("on", "off")}
    read = _fit(avs_splits(small_synth, "ms3", SIZE, _pre(), flip=True, data=stored["on"]), tmp_path / "read", 1)
    streamed = avs_splits(small_synth, "ms3", SIZE, _pre(), flip=True, data=stored["off"])
    assert _fit(streamed, tmp_path / "store", 1) == read and read[0] != memory[0]  # the videos' frames differ


def test_a_killed_store_run_resumes_to_the_metrics_of_the_whole_run(
    small_synth: Path, avs_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MS3 from the store, lazily, with flips (drawn in the training process: ``train.loader_workers=0``): killed
    before step 3 (the first of epoch 2), resumed from the step-2 checkpoint: the uninterrupted run's numbers."""
    import avlearn.engine.loop as loop

    data = _data(store=str(avs_store), preload="off")
    whole = _fit(avs_splits(small_synth, "ms3", SIZE, _pre(), flip=True, data=data), tmp_path / "whole", 0)
    real_step = loop.train_step

    def dying_step(t, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if t.state.step + 1 == 3:
            raise KeyboardInterrupt  # stands for SIGKILL: nothing after it runs
        return real_step(t, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        _fit(avs_splits(small_synth, "ms3", SIZE, _pre(), flip=True, data=data), tmp_path / "killed", 0)
    monkeypatch.setattr(loop, "train_step", real_step)
    resumed = _fit(avs_splits(small_synth, "ms3", SIZE, _pre(), flip=True, data=data), tmp_path / "killed", 0, True)
    assert resumed[:2] == whole[:2] and len(whole[0]) == 4
