"""AVS mIoU / F-score: hand cases, batch independence, the background option, PNG and npz scoring, bad input."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avlearn.errors import DataError
from avlearn.metrics.avs import avs_scores, frame_fscore_curves, score_avs


def _square(n: int = 8, lo: int = 2, hi: int = 6) -> np.ndarray:
    m = np.zeros((n, n), bool)
    m[lo:hi, lo:hi] = True
    return m


def test_miou_hand_case_and_empty_ground_truth() -> None:
    gt = np.stack([_square(), np.zeros((8, 8), bool)])
    pred = np.stack([_square(lo=3, hi=7), np.zeros((8, 8))]).astype(np.float32)
    # Frame 0: |P&G| = 9, |P|G| = 23. Frame 1 (empty gt): 64 background pixels of 64 predicted background.
    got = avs_scores(pred, gt)
    assert got["miou"] == pytest.approx(100 * (9 / 23 + 1) / 2, rel=1e-6)
    # F-score skips the empty frame; hard mask: prec = rec = 9/16 at every threshold above 0.
    assert got["fscore"] == pytest.approx(100 * 9 / 16, rel=1e-6)


def _reference_curve(prob: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """AVSBench's per-frame F-beta curve, written in torch the way the reference computes it."""
    import torch

    pred, mask = torch.from_numpy(prob), torch.from_numpy(gt).float()
    curves = []
    for p, g in zip(pred, mask, strict=False):
        prec, rec = torch.zeros(255), torch.zeros(255)
        for i, th in enumerate(torch.linspace(0, 1 - 1e-10, 255)):
            on = (p >= th).float()
            tp = (on * g).sum()
            prec[i], rec[i] = tp / (on.sum() + 1e-20), tp / (g.sum() + 1e-20)
        f = (1 + 0.3) * prec * rec / (0.3 * prec + rec)
        f[f != f] = 0
        curves.append(f.numpy())
    return np.stack(curves)


def test_fscore_curve_matches_reference_thresholding() -> None:
    rng = np.random.default_rng(0)
    prob = rng.random((3, 16, 16)).astype(np.float32)
    gt = rng.random((3, 16, 16)) < 0.3
    np.testing.assert_allclose(frame_fscore_curves(prob, gt), _reference_curve(prob, gt), rtol=1e-6, atol=1e-7)


def test_fscore_is_batch_independent_unlike_the_reference() -> None:
    gt = np.stack([_square(), _square()])
    prob = np.stack([np.where(gt[0], 0.9, 0.5), np.where(gt[1], 0.3, 0.0)]).astype(np.float32)
    # Each frame alone is perfect at its own threshold; no single threshold suits both frames.
    assert avs_scores(prob, gt)["fscore"] == pytest.approx(100.0)
    assert avs_scores(prob, gt, batch_size=1)["fscore"] == pytest.approx(100.0)
    batched = avs_scores(prob, gt, batch_size=2)["fscore"]
    assert batched == pytest.approx(100 * _reference_curve(prob, gt).mean(axis=0).max(), rel=1e-6)
    assert batched < 90


def test_with_background_option_labelled() -> None:
    gt = _square()[None]
    pred = _square(lo=3, hi=7)[None].astype(np.float32)
    got = avs_scores(pred, gt, with_background=True)
    # Background IoU = 41 / 55 (64 - 23 union pixels), foreground 9 / 23; DeepAVFusion averages both.
    assert got["miou_with_background"] == pytest.approx(100 * (41 / 55 + 9 / 23) / 2, rel=1e-6)
    assert "miou_with_background" not in avs_scores(pred, gt)


def _png(path: Path, array: np.ndarray, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path)


def test_png_and_npz_scorers_agree(tmp_path: Path) -> None:
    gt, pred = _square(), _square(lo=3, hi=7)
    _png(tmp_path / "gt" / "vid" / "1.png", (gt * 255).astype(np.uint8), "P")
    _png(tmp_path / "pred" / "vid" / "1.png", (pred * 255).astype(np.uint8), "L")
    np.savez(tmp_path / "gt.npz", vid=gt[None])
    np.savez(tmp_path / "pred.npz", vid=pred[None].astype(np.float32))
    from_png = score_avs([tmp_path / "pred"], [tmp_path / "gt"])
    from_npz = score_avs([tmp_path / "pred.npz"], [tmp_path / "gt.npz"])
    assert from_png == pytest.approx(from_npz)
    assert from_png["miou"] == pytest.approx(100 * 9 / 23, rel=1e-6)


@pytest.mark.parametrize(
    ("pred", "message"),
    [
        ({"vid": np.zeros((1, 4, 4))}, "id 'vid/0': mask shape"),
        ({"vid": np.full((1, 8, 8), np.nan)}, "id 'vid/0': mask holds NaN"),
        ({"vid": np.full((1, 8, 8), 3.0)}, "id 'vid/0': probabilities outside"),
        ({"other": np.zeros((1, 8, 8))}, "unknown id 'other/0'"),
    ],
)
def test_bad_masks(tmp_path: Path, pred: dict, message: str) -> None:
    np.savez(tmp_path / "gt.npz", vid=_square()[None])
    np.savez(tmp_path / "pred.npz", **pred)
    with pytest.raises(DataError, match=message):
        score_avs([tmp_path / "pred.npz"], [tmp_path / "gt.npz"])
