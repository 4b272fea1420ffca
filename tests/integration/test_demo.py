"""``avlearn demo`` end to end: AVSynth is generated, the baseline learns AVE from scratch, files are written.

This is the issue's acceptance run: the demo's own configuration must reach >= 85 % segment accuracy on the
AVSynth test split (chance: 1/(K+1) = 9.1 %; always predicting the majority class scores about 37 %).
"""

from __future__ import annotations

import json

from avlearn.cli.main import main


def test_demo_learns_ave_from_scratch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))
    assert main(["demo", f"out={tmp_path / 'runs'}"]) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs" / "demo").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["segment_accuracy"] >= 85.0, metrics
    assert metrics["chance"]["majority"] < 60.0  # the split is not solvable by predicting background
    for name in ("config.yaml", "metrics.jsonl", "timeline.png", "checkpoint/model.safetensors"):
        assert (run_dir / name).is_file(), name
    assert "AVE segment accuracy on the AVSynth test split" in out and "chance" in out
    # A second demo reuses the cached AVSynth instead of generating it again.
    assert len(list((tmp_path / "cache").iterdir())) == 1
