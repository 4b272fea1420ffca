"""``avlearn data check``: the report, its JSON form and the exit status."""

import json
import shutil
from pathlib import Path

import pytest

from avlearn.cli import main


def _check(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    status = main.main(["data", "check", *args])
    return status, capsys.readouterr().out


def test_annotations_only_report(fixtures: Path, capsys: pytest.CaptureFixture) -> None:
    status, out = _check(["ave", "--root", str(fixtures), "--annotations-only", "--json"], capsys)
    report = json.loads(out)
    assert status == 0 and report["usable"]
    assert {s: v["samples"] for s, v in report["splits"].items()} == {"train": 6, "val": 3, "test": 3}
    assert report["splits"]["train"]["per_class"]["Church bell"] == 4
    assert report["splits"]["test"]["media_missing"] == 3 and "no media" in report["splits"]["test"]["problems"][0]


def test_no_media_is_not_usable(fixtures: Path, capsys: pytest.CaptureFixture) -> None:
    status, out = _check(["llp", "--root", str(fixtures), "--split", "val"], capsys)
    assert status == 1 and "val: 3 samples, media 0 found / 3 missing, 25 classes" in out and "NOT usable" in out


def test_malformed_file_names_line(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.copytree(fixtures / "AVE", tmp_path / "AVE")
    with open(tmp_path / "AVE" / "valSet.txt", "a") as fh:
        fh.write("Bark&abc&good&4\n")
    status, out = _check(["ave", "--root", str(tmp_path), "--annotations-only"], capsys)
    assert status == 1 and f"problem: {tmp_path / 'AVE' / 'valSet.txt'}:4: expected 5 '&'-separated fields" in out


def test_avsynth_is_usable(small_synth: Path, capsys: pytest.CaptureFixture) -> None:
    status, out = _check(["avsbench_s4", "--root", str(small_synth)], capsys)
    assert status == 0 and "train: 2 samples, media 2 found / 0 missing" in out and out.rstrip().endswith("usable")


def test_unknown_dataset(capsys: pytest.CaptureFixture) -> None:
    assert main.main(["data", "check", "avee", "--root", "."]) == 2
    assert "Did you mean ave" in capsys.readouterr().err


def test_the_help_names_every_registered_dataset() -> None:
    import re

    import avlearn.data.datasets  # noqa: F401  (registers the readers)
    from avlearn.cli.data import DESCRIPTION
    from avlearn.registry import DATASETS

    paragraph = DESCRIPTION.split("NAME is a registered dataset")[1].split("Examples")[0]
    named = set(re.findall(r"[a-z][a-z0-9_]+", paragraph))
    assert set(DATASETS.names()) <= named, sorted(set(DATASETS.names()) - named)
