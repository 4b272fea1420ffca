"""``avlearn demo`` end to end: AVSynth is generated, the baseline learns AVE from scratch, files are written.

The issue's acceptance run is the demo's own configuration (400 clips): >= 85 % segment accuracy on the AVSynth test
split (chance: 1/(K+1) = 9.1 %; always predicting the majority class scores about 37 %); about 90 s, so it runs in
the slow job. The default suite runs the same command on 160 clips (the demo's recipe otherwise, about 40 % of its
time): it measured 84.4 % (test split of 16 clips, majority 36.3 %) and must reach 70 %.
"""

from __future__ import annotations

import json

import pytest

from avlearn.cli.main import main


def _demo(tmp_path, monkeypatch, capsys, *overrides: str) -> dict:  # noqa: ANN001 (pytest fixtures)
    """``avlearn demo *overrides`` on a fresh cache: its run folder's files, its printed summary and one generated
    AVSynth in the cache (only the part AVE reads); returns metrics.json."""
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))
    assert main(["demo", *overrides, f"out={tmp_path / 'runs'}"]) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs" / "demo").iterdir()
    for name in ("config.yaml", "metrics.jsonl", "timeline.png", "checkpoint/model.safetensors"):
        assert (run_dir / name).is_file(), name
    assert "AVE segment accuracy on the AVSynth test split" in out and "chance" in out
    assert len(list((tmp_path / "cache").iterdir())) == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["chance"]["majority"] < 60.0  # the split is not solvable by predicting background
    return metrics


def test_demo_learns_ave_from_scratch_on_fewer_clips(tmp_path, monkeypatch, capsys):
    metrics = _demo(tmp_path, monkeypatch, capsys, "data.clips=160")
    assert metrics["test"]["segment_accuracy"] >= 70.0, metrics


@pytest.mark.slow
def test_the_demos_own_configuration_learns_ave_from_scratch(tmp_path, monkeypatch, capsys):
    metrics = _demo(tmp_path, monkeypatch, capsys)
    assert metrics["test"]["segment_accuracy"] >= 85.0, metrics
