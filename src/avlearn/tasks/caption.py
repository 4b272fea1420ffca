"""Audio-visual captioning: a sentence generated for each clip, scored by the COCO caption metrics.

Follows VALOR's captioning head (Chen et al., "VALOR: Vision-Audio-Language Omni-Perception Pretraining Model and
Dataset", 2023): a BERT text decoder cross-attends to the clip's audio-visual tokens, is trained by teacher forcing
(cross-entropy on the next token, label smoothing as an option) and generates by beam search at test time
(``avlearn.layers.text_decoder``). Scored by ``avlearn.metrics.captioning.caption_scores``: BLEU-1..4, METEOR,
ROUGE-L and CIDEr-D (x100, PTB tokenisation; Java must be on the PATH) of each clip's caption against all of its
reference captions.

What we changed, and why:

* The decoder attends to the fields of ``task.memory`` (by default the per-segment pooled audio and visual features
  and the visual tokens), each with learned field, segment and token-index embeddings; VALOR's decoder reads the
  concatenated audio and visual tokens of its own encoders. Any method that produces the fields can be captioned.
* The decoder is random-initialised by default (``task.pretrained=minilm_l6`` starts it from all-MiniLM-L6-v2, the
  one BERT-family weight set installed offline); VALOR starts from BERT-base.
* Self-critical fine-tuning (VALOR's CIDEr-optimised stage) is not implemented.

Data: the caption benchmark ``data.benchmark`` names (``clips.CAPTION_BENCHMARKS``: VALOR-32K, MSR-VTT and the
VALOR-layout readers), each clip's captions its references (one drawn per training read); with the default
(``vggsound``) the AVE layout with ``captions/txt_mapper.json``; another benchmark is a one-line ConfigError.

``task.decoder=method`` trains and decodes with the method's own caption decoder instead (VALOR's MGC loss and
mask-append beam search): the method's optional ``caption_loss(feats, ids, mask)`` and
``caption_generate(feats, settings)`` hooks (docs/architecture.md, "Contract"); the ``TextDecoder`` is not built.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from avlearn.data.pipelines import Splits
from avlearn.data.pipelines.caption_text import benchmark_caption_splits, caption_splits
from avlearn.data.pipelines.clips import CAPTION_BENCHMARKS, clip_splits, text_benchmark
from avlearn.layers.text_decoder import TextDecoderConfig, TextHead, check_method_decoder, decoding, detokenize
from avlearn.metrics.captioning import caption_scores
from avlearn.registry import TASKS
from avlearn.tasks.base import add_method_losses
from avlearn.viz.reports import Report


@dataclass
class CaptionConfig(TextDecoderConfig):
    """Schema of ``task/caption.yaml`` (the decoder keys: ``avlearn.layers.text_decoder.TextDecoderConfig``)."""

    name: str = "caption"
    max_words: int = 32  # WordPiece tokens per reference caption, [CLS] and [SEP] included
    meteor: bool = True  # METEOR starts a Java process (~10 s) at every evaluation
    decoder: str = "task"  # task: the shared TextDecoder; method: the method's own (caption_loss / caption_generate)


def caption_task_splits(cfg: Any, audio_pre: Any) -> Splits:
    """The caption benchmark ``data.benchmark`` (``clips.CAPTION_BENCHMARKS``), or by default the AVE layout with
    ``captions/txt_mapper.json`` (AVSynth's event clips)."""
    if text_benchmark(cfg, CAPTION_BENCHMARKS, "the AVE layout with captions/txt_mapper.json"):
        return benchmark_caption_splits(cfg, clip_splits(cfg, audio_pre))
    return caption_splits(cfg, audio_pre)


def _caption_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    """CIDEr of the most frequent training caption given to every test clip."""
    refs = task.info.references
    common = Counter(c for vid in splits.train.clips.ids for c in refs[vid]).most_common(1)[0][0]
    scores = caption_scores(dict.fromkeys(out["targets"]["id"], common), refs, meteor=False)
    return {} if scores["CIDEr"] is None else {"CIDEr_most_frequent_caption": scores["CIDEr"]}


CAPTION = Report(_caption_chance)
METHOD_DECODER = ("caption_loss", "caption_generate")  # the method hooks that task.decoder=method calls


@TASKS.register("caption", pipeline=caption_task_splits, synth_part="events", report=CAPTION)
class Caption(TextHead):
    """Captioning: a BERT decoder over the method's tokens, teacher-forced; beam search; COCO caption metrics. With
    ``task.decoder=method`` the method's own ``caption_loss`` / ``caption_generate`` replace the decoder."""

    Config = CaptionConfig
    needs = ("audio_pooled", "visual_pooled")  # plus the fields of task.memory, checked at construction
    primary_metric = "CIDEr"

    def __init__(self, cfg: CaptionConfig, method: nn.Module, info: Any) -> None:
        if cfg.decoder == "task":
            super().__init__(cfg, method, info)
            return
        check_method_decoder(cfg, method, METHOD_DECODER, "caption_settings")
        nn.Module.__init__(self)
        self.cfg, self.info, self.method = cfg, info, method
        self.settings, self.memory, self.decoder = decoding(cfg), None, None

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        feats = self.method(batch)
        ids, mask = batch["caption_ids"], batch["caption_mask"]
        if self.decoder is None:
            loss = self.method.caption_loss(feats, ids, mask)
        else:
            loss = self.decoder.loss(ids, mask, self.memory(feats))
        return add_method_losses({"loss": loss}, feats.losses)

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """``caption``: one generated sentence per clip."""
        feats = self.method(batch)
        if self.decoder is None:
            tokens = self.method.caption_generate(feats, self.settings)
        else:
            tokens = self.decoder.generate(self.memory(feats), self.settings)
        return {"caption": detokenize(tokens)}

    def score(self, preds: dict[str, Any], targets: dict[str, Any]) -> dict[str, float]:
        """BLEU-1..4, METEOR, ROUGE-L, CIDEr (x100) against every reference caption of each clip; metrics that
        cannot be computed here (no Java; METEOR off) are left out."""
        predictions = dict(zip(targets["id"], preds["caption"], strict=True))
        scores = caption_scores(predictions, self.info.references, meteor=self.cfg.meteor)
        return {name: value for name, value in scores.items() if value is not None}
