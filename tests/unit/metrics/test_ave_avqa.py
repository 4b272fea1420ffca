"""AVE segment/video accuracy and MUSIC-AVQA per-type accuracy: hand cases, file scorers, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from avlearn.errors import DataError
from avlearn.metrics.ave import BACKGROUND, ave_segment_accuracy, read_ave_annotations, score_ave
from avlearn.metrics.avqa import avqa_accuracy, score_avqa


def test_ave_segment_accuracy_hand_case() -> None:
    target = np.array([[0] * 5 + [28] * 5, [3] * 10])
    pred = target.copy()
    pred[0, :2] = 28  # 2 wrong
    pred[1, 9] = 4  # 1 wrong
    assert ave_segment_accuracy(pred, target) == pytest.approx(100 * 17 / 20)


def test_ave_annotations_background_outside_event(fixtures: Path, tmp_path: Path) -> None:
    labels = read_ave_annotations(fixtures / "ave_test_excerpt.txt")
    assert labels["hOuyJFqb4JM"].tolist() == [0] * 5 + [BACKGROUND] * 5  # Church bell&...&0&5
    repeated = tmp_path / "rep.txt"
    repeated.write_text("Category&VideoID&Quality&StartTime&EndTime\nBark&x&good&0&2\nCat&x&good&3&10\n")
    assert list(read_ave_annotations(repeated)) == ["x", "x#2"]


def _write_pred(path: Path, rows: dict[str, list]) -> Path:
    path.write_text("".join(f"{k}\t" + "\t".join(map(str, v)) + "\n" for k, v in rows.items()))
    return path


def test_ave_scorer_segments_and_videos(fixtures: Path, tmp_path: Path) -> None:
    gt = fixtures / "ave_test_excerpt.txt"
    truth = read_ave_annotations(gt)
    rows = {k: v.tolist() for k, v in truth.items()}
    rows["hOuyJFqb4JM"] = ["Church bell"] * 10  # 5 background segments wrong
    assert score_ave([_write_pred(tmp_path / "p.tsv", rows)], [gt]) == {"segment_accuracy": 100 * 45 / 50}
    videos = {k: ["Church bell"] for k in truth}
    videos["EsfJpLbBeb4"] = ["Bark"]
    assert score_ave([_write_pred(tmp_path / "v.tsv", videos)], [gt]) == {"video_accuracy": 80.0}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"EsfJpLbBeb4": [0] * 10}, "missing id 'hOuyJFqb4JM'"),
        ({"nope": [0] * 10}, "unknown id 'nope'"),
        ({"EsfJpLbBeb4": [0] * 9}, "id 'EsfJpLbBeb4': expected 1 or 10 labels"),
        ({"EsfJpLbBeb4": [0] * 9 + [29]}, "label of 'EsfJpLbBeb4'"),
        ({"EsfJpLbBeb4": [0] * 9 + ["nan"]}, "id 'EsfJpLbBeb4': unknown label 'nan'"),
    ],
)
def test_ave_bad_predictions(fixtures: Path, tmp_path: Path, rows: dict, message: str) -> None:
    pred = _write_pred(tmp_path / "p.tsv", rows)
    with pytest.raises(DataError, match=message) as err:
        score_ave([pred], [fixtures / "ave_test_excerpt.txt"])
    assert str(pred) in str(err.value)


def test_avqa_groups_pool_questions() -> None:
    types = ["Audio/Counting"] * 3 + ["Audio/Comparative"] + ["Visual/Location"] * 2
    got = avqa_accuracy([True, True, False, False, True, False], types)
    assert got["Audio/Counting"] == pytest.approx(200 / 3)
    assert got["Audio"] == 50.0  # 2 of 4, not the mean of 66.7 and 0
    assert got["Visual"] == 50.0 and got["overall"] == 50.0
    assert "Audio-Visual" not in got


def test_avqa_scorer(fixtures: Path, tmp_path: Path) -> None:
    gt = fixtures / "avqa_test_excerpt.json"
    items = json.loads(gt.read_text())
    answers = {str(x["question_id"]): x["anser"] for x in items}
    first_temporal = next(x for x in items if "Temporal" in x["type"])
    answers[str(first_temporal["question_id"])] = "wrong"
    (tmp_path / "p.json").write_text(json.dumps(answers))
    got = score_avqa([tmp_path / "p.json"], [gt])
    assert got["Audio-Visual/Temporal"] == 50.0 and got["Audio"] == 100.0
    assert got["Audio-Visual"] == pytest.approx(100 * 9 / 10)
    assert got["overall"] == pytest.approx(100 * 17 / 18)
    del answers[str(items[0]["question_id"])]
    (tmp_path / "p.json").write_text(json.dumps(answers))
    with pytest.raises(DataError, match=f"missing id '{items[0]['question_id']}'"):
        score_avqa([tmp_path / "p.json"], [gt])
