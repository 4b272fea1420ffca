"""The ``avlearn`` command: help on every subcommand, info, synth, and one-line errors."""

from __future__ import annotations

import json

import pytest

from avlearn.cli.main import COMMANDS, main


@pytest.mark.parametrize("verb", list(COMMANDS))
def test_every_subcommand_explains_itself(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"avlearn {verb}" in out and len(out.splitlines()) > 5


def test_info_lists_every_registry(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "baseline" in info["methods"] and "ave" in info["tasks"] and "ave" in info["scorers"]
    assert "cnn_visual_small" in info["backbones"] and "ave" in info["datasets"]
    assert info["versions"]["torch"] != "not installed"


def test_synth_writes_and_summarises(tmp_path, capsys):
    out = tmp_path / "avsynth"
    assert main(["synth", str(out), "--clips", "4", "--size", "32", "--classes", "3", "--workers", "1"]) == 0
    assert (out / "avsynth.json").is_file() and len(list((out / "videos").glob("*.mp4"))) == 4 + 3
    assert "events  train" in capsys.readouterr().out


def test_synth_on_a_folder_made_with_other_parameters_is_one_line(tmp_path, capsys):
    out = tmp_path / "avsynth"
    assert main(["synth", str(out), "--clips", "3", "--size", "32", "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["synth", str(out), "--clips", "3", "--size", "48", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other parameters" in err and "Traceback" not in err


def test_bad_override_is_one_line(capsys):
    assert main(["train", "train.epohcs=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("avlearn train: error: unknown key 'train.epohcs'") and len(err.splitlines()) == 1


def test_unwritable_run_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", f"out={blocker}", "train.epochs=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot create the run folder" in err and "out=" in err and len(err.splitlines()) == 1


def test_info_descriptions_are_whole_and_distinct_per_name(capsys):
    """Every registered name (and recipe) has its own description, a whole sentence; variants of one class (the
    dgsct* methods, avs_s4 / avs_ms3) are told apart by their config files."""
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for kind in ("backbones", "methods", "tasks", "datasets", "scorers", "recipes"):
        descriptions = list(info[kind].values())
        assert len(set(descriptions)) == len(descriptions), kind
        assert all(d.endswith((".", ")")) for d in descriptions), kind  # never cut mid-sentence
    assert "depths 1-2-1-1" in info["backbones"]["swinv2_tiny"]  # the docstring's second line, kept
    assert "test size" in info["methods"]["dgsct_tiny"] and "MS3" in info["tasks"]["avs_ms3"]
    assert set(info["recipes"]) >= {"dgsct_ave_paper", "dgsct_ave_tiny"}
