"""Captioning: BLEU-1..4, METEOR, ROUGE-L and CIDEr with the COCO caption evaluation (pycocoevalcap).

Follows the COCO caption protocol (Chen et al., "Microsoft COCO Captions", 2015; the ``pycocoevalcap``
package) as VALOR reports it (``compute_metric_cap``): references and candidates are tokenised by the
Stanford PTB tokenizer (lower-cased, punctuation removed), then BLEU (``Bleu(4)``), METEOR 1.5,
ROUGE-L and CIDEr-D are computed over the evaluated ids, and multiplied by 100. SPICE is not computed
(it downloads Stanford CoreNLP models at run time).

What differs: nothing in the numbers. The PTB tokenizer and METEOR run on Java; when no ``java`` is on
the PATH every metric is reported as unavailable (``None``), never as 0, because without the PTB
tokenisation none of them would be the official number. pycocoevalcap is an optional dependency
(``pip install avlearn[captioning-eval]``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

from avlearn.data.textfiles import read_json
from avlearn.errors import AvlearnError, DataError
from avlearn.metrics.formats import PathLike, check_ids, expect_files
from avlearn.registry import SCORERS

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def java_available() -> bool:
    """Whether a ``java`` executable is on the PATH (the PTB tokenizer and METEOR need it)."""
    return shutil.which("java") is not None


def caption_scores(
    predictions: dict[str, str], references: dict[str, list[str]], *, meteor: bool = True
) -> dict[str, float | None]:
    """COCO caption metrics (x100) of one caption per id against its reference captions.

    Args:
        predictions: id -> generated caption.
        references: id -> reference captions; must cover every predicted id.
        meteor: Compute METEOR (its Java process takes ~10 s to load its tables); ``None`` when False.

    Returns:
        ``BLEU-1``..``BLEU-4``, ``METEOR``, ``ROUGE-L``, ``CIDEr``; all ``None`` when Java is missing.
    """
    if not java_available():
        return dict.fromkeys(METRICS)
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError:
        raise AvlearnError("captioning metrics need pycocoevalcap: pip install 'avlearn[captioning-eval]'") from None
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in references[k]] for k in predictions})
    res = tokenizer.tokenize({k: [{"caption": c}] for k, c in predictions.items()})
    bleu, _ = Bleu(4).compute_score(gts, res)
    meteor_score = _meteor(Meteor, gts, res) if meteor else None
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    values = [*bleu, meteor_score, rouge, cider]
    return {name: None if v is None else float(100.0 * v) for name, v in zip(METRICS, values, strict=True)}


def _meteor(meteor_class: type, gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    """METEOR 1.5 through pycocoevalcap's wrapper, making sure its Java process ends."""
    scorer = meteor_class()
    try:
        score, _ = scorer.compute_score(gts, res)
    finally:
        del scorer  # its __del__ stops the Java process
    return score


def read_references(path: PathLike) -> dict[str, list[str]]:
    """``{"annotations": [{"video_id"|"image_id", "caption"}]}`` (VALOR / COCO) or ``{id: [captions]}``."""
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        out: dict[str, list[str]] = {}
        for n, item in enumerate(data["annotations"]):
            key = item.get("video_id", item.get("image_id")) if isinstance(item, dict) else None
            if key is None or not isinstance(item.get("caption"), str):
                raise DataError(f"{path}: annotations[{n}]: expected 'video_id' (or 'image_id') and 'caption'")
            out.setdefault(str(key), []).append(item["caption"])
        return out
    if isinstance(data, dict) and all(
        isinstance(v, list) and all(isinstance(c, str) for c in v) for v in data.values()
    ):
        return {str(k): v for k, v in data.items()}
    raise DataError(f"{path}: expected {{'annotations': [{{'video_id', 'caption'}}]}} or {{id: [captions]}}")


def read_predictions(path: PathLike) -> dict[str, str]:
    """``{id: caption}`` or a COCO result list ``[{"video_id"|"image_id", "caption"}]``."""
    data = read_json(path)
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return {str(k): v for k, v in data.items()}
    if isinstance(data, list):
        out = {}
        for n, item in enumerate(data):
            key = item.get("video_id", item.get("image_id")) if isinstance(item, dict) else None
            if key is None or not isinstance(item.get("caption"), str):
                raise DataError(f"{path}: item {n}: expected 'video_id' (or 'image_id') and 'caption'")
            if str(key) in out:
                raise DataError(f"{path}: item {n}: id '{key}' has a second caption (one per id)")
            out[str(key)] = item["caption"]
        return out
    raise DataError(f"{path}: expected {{id: caption}} or [{{'video_id', 'caption'}}]")


@SCORERS.register("caption")
def score_caption(pred: Sequence[PathLike], gt: Sequence[PathLike], meteor: bool = True) -> dict[str, float | None]:
    """Caption BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap, PTB tokenisation, x100; needs Java).

    Args:
        pred: One JSON file, ``{id: caption}`` or ``[{"video_id", "caption"}]``.
        gt: One JSON file, ``{"annotations": [{"video_id", "caption"}]}`` or ``{id: [captions]}``.
        meteor: Compute METEOR (slow to start); reported as unavailable when False.
    """
    (pred_file,) = expect_files(pred, 1, "caption --pred")
    (gt_file,) = expect_files(gt, 1, "caption --gt")
    references = read_references(gt_file)
    predictions = read_predictions(pred_file)
    check_ids(predictions, references, pred_file)
    return caption_scores(predictions, references, meteor=meteor)
