"""Separation against mir_eval, captioning against pycocoevalcap's COCOEvalCap, and the no-Java path."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from avlearn.errors import DataError
from avlearn.metrics import captioning
from avlearn.metrics.captioning import caption_scores, score_caption
from avlearn.metrics.separation import bss_eval_sources, score_separation


def _mixtures(seed: int, count: int = 2, length: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    refs = rng.standard_normal((count, 2, length))
    refs[:, 1] = np.cumsum(refs[:, 1], axis=-1) * 0.05  # one low-pass, correlated source
    kernel = rng.standard_normal(40) * 0.2
    leak = np.stack([[np.convolve(r, kernel, mode="same") for r in m] for m in refs])
    ests = 0.8 * refs + 0.3 * leak[:, ::-1] + 0.05 * rng.standard_normal(refs.shape)
    return refs, ests


@pytest.mark.parametrize("permutation", [False, True])
def test_bss_eval_matches_mir_eval(permutation: bool) -> None:
    mir_eval = pytest.importorskip("mir_eval")
    refs, ests = _mixtures(0)
    ests[1] = ests[1, ::-1]  # a swapped pair: only the permutation search recovers it
    got = bss_eval_sources(refs, ests, permutation=permutation, batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bss_eval_sources is deprecated in mir_eval 0.8
        want = [
            mir_eval.separation.bss_eval_sources(r, e, compute_permutation=permutation)
            for r, e in zip(refs, ests, strict=False)
        ]
    for i, name in enumerate(("sdr", "sir", "sar", "perm")):
        np.testing.assert_allclose(got[name], np.stack([w[i] for w in want]), rtol=0, atol=1e-6, err_msg=name)
    assert got["perm"][1].tolist() == ([1, 0] if permutation else [0, 1])


def test_separation_scorer_and_bad_input(tmp_path: Path) -> None:
    refs, ests = _mixtures(1, count=2, length=3000)
    np.savez(tmp_path / "gt.npz", m0=refs[0], m1=refs[1])
    np.savez(tmp_path / "pred.npz", m0=ests[0], m1=ests[1])
    got = score_separation([tmp_path / "pred.npz"], [tmp_path / "gt.npz"])
    assert got["sdr"] == pytest.approx(bss_eval_sources(refs, ests)["sdr"].mean())
    bad = ests.copy()
    bad[1, 0] = 0.0
    np.savez(tmp_path / "pred.npz", m0=ests[0], m1=bad[1])
    with pytest.raises(DataError, match="id 'm1': a estimate source is all zeros"):
        score_separation([tmp_path / "pred.npz"], [tmp_path / "gt.npz"])
    np.savez(tmp_path / "pred.npz", m0=ests[0], m1=ests[1, :, :100])
    with pytest.raises(DataError, match="id 'm1': shape"):
        score_separation([tmp_path / "pred.npz"], [tmp_path / "gt.npz"])


REFS = {
    "v1": ["A man is playing a guitar.", "Someone plays the guitar on stage."],
    "v2": ["A dog runs across the park!", "A brown dog is running outside."],
    "v3": ["Two people talk in a kitchen.", "A couple is cooking and talking."],
}
PREDS = {"v1": "a man plays a guitar", "v2": "a dog is running in a park", "v3": "people are cooking"}


def test_captions_without_java_are_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(captioning.shutil, "which", lambda name: None)
    assert caption_scores(PREDS, REFS) == dict.fromkeys(captioning.METRICS)


class _Skipped:
    """Stands in for SPICE (downloads models) and METEOR (a second 2 GB JVM) in the oracle run."""

    def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        return 0.0, [0.0] * len(res)

    def method(self) -> str:
        return "skipped"


@pytest.mark.skipif(not captioning.java_available(), reason="no java on PATH")
def test_captions_match_cocoevalcap(tmp_path: Path) -> None:
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.eval import COCOEvalCap
    from pycocotools.coco import COCO

    annotations = [{"image_id": k, "id": i, "caption": c} for i, (k, cs) in enumerate(REFS.items()) for c in cs]
    (tmp_path / "gt.json").write_text(json.dumps({"images": [{"id": k} for k in REFS], "annotations": annotations}))
    coco = COCO(str(tmp_path / "gt.json"))
    result = coco.loadRes([{"image_id": k, "caption": c} for k, c in PREDS.items()])
    evaluator = COCOEvalCap(coco, result)
    evaluator.params["image_id"] = result.getImgIds()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pycocoevalcap.eval.Spice", _Skipped)
        patch.setattr("pycocoevalcap.eval.Meteor", _Skipped)
        evaluator.evaluate()
    (tmp_path / "pred.json").write_text(json.dumps(PREDS))
    ours = score_caption([tmp_path / "pred.json"], [tmp_path / "gt.json"], meteor=False)
    names = {"Bleu_1": "BLEU-1", "Bleu_2": "BLEU-2", "Bleu_4": "BLEU-4", "ROUGE_L": "ROUGE-L", "CIDEr": "CIDEr"}
    for theirs, mine in names.items():
        assert ours[mine] == pytest.approx(100 * evaluator.eval[theirs], abs=1e-9), mine
    assert 0 < ours["CIDEr"] and ours["METEOR"] is None


@pytest.mark.slow
@pytest.mark.skipif(not captioning.java_available(), reason="no java on PATH")
def test_meteor_matches_pycocoevalcap() -> None:
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFS.items()})
    res = tokenizer.tokenize({k: [{"caption": c}] for k, c in PREDS.items()})
    want, _ = Meteor().compute_score(gts, res)
    assert caption_scores(PREDS, REFS)["METEOR"] == pytest.approx(100 * want)
