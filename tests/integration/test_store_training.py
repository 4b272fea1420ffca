"""Training from a clip store (``avlearn extract``, then ``avlearn train data.store=...``): lazily decoded samples give
the metrics of the in-memory path, and a store-backed run killed mid-epoch resumes exactly."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import avlearn.engine.loop as loop
from avlearn.cli.main import main

# 40 AVSynth clips: 32 train / 4 val / 4 test; batch 8 -> 4 steps in the one epoch.
SMALL = ["task=ave", "method=baseline", "backbone=small_cnn", "data=avsynth", "data.clips=40", "data.size=32",
         "data.frame_size=32", "data.workers=1", "train.batch_size=8", "train.log_every=1", "train.epochs=1",
         "seed=3"]  # fmt: skip


class Killed(Exception):
    """Stands for SIGKILL: raised inside the loop, so nothing after it runs."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """AVSynth in a fresh cache, its videos extracted into a store (frames at the segment centres: --fps 2, and the
    log-mel the run's audio input is), and an uninterrupted run of each path."""
    tmp = tmp_path_factory.mktemp("store_training")
    mp = pytest.MonkeyPatch()
    mp.setenv("AVLEARN_CACHE", str(tmp / "cache"))
    assert main(["train", *SMALL, f"out={tmp}", "name=memory"]) == 0  # generates AVSynth, decodes into memory
    videos = next((tmp / "cache").iterdir()) / "videos"
    store = tmp / "store"
    extract = ["extract", str(videos), "--out", str(store), "--fps", "2", "--size", "32", "--duration", "10",
               "--log-mel", "64,20"]  # fmt: skip  # the log-mel of data.n_mels=64, data.hop_ms=20: read, not computed
    assert main([*extract, "--workers", "1", "--no-progress"]) == 0
    lazy = [*SMALL, f"data.store={store}", "data.preload=false", "train.loader_workers=1", "train.save_every=1"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", *lazy, f"out={tmp}", "name=lazy"]) == 0
    assert not [w for w in caught if "log-mel" in str(w.message)]  # the stored log-mel is the run's: read
    yield {"tmp": tmp, "lazy": lazy}
    mp.undo()


def _run(tmp: Path, name: str) -> Path:
    (run_dir,) = (tmp / name).iterdir()
    return run_dir


def _steps(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if r["kind"] == "step"}


def test_store_run_gives_the_metrics_of_the_in_memory_run(setup: dict) -> None:
    memory, lazy = _run(setup["tmp"], "memory"), _run(setup["tmp"], "lazy")
    assert _steps(lazy) == _steps(memory) and len(_steps(lazy)) == 4
    assert (
        json.loads((lazy / "metrics.json").read_text())["test"]
        == json.loads((memory / "metrics.json").read_text())["test"]
    )


@pytest.mark.parametrize("task", ["avvp", "fewshot_llp_cls", "fewshot"])
def test_the_other_segment_pipelines_train_from_the_store_with_the_in_memory_metrics(setup: dict, task: str) -> None:
    """AVVP and the few-shot pipelines (LLP and AVE readers) over the same event clips: store run == in-memory run."""
    tmp = setup["tmp"]
    common = [f"task={task}" if arg == "task=ave" else arg for arg in SMALL] + ["shots=2"] * task.startswith("few")
    assert main(["train", *common, f"out={tmp}", f"name={task}_memory"]) == 0
    lazy = [f"data.store={tmp / 'store'}", "data.preload=false", "train.loader_workers=1"]
    assert main(["train", *common, *lazy, f"out={tmp}", f"name={task}_store"]) == 0
    memory, store = _run(tmp, f"{task}_memory"), _run(tmp, f"{task}_store")
    assert main(["train", *common, f"data.store={tmp / 'cache'}", f"out={tmp}", f"name={task}_no_store"]) != 0
    assert _steps(store) == _steps(memory) and len(_steps(store)) >= 1
    assert (
        json.loads((store / "metrics.json").read_text())["test"]
        == json.loads((memory / "metrics.json").read_text())["test"]
    )


def test_avqa_reads_its_videos_from_the_store_with_the_in_memory_metrics(setup: dict) -> None:
    """MUSIC-AVQA's videos (AVSynth's avqa part) read from a store into memory: the metrics of decoding them."""
    tmp = setup["tmp"]
    swap = {"task=ave": "task=avqa", "data.clips=40": "data.clips=12"}
    common = [swap.get(arg, arg) for arg in SMALL]
    assert main(["train", *common, f"out={tmp}", "name=avqa_memory"]) == 0
    videos = next(p for p in (tmp / "cache").iterdir() if (p / "MUSIC-AVQA").is_dir()) / "videos"
    store = tmp / "store_avqa"  # frames at the centres of the ten segments of a 10 s video: --fps 2
    assert main(["extract", str(videos), "--out", str(store), "--fps", "2", "--size", "32", "--no-progress"]) == 0
    assert main(["train", *common, f"data.store={store}", f"out={tmp}", "name=avqa_store"]) == 0
    memory, stored = _run(tmp, "avqa_memory"), _run(tmp, "avqa_store")
    assert main(["train", *common, f"data.store={tmp / 'store'}", f"out={tmp}", "name=avqa_other_store"]) != 0
    assert _steps(stored) == _steps(memory) and len(_steps(stored)) >= 1
    assert (
        json.loads((stored / "metrics.json").read_text())["test"]
        == json.loads((memory / "metrics.json").read_text())["test"]
    )


def test_killed_store_run_resumes_exactly(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp, lazy = setup["tmp"], setup["lazy"]
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp / "cache"))
    real_step = loop.train_step

    def dying_step(t, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if t.state.step + 1 == 3:  # mid-epoch 1, after the step-2 save
            raise Killed
        return real_step(t, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", dying_step)
    with pytest.raises(Killed):
        main(["train", *lazy, f"out={tmp}", "name=killed"])
    monkeypatch.setattr(loop, "train_step", real_step)
    assert main(["train", *lazy, "train.loader_workers=0", f"out={tmp}", "name=killed", "resume=true"]) == 0
    whole, resumed = _run(tmp, "lazy"), _run(tmp, "killed")
    assert _steps(resumed) == _steps(whole)
    assert (
        json.loads((resumed / "metrics.json").read_text())["test"]
        == json.loads((whole / "metrics.json").read_text())["test"]
    )


def test_a_still_image_with_music_goes_through_predict_with_default_options(setup: dict, capsys) -> None:
    import numpy as np

    from avlearn.io import write_video

    still = setup["tmp"] / "still.mp4"
    frames = np.full((2, 32, 32, 3), 120, np.uint8)  # 2 frames at 25 fps: the video ends at 0.08 s
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(12 * 16000) / 16000)).astype(np.float32)  # 12 s of audio
    write_video(still, frames, 25, wave, 16000)
    capsys.readouterr()
    assert main(["predict", str(_run(setup["tmp"], "memory")), str(still), "--json"]) == 0
    timeline = json.loads(capsys.readouterr().out)
    assert [s["start"] for s in timeline["segments"]] == list(range(10))
