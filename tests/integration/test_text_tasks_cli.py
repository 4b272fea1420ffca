"""``avlearn train`` and ``avlearn predict`` for the text-generating tasks on a tiny AVSynth: a caption run prints a
caption for a video; an open-QA run answers ``--question``; asking a caption run a question is a one-line error."""

from __future__ import annotations

import json

import pytest

from avlearn.cli.main import main

TINY = ["method=baseline", "backbone=small_cnn", "data=avsynth", "data.size=32", "data.frame_size=32",
        "data.n_mels=32", "data.workers=1", "train.batch_size=4", "train.steps=1", "train.val_every=-1",
        "train.select=last", "task.hidden_size=32", "task.intermediate_size=64", "task.layers=1",
        "task.beam_size=2", "task.max_length=5"]  # fmt: skip


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _video(cache):  # noqa: ANN001, ANN202
    return sorted(next(cache.iterdir()).rglob("*.mp4"))[0]


def test_caption_run_predicts_a_caption_and_refuses_a_question(tmp_path, cache, capsys):
    args = ["task=caption", "data.clips=12", "task.meteor=false", f"out={tmp_path}", "name=cap"]
    assert main(["train", *TINY, *args]) == 0
    (run_dir,) = (tmp_path / "cap").iterdir()
    assert "CIDEr" in json.loads((run_dir / "metrics.json").read_text())["test"]
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(_video(cache)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"video", "caption"} and isinstance(out["caption"], str)
    assert main(["predict", str(run_dir), str(_video(cache)), "--question", "Is there a voiceover?"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "qa_open" in err


def test_qa_open_run_answers_a_question_from_the_command_line(tmp_path, cache, capsys):
    args = ["task=qa_open", "data.avqa_clips=6", f"out={tmp_path}", "name=qa"]
    assert main(["train", *TINY, *args]) == 0
    (run_dir,) = (tmp_path / "qa").iterdir()
    assert "overall" in json.loads((run_dir / "metrics.json").read_text())["test"]
    capsys.readouterr()
    question = "How many instruments are sounding in the video?"
    assert main(["predict", str(run_dir), str(_video(cache)), "--question", question, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["question"] == question and isinstance(out["answer"], str)
