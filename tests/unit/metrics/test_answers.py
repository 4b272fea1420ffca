"""Open-ended answer scoring (avlearn.metrics.answers): normalisation, exact match per type, the majority baseline."""

from __future__ import annotations

import pytest

from avlearn.metrics.answers import exact_match, exact_match_by_type, majority_by_type, normalize_answer


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("The Two  violins!", "2 violins"),
        ("an accordion.", "accordion"),
        ("Three", "3"),
        ("none", "0"),
        ("3.5 seconds", "3.5 seconds"),
        ("left, then right", "left then right"),
        ("A", ""),
        ("there is a piano", "there is piano"),
    ],
)
def test_normalize_answer(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_exact_match_by_type_against_a_hand_count():
    preds = ["Yes", "two", "the left", "violin", "no"]
    truth = ["yes", "2", "left", "cello", "yes"]
    types = ["Audio/Counting", "Audio-Visual/Counting", "Audio-Visual/Temporal", "Audio-Visual/Temporal",
             "Audio/Counting"]  # fmt: skip
    assert exact_match(preds, truth).tolist() == [True, True, True, False, False]
    scores = exact_match_by_type(preds, truth, types)
    assert scores["Audio/Counting"] == 50.0 and scores["Audio-Visual/Counting"] == 100.0
    assert scores["Audio-Visual/Temporal"] == 50.0 and scores["Audio-Visual"] == pytest.approx(200 / 3)
    assert scores["overall"] == 60.0


def test_majority_by_type_answers_each_type_with_its_most_frequent_training_answer():
    train = ["yes", "Yes", "no", "two", "three", "three"]
    train_types = ["Audio/Counting"] * 3 + ["Audio-Visual/Counting"] * 3
    test = ["yes", "no", "3", "two", "left"]
    types = ["Audio/Counting", "Audio/Counting", "Audio-Visual/Counting", "Audio-Visual/Counting", "Visual/Location"]
    scores = majority_by_type(train, train_types, test, types)
    assert scores["Audio/Counting"] == 50.0 and scores["Audio-Visual/Counting"] == 50.0
    assert scores["Visual/Location"] == 0.0  # unseen type: the overall majority ("yes" or "3")
