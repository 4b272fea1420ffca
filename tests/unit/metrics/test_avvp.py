"""AVVP segment/event F1: hand-derived cases, a loop reference, the event tables, the file scorer, bad input."""

from pathlib import Path

import numpy as np
import pytest

from avlearn.errors import DataError
from avlearn.metrics.avvp import (
    AVVP_CLASSES,
    avvp_scores,
    events_to_segments,
    read_event_file,
    score_avvp,
    segments_to_events,
    write_event_file,
)

LLP = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "LLP"  # beside the checkout, as in CI


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    out, start = [], None
    for s, on in enumerate([*row, False]):
        if on and start is None:
            start = s
        if not on and start is not None:
            out.append((start, s))
            start = None
    return out


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter >= 0.5 * ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def _f(tp, fp, fn) -> float:
    fs = [2 * t / (2 * t + p + n) for t, p, n in zip(tp, fp, fn, strict=False) if t + p > 0 or t + n > 0]
    return sum(fs) / len(fs) if fs else 1.0


def _segment(p, g):
    return (p & g).sum(1), (p & ~g).sum(1), (~p & g).sum(1)


def _event(p, g):
    tp, fp, fn = [], [], []
    for pk, gk in zip(p, g, strict=False):
        pr, gr = _runs(pk), _runs(gk)
        hits = sum(any(_overlaps(a, b) for b in gr) for a in pr)
        tp.append(hits)
        fp.append(len(pr) - hits)
        fn.append(sum(not any(_overlaps(b, a) for a in pr) for b in gr))
    return np.array(tp), np.array(fp), np.array(fn)


def reference(pa, pv, ga, gv) -> dict[str, float]:
    """A per-video, per-class loop written from the published definitions (the oracle)."""
    out = {}
    for level, count in (("segment", _segment), ("event", _event)):
        per = {"audio": [], "visual": [], "audio_visual": [], "event_at_av": []}
        for b in range(len(pa)):
            ca, cv = count(pa[b], ga[b]), count(pv[b], gv[b])
            per["audio"].append(_f(*ca))
            per["visual"].append(_f(*cv))
            per["audio_visual"].append(_f(*count(pa[b] & pv[b], ga[b] & gv[b])))
            per["event_at_av"].append(_f(*(x + y for x, y in zip(ca, cv, strict=False))))
        means = {k: 100 * float(np.mean(v)) for k, v in per.items()}
        means["type_at_av"] = (means["audio"] + means["visual"] + means["audio_visual"]) / 3
        out |= {f"{level}_{k}": v for k, v in means.items()}
    return out


def test_hand_computed_single_class() -> None:
    # gt audio on [0, 4), prediction on [1, 5): segments TP 3, FP 1, FN 1 -> 0.75; events IoU 3/5 -> matched.
    gt = np.zeros((1, 1, 10), bool)
    gt[0, 0, :4] = True
    pred = np.roll(gt, 1, axis=-1)
    empty = np.zeros_like(gt)
    scores = avvp_scores(pred, empty, gt, empty)
    assert scores["segment_audio"] == pytest.approx(75.0)
    assert scores["event_audio"] == pytest.approx(100.0)
    assert scores["segment_visual"] == 100.0  # no visual event anywhere: all true negatives
    assert scores["segment_audio_visual"] == 100.0
    assert scores["segment_event_at_av"] == pytest.approx(75.0)
    # IoU below 0.5: gt [0, 2), prediction [1, 3) -> 1 / 3, an FP and an FN.
    gt[0, 0, 2:4] = False
    assert avvp_scores(np.roll(gt, 1, -1), empty, gt, empty)["event_audio"] == 0.0


def test_matches_loop_reference_on_random_arrays() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.random((40, 7, 10)) < d for d in (0.3, 0.5, 0.4, 0.6)]
    got, want = avvp_scores(*arrays), reference(*arrays)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_segments_events_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((5, len(AVVP_CLASSES), 10)) < 0.4
    ids = [f"vid{i}_0_10" for i in range(5)]
    rows = segments_to_events(x, ids)
    assert all(on < off for _, on, off, _ in rows)
    assert (events_to_segments(rows, ids) == x).all()
    write_event_file(tmp_path / "p.csv", rows)
    assert read_event_file(tmp_path / "p.csv") == rows
    assert segments_to_events(np.ones((1, 1, 10), bool), ["v"], ["Dog"]) == [("v", 0, 10, "Dog")]


def test_empty_and_reversed_rows_mark_nothing() -> None:
    rows = [("v", 9, 9, "Dog"), ("v", 9, 0, "Dog"), ("v", 2, 4, "Cat")]
    x = events_to_segments(rows, ["v"], ["Dog", "Cat"])
    assert not x[0, 0].any() and x[0, 1].tolist() == [False, False, True, True] + [False] * 6


def _shift(src: Path, dst: Path, seconds: int) -> None:
    rows = [(v, min(on + seconds, 10), min(off + seconds, 10), c) for v, on, off, c in read_event_file(src)]
    write_event_file(dst, rows)


def test_scorer_ground_truth_against_itself(fixtures: Path) -> None:
    a, v, videos = fixtures / "llp_eval_audio.csv", fixtures / "llp_eval_visual.csv", fixtures / "llp_test_pd.csv"
    assert set(score_avvp([a, v], [a, v, videos]).values()) == {100.0}


