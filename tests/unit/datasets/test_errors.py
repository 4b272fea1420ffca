"""Malformed annotations fail with file:line and what was expected; media-less samples follow the policy."""

import shutil
from pathlib import Path

import pytest

from avlearn.data.datasets.ave import AVEDataset
from avlearn.data.datasets.avsbench import AVSBenchS4
from avlearn.data.datasets.llp import LLPDataset
from avlearn.data.datasets.music_avqa import MusicAVQADataset
from avlearn.data.datasets.vggsound import VGGSoundDataset
from avlearn.errors import DataError


def _copy(fixtures: Path, tmp_path: Path, folder: str) -> Path:
    shutil.copytree(fixtures / folder, tmp_path / folder)
    return tmp_path / folder


def _append(path: Path, line: str) -> str:
    text = path.read_text()
    path.write_text(text + line + "\n")
    return f"{path}:{len(text.splitlines()) + 1}"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Bark&abc&good&0", "expected 5 '&'-separated fields"),
        ("Bark&abc&good&x&4", "must be whole seconds"),
        ("Bark&abc&good&5&11", "expected 0 <= StartTime <= EndTime <= 10"),
        ("Unicorn&abc&good&0&4", "field 'Category': unknown class 'Unicorn'"),
    ],
)
def test_ave_bad_row(fixtures: Path, tmp_path: Path, line: str, expected: str) -> None:
    where = _append(_copy(fixtures, tmp_path, "AVE") / "testSet.txt", line)
    with pytest.raises(DataError, match=expected) as err:
        AVEDataset(tmp_path, "test", missing="keep")
    assert str(err.value).startswith(where)


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    [
        ("AVVP_test_pd.csv", "abc_0_10", "expected 2 tab-separated fields"),
        ("AVVP_test_pd.csv", "abc_0_10\tUnicorn", "field 'event_labels': unknown class 'Unicorn'"),
        ("AVVP_eval_audio.csv", "abc_0_10\t0\t11\tDog", "field 'offset': expected an integer in 0..10"),
    ],
)
def test_llp_bad_row(fixtures: Path, tmp_path: Path, file: str, line: str, expected: str) -> None:
    where = _append(_copy(fixtures, tmp_path, "LLP") / file, line)
    with pytest.raises(DataError, match=expected) as err:
        LLPDataset(tmp_path, "test", missing="keep")
    assert str(err.value).startswith(where)


def test_music_avqa_bad_items(fixtures: Path, tmp_path: Path) -> None:
    folder = _copy(fixtures, tmp_path, "MUSIC-AVQA")
    path = folder / "avqa-val.json"
    good = path.read_text()
    path.write_text(good.replace('"templ_values": "[\\"ukulele\\"]"', '"templ_values": "[]"', 1))
    with pytest.raises(DataError, match=r"item 0 \(question_id 7\): field 'templ_values': 1 slot"):
        MusicAVQADataset(tmp_path, "val", missing="keep")
    path.write_text(good.replace('"anser": "yes"', '"anser": "purple"', 1))
    with pytest.raises(DataError, match="field 'anser': 'purple' is not in the answer vocabulary"):
        MusicAVQADataset(tmp_path, "val", missing="keep")
    path.write_text(good.replace("Existential", "Smell", 1))
    with pytest.raises(DataError, match="field 'type': expected"):
        MusicAVQADataset(tmp_path, "val", missing="keep")


def test_avsbench_and_vggsound_bad_rows(fixtures: Path, tmp_path: Path) -> None:
    where = _append(_copy(fixtures, tmp_path, "AVSBench") / "avsbench_test.csv", "nounderscore,dog")
    with pytest.raises(DataError, match="expected '<name>_<frame>,<category>'") as err:
        AVSBenchS4(tmp_path, "test", missing="keep")
    assert str(err.value).startswith(where)
    (tmp_path / "AVSBench" / "avsbench_val.csv").write_text("abc_1,dog\nabc_2,dog\n")
    with pytest.raises(DataError, match=r"lists frames \[1, 2\], expected 1..5"):
        AVSBenchS4(tmp_path, "val", missing="keep")
    where = _append(_copy(fixtures, tmp_path, "VGGSound") / "vggsound_test.csv", "abc_12,dog")
    with pytest.raises(DataError, match="expected '<YouTubeID>_<start:06d>,label'") as err:
        VGGSoundDataset(tmp_path, "test", missing="keep")
    assert str(err.value).startswith(where)


def test_unknown_split_and_policy(fixtures: Path) -> None:
    with pytest.raises(DataError, match="unknown ave split 'dev'; expected one of train, val, test, all"):
        AVEDataset(fixtures, "dev")
    with pytest.raises(DataError, match="missing='maybe'"):
        AVEDataset(fixtures, "test", missing="maybe")


def test_missing_media_error_drop_keep(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _copy(fixtures, tmp_path, "AVE")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "EsfJpLbBeb4.mp4").write_bytes(b"present")  # only the first test video exists
    with pytest.raises(DataError, match=r"ave test: 2 of 3 samples have no media \(first: hOuyJFqb4JM, XGVkq0Kl2aw\)"):
        AVEDataset(tmp_path, "test")
    dropped = AVEDataset(tmp_path, "test", missing="drop")
    assert [r.id for r in dropped.records] == ["EsfJpLbBeb4"] and dropped.dropped == ["hOuyJFqb4JM", "XGVkq0Kl2aw"]
    printed = capsys.readouterr().err
    assert "2 of 3 samples have no media" in printed and "dropped" in printed
    kept = AVEDataset(tmp_path, "test", missing="keep")
    assert len(kept) == 3 and kept.missing == ["hOuyJFqb4JM", "XGVkq0Kl2aw"]
    with pytest.raises(DataError, match="no media for 'hOuyJFqb4JM'"):
        kept[1]
