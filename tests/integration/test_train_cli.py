"""``avlearn train / eval / predict`` through the CLI on a small AVSynth, and resuming a run killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avlearn.cli.main import main

SMALL = ["task=ave", "method=baseline", "backbone=small_cnn", "data=avsynth", "data.clips=40", "data.size=32",
         "data.frame_size=32", "data.workers=1", "train.batch_size=8", "train.log_every=1"]  # fmt: skip


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _steps(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if r["kind"] == "step"}


def test_train_eval_predict_through_the_cli(tmp_path, cache, capsys):
    assert main(["train", *SMALL, "train.epochs=2", f"out={tmp_path}", "name=cli"]) == 0
    (run_dir,) = (tmp_path / "cli").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("config.yaml", "checkpoint/model.safetensors", "last/optimizer.safetensors", "timeline.png"):
        assert (run_dir / name).is_file(), name
    capsys.readouterr()

    assert main(["eval", str(run_dir), "--split", "test", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["segment_accuracy"] == pytest.approx(metrics["test"]["segment_accuracy"])

    video = sorted((next(cache.iterdir()) / "videos").glob("*.mp4"))[0]
    assert main(["predict", str(run_dir), str(video), "--out", str(tmp_path / "pred")]) == 0
    out = capsys.readouterr().out
    assert out.count(" s  ") == 10 and "events:" in out
    timeline = json.loads((tmp_path / "pred" / f"{video.stem}.timeline.json").read_text())
    assert [s["start"] for s in timeline["segments"]] == list(range(10))
    assert (tmp_path / "pred" / f"{video.stem}.timeline.png").stat().st_size > 1000

    # Resuming needs the run's own config: another value is a one-line error naming the key.
    assert main(["train", *SMALL, "train.epochs=3", f"out={tmp_path}", "name=cli", "resume=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "differs" in err and "train.epochs" in err


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_exactly(tmp_path, cache):
    args = [*SMALL, "train.epochs=2", "train.save_every=1", f"out={tmp_path}"]
    assert main(["train", *args, "name=whole"]) == 0
    (whole,) = (tmp_path / "whole").iterdir()

    cmd = [sys.executable, "-m", "avlearn", "train", *args, "name=killed"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        last = list((tmp_path / "killed").glob("*/last/checkpoint.json"))
        if last and json.loads(last[0].read_text())["state"]["step"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed,) = (tmp_path / "killed").iterdir()
    assert json.loads((killed / "last" / "checkpoint.json").read_text())["state"]["step"] < 8, "not killed mid-run"

    assert main(["train", *args, "name=killed", "resume=true"]) == 0
    assert _steps(killed) == _steps(whole)
    scores = [json.loads((run / "metrics.json").read_text())["test"] for run in (killed, whole)]
    assert scores[0] == scores[1]