def test_scorer_shifted_excerpt_hand_derived(fixtures: Path, tmp_path: Path) -> None:
    a, v, videos = fixtures / "llp_eval_audio.csv", fixtures / "llp_eval_visual.csv", fixtures / "llp_test_pd.csv"
    _shift(a, tmp_path / "a.csv", 1)
    _shift(v, tmp_path / "v.csv", 1)
    got = score_avvp([tmp_path / "a.csv", tmp_path / "v.csv"], [a, v, videos])
    # Every event moves one second later (offsets clipped at 10); per video, class by class (docs/scoring.md):
    seg_audio = [3 / 4, (2 / 3 + 7 / 8) / 2, (1 / 2 + 4 / 5) / 2, (7 / 8 + 8 / 9) / 2,
                 (10 / 13 + 1 / 2 + 8 / 9) / 3, (18 / 19 + 8 / 9) / 2]  # fmt: skip
    event_audio = [1, 1, (0 + 1) / 2, 1, (2 / 3 + 0 + 1) / 3, 1]
    seg_visual = [18 / 19, 18 / 19, (1 / 2 + 1 / 2) / 2, 1, 18 / 19, 18 / 19]
    event_visual = [1, 1, 0, 1, 1, 1]
    assert got["segment_audio"] == pytest.approx(100 * np.mean(seg_audio))
    assert got["event_audio"] == pytest.approx(100 * np.mean(event_audio))
    assert got["segment_visual"] == pytest.approx(100 * np.mean(seg_visual))
    assert got["event_visual"] == pytest.approx(100 * np.mean(event_visual))
    ids = [r.split("\t")[0] for r in videos.read_text().splitlines()[1:]]
    arrays = [events_to_segments(read_event_file(p), ids) for p in (tmp_path / "a.csv", tmp_path / "v.csv", a, v)]
    assert got == pytest.approx(reference(*arrays))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("unknown_id_0_10\t0\t3\tDog", "unknown id 'unknown_id_0_10'"),
        ("4YdbENYcIyE_23_33\t0\t3\tUnicorn", "unknown class 'Unicorn'"),
        ("4YdbENYcIyE_23_33\t0\t2.5\tDog", "field 'offset'"),
        ("4YdbENYcIyE_23_33\t0\t11\tDog", "field 'offset'"),
        ("4YdbENYcIyE_23_33\t0\tnan\tDog", "field 'offset'"),
    ],
)
def test_bad_prediction_names_file_and_id(fixtures: Path, tmp_path: Path, line: str, message: str) -> None:
    a, v, videos = fixtures / "llp_eval_audio.csv", fixtures / "llp_eval_visual.csv", fixtures / "llp_test_pd.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text("filename\tonset\toffset\tevent_labels\n" + line + "\n")
    with pytest.raises(DataError, match=message) as err:
        score_avvp([bad, v], [a, v, videos])
    assert str(bad) in str(err.value)


def test_wrong_file_counts() -> None:
    with pytest.raises(DataError, match="expected 2 file"):
        score_avvp(["only_one.csv"], ["a", "b"])


needs_llp = pytest.mark.skipif(not (LLP / "AVVP_eval_audio.csv").exists(), reason="../shared/data/LLP is absent")


def _test_subset(tmp_path: Path, name: str, ids: set[str]) -> Path:
    lines = (LLP / name).read_text().splitlines()
    out = tmp_path / name
    out.write_text("\n".join([lines[0]] + [x for x in lines[1:] if x.split("\t")[0] in ids]) + "\n")
    return out


@needs_llp
def test_full_llp_test_set(tmp_path: Path) -> None:
    gt = [LLP / "AVVP_eval_audio.csv", LLP / "AVVP_eval_visual.csv", LLP / "AVVP_test_pd.csv"]
    ids = [x.split("\t")[0] for x in gt[2].read_text().splitlines()[1:]]
    assert len(ids) == 1200
    pred = [_test_subset(tmp_path, p.name, set(ids)) for p in gt[:2]]
    assert set(score_avvp(pred, gt).values()) == {100.0}
    # Shifted by one second: equal to the loop reference on all 1200 videos.
    for p in pred:
        _shift(p, p, 1)
    got = score_avvp(pred, gt)
    wanted = set(ids)
    rows = [[r for r in read_event_file(p) if r[0] in wanted] for p in (*pred, *gt[:2])]
    assert got == pytest.approx(reference(*(events_to_segments(r, ids) for r in rows)))
    assert 0 < got["segment_audio"] < 100
    # Shifted out of the clip: only videos without any ground-truth event of a kind score (1.0 each).
    for p in pred:
        _shift(p, p, 10)
    got = score_avvp(pred, gt)
    for kind, path in (("audio", gt[0]), ("visual", gt[1])):
        with_event = {v for v, on, off, _ in read_event_file(path) if on < off}
        expected = 100 * sum(v not in with_event for v in ids) / len(ids)
        assert got[f"segment_{kind}"] == pytest.approx(expected)
        assert got[f"event_{kind}"] == pytest.approx(expected)
