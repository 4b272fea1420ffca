"""Retrieval ranks and classification metrics: hand cases, scikit-learn oracle, file scorers, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from avlearn.errors import DataError
from avlearn.metrics.classification import fewshot_summary, multilabel_scores, score_classification, topk_accuracy
from avlearn.metrics.retrieval import retrieval_scores, score_retrieval


def test_retrieval_hand_case_both_directions() -> None:
    # 3 videos, 4 texts; texts 0, 1 describe video 0, text 2 video 1, text 3 video 2.
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.1, 0.7, 0.3], [0.5, 0.4, 0.3]])
    got = retrieval_scores(scores, [0, 0, 1, 2])
    # t2v ranks (0-based): 0, 1, 0, 2 -> R@1 50, lower median 0 -> MedR 1, MeanR 1 + 3/4.
    assert got["t2v_r1"] == 50.0 and got["t2v_r5"] == 100.0
    assert got["t2v_medr"] == 1.0 and got["t2v_meanr"] == 1.75
    # v2t: video 0 best of texts {0: rank 0, 1: rank 2} -> 0; video 1: text 2 is behind text 1 -> 1; video 2: 0.
    assert got["v2t_r1"] == pytest.approx(200 / 3) and got["v2t_meanr"] == pytest.approx(4 / 3)
    assert got["t2v_ravg"] == pytest.approx((50 + 100 + 100) / 3)
    assert "t2v_r1_dsl" not in got


def test_retrieval_dual_softmax_reported_separately() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((20, 20)) + 3 * np.eye(20)
    got = retrieval_scores(scores, np.arange(20), dual_softmax_temperature=0.05)
    s = scores * np.exp(scores / 0.05) / np.exp(scores / 0.05).sum(axis=0) * 20
    manual = (s > np.diag(s)[:, None]).sum(axis=1)
    assert got["t2v_r1_dsl"] == pytest.approx(100 * np.mean(manual < 1))
    assert got["t2v_r1"] == pytest.approx(100 * np.mean((scores > np.diag(scores)[:, None]).sum(1) < 1))


def test_retrieval_scorer_rejects_nan_and_unknown(tmp_path: Path) -> None:
    scores = np.eye(3)
    scores[1, 2] = np.nan
    np.savez(tmp_path / "s.npz", scores=scores, text_ids=["a", "b", "c"], video_ids=["x", "y", "z"])
    (tmp_path / "gt.json").write_text(json.dumps({"a": "x", "b": "y", "c": "z"}))
    with pytest.raises(DataError, match="id 'b': scores holds NaN"):
        score_retrieval([tmp_path / "s.npz"], [tmp_path / "gt.json"])
    np.savez(tmp_path / "s.npz", scores=np.eye(3), text_ids=["a", "b", "q"], video_ids=["x", "y", "z"])
    with pytest.raises(DataError, match="unknown id 'q'"):
        score_retrieval([tmp_path / "s.npz"], [tmp_path / "gt.json"])
    np.savez(tmp_path / "s.npz", scores=np.eye(3), text_ids=["a", "b", "c"], video_ids=["x", "y", "z"])
    assert score_retrieval([tmp_path / "s.npz"], [tmp_path / "gt.json"])["t2v_r1"] == 100.0


def test_topk_hand_case() -> None:
    scores = np.array(
        [[0.1, 0.5, 0.4, 0.0, 0.0, 0.0], [0.9, 0.06, 0.05, 0.03, 0.02, 0.01]]
    )  # label 5: five classes above it
    assert topk_accuracy(scores, [2, 5], ks=(1, 2, 5)) == {"top1": 0.0, "top2": 50.0, "top5": 50.0}


def test_multilabel_against_sklearn_and_hand() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.random((60, 8)) < 0.3
    labels[:, 7] = False  # unseen class: left out
    scores = np.round(rng.random((60, 8)) + labels, 1)  # rounding makes ties
    got = multilabel_scores(scores, labels)
    seen = labels.any(0)
    ap = [metrics.average_precision_score(labels[:, k], scores[:, k]) for k in np.flatnonzero(seen)]
    auc = [metrics.roc_auc_score(labels[:, k], scores[:, k]) for k in np.flatnonzero(seen)]
    assert got["map"] == pytest.approx(100 * np.mean(ap)) and got["auc"] == pytest.approx(100 * np.mean(auc))
    # Hand: positives ranked 1st and 3rd -> AP = (1/1 + 2/3) / 2.
    hand = multilabel_scores(np.array([[0.9], [0.8], [0.7], [0.1]]), np.array([[1], [0], [1], [0]], bool))
    assert hand["map"] == pytest.approx(100 * (1 + 2 / 3) / 2) and hand["auc"] == 75.0


def test_fewshot_summary_population_std() -> None:
    got = fewshot_summary([{"top1": 50.0}, {"top1": 60.0}, {"top1": 70.0}])
    assert got == {"top1_mean": 60.0, "top1_std": pytest.approx(np.sqrt(200 / 3))}


def test_classification_scorer_seeds_and_errors(tmp_path: Path) -> None:
    (tmp_path / "gt.csv").write_text("a,dog\nb,cat\nc,dog\n")
    classes = ["cat", "dog"]
    np.savez(tmp_path / "s1.npz", ids=["a", "b", "c"], scores=[[0, 1], [1, 0], [1, 0]], classes=classes)
    np.savez(tmp_path / "s2.npz", ids=["a", "b", "c"], scores=[[0, 1], [1, 0], [0, 1]], classes=classes)
    got = score_classification([tmp_path / "s1.npz", tmp_path / "s2.npz"], [tmp_path / "gt.csv"])
    assert got["top1_mean"] == pytest.approx(100 * 5 / 6) and got["top1_std"] == pytest.approx(100 / 6)
    np.savez(tmp_path / "bad.npz", ids=["a", "b"], scores=[[0, 1], [1, 0]], classes=classes)
    with pytest.raises(DataError, match="missing id 'c'"):
        score_classification([tmp_path / "bad.npz"], [tmp_path / "gt.csv"])
    np.savez(tmp_path / "bad.npz", ids=["a", "b", "c"], scores=[[0, 1], [np.nan, 0], [1, 0]], classes=classes)
    with pytest.raises(DataError, match="id 'b': scores holds NaN"):
        score_classification([tmp_path / "bad.npz"], [tmp_path / "gt.csv"])
