"""Benchmark scorers with the official semantics, as pure array functions and as ``avlearn score`` scorers.

Each family module holds the vectorised compute functions (callable from training code on NumPy arrays
or torch tensors) and one scorer registered in ``SCORERS`` that reads prediction and ground-truth files
(formats in ``docs/scoring.md``, readers in :mod:`avlearn.metrics.formats`). Importing this package
registers every scorer; heavy optional dependencies (pycocoevalcap, PIL, torch) load only when used.
"""

from avlearn.metrics.ave import ave_segment_accuracy, ave_video_accuracy
from avlearn.metrics.avqa import avqa_accuracy
from avlearn.metrics.avs import avs_scores
from avlearn.metrics.avvp import avvp_scores, events_to_segments, segments_to_events
from avlearn.metrics.captioning import caption_scores
from avlearn.metrics.classification import fewshot_summary, multilabel_scores, topk_accuracy
from avlearn.metrics.retrieval import retrieval_scores
from avlearn.metrics.separation import bss_eval_sources

__all__ = [
    "ave_segment_accuracy",
    "ave_video_accuracy",
    "avqa_accuracy",
    "avs_scores",
    "avvp_scores",
    "bss_eval_sources",
    "caption_scores",
    "events_to_segments",
    "fewshot_summary",
    "multilabel_scores",
    "retrieval_scores",
    "segments_to_events",
    "topk_accuracy",
]
